"""The lean forward pass computes what transformers' forward computes for the current Qwen families: Qwen2
(biased query, key and value products) and Qwen3 (per-head RMS norms of queries and keys, a head size that is not
hidden / heads)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from autoqwen.local_llm import Engine, SamplingParams
from autoqwen.local_llm.batch import all_logits, forward, new_cache
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.quantize import quantize

SIZES = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)


def make_qwen3(**overrides: Any) -> Any:
    """A random Qwen3 whose q/k norm weights are not all ones (as initialised), so that they count."""
    torch.manual_seed(0)
    config = transformers.Qwen3Config(**{**SIZES, "head_dim": 32, "tie_word_embeddings": True, **overrides})
    model = transformers.Qwen3ForCausalLM(config)
    for layer in model.model.layers:
        for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
            torch.nn.init.normal_(norm.weight, mean=1.0, std=0.5)
    return model.eval()


def ids(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("head_dim", "kv_dtype"), [(32, "float32"), (32, "float16"), (8, "float32")])
def test_qwen3_prompt_and_steps_match_transformers(head_dim: int, kv_dtype: str) -> None:
    model = make_qwen3(head_dim=head_dim)  # 32: our decode attention kernel; 8: PyTorch's attention
    lean = Lean.of(model)
    assert lean is not None, "Qwen3 runs the lean forward"
    assert (lean.decode_attention is not None) == (head_dim % 16 == 0)
    lean.kv_dtype = getattr(torch, kv_dtype)  # float16: keys and values rounded as stored, logits ~1e-4 apart
    atol = 1e-4 if kv_dtype == "float32" else 2e-3  # as tests/test_llama.py
    tokens = ids(40)
    with torch.inference_mode():
        expected = model(input_ids=tokens).logits.float()
        assert torch.allclose(all_logits(model, tokens), expected, atol=atol)
        cache = new_cache(model)
        got = [lean(tokens[:, :30], cache)]  # prompt, then the rest one token at a time
        got += [lean(tokens[:, i : i + 1], cache) for i in range(30, 40)]
    assert torch.allclose(torch.cat(got), expected[0, 29:], atol=atol)


def test_qwen3_norms_are_not_skipped() -> None:
    """The check above would pass with norms of weight one left out; these weights are not one."""
    model = make_qwen3()
    lean = Lean.of(model)
    assert lean is not None and all(w is not None for w in lean.qk_norms)
    plain = make_qwen3()
    for layer in plain.model.layers:
        for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
            torch.nn.init.ones_(norm.weight)
    with torch.inference_mode():
        assert not torch.allclose(all_logits(model, ids(8)), plain(input_ids=ids(8)).logits.float(), atol=1e-2)


def test_qwen3_int4_lean_equals_transformers_int4() -> None:
    # As tests/test_llama.py: bit for bit the same logits with our speed choices turned off (float32 keys and
    # values, PyTorch's attention for decode steps and its norm), the q/k norms included.
    model = make_qwen3()
    quantize(model)
    lean = Lean.of(model)
    assert lean is not None
    lean.decode_attention, lean.kv_dtype, lean.rms_norm = None, torch.float32, None
    reference = copy.copy(model)
    reference._autoqwen_lean = None  # transformers' forward for the reference
    tokens = ids(32, seed=3)
    with torch.inference_mode():
        assert torch.equal(all_logits(model, tokens), all_logits(reference, tokens))
        cache, expected = new_cache(reference), []
        for i in range(32):
            expected.append(forward(reference, tokens[:, i : i + 1], cache))
        cache = new_cache(model)
        got = [forward(model, tokens[:, i : i + 1], cache) for i in range(32)]
    assert torch.equal(torch.cat(got), torch.cat(expected))


def test_sliding_window_qwen3_falls_back_to_transformers() -> None:
    model = make_qwen3(use_sliding_window=True, sliding_window=16, max_window_layers=0)
    assert Lean.of(model) is None


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_tiny_qwen_models_decode_on_the_lean_path_as_transformers_does(
    kind: str, request: pytest.FixtureRequest
) -> None:
    engine: Engine = request.getfixturevalue(f"tiny_{kind}_engine")
    folder: Path = request.getfixturevalue(f"tiny_{kind}_dir")
    assert Lean.of(engine.model) is not None
    prompt = engine.encode_chat([{"role": "user", "content": "Hello"}])
    text = engine.submit(prompt, SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)).text()
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    greedy = reference.generate(
        torch.tensor([prompt]), max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
    )
    assert text == engine.decode(greedy[0, len(prompt) :].tolist())[: len(text)]
