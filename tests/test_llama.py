"""The lean Llama-family forward pass computes what transformers' forward computes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import transformers

from autoqwen.local_llm import batch, kernels
from autoqwen.local_llm.batch import Batch, SideBySide, all_logits, forward, new_cache
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.quantize import fuse, quantize

SIZES = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)


def make(kind: str) -> Any:
    torch.manual_seed(0)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SIZES, rope_theta=10000.0))
    else:  # Qwen2: biased query/key/value products
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SIZES, tie_word_embeddings=True))
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)  # initialised to zero: make them count
    return model.eval()


def ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("kind", "kv_dtype"), [("llama", "float32"), ("qwen2", "float32"), ("qwen2", "float16")])
def test_prompt_and_steps_match_transformers(kind: str, kv_dtype: str) -> None:
    model = make(kind)
    lean = Lean.of(model)
    assert lean is not None
    lean.kv_dtype = getattr(torch, kv_dtype)  # float16: keys and values rounded as stored, logits ~1e-4 apart
    atol = 1e-4 if kv_dtype == "float32" else 2e-3
    tokens = ids(40)
    with torch.inference_mode():
        expected = model(input_ids=tokens).logits.float()
        assert torch.allclose(all_logits(model, tokens), expected, atol=atol)
        cache = new_cache(model)
        got = [lean(tokens[:, :30], cache)]  # prompt, then the rest one token at a time
        got += [lean(tokens[:, i : i + 1], cache) for i in range(30, 40)]
        got_chunk = lean(tokens[:, 30:], new_cache(model, [(k, v) for k, v in _kv(model, tokens[:, :30])]))
    assert torch.allclose(torch.cat(got), expected[0, 29:], atol=atol)
    assert torch.allclose(got_chunk[0], expected[0, -1], atol=atol)  # several new tokens after a cached prefix


def _kv(model: Any, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    cache = new_cache(model)
    forward(model, tokens, cache)
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # eager attention adds the mask to its scores
def test_batch_with_holes_matches_transformers(monkeypatch: pytest.MonkeyPatch, attention: str) -> None:
    model = make("llama")
    model.config._attn_implementation = attention
    Lean.of(model).kv_dtype = torch.float32  # type: ignore[union-attr]

    def run() -> list[torch.Tensor]:
        batch = Batch(model)
        for n, seed in [(7, 1), (19, 2), (3, 3)]:  # rows of different lengths: holes on the left
            batch.add(_kv(model, ids(n, seed)))
        return [batch.step([[5], [6, 7, 8], [9, 10]]), batch.step([[11], [12], [13]])]

    with torch.inference_mode():
        lean = run()
        monkeypatch.setattr(Lean, "of", staticmethod(lambda model: None))  # transformers' forward from here
        reference = run()
    for a, b in zip(lean, reference, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_batch_rows_without_states_and_rows_leaving_together() -> None:
    model = make("llama")
    Lean.of(model).kv_dtype = torch.float32  # type: ignore[union-attr]
    prompt, fresh = ids(9, 1), ids(3, 2)
    with torch.inference_mode():
        alone = new_cache(model)  # what the row without states should compute: its tokens from scratch
        expected = forward(model, fresh, alone)
        batch = Batch(model)
        batch.add(None)  # a row whose first tokens come with the first step
        batch.add(_kv(model, prompt))
        batch.add(None)
        logits = batch.step([fresh[0].tolist(), [5], [7]])
        assert torch.allclose(logits[0], expected[0], atol=1e-4)
        first, last = batch.remove([0, 2])  # together: one rebuild for the row that stays
        assert batch.rows == 1 and batch.width == 10  # the columns only the leavers used are gone
        for (k, v), layer in zip(first, alone.layers, strict=True):
            assert k.is_contiguous() and torch.allclose(k, layer.keys, atol=1e-5)
            assert torch.allclose(v, layer.values, atol=1e-5)
        assert last[0][0].shape[2] == 1
        again = batch.step([[6]])  # the remaining row goes on as if alone
        reference = new_cache(model)
        forward(model, prompt, reference)
        forward(model, torch.tensor([[5]]), reference)
        assert torch.allclose(again[0], forward(model, torch.tensor([[6]]), reference)[0], atol=1e-4)


def test_removing_the_longest_row_narrows_the_batch_and_the_others_go_on_as_alone() -> None:
    model = make("llama")
    Lean.of(model).kv_dtype = torch.float32  # type: ignore[union-attr]
    prompts = [ids(7, 1), ids(19, 2), ids(3, 3)]
    with torch.inference_mode():
        batch = Batch(model)
        for prompt in prompts:  # holes on the left only: rows stay right-aligned as the longest leaves
            batch.add(_kv(model, prompt))
        (gone,) = batch.remove([1])
        assert batch.width == 7 and gone[0][0].shape[2] == 19
        got = batch.step([[5], [6]])
        for row, (prompt, token) in enumerate([(prompts[0], 5), (prompts[2], 6)]):
            alone = new_cache(model)
            forward(model, prompt, alone)
            assert torch.allclose(got[row], forward(model, torch.tensor([[token]]), alone)[0], atol=1e-4)


def test_int4_lean_equals_transformers_int4() -> None:
    # The same 4-bit products, norms and rotary arithmetic: bit for bit the same logits (with float32 keys and
    # values, PyTorch's attention for decode steps and its norm too; ours round differently, see below).
    model = make("llama")
    quantize(model)
    lean = Lean.of(model)
    assert lean is not None
    lean.decode_attention, lean.kv_dtype, lean.rms_norm = None, torch.float32, None
    reference = copy.copy(model)
    reference._autoqwen_lean = None  # transformers' forward for the reference
    tokens = ids(48)
    with torch.inference_mode():
        assert torch.equal(all_logits(model, tokens), all_logits(reference, tokens))
        cache, expected = new_cache(reference), []
        for i in range(48):
            expected.append(forward(reference, tokens[:, i : i + 1], cache))
        cache = new_cache(model)
        got = [forward(model, tokens[:, i : i + 1], cache) for i in range(48)]
    assert torch.equal(torch.cat(got), torch.cat(expected))


@pytest.mark.skipif(kernels.load("decode_attention") is None, reason="our kernels do not run on this machine")
@pytest.mark.parametrize(
    ("width", "dtype", "dim", "heads"),
    # widths not a multiple of the 4 keys scored at once; dims whose value sums take 1 or 2 passes over the heads
    [
        *[(9, "float32", 32, 6), (70, "float32", 32, 6), (300, "float32", 32, 6), (70, "float16", 32, 6)],
        *[(33, "float16", 64, 6), (70, "float32", 128, 6), (21, "float32", 64, 14), (7, "float16", 64, 16)],
        *[(1, "float32", 64, 6), (3, "float16", 32, 6)],  # only the last, partial block of 4 keys
    ],
)
def test_decode_attention_matches_pytorch(width: int, dtype: str, dim: int, heads: int) -> None:
    attend = kernels.load("decode_attention")
    rows, kv_heads = 3, 2
    generator = torch.Generator().manual_seed(width)
    qk = torch.randn(rows, 1, heads + kv_heads, dim, generator=generator)
    q = qk.transpose(1, 2)[:, :heads]  # strided, as the lean pass hands it over
    stored = [torch.randn(rows, kv_heads, width + 16, dim, generator=generator).to(getattr(torch, dtype)) for _ in "kv"]
    keys, values = (s.narrow(2, 0, width) for s in stored)  # strided too: a cache buffer with room to grow
    real = torch.ones(rows, width, dtype=torch.bool)
    real[1, : min(4, width - 1)] = False  # a shorter row's hole on the left
    real[2, 5:7] = False  # a hole left by a step that fed other rows several tokens (width 7: in the last block)
    additive = torch.zeros(rows, 1, 1, width).masked_fill_(~real[:, None, None], float("-inf"))
    k32, v32 = keys.float(), values.float()
    expected = F.scaled_dot_product_attention(q, k32, v32, attn_mask=additive, enable_gqa=True)
    assert torch.allclose(attend(q, keys, values, real), expected.transpose(1, 2).reshape(rows, -1), atol=1e-6)
    plain = F.scaled_dot_product_attention(q, k32, v32, enable_gqa=True).transpose(1, 2).reshape(rows, -1)
    assert torch.allclose(attend(q, keys, values, None), plain, atol=1e-6)


@pytest.mark.skipif(kernels.load("decode_attention") is None, reason="our kernels do not run on this machine")
def test_decode_attention_does_not_depend_on_where_a_rows_tokens_sit() -> None:
    # Compaction and batching move a row's tokens among holes: its result must keep every bit (holes hold NaN
    # here, which must not leak either).
    attend = kernels.load("decode_attention")
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 6, 1, 64, generator=generator)
    keys, values = (torch.randn(1, 2, 37, 64, generator=generator).half() for _ in "kv")
    nan = torch.full((1, 2, 1, 64), float("nan"), dtype=torch.float16)

    def spread(states: torch.Tensor) -> torch.Tensor:  # 11 holes on the left, one inside
        return torch.cat([nan.expand(1, 2, 11, 64), states[:, :, :9], nan, states[:, :, 9:]], dim=2)

    real = torch.ones(1, 49, dtype=torch.bool)
    real[0, :11] = real[0, 20] = False
    assert torch.equal(attend(q, spread(keys), spread(values), real), attend(q, keys, values, None))


@pytest.mark.skipif(kernels.load("decode_attention") is None, reason="our kernels do not run on this machine")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_decode_attention_reads_several_tokens_a_row_each_as_a_decode_step(dtype: str) -> None:
    # The tool scoring's rows side by side: each token over the columns its own mask says.
    attend = kernels.load("decode_attention")
    rows, n, heads, kv_heads, width, dim = 3, 5, 6, 2, 23, 64
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(rows, n, heads + kv_heads, dim, generator=generator).transpose(1, 2)[:, :heads]  # strided
    stored = (torch.randn(rows, kv_heads, width, dim, generator=generator) for _ in "kv")
    keys, values = (s.to(getattr(torch, dtype)) for s in stored)
    real = torch.rand(rows, n, width, generator=generator) < 0.7
    real[:, :, -1] = True  # each token sees itself at least
    out = attend(q, keys, values, real)
    assert out.shape == (rows * n, heads * dim)
    assert torch.equal(attend(q, keys, values, real, True), out.to(torch.bfloat16))  # rounded for a bfloat16 product
    for r in range(rows):
        for i in range(n):
            alone = attend(q[r : r + 1, :, i : i + 1], keys[r : r + 1], values[r : r + 1], real[r : r + 1, i])
            assert torch.equal(out[r * n + i], alone[0])
    additive = torch.zeros(rows, 1, n, width).masked_fill_(~real[:, None], float("-inf"))
    expected = F.scaled_dot_product_attention(q, keys.float(), values.float(), attn_mask=additive, enable_gqa=True)
    assert torch.allclose(out, expected.transpose(1, 2).reshape(rows * n, -1), atol=1e-6)
    with pytest.raises(RuntimeError, match="several queries a row need real"):
        attend(q, keys, values, None)


@pytest.mark.skipif(kernels.load("add_rms_norm") is None, reason="our kernels do not run on this machine")
@pytest.mark.parametrize(("rows", "width"), [(1, 576), (72, 576), (300, 64), (3, 40)])  # 40: a partial 16
def test_the_steps_between_products_keep_pytorchs_bits(rows: int, width: int) -> None:
    add_rms_norm, silu_mul, rms_norm = (kernels.load(name) for name in ("add_rms_norm", "silu_mul", "rms_norm"))
    generator = torch.Generator().manual_seed(rows)
    h, weight = torch.randn(rows, width, generator=generator) * 3, torch.randn(width, generator=generator)
    gate_up = torch.randn(rows, 8 * width, generator=generator) * 2
    for dtype in (torch.float32, torch.bfloat16):
        y = torch.randn(rows, width, generator=generator).to(dtype)
        expected_h = h + y
        for rounded in (False, True):
            got_h = h.clone()
            normed = add_rms_norm(got_h, y, weight, 1e-5, rounded)
            assert torch.equal(got_h, expected_h)
            expected = rms_norm(expected_h, weight, 1e-5)
            assert torch.equal(normed, expected.to(torch.bfloat16) if rounded else expected)
            g, u = gate_up.to(dtype).chunk(2, dim=-1)
            mixed = F.silu(g.float()) * u
            assert torch.equal(silu_mul(gate_up.to(dtype), rounded), mixed.to(torch.bfloat16) if rounded else mixed)


@pytest.mark.skipif(kernels.load("add_rms_norm") is None, reason="our kernels do not run on this machine")
def test_the_lean_pass_gets_the_same_bits_with_its_fused_steps_or_without() -> None:
    model = make("llama")
    quantize(model)
    lean = Lean.of(model)
    assert lean is not None and lean.add_rms_norm is not None
    tokens = ids(40)
    with torch.inference_mode():
        fused = all_logits(model, tokens)
        lean.add_rms_norm = lean.silu_mul = None
        assert torch.equal(all_logits(model, tokens), fused)


@pytest.mark.skipif(kernels.load("side_states") is None, reason="our kernels do not run on this machine")
def test_rows_side_by_side_get_the_same_bits_from_our_steps_as_from_pytorchs() -> None:
    # The tool scoring's pass (batch.SideBySide) with the steps the dense copy takes (its products aside), on a
    # float32 Qwen2 (biased products): rows of unequal lengths, with and without pasts, read in two passes.
    model = make("qwen2")
    lean = Lean.of(model)
    assert lean is not None
    lean.side_attention = True
    pasts = [_kv(model, ids(9, seed=1)), None, _kv(model, ids(4, seed=2))]
    fed = [ids(7, seed=3)[0].tolist(), ids(3, seed=4)[0].tolist(), ids(5, seed=5)[0].tolist()]
    targets = ids(21, seed=6).view(3, 7)

    def read() -> torch.Tensor:
        rows = SideBySide(model, pasts, fed, [0, 1, 2])
        with torch.inference_mode():
            return torch.cat([logprobs for _, _, logprobs in rows.passes(targets, tokens=12, logits=8)])

    ours = read()
    assert len(ours) == 7 + 2 + 3
    lean.side_states = None  # rotary, spreading and the cache update as PyTorch's operations
    assert torch.equal(read(), ours)
    lean.add_rms_norm = lean.silu_mul = None  # the residual additions, norms and silu too
    assert torch.equal(read(), ours)
    lean.side_attention = False  # PyTorch's attention: other rounding
    assert torch.allclose(read(), ours, atol=1e-4)


def test_states_read_side_by_side_come_back_without_a_copy() -> None:
    # SideBySide.kv gives views of one tensor (what the scoring puts in the prefix cache); a later reading copies
    # them in at once (their first columns, as a lookup slices them), the same values as stacked copies.
    model = make("qwen2")
    fed, targets = [ids(6, seed=1)[0].tolist()], ids(6, seed=2).view(1, 6)
    for pasts in ([_kv(model, ids(4, seed=3))], [None]):  # a cache of its own, or one per layer
        with torch.inference_mode():  # as the engine reads (no views' bases recorded)
            rows = SideBySide(model, pasts, fed, [0])
            list(rows.passes(targets, tokens=12, logits=8))
            kv = rows.kv(0, 5)
            sliced = [(k[:, :, :3], v[:, :, :3]) for k, v in kv]
            stacked = batch._stacked(sliced)
        _, heads, columns, dim = kv[0][0].shape
        assert columns == batch._columns(pasts[0]) + 5 and stacked.shape == (len(kv), 2, heads, 3, dim)
        assert stacked.data_ptr() == kv[0][0].data_ptr()
        copies = [(k.clone(), v.clone()) for k, v in sliced]
        assert torch.equal(batch._stacked(copies), stacked) and batch._stacked(copies).data_ptr() != stacked.data_ptr()
        swapped = [*sliced[:1], (sliced[1][1], sliced[1][0]), *sliced[2:]]  # views of it, not in its order: copied
        assert torch.equal(batch._stacked(swapped)[1], torch.stack([sliced[1][1][0], sliced[1][0][0]]))

        def read(past: Any) -> torch.Tensor:
            again = SideBySide(model, [past], [fed[0][5:]], [0])
            with torch.inference_mode():
                return torch.cat([logprobs for _, _, logprobs in again.passes(targets[:, 5:], tokens=12, logits=8)])

        assert torch.equal(read(kv), read([(k.clone(), v.clone()) for k, v in kv]))


@pytest.mark.skipif(kernels.load("rms_norm") is None, reason="our kernels do not run on this machine")
@pytest.mark.parametrize(("rows", "width"), [(1, 576), (4, 64), (3, 40), (256, 576)])  # 40: a partial block of 16
def test_rms_norm_matches_pytorch(rows: int, width: int) -> None:
    norm = kernels.load("rms_norm")
    generator = torch.Generator().manual_seed(rows)
    x, weight = torch.randn(rows, width, generator=generator) * 3, torch.randn(width, generator=generator)
    expected = torch.rms_norm(x, (width,), weight, 1e-5)
    assert torch.allclose(norm(x, weight, 1e-5), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("names", [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")])
def test_fused_products_equal_separate_ones(names: tuple[str, ...]) -> None:
    # gate and up (128 rows each) stack whole 4-bit blocks of 64 rows; k and v (32 rows) cannot, so run apart
    model = make("qwen2")
    layer = model.model.layers[0]
    x = torch.randn(5, SIZES["hidden_size"])
    with torch.inference_mode():
        for quantized in (False, True):
            if quantized:
                quantize(model)
            parts = [getattr(layer.self_attn, name, None) or getattr(layer.mlp, name) for name in names]
            expected = torch.cat([part(x) for part in parts], dim=-1)
            got = fuse(parts)(x).float()
            assert torch.equal(got, expected) if quantized else torch.allclose(got, expected, atol=1e-6)


def test_layers_of_mixed_kinds_run_one_by_one() -> None:
    model = make("llama")
    attn = model.model.layers[0].self_attn
    quantize(model)
    attn.k_proj = torch.nn.Linear(SIZES["hidden_size"], 32, bias=False)  # as quantize() leaves odd shapes
    parts = [attn.q_proj, attn.k_proj, attn.v_proj]
    x = torch.randn(3, SIZES["hidden_size"])
    with torch.inference_mode():
        assert torch.equal(fuse(parts)(x), torch.cat([part(x) for part in parts], dim=-1))
        assert Lean.of(model) is not None


def test_other_architectures_use_transformers() -> None:
    config = transformers.MistralConfig(**SIZES, sliding_window=16)
    assert Lean.of(transformers.MistralForCausalLM(config)) is None
    gpt2 = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)
    assert Lean.of(transformers.GPT2LMHeadModel(gpt2)) is None


@pytest.mark.parametrize("quantized", [False, True])
def test_fusing_shares_the_layers_memory(quantized: bool) -> None:
    model = make("llama")
    if quantized:
        quantize(model)
    assert Lean.of(model) is not None
    mlp = model.model.layers[0].mlp

    def storage(linear: Any) -> int:
        tensor = linear.packed if quantized else linear.weight
        return int(tensor.untyped_storage().data_ptr())

    assert storage(mlp.gate_proj) == storage(mlp.up_proj)  # both views of the one fused weight


def test_the_engine_runs_llama_models_lean(tiny_engine: Any) -> None:
    assert isinstance(Lean.of(tiny_engine.model), Lean)  # built at load; a fallback would only be slower
