"""Loading a model for the engine: tokenizer, weights (from the converted-GGUF cache when it can), 4-bit
quantisation, the lean forward's fused weights, and the grammar tokenizer. Runs on the engine's worker thread."""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from autoqwen.local_llm import cache
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.resolve import ModelSource

__all__ = ["CHATML_TEMPLATE", "LoadedModel", "Quantize", "load_model", "release_freed_memory"]

# Weights in memory: "int4" = 4-bit linear layers + bfloat16 activations (fast on CPU); "none" = float32 as loaded;
# "auto" = int4 when the model comes from a GGUF file that is 4-bit already (no precision lost to speak of).
Quantize = Literal["auto", "int4", "none"]

# Used when a tokenizer ships no chat template: ChatML, the format Qwen and SmolLM2 were tuned on.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class LoadedModel:
    """What loading gives the engine."""

    model: Any
    tokenizer: Any
    grammar_tokenizer: Any  # llguidance's view of the tokenizer
    eos_ids: frozenset[int]
    context_length: int
    loaded_from: Path
    quantized: bool
    seconds: float
    weight_bytes: int  # the weights' memory (fused and quantised copies share storage with the model's tensors)


def load_model(
    source: ModelSource, *, quantize: Quantize, threads: int | None, stage: Callable[[str], None]
) -> LoadedModel:
    """Load `source`; `stage` is told each step's name (tokenizer, weights, caching, quantizing, grammar)."""
    started = time.perf_counter()
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    path, kwargs, convert_to, cached = source.path, {}, None, None
    if source.gguf_file:
        cached = cache.converted_folder(source)
        if cache.is_complete(cached):
            path = cached
        else:
            kwargs, convert_to = {"gguf_file": source.gguf_file}, cached
    stage("tokenizer")
    # Our own converted folder holds a tokenizer.json: the fast class loads it much quicker than AutoTokenizer.
    tokenizer_class = transformers.PreTrainedTokenizerFast if path != source.path else transformers.AutoTokenizer
    tokenizer = tokenizer_class.from_pretrained(path, **kwargs)  # type: ignore[arg-type]
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    stage("weights")
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    model.eval()
    if convert_to is not None:
        stage("caching")
        cache.save_converted(convert_to, model, tokenizer)
    quantized = quantize == "int4" or (quantize == "auto" and cached is not None and cache.gguf_is_4bit(source, cached))
    if quantized:
        stage("quantizing")
        from autoqwen.local_llm.quantize import quantize as to_int4

        to_int4(model)
    # Loaded weights live in the file's memory map, which keeps every page read resident beside our quantised
    # and fused copies: own copies let it go.
    for param in model.parameters():
        param.data = param.data.clone()
    Lean.of(model)  # the lean forward's fused weights, built now rather than on the first request
    release_freed_memory()
    stage("grammar")
    import llguidance.hf

    grammar_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=model.config.vocab_size)  # type: ignore[arg-type]
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        grammar_tokenizer=grammar_tokenizer,
        eos_ids=frozenset(_eos_ids(tokenizer, model)),
        context_length=int(getattr(model.config, "max_position_embeddings", 0) or 2048),
        loaded_from=path,
        quantized=quantized,
        seconds=time.perf_counter() - started,
        weight_bytes=_storage_bytes(model),
    )


def _storage_bytes(model: Any) -> int:
    """Bytes of the distinct storages behind the model's parameters and buffers."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in model.state_dict().values()}
    return sum(storages.values())


def release_freed_memory() -> None:
    """Hand the memory freed while loading (float32 weights, unfused copies) back to the OS; glibc keeps it."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    for value in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return ids
