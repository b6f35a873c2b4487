"""Our prompt attention gives each new token of a prompt what a decode step computes for it: a prompt read in one
pass, in chunks or token by token gets the same bits (with 4-bit weights, whose products are per row too)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import transformers

from autoqwen.local_llm import kernels
from autoqwen.local_llm.batch import Batch, forward, new_cache
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.quantize import quantize

pytestmark = pytest.mark.skipif(kernels.load("prompt_attention") is None, reason="our kernels do not run here")


@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "past", "n", "dtype"),
    # grouped 3 and 7 to one (tiles of 5 and 2 tokens), none; one to many blocks of 32 keys; float16 and float32
    [
        *[(9, 3, 64, 0, 37, "float16"), (9, 3, 64, 20, 17, "float32"), (4, 4, 16, 5, 40, "float32")],
        *[(14, 2, 128, 3, 9, "float16"), (8, 1, 64, 0, 1, "float16"), (6, 2, 32, 100, 70, "float16")],
    ],
)
def test_prompt_attention_is_decode_attention_token_by_token(
    heads: int, kv_heads: int, dim: int, past: int, n: int, dtype: str
) -> None:
    prompt, decode = kernels.load("prompt_attention"), kernels.load("decode_attention")
    generator = torch.Generator().manual_seed(n)
    width = past + n
    q = (torch.randn(1, n, heads + kv_heads, dim, generator=generator) * 2).transpose(1, 2)[:, :heads]  # strided
    stored = [torch.randn(1, kv_heads, width + 16, dim, generator=generator).to(getattr(torch, dtype)) for _ in "kv"]
    keys, values = (s.narrow(2, 0, width) for s in stored)  # a cache buffer with room to grow
    got = prompt(q, keys, values)
    causal = torch.ones(n, width, dtype=torch.bool).tril(past)
    expected = F.scaled_dot_product_attention(q, keys.float(), values.float(), attn_mask=causal, enable_gqa=True)
    assert torch.allclose(got, expected.transpose(1, 2).reshape(n, -1), atol=1e-5)
    for i in range(n):
        one = decode(q[:, :, i : i + 1], keys[:, :, : past + i + 1], values[:, :, : past + i + 1], None)
        assert torch.equal(got[i], one[0]), f"token {i} differs from its decode step"


def make(kind: str) -> Any:
    torch.manual_seed(0)
    sizes = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes, num_key_value_heads=2))
    else:  # Qwen3: query and key norms, a head size of its own
        config = transformers.Qwen3Config(**sizes, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True)
        model = transformers.Qwen3ForCausalLM(config)
    quantize(model.eval())
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_a_prompt_read_in_chunks_or_token_by_token_gets_the_same_bits(kind: str) -> None:
    model = make(kind)
    lean = Lean.of(model)
    assert lean is not None and lean.prompt_attention is not None and lean.kv_dtype == torch.float16
    tokens = torch.randint(0, 96, (1, 90), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = new_cache(model)
        expected = forward(model, tokens, whole)
        for bounds in [(0, 37, 38, 64, 90), tuple(range(91))]:
            cache = new_cache(model)
            for start, end in itertools.pairwise(bounds):
                got = forward(model, tokens[:, start:end], cache)
            assert torch.equal(got, expected)
            for mine, theirs in zip(cache.layers, whole.layers, strict=True):
                assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)


def test_a_single_row_fed_several_tokens_in_the_batch_reads_them_as_a_prompt() -> None:
    # A repeated prompt's last token and a grammar's forced tokens come through the batch, without a mask.
    model = make("llama")
    tokens = torch.randint(0, 96, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = forward(model, tokens, new_cache(model))
        cache = new_cache(model)
        forward(model, tokens[:, :20], cache)
        batch = Batch(model)
        batch.add([(layer.keys, layer.values) for layer in cache.layers])
        assert torch.equal(batch.step([tokens[0, 20:].tolist()]), expected)
