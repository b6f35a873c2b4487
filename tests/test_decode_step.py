"""Our one-call decode step (`decode_step.cpp`) computes what the lean forward's Python loop computes, bit for bit:
the logits and the cache it writes, for one row and for a batch with holes, on Llama, Qwen2 (biased products) and
Qwen3 (query and key norms), 4-bit weights and float16 keys and values as the engine runs them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from test_llama import SIZES, ids
from test_llama import make as make_llama
from test_qwen_forward import make_qwen3

from autoqwen.local_llm import Engine, SamplingParams, kernels, resolve_model
from autoqwen.local_llm.batch import Batch, forward, new_cache
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.quantize import quantize

pytestmark = pytest.mark.skipif(kernels.load("decode_step") is None, reason="our kernels do not run on this machine")


def make(kind: str) -> tuple[Any, Any, list[int]]:
    """A random 4-bit model of `kind` (test_llama's Llama or Qwen2 with biases, test_qwen_forward's Qwen3) on the
    one-call step, a copy of it on the Python loop, and a list that grows by one with each one-call step."""
    return on_both(make_qwen3(head_dim=32) if kind == "qwen3" else make_llama(kind))


def on_both(model: Any) -> tuple[Any, Any, list[int]]:
    """`model` quantised on the one-call step, a copy on the Python loop, and the one-call step's calls."""
    quantize(model)
    lean = Lean.of(model)
    assert lean is not None and lean.decode_step is not None and lean.kv_dtype == torch.float16
    loop = copy.copy(model)
    loop._autoqwen_lean = copy.copy(lean)
    loop._autoqwen_lean.decode_step = None
    calls: list[int] = []
    step = lean.decode_step
    lean.decode_step = lambda *args: calls.append(1) or step(*args)
    return model, loop, calls


def caches_equal(a: Any, b: Any) -> bool:
    return all(
        torch.equal(x.keys, y.keys) and torch.equal(x.values, y.values) for x, y in zip(a.layers, b.layers, strict=True)
    )


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_one_row_steps_equal_the_loop(kind: str) -> None:
    model, loop, calls = make(kind)
    tokens = ids(70)
    with torch.inference_mode():
        ours, theirs = new_cache(model), new_cache(loop)
        assert torch.equal(forward(model, tokens[:, :20], ours), forward(loop, tokens[:, :20], theirs))
        for i in range(20, 70):  # past the buffers' first room: they grow between steps
            step = tokens[:, i : i + 1]
            assert torch.equal(forward(model, step, ours), forward(loop, step, theirs)), i
        assert caches_equal(ours, theirs)
        assert ours.layers[0].get_seq_length() == 70
    assert len(calls) == 50  # every decode step took the one-call path


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_a_batch_with_holes_equals_the_loop(kind: str) -> None:
    model, loop, calls = make(kind)

    def run(m: Any) -> tuple[list[torch.Tensor], Batch]:
        batch = Batch(m)
        for n, seed in [(7, 1), (19, 2), (3, 3)]:  # rows of different lengths: holes on the left
            cache = new_cache(m)
            forward(m, ids(n, seed), cache)
            batch.add([(layer.keys.clone(), layer.values.clone()) for layer in cache.layers])
        logits = [batch.step([[5], [6], [9]]) for _ in range(3)]
        batch.remove([1])  # the longest row leaves: the others go on in a narrower batch
        logits += [batch.step([[11], [13]]) for _ in range(3)]
        return logits, batch

    with torch.inference_mode():
        (ours, batch), (theirs, reference) = run(model), run(loop)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert caches_equal(batch.cache, reference.cache)
    assert len(calls) == 6  # the batch's decode steps (the prompts were read by the loop)


def test_a_batch_whose_mlp_pytorch_would_split_equals_the_loop() -> None:
    """From rows x intermediate size = 32768 (PyTorch's grain size) PyTorch splits silu among its threads, and the
    split decides which elements take its scalar tail: the step then runs silu outside its parallel region."""
    torch.manual_seed(0)
    # 17 x 2080 >= 32768; two threads' halves split a row 1040 in, not at a multiple of PyTorch's 32-float steps
    config = transformers.LlamaConfig(**{**SIZES, "intermediate_size": 2080}, rope_theta=10000.0)
    model, loop, calls = on_both(transformers.LlamaForCausalLM(config).eval())

    def run(m: Any) -> list[torch.Tensor]:
        batch = Batch(m)
        for row in range(17):
            cache = new_cache(m)
            forward(m, ids(2 + row % 5, row), cache)
            batch.add([(layer.keys.clone(), layer.values.clone()) for layer in cache.layers])
        return [batch.step([[t] for t in range(17)]) for _ in range(3)]

    with torch.inference_mode():
        for a, b in zip(run(model), run(loop), strict=True):
            assert torch.equal(a, b)
    assert len(calls) == 3


def test_the_engine_decodes_with_one_call_a_step(tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine on 4-bit weights takes the one-call path for its decode steps."""
    engine = Engine(resolve_model(str(tiny_qwen3_dir)), quantize="int4").start().wait_ready(60)
    try:
        lean = Lean.of(engine.model)
        assert lean is not None and lean.decode_step is not None
        calls = []
        step = lean.decode_step
        monkeypatch.setattr(lean, "decode_step", lambda *args: calls.append(1) or step(*args))
        prompt = engine.encode_chat([{"role": "user", "content": "Hello"}])
        engine.submit(prompt, SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)).text()
        assert len(calls) >= 4
    finally:
        engine.close()
