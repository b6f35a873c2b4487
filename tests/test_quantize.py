"""4-bit weight-only quantisation: same model, fewer bytes per weight, outputs close to float32."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import transformers

from local_llm import Engine, SamplingParams, resolve_model
from local_llm.quantize import is_4bit_gguf, quantize


def test_quantized_logits_stay_close_to_float32(tiny_model_dir: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    quantized = copy.deepcopy(model)
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert quantize(quantized) == linears
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    ids = torch.randint(0, model.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
        got = torch.log_softmax(quantized(input_ids=ids).logits.float(), -1)
        one = torch.log_softmax(quantized(input_ids=ids[:, :1]).logits.float(), -1)
    kl = (ref.exp() * (ref - got)).sum(-1).mean()
    assert kl < 0.01, f"KL(float32 || int4) = {kl:.4f}"
    assert torch.allclose(one[0, 0], got[0, 0], atol=0.05)


def test_int4_engine_generates_and_batches_consistently(tiny_model_dir: Path) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)), quantize="int4", max_batch=3).start().wait_ready(60)
    try:
        assert engine.quantized
        prompts = [engine.encode_chat([{"role": "user", "content": "hi " * (i + 1)}]) for i in range(3)]
        params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
        alone = [engine.submit(p, params).text() for p in prompts]
        together = [c.text() for c in [engine.submit(p, params) for p in prompts]]
        assert together == alone and all(alone)
    finally:
        engine.close()


def test_auto_quantizes_only_4bit_gguf(tiny_model_dir: Path) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir))).start().wait_ready(60)
    try:
        assert not engine.quantized  # a float32 folder stays as it is
    finally:
        engine.close()
    src = resolve_model("bundled")
    assert src.gguf_file is not None and is_4bit_gguf(src.path / src.gguf_file)  # SmolLM2 Q4_1
