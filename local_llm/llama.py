"""A lean forward pass for Llama-family decoders (Llama, SmolLM, Qwen2, Qwen3, Mistral without a sliding window).

Decoding one token of a small model on a CPU costs as much in per-operation overhead as in the matrix products.
This runs the model's own weights (float32 or 4-bit) with fewer tensor operations than transformers' modules: the
query, key and value products are fused into one, and so are gate and up, and no module, hook or mask machinery
runs per layer; Qwen3's per-head RMS norms of queries and keys (before the rotary embedding) run as its modules
run them. The arithmetic is transformers' own (the logits are the same, bit for bit, on 4-bit weights) but for two
choices made for speed, which tests turn off: float16 keys and values, and our attention (decode steps and prompts).
A decode step on 4-bit weights runs its layers in one call of ours (`decode_step.cpp`), the same arithmetic.

    lean = Lean.of(model)                      # None when the model's architecture is not one of the above
    logits = lean(ids, cache, mask, positions) # [rows, vocab] at each row's last position; appends KV to cache
    lean.dense()(ids, cache, mask, positions)  # the same with bfloat16 copies of 4-bit weights, for many rows at once
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from autoqwen.local_llm import kernels
from autoqwen.local_llm.quantize import Int4Product, fuse

if TYPE_CHECKING:
    import torch

__all__ = ["DENSE_BYTES", "Lean", "logprobs_of"]

_ARCHITECTURES = {"llama", "qwen2", "qwen3", "mistral"}
# The most memory `Lean.dense` spends on its copies of the weights: SmolLM2-135M's take 0.25 GiB; a 0.5B Qwen's layers
# ~0.72 GB and its 8-bit head's 0.27 GB more (0.41 GB where the head needs a bfloat16 copy: left out then).
DENSE_BYTES = 1 << 30


class Lean:
    """Forward pass of a Llama-family model with fused products, for decoding."""

    @staticmethod
    def of(model: Any) -> Lean | None:
        """The lean forward of `model` (built once and kept on it), or None if its architecture is unsupported."""
        if not hasattr(model, "_autoqwen_lean"):
            model._autoqwen_lean = Lean(model) if _supported(model.config) else None
        return model._autoqwen_lean

    def __init__(self, model: Any) -> None:
        import torch

        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        # Decode steps (one new token per row) attend with our kernel where it runs: PyTorch's builds and reads a
        # mask for the batch's holes, which costs more (the numbers differ by rounding only).
        fits = self.head_dim % 16 == 0 and self.head_dim <= 256 and self.heads // self.kv_heads <= 8
        self.decode_attention = kernels.load("decode_attention") if fits else None
        # A prompt (one row, several new tokens) attends with ours too, each token as a decode step would: a prompt
        # read in one pass, in chunks, or partly from the prefix cache gets the same bits. Used only together with
        # the decode kernel (tests turn both off by setting decode_attention to None).
        self.prompt_attention = kernels.load("prompt_attention") if fits else None
        # With it and quantised weights, keys and values are stored in float16 (as llama.cpp does by default): a
        # decode step reads every row's whole cache, so at 4 rows of a few hundred tokens that traffic rivals the
        # weights'. Every path rounds a token's keys and
        # values before anything attends to them, so a prompt read from the prefix cache decodes as one computed
        # afresh. float32 (float weights, or PyTorch's attention) keeps transformers' arithmetic exactly.
        quantized = not isinstance(model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
        self.kv_dtype = torch.float16 if self.decode_attention is not None and quantized else torch.float32
        self.rms_norm = kernels.load("rms_norm")  # one call where PyTorch's runs six operations
        self.rotate = kernels.load("rotary")  # one call where PyTorch's runs four, the same bits
        self.side_states = kernels.load("side_states")  # rotary, spreading and the cache update of rows side by side
        self.add_rms_norm = kernels.load("add_rms_norm")  # a residual addition and the next norm, the same bits
        self.silu_mul = kernels.load("silu_mul")  # silu(gate) * up, the same bits
        self.rounded = False  # products in bfloat16 (the dense copy): the steps before them round their inputs
        inner = model.model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm = inner.norm.weight
        self.head = model.get_output_embeddings()
        self.layers = [
            (
                layer.input_layernorm.weight,
                fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                fuse([layer.self_attn.o_proj]),
                layer.post_attention_layernorm.weight,
                fuse([layer.mlp.gate_proj, layer.mlp.up_proj]),
                fuse([layer.mlp.down_proj]),
            )
            for layer in inner.layers
        ]
        # Qwen3: one weight per head row of the query and key states, [heads + kv_heads, head_dim], so one product
        # scales both after one normalisation; None for models without these norms.
        self.qk_norms = [
            torch.cat(
                [
                    layer.self_attn.q_norm.weight.detach().expand(self.heads, self.head_dim),
                    layer.self_attn.k_norm.weight.detach().expand(self.kv_heads, self.head_dim),
                ]
            )
            if hasattr(layer.self_attn, "q_norm")
            else None
            for layer in inner.layers
        ]
        # A decode step's layers in one call of ours (`decode_step.cpp`, the same arithmetic as the loop below)
        # where every product is our 4-bit kernel and the cache is float16: the loop's ~35 operations a layer cost
        # as much as the products at one row. Tests turn it off (None) to compare.
        products = [p for parts in self.layers for p in (parts[1], parts[2], parts[4], parts[5])]
        ours = all(isinstance(p, Int4Product) and p.kernel is not None for p in products)
        self.decode_step = kernels.load("decode_step") if ours and self.kv_dtype == torch.float16 else None
        self.step_weights = [  # per layer, in decode_step.cpp's order
            w
            for (norm1, qkv, out, norm2, gate_up, down), qk_norm in zip(self.layers, self.qk_norms, strict=True)
            for w in (norm1, *_parts(qkv), *_parts(out), norm2, *_parts(gate_up), *_parts(down), _or_empty(qk_norm))
        ] if self.decode_step is not None else []  # fmt: skip
        # Rows side by side (a mask given, several tokens a row) attend as decode steps do, each token over the columns
        # its mask says: PyTorch's attention cost ~5x more at the tool scoring's ~5 rows of ~16 tokens (its dense
        # copy; elsewhere such rows are prompts, read as transformers reads them).
        self.side_attention = False
        self._dense: Lean | None = None  # its dense copy (None: none, or not built yet)
        self._dense_built = False

    def dense(self) -> Lean:
        """This forward pass with bfloat16 copies of the 4-bit products' weights (`Int4Product.dense`), built on first
        use, for reading many tokens of many rows at once (the tool scoring): on a CPU with AMX, PyTorch's bfloat16
        products read ~80 tokens 4x faster than our 4-bit kernel. Itself where that does not pay or fit: no AMX,
        weights that are not our 4-bit ones, or copies over `DENSE_BYTES`. An 8-bit head of ours gets a copy too
        (`Int8Linear.dense`: read in AMX's 8-bit tiles from 16-bit inputs, else a bfloat16 copy with each row's 32
        largest logits computed again in float32; a plain bfloat16 head moved the channel scores 1.5x more,
        docs/engine.md)."""
        if not self._dense_built:
            self._dense, self._dense_built = _dense_copy(self), True
        return self._dense or self

    def __call__(
        self,
        ids: torch.Tensor,
        cache: Any,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        *,
        last_only: bool = True,
        tokens: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [rows, vocab] of each row's last position (all positions, [rows, n, vocab], if not last_only).

        `cache` holds one layer object per model layer whose `update(keys, values)` appends and returns all keys
        and values; `mask` is a boolean [rows, 1, n, past + n] (True: attend), or None for plain causal attention.
        `tokens` (boolean [rows, n]) says which places hold tokens: the others are padding, which no product reads
        (the mask must hide them from every token). With `at` (indices into the tokens in row-major order) and
        `targets` (token ids, as many), log P(targets[i]) after token at[i] instead, [len(at)] (the 8-bit head's
        copy computes them without the logits, `DenseHead.logprobs`).
        """
        import torch
        import torch.nn.functional as F

        rows, n = ids.shape
        past = cache.layers[0].get_seq_length()
        if positions is None:
            positions = torch.arange(past, past + n)[None].expand(rows, n)
        places = None  # of the tokens, in [rows * n], where padding is left out
        if tokens is not None and not bool(tokens.all()):
            places = tokens.flatten().nonzero().squeeze(1)
        h = self.embed(ids.flatten() if places is None else ids.flatten()[places])  # one row per token
        cos, sin = self.rotary(h, positions.flatten()[None] if places is None else positions.flatten()[places][None])
        half = self.head_dim // 2
        cos, sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)  # rotate_half's signs folded in

        def spread(x: torch.Tensor) -> torch.Tensor:  # [tokens, ...] -> [rows, n, ...], zeros in the padding
            if places is None:
                return x.view(rows, n, *x.shape[1:])
            return x.new_zeros(rows * n, *x.shape[1:]).index_copy_(0, places, x).view(rows, n, *x.shape[1:])

        causal = mask is None and n > 1
        side = self.side_attention and mask is not None  # each token over the columns of its mask, as a decode step
        attend_decode = self.decode_attention if n == 1 or side else None
        attend_prompt = self.prompt_attention if causal and rows == 1 and self.decode_attention is not None else None
        real = None  # [rows, width], or [rows, n, width] side by side
        if mask is not None and attend_decode is not None:
            real = (mask[:, 0] if side else mask[:, 0, 0]).contiguous()
        if attend_prompt is not None:
            causal = False  # ours masks the later tokens itself, after any cached ones
        elif causal and past:
            mask = torch.ones(n, past + n, dtype=torch.bool).tril(past)
            causal = False
        if mask is not None and attend_decode is None:  # as attention would turn it into, once, not in every layer
            mask = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))
        heads, kv_heads, d, width = self.heads, self.kv_heads, self.head_dim, h.shape[-1]
        eps, ours = self.eps, self.rms_norm

        def norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            if ours is None or x.dtype != torch.float32:
                return torch.rms_norm(x, (width,), weight, eps)
            return ours(x.reshape(-1, width).contiguous(), weight, eps).view(x.shape)

        step = self.decode_step if attend_decode is not None and ours is not None and places is None else None
        buffers = _step_buffers(cache, rows) if step is not None else None
        if step is not None and buffers is not None:  # the step's layers in one call of ours; the loop runs none
            h = step(
                h, self.step_weights, *buffers, past, cos.reshape(rows, d).contiguous(),
                sin.reshape(rows, d).contiguous(), real, heads, kv_heads, eps,
            )  # fmt: skip
            for layer in cache.layers:
                layer.length += 1
        loop = buffers is None
        # The steps between products in calls of ours (the same bits) where our kernels run on float32 states;
        # `rounded`: bfloat16 products (the dense copy), whose inputs they round.
        add_rms_norm, silu_mul, rounded = self.add_rms_norm, self.silu_mul, self.rounded
        fused = ours is not None and h.dtype == torch.float32

        def add_norm(h: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> tuple[Any, Any]:
            """h + y, and the next product's input from it (None: no next one)."""
            if fused and add_rms_norm is not None:
                if weight is None:
                    return h.add_(y), None
                return h, add_rms_norm(h, y, weight, eps, rounded)  # h updated in place
            h = h + y
            return h, None if weight is None else norm(h, weight)

        def mix(gate_up: torch.Tensor) -> torch.Tensor:
            if fused and silu_mul is not None:
                return silu_mul(gate_up, rounded)
            g, u = gate_up.chunk(2, dim=-1)
            return F.silu(g.float()) * u

        # Rows side by side: each token's states go straight to its row and column (`side_states`).
        slots, side_states = None, self.side_states
        if side and side_states is not None and self.rotate is not None:
            slots = torch.arange(rows * n) if places is None else places
        layers = list(zip(self.layers, self.qk_norms, cache.layers, strict=True)) if loop else []
        x: Any = norm(h, layers[0][0][0]) if layers else None  # the first layer's input
        for i, ((_, qkv, out, norm2, gate_up, down), qk_norm, layer) in enumerate(layers):
            buffers = getattr(layer, "buffers", None) if slots is not None and qk_norm is None else None
            if side_states is not None and buffers is not None and buffers[0].dtype == torch.float32:  # the same bits
                k, v = layer.room(n)
                q = side_states(qkv(x).contiguous(), cos, sin, slots, n, heads, k, v, layer.length)
                q, layer.length = q.transpose(1, 2), layer.length + n
                keys, values = k.narrow(2, 0, layer.length), v.narrow(2, 0, layer.length)
            else:
                states = qkv(x).float().view(-1, heads + 2 * kv_heads, d)
                qk, v = states.split((heads + kv_heads, kv_heads), dim=1)
                if qk_norm is not None:  # as Qwen3RMSNorm: normalised in float32, then scaled by the weight
                    qk = torch.rms_norm(qk, (d,), None, eps) * qk_norm
                if self.rotate is not None:
                    qk = self.rotate(qk, cos, sin)
                else:  # not addcmul: its fused rounding varies with the tensor's shape
                    qk = qk * cos[:, None] + qk.roll(half, -1) * sin[:, None]
                q, k = spread(qk).transpose(1, 2).split((heads, kv_heads), dim=1)
                keys, values = layer.update(k.to(self.kv_dtype), spread(v).transpose(1, 2).to(self.kv_dtype))
            if attend_decode is not None:
                attended = attend_decode(q, keys, values, real, rounded)  # [rows * n, heads * d], rounded: bfloat16
            elif attend_prompt is not None:
                attended = attend_prompt(q, keys, values)  # [n, heads * d]
            else:
                keys, values = keys.float(), values.float()
                attended = (
                    F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal, enable_gqa=True)
                    .transpose(1, 2)
                    .reshape(rows * n, heads * d)
                )
            h, x = add_norm(h, out(attended if places is None else attended[places]), norm2)
            h, x = add_norm(h, down(mix(gate_up(x))), layers[i + 1][0][0] if i + 1 < len(layers) else None)
        assert (at is None) == (targets is None), "at and targets go together"
        if at is not None and targets is not None:
            if not len(at):  # no head at all for none (a pass that only reads prefixes)
                return h.new_empty(0)
            h = norm(h[at], self.norm)
            head_logprobs = getattr(self.head, "logprobs", None)
            return head_logprobs(h, targets) if head_logprobs is not None else logprobs_of(self.head(h), targets)
        h = spread(h)
        if last_only:
            h = h[:, -1]
        return self.head(norm(h, self.norm)).float()


def logprobs_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log P(targets[i]) from logits [m, vocab]: float32 [m]."""
    logits = logits.float()
    return logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)


def _dense_copy(lean: Lean) -> Lean | None:
    import copy

    import torch

    products = [p for parts in lean.layers for p in (parts[1], parts[2], parts[4], parts[5])]
    ours = [p for p in products if isinstance(p, Int4Product) and p.kernel is not None]
    size = sum(p.dense_bytes for p in ours)
    if not kernels.amx() or len(ours) < len(products) or size > DENSE_BYTES:
        return None
    dense = copy.copy(lean)
    head = lean.head if getattr(lean.head, "q8mm", None) is not None and lean.head.bias is None else None
    if head is not None and size + head.dense_bytes <= DENSE_BYTES:  # else the 8-bit head as it is
        dense.head = head.dense()
    dense.layers = [
        (
            norm1,
            *(cast(Int4Product, p).dense() for p in (qkv, out)),
            norm2,
            *(cast(Int4Product, p).dense() for p in (gate_up, down)),
        )
        for norm1, qkv, out, norm2, gate_up, down in lean.layers
    ]
    dense.decode_step, dense.step_weights = None, []  # a step's products are dense too
    dense.kv_dtype = torch.float32  # what attention reads: not rounded to float16 and converted back in every layer
    dense.side_attention = lean.decode_attention is not None
    dense.rounded = True
    dense._dense, dense._dense_built = None, True  # itself
    return dense


def _parts(product: Any) -> tuple[Any, Any, Any]:
    """A fused 4-bit product's packed weights, scales and offsets, and bias (empty if none), for decode_step."""
    return product.packed, product.scale_zero, _or_empty(product.bias)


def _or_empty(tensor: torch.Tensor | None) -> torch.Tensor:
    import torch

    return torch.empty(0) if tensor is None else tensor


def _step_buffers(cache: Any, rows: int) -> tuple[list[Any], list[Any]] | None:
    """Each layer's key and value buffers, with room for one more column, if decode_step can write into them: our
    cache layers (local_llm.batch), float16, `rows` rows."""
    import torch

    keys, values = [], []
    for layer in cache.layers:
        buffers = getattr(layer, "buffers", None)
        if buffers is None or buffers[0].dtype != torch.float16 or buffers[0].shape[0] != rows:
            return None
        k, v = layer.room(1)
        keys.append(k)
        values.append(v)
    return keys, values


def _supported(config: Any) -> bool:
    return (
        getattr(config, "model_type", None) in _ARCHITECTURES
        and not getattr(config, "use_sliding_window", False)
        and not (config.model_type == "mistral" and getattr(config, "sliding_window", None))
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
    )
