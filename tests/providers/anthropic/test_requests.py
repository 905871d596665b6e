"""One input file for either vendor: OpenAI ``/v1/chat/completions`` batch lines as
Message Batch requests, by the documented conversion (hypothesis), and what is refused
rather than dropped; then ``submit`` refusing a bad line before anything is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.errors import InputFileError
from batchfsm.jobs.endpoints import MESSAGES
from batchfsm.jobs.input_file import validate_input
from batchfsm.providers import PROFILES
from batchfsm.providers.anthropic.requests import CONVERSION, RequestProblem, to_request
from tests.providers.anthropic.support import anthropic_line, openai_line, write_lines

ids = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)
texts = st.text(max_size=40)
parts = st.lists(texts.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3)
contents = texts | parts
chat = st.tuples(st.sampled_from(["user", "assistant"]), contents)
system = st.tuples(st.sampled_from(["system", "developer"]), contents)


def as_text(content: str | list[dict[str, str]]) -> str:
    return content if isinstance(content, str) else "\n\n".join(p["text"] for p in content)


@given(
    custom_id=ids,
    messages=st.lists(chat | system, max_size=6).filter(
        lambda ms: any(role in ("user", "assistant") for role, _ in ms)
    ),
    tokens=st.integers(min_value=1, max_value=200_000),
    tokens_field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
    temperature=st.none() | st.floats(min_value=0, max_value=1),
    stop=st.none() | texts | st.lists(texts, max_size=3),
)
def test_a_chat_line_converts_as_documented_and_converting_again_changes_nothing(
    custom_id: str,
    messages: list[tuple[str, Any]],
    tokens: int,
    tokens_field: str,
    temperature: float | None,
    stop: str | list[str] | None,
) -> None:
    body: dict[str, Any] = {
        "model": "claude-x",
        tokens_field: tokens,
        "messages": [{"role": role, "content": content} for role, content in messages],
    }
    if temperature is not None:
        body["temperature"] = temperature
    if stop is not None:
        body["stop"] = stop
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}

    request = to_request(line)

    params = request["params"]
    assert request["custom_id"] == custom_id
    assert (params["model"], params["max_tokens"]) == ("claude-x", tokens)
    systems = [as_text(c) for role, c in messages if role in ("system", "developer")]
    assert params.get("system") == ("\n\n".join(systems) if systems else None)
    kept = [(role, c) for role, c in messages if role in ("user", "assistant")]
    assert [(m["role"], m["content"]) for m in params["messages"]] == kept
    assert params.get("temperature") == temperature
    assert params.get("stop_sequences") == ([stop] if isinstance(stop, str) else stop)
    assert to_request(request) == request  # Anthropic's shape passes as it is


@given(custom_id=st.text().filter(lambda c: not c or len(c) > 64 or not c.isascii()))
def test_a_custom_id_anthropic_refuses_is_refused_here(custom_id: str) -> None:
    with pytest.raises(RequestProblem) as caught:
        to_request({**anthropic_line("x"), "custom_id": custom_id})
    assert caught.value.field == "custom_id"


@given(key=st.text(min_size=1).filter(lambda k: k not in CONVERSION))
def test_a_body_field_without_a_documented_conversion_is_refused_not_dropped(key: str) -> None:
    line = openai_line("a")
    line["body"] = {**line["body"], key: 1}
    with pytest.raises(RequestProblem) as caught:
        to_request(line)
    assert caught.value.field == f"body.{key}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "/v1/embeddings"}, "url"),
        ({"body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}},
         "body.max_tokens"),
        ({"body": {"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}},
         "body.messages[0].role"),
        ({"body": {"model": "m", "max_tokens": 5, "temperature": 1.5,
                   "messages": [{"role": "user", "content": "x"}]}}, "body.temperature"),
        ({"body": {"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}},
         "body.messages[0].content[0]"),
    ],
)  # fmt: skip
def test_what_does_not_convert_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestProblem) as caught:
        to_request({**openai_line("a"), **change})
    assert caught.value.field == field


def test_submit_validation_names_the_line_and_sends_nothing(tmp_path: Path) -> None:
    lines = [
        anthropic_line("ok-1"),
        openai_line("ok-2"),
        {**anthropic_line("bad"), "custom_id": "a b"},
    ]
    path = write_lines(tmp_path / "in.jsonl", lines)
    with pytest.raises(InputFileError) as caught:
        validate_input(path, MESSAGES)
    assert (caught.value.line, caught.value.field) == (3, "custom_id")


def test_one_file_in_both_shapes_and_models_is_one_message_batch(tmp_path: Path) -> None:
    mixed = [anthropic_line("a-1"), openai_line("a-2"), {**anthropic_line("a-3")}]
    mixed[2]["params"] = {**mixed[2]["params"], "model": "claude-other"}
    summary = validate_input(write_lines(tmp_path / "in.jsonl", mixed), MESSAGES)
    assert summary.requests == 3 and summary.model is None


def test_messages_batches_are_anthropics_alone() -> None:
    PROFILES["anthropic"].check_endpoint(MESSAGES)
    for name in ("openai", "compatible", "groq"):
        with pytest.raises(InputFileError):
            PROFILES[name].check_endpoint(MESSAGES)
    with pytest.raises(InputFileError):
        PROFILES["anthropic"].check_endpoint("/v1/chat/completions")


def test_a_line_is_held_as_its_converted_request(tmp_path: Path) -> None:
    """What the gateway sends is exactly ``to_request`` of each ledger line."""
    import anthropic

    from batchfsm.providers.anthropic.gateway import AnthropicGateway

    # a real client, never asked anything: holding sends nothing
    gateway = AnthropicGateway(anthropic.Anthropic(api_key="x", base_url="http://127.0.0.1:9"))
    path = write_lines(tmp_path / "chunk.jsonl", [openai_line("x-1"), anthropic_line("x-2")])
    held = gateway.upload(path)
    assert held.startswith("held-") and held == gateway.upload(path)  # same lines, same id
    assert [orjson.loads(raw) for raw in gateway._held[held]] == [
        to_request(openai_line("x-1")),
        to_request(anthropic_line("x-2")),
    ]
