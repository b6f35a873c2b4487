"""`auto` prefers a cached current Qwen (Qwen3-0.6B, then Qwen2.5-0.5B-Instruct) over the seed's Qwen1.5-0.5B-Chat,
from the Hugging Face or the ModelScope cache; the seed's model keeps working by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoqwen.local_llm import DEFAULT_HUB_ID, resolve_model
from autoqwen.local_llm.resolve import AUTO_MODELS


@pytest.fixture
def caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    return tmp_path


def snapshot(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def hf(caches: Path, repo_id: str) -> Path:
    return snapshot(caches / "hf" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "abc123")


def test_auto_looks_for_the_current_qwens_first() -> None:
    assert AUTO_MODELS == ("Qwen/Qwen3-0.6B", "Qwen/Qwen2.5-0.5B-Instruct", DEFAULT_HUB_ID)
    assert DEFAULT_HUB_ID == "Qwen/Qwen1.5-0.5B-Chat"


def test_auto_takes_the_best_cached_qwen(caches: Path) -> None:
    seed = hf(caches, "Qwen/Qwen1.5-0.5B-Chat")
    assert (resolve_model("auto").model_id, resolve_model("auto").path) == (DEFAULT_HUB_ID, seed)
    qwen25 = hf(caches, "Qwen/Qwen2.5-0.5B-Instruct")
    assert (resolve_model("auto").model_id, resolve_model("auto").path) == ("Qwen/Qwen2.5-0.5B-Instruct", qwen25)
    qwen3 = hf(caches, "Qwen/Qwen3-0.6B")
    source = resolve_model("auto")
    assert (source.kind, source.model_id, source.path) == ("hub", "Qwen/Qwen3-0.6B", qwen3)
    assert resolve_model(DEFAULT_HUB_ID).path == seed  # the seed's model, by id


def test_auto_finds_qwen3_in_the_modelscope_cache(caches: Path) -> None:
    hf(caches, "Qwen/Qwen1.5-0.5B-Chat")
    qwen3 = snapshot(caches / "ms" / "models" / "Qwen" / "Qwen3-0___6B")  # the SDK escapes dots
    assert (resolve_model("auto").model_id, resolve_model("auto").path) == ("Qwen/Qwen3-0.6B", qwen3)


def test_an_incomplete_qwen3_download_is_passed_over(caches: Path) -> None:
    partial = caches / "hf" / "models--Qwen--Qwen3-0.6B" / "snapshots" / "abc123"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")  # no weights yet
    qwen25 = hf(caches, "Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve_model("auto").path == qwen25
