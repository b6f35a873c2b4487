"""Model capabilities: /v1/models reports them; runs build AutoGen's model_info from them (the YAML may override)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai
import pytest
from openai_stub import models_server

from autoqwen.agents import model_client
from autoqwen.agents.model_info import DEFAULT_MODEL_INFO, ModelInfoSpec, reported_capabilities, resolve_model_info
from autoqwen.local_llm import EmbeddedServer
from autoqwen.workflows.endpoints import model_endpoint
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.loader import load_workflow
from autoqwen.workflows.runner import RunOptions

FLOW = """\
name: caps
agents:
  - {name: alice, max_tokens: 4}
team: {type: round_robin, max_turns: 1}
termination: {text: null}
task: Hello.
"""


def spec_with(tmp_path: Path, model: str = "embedded") -> Any:
    path = tmp_path / "caps.yaml"
    path.write_text(FLOW + f"model: {model}\n")
    return load_workflow(path)


def test_models_carry_the_capabilities_of_the_served_model(tiny_server: EmbeddedServer) -> None:
    client = openai.OpenAI(base_url=tiny_server.base_url, api_key="none")
    entry = client.models.list().data[0].model_dump()
    assert entry["id"] == tiny_server.engine.model_id
    expected = {"function_calling": True, "json_output": True, "structured_output": True, "vision": False}
    assert {name: entry[name] for name in expected} == expected
    assert entry["family"] == "unknown" and entry["context_length"] == tiny_server.engine.context_length
    single = client.models.retrieve(entry["id"]).model_dump()
    assert single["context_length"] == entry["context_length"] and single["function_calling"] is True


def test_a_run_on_autoqwen_serve_uses_what_it_reports(
    tmp_path: Path, tiny_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="autoqwen.workflows.endpoints")
    with model_endpoint(spec_with(tmp_path), RunOptions(base_url=tiny_server.base_url)) as endpoint:
        assert endpoint.model_info == {**DEFAULT_MODEL_INFO}
        assert endpoint.context_window == tiny_server.engine.context_length
    assert f"model info for {tiny_server.engine.model_id}" in caplog.text and "(from server)" in caplog.text


def test_an_external_server_s_report_is_used_and_the_yaml_overrides_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="autoqwen.workflows.endpoints")
    reported = {"function_calling": False, "vision": False, "json_output": True, "family": "qwen", "max_model_len": 8}
    with models_server(reported) as base_url:
        with model_endpoint(spec_with(tmp_path, f"{{base_url: {base_url}, model: m}}"), RunOptions()) as endpoint:
            assert endpoint.function_calling is False and endpoint.model_info is not None
            assert endpoint.model_info["family"] == "qwen" and endpoint.model_info["structured_output"] is True
            assert endpoint.context_window == 8
            client = model_client(endpoint)
            assert client.model_info["function_calling"] is False
        assert "(from server)" in caplog.text
        model = f"{{base_url: {base_url}, model: m, function_calling: true, model_info: {{vision: true}}}}"
        with model_endpoint(spec_with(tmp_path, model), RunOptions()) as endpoint:
            assert endpoint.function_calling is True and endpoint.model_info is not None
            assert endpoint.model_info["vision"] is True and endpoint.model_info["family"] == "qwen"
        assert "(from server+workflow)" in caplog.text


def test_a_server_that_reports_nothing_gets_the_defaults(tmp_path: Path) -> None:
    with models_server({"owned_by": "someone", "vision": "yes"}) as base_url:
        options = RunOptions(base_url=base_url, model="m")
        with model_endpoint(spec_with(tmp_path), options) as endpoint:
            assert endpoint.model_info == {**DEFAULT_MODEL_INFO}


def test_reported_capabilities_take_only_well_typed_fields() -> None:
    assert reported_capabilities({"vision": 1, "function_calling": False, "family": ""}) == {"function_calling": False}
    resolved = resolve_model_info({}, ModelInfoSpec(json_output=False))
    assert resolved.source == "defaults+workflow" and resolved.model_info["json_output"] is False
    assert "json_output=False" in resolved.describe()


def test_a_mistyped_model_info_field_names_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="visoin"):
        spec_with(tmp_path, "{base_url: http://127.0.0.1:9/v1, model: m, model_info: {visoin: true}}")


def test_the_readme_autogen_lines_work_against_the_server(tiny_server: EmbeddedServer) -> None:
    import asyncio
    import re

    from autogen_core.models import UserMessage

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "OpenAIChatCompletionClient" in b]
    code = block.replace("http://127.0.0.1:1234/v1", tiny_server.base_url)
    code = code.replace("SmolLM2-135M-Instruct", tiny_server.engine.model_id)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # our own README's example, run as a user would
    entry = openai.OpenAI(base_url=tiny_server.base_url, api_key="none").models.list().data[0].model_dump()
    assert {name: entry[name] for name in scope["info"]} == scope["info"]  # what the server reports
    reply = asyncio.run(
        scope["client"].create([UserMessage(content="Hi", source="user")], extra_create_args={"max_tokens": 3})
    )
    assert isinstance(reply.content, str) and reply.usage.completion_tokens > 0
