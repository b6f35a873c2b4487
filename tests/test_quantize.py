"""Quantisation (4-bit layers, 8-bit head): same model, fewer bytes per weight, outputs close to float32."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import transformers

from autoqwen.local_llm import Engine, SamplingParams, cache, kernels, resolve_model
from autoqwen.local_llm import quantize as quantize_module
from autoqwen.local_llm.quantize import Int4Product, _classes, fuse, is_4bit_gguf, q4_weights, quantize


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


def test_whether_a_gguf_is_4bit_is_read_once_and_kept_with_its_conversion(tmp_path: Path) -> None:
    src = resolve_model("bundled")
    assert src.gguf_file is not None and is_4bit_gguf(src.path / src.gguf_file)  # SmolLM2 Q4_1
    folder = tmp_path / "converted"
    folder.mkdir()
    assert cache.gguf_is_4bit(src, folder) and not any(folder.iterdir())  # an unfinished conversion keeps nothing
    (folder / cache._DONE).write_text("ok\n")
    assert cache.gguf_is_4bit(src, folder)
    kept = folder / "autoqwen-4bit.txt"
    assert kept.read_text() == "yes\n"
    kept.write_text("no\n")
    assert not cache.gguf_is_4bit(src, folder)  # later starts read what was kept, not the file (~2.4 s)


@pytest.mark.skipif(kernels.load("q8mm") is None, reason="our kernels do not run on this machine")
def test_8bit_head_product_is_exact_in_integers_and_batch_invariant() -> None:
    _, int8_linear = _classes()
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 48, bias=False)
    head = int8_linear(linear)
    assert head.q8mm is not None
    x = torch.randn(5, 96, generator=generator) * torch.tensor([10.0, 0.1]).repeat(48)  # large and small inputs
    y = head(x)
    # The kernel's arithmetic, in float64: x ~ d (254 hi + lo) per group of 32, w ~ scale * q per row.
    groups = x.view(5, 3, 32)
    d = groups.abs().amax(-1, keepdim=True) / 127
    hi = torch.round(groups / d)
    lo = torch.round((groups / d - hi) * 254)
    rounded = (d.double() * (hi.double() + lo.double() / 254)).view(5, 96)
    w = linear.weight.detach()
    scale = w.abs().amax(dim=1) / 127
    q = torch.round(w / scale[:, None])
    expected = rounded @ (q.double() * scale.double()[:, None]).t()
    assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-5)
    assert (y - x @ w.t()).abs().max() < 0.01 * (x @ w.t()).abs().max()  # ~16-bit inputs: close to float32's
    assert torch.equal(head(x[2:3]), y[2:3])  # a row's result does not depend on the others


@pytest.mark.skipif(kernels.load("q8mm") is None, reason="our kernels do not run on this machine")
def test_8bit_heads_bfloat16_copy_computes_each_rows_largest_outputs_again_in_float32() -> None:
    _, int8_linear = _classes()
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 480, bias=False)
    head = int8_linear(linear)
    assert head.q8mm is not None and head.dense_bytes == 480 * 96 * 3
    x = torch.randn(7, 96, generator=generator)
    y = head.dense(exact=8)(x)
    w = linear.weight.detach()
    scale = w.abs().amax(dim=1) / 127
    exact = x.double() @ (torch.round(w / scale[:, None]).double() * scale.double()[:, None]).t()
    again = (y.double() - exact).abs() <= 1e-5 * (1 + exact.abs())
    assert (again.sum(1) >= 8).all() and again.gather(1, exact.argmax(-1, keepdim=True)).all()
    assert (y.double() - exact).abs().max() < 0.01 * exact.abs().max()  # the others: bfloat16 inputs and outputs
    assert head.dense()(x[None]).shape == (1, 7, 480)


@pytest.mark.skipif(kernels.load("q8mm") is None, reason="our kernels do not run on this machine")
def test_8bit_heads_copy_gives_the_log_probabilities_of_its_logits_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, int8_linear = _classes()
    generator = torch.Generator().manual_seed(1)
    monkeypatch.setattr(quantize_module, "_head_logprobs_amx", lambda: None)  # as without AMX's tiles
    head = int8_linear(torch.nn.Linear(64, 4096, bias=False)).dense(exact=8)
    assert head.amx is None  # the bfloat16 copy's logits, the largest computed again
    x = torch.randn(9, 64, generator=generator) * torch.tensor([0.1, 1, 3, 10, 30, 1, 1, 1, 1])[:, None]  # flat..sharp
    logits = head(x)
    targets = torch.randint(0, 4096, (9,), generator=generator)
    targets[5:7] = logits[5:7].argmax(-1)  # computed again in float32
    targets[7] = logits[7].topk(8).indices[-1]  # the last of those
    targets[8] = logits[8].topk(9).indices[-1]  # just after them: its bfloat16 value
    expected = logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)
    ours = head.logprobs(x, targets)
    assert ours.dtype == torch.float32 and ours.shape == (9,)
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(head.logprobs(x[3:4], targets[3:4]), ours[3:4])  # a row's does not depend on the others
    with pytest.raises(RuntimeError, match="target out of range"):
        head.logprobs(x[:1], torch.tensor([4096]))


@pytest.mark.skipif(kernels.load("head_logprobs_amx") is None, reason="this CPU has no AMX 8-bit tiles")
def test_8bit_heads_log_probabilities_in_amx_tiles_are_as_exact_as_float32s_nearly() -> None:
    _, int8_linear = _classes()
    generator = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(128, 4096, bias=False)
    int8 = int8_linear(linear)
    assert int8.dense_bytes == 4096 * 128 * 2  # AMX's tiles and the rows, no bfloat16 copy
    head = int8.dense()
    assert head.amx is not None and "linear" not in vars(head)
    for rows in (1, 17, 40):  # a partial tile of 16 rows, and several
        scales = torch.logspace(-1, 1.5, rows)[:, None]  # flat .. sharp distributions
        x = torch.randn(rows, 128, generator=generator) * scales
        targets = torch.randint(0, 4096, (rows,), generator=generator)
        logits = (x.double() @ head.integers.double().t()) * head.scale.double()
        targets[0], targets[-1] = 0, 4095  # the first and last blocks' edges
        targets[1:3] = logits[1:3].argmax(-1)  # the likeliest
        expected = logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)
        ours = head.logprobs(x, targets)
        assert ours.dtype == torch.float32 and ours.shape == (rows,)
        assert (ours.double() - expected).abs().max() < 2e-3  # 16-bit inputs: ~1e-3 nats at most
        assert torch.equal(head.logprobs(x[-1:], targets[-1:]), ours[-1:])  # a row's does not depend on the others
        y = head.linear(x.to(torch.bfloat16)).contiguous()  # the bfloat16 copy's way, its largest computed again
        bfloat16 = head.ours(y, head.scale, x, head.integers, targets, head.exact)
        assert (ours.double() - expected).abs().max() < (bfloat16.double() - expected).abs().max()
    with pytest.raises(RuntimeError, match="target out of range"):
        head.logprobs(x[:1], torch.tensor([4096]))
    with pytest.raises(RuntimeError, match="K a multiple of 64"):
        head.amx(torch.zeros(2, 96), head.tiles, head.scale, torch.zeros(2, dtype=torch.long))
    assert head.logprobs(x[:0], targets[:0]).shape == (0,)
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    broken = head.logprobs(x[:4], targets[:4])
    assert broken[1:3].isnan().all() and broken[[0, 3]].isfinite().all()  # as float32's arithmetic gives


def test_an_8bit_head_without_amx_tiles_falls_back_to_its_bfloat16_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux before 5.16, or a sandbox, refuses a process AMX's tiles even where the CPU lists them."""

    def refused(*_args: object) -> None:
        raise RuntimeError("head_logprobs_amx: Linux did not let this process use AMX tiles")

    load = kernels.load
    monkeypatch.setattr(kernels, "load", lambda name: refused if name == "head_logprobs_amx" else load(name))
    quantize_module._head_logprobs_amx.cache_clear()
    try:
        assert quantize_module._amx_head(4096, 128) is None
    finally:
        monkeypatch.undo()
        quantize_module._head_logprobs_amx.cache_clear()


@pytest.mark.skipif(kernels.load("q4mm") is None, reason="our 4-bit kernel does not run on this machine")
def test_4bit_weights_read_from_the_layout_are_those_the_kernel_multiplies_by() -> None:
    int4_linear, _ = _classes()
    torch.manual_seed(0)
    product = fuse([int4_linear(torch.nn.Linear(96, n, bias=False)) for n in (64, 32, 96)])
    assert isinstance(product, Int4Product) and product.kernel is not None
    through_kernel = product.kernel(torch.eye(96), product.packed, product.scale_zero).T
    read = q4_weights(product.packed, product.scale_zero)
    assert read.shape == (192, 96) and torch.allclose(read, through_kernel, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(kernels.load("q4mm") is None, reason="our 4-bit kernel does not run on this machine")
def test_4bit_product_is_float32_sums_of_bfloat16_inputs_and_batch_invariant() -> None:
    int4_linear, _ = _classes()
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(96, 64)
    torch.nn.init.normal_(linear.bias, generator=generator)
    layer = int4_linear(linear)
    assert layer.q4mm is not None
    x = torch.randn(6, 96, generator=generator) * torch.tensor([10.0, 0.1]).repeat(48)
    y = layer(x)
    # The kernel's arithmetic, in float64: bfloat16 inputs, w = (q - 8) * scale + zero per group of 32.
    w = linear.weight.detach().view(64, 3, 32)
    low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    scale = (high - low) / 15
    q = torch.round((w - low) / scale)
    scale16, zero16 = scale.bfloat16().double(), (low + 8 * scale).bfloat16().double()
    dequantized = ((q.double() - 8) * scale16 + zero16).view(64, 96)
    expected = x.bfloat16().double() @ dequantized.t() + linear.bias.double()
    assert torch.allclose(y.double(), expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(layer(x[4:5]), y[4:5])  # a row's result does not depend on the others
    assert torch.equal(layer(x[:4]), y[:4])


def test_without_our_kernels_pytorch_kernels_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOQWEN_KERNEL", "torch")
    int4_linear, int8_linear = _classes()
    linear = torch.nn.Linear(64, 32)
    head, layer = int8_linear(linear), int4_linear(linear)
    assert head.q8mm is None and layer.q4mm is None
    x = torch.randn(3, 64)
    with torch.inference_mode():
        y = linear(x)
        assert torch.allclose(head(x), y, atol=0.05)
        assert (layer(x) - y).abs().max() < 0.15 * y.abs().max()  # 4 bits: 16 levels per group of 32


def test_a_failed_kernel_build_reports_the_compilers_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    good, bad = tmp_path / "good.cpp", tmp_path / "bad.cpp"
    good.write_text("long f() { return 1; }\n")
    bad.write_text("int broken( {\n")
    monkeypatch.setenv("AUTOQWEN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(subprocess.CalledProcessError) as failed:
        kernels.build([good, bad])  # compiled side by side, as ours are
    assert "bad.cpp" in failed.value.stderr  # what _library() logs
    assert not list((tmp_path / "cache").rglob("*.so"))  # nothing half-built left as if complete
