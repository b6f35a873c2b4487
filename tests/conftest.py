"""Shared fixtures: a temp data dir for every test, and a tiny random chat model built on the spot (no download)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoqwen.local_llm import EmbeddedServer, Engine, ModelSource, resolve_model

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CORPUS = [
    "The capital of France is Paris. Hello! How are you today?",
    "You are a helpful assistant. Write a short poem about the sea.",
    "def add(a, b):\n    return a + b\n",
    "Agents talk to each other through an OpenAI compatible server.",
] * 20


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="session", autouse=True)
def _resolve_only_loopback() -> Iterator[None]:
    """pytest-socket refuses connections beyond loopback; this keeps their DNS lookups from leaving the machine too
    (a small model's tool call may invent a URL)."""
    import socket

    real = socket.getaddrinfo

    def guarded(host: str | bytes | None, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_NAMES:
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve only loopback names, not {name!r}")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = guarded  # type: ignore[assignment]
    yield
    socket.getaddrinfo = real


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own data dir, no proxies, and an offline hub."""
    monkeypatch.setenv("AUTOQWEN_HOME", str(tmp_path / "autoqwen-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # Loopback fixture sites stand in for the web, so web skills may reach 127.0.0.1 (and nothing else internal);
    # the address tests change this.
    monkeypatch.setenv("AUTOQWEN_ALLOW_HOSTS", "127.0.0.1")


def build_tiny_model(folder: Path, *, context: int = 4096) -> Path:
    """A 2-layer Llama with random weights and a ChatML byte-level BPE tokenizer, saved as an HF folder; `context`
    is its context window in tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


# The tokens the current Qwen families add to their byte-level vocabulary: ChatML's as special tokens (left out of
# decoded text), the protocol's tags as plain added tokens (kept in it, where the server reads calls and thinking).
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_TAGS = ["<tool_call>", "</tool_call>"]
QWEN3_TAGS = [*QWEN2_TAGS, "<tool_response>", "</tool_response>", "<think>", "</think>"]


def _qwen_tokenizer(folder: Path, template: str, tags: list[str]) -> Any:
    """A byte-level BPE tokenizer laid out as Qwen's: `QWEN_SPECIAL`, then `tags` as non-special added tokens, and
    `template` written into tokenizer_config.json, as the Qwen repositories ship it."""
    import json

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=QWEN_SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in tags])
    tokenizer.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = template
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return tokenizer


def build_tiny_qwen2(folder: Path) -> Path:
    """A 2-layer Qwen2 (biased query, key and value products) with random weights, a Qwen-style tokenizer and
    Qwen2.5-Instruct's chat template, saved as an HF folder."""
    import torch
    from qwen_templates import QWEN2_5_TEMPLATE
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _qwen_tokenizer(folder, QWEN2_5_TEMPLATE, QWEN2_TAGS)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    for layer in model.model.layers:  # initialised to zero: make them count
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            torch.nn.init.normal_(proj.bias, std=0.5)
    model.save_pretrained(folder)
    return folder


def build_tiny_qwen3(folder: Path) -> Path:
    """A 2-layer Qwen3 (per-head query and key RMS norms, a head size that is not hidden / heads, as Qwen3-0.6B's)
    with random weights, a Qwen-style tokenizer with the thinking tags and Qwen3's chat template, saved as an HF
    folder."""
    import torch
    from qwen_templates import QWEN3_TEMPLATE
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _qwen_tokenizer(folder, QWEN3_TEMPLATE, QWEN3_TAGS)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    for layer in model.model.layers:  # initialised to ones: make them count
        for norm in (layer.self_attn.q_norm, layer.self_attn.k_norm):
            torch.nn.init.normal_(norm.weight, mean=1.0, std=0.3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One converted-model cache for the whole run: the first bundled load fills it, later loads use it."""
    folder = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOQWEN_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> Iterator[Engine]:
    engine = Engine(resolve_model(str(tiny_model_dir))).start().wait_ready(60)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_qwen2_engine(tiny_qwen2_dir: Path) -> Iterator[Engine]:
    engine = Engine(resolve_model(str(tiny_qwen2_dir))).start().wait_ready(60)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_qwen3_engine(tiny_qwen3_dir: Path) -> Iterator[Engine]:
    engine = Engine(resolve_model(str(tiny_qwen3_dir))).start().wait_ready(60)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def bundled_source() -> ModelSource:
    return resolve_model("bundled")


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path) -> Iterator[EmbeddedServer]:
    """The tiny model behind a real loopback OpenAI server, for agent and workflow tests."""
    with EmbeddedServer(Engine(resolve_model(str(tiny_model_dir)))) as server:
        server.engine.wait_ready(60)
        yield server


@pytest.fixture
def lone_tiny_server(tiny_model_dir: Path) -> Iterator[EmbeddedServer]:
    """A tiny-model server of the test's own, for tests that count its batch: the shared one may still serve a
    request an earlier test left going (workflow runs outlive their clients)."""
    with EmbeddedServer(Engine(resolve_model(str(tiny_model_dir)))) as server:
        server.engine.wait_ready(60)
        yield server


@pytest.fixture(scope="session")
def bundled_server(bundled_source: ModelSource) -> Iterator[EmbeddedServer]:
    """The real bundled model behind a loopback OpenAI server, loaded once for all `model` tests."""
    with EmbeddedServer(Engine(bundled_source)) as server:
        server.engine.wait_ready(300)
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium (tests/ui_browser.py); mark the test `needs_browser`."""
    from ui_browser import chrome

    with chrome() as driver:
        yield driver
