"""Turns with tools over real sockets: what the history keeps of a tool call (reopen,
export, import), the context later turns send in each protocol, tools turned off for a
chat, the cache, and a restart after a tool round."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.chat import ChatService, Services, Turn, context_messages
from desktop_app.core.events import CacheHit, Finished, Restarted, StreamEvent, ToolResult
from desktop_app.core.paths import app_paths
from desktop_app.core.types import PROVIDERS, Message, ProviderName
from desktop_app.simulator import Fault, Simulator
from tests.local_tools import LocalHost, echo, results_sent


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    opened = Services.open(paths=app_paths(tmp_path / "home"), api_key=lambda _r: "k")
    opened.tools = LocalHost({"echo": echo})
    try:
        yield opened
    finally:
        await opened.aclose()


def _send(
    chat: ChatService, sim: Simulator, provider: ProviderName, prompt: str, **kw: Any
) -> Turn:
    return chat.send(
        prompt, provider=provider, base_url=sim.base_url(provider), model="sim-small", **kw
    )


async def _run(turn: Turn) -> list[StreamEvent]:
    events = [event async for event in turn]
    assert await turn.wait_saved() is None
    return events


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_calls_are_kept_with_the_reply_and_sent_back_as_context(
    sim: Simulator, services: Services, provider: ProviderName
) -> None:
    chat = ChatService(services)
    first = _send(chat, sim, provider, 'call echo with {"text": "kept"}')
    events = await _run(first)
    assert isinstance(events[-1], Finished)
    assert services.history is not None and first.conversation_id is not None

    reply = services.history.messages(first.conversation_id)[-1]
    assert reply.status == "complete" and reply.content.startswith("Tool echo said: kept")
    (part,) = reply.tool_parts
    assert (part.server, part.name, part.ok, part.result) == ("local", "echo", True, "kept")
    assert json.loads(part.arguments) == {"text": "kept"} and part.offset == 0
    assert services.history.tool_parts(reply.id) == [part]

    second = _send(chat, sim, provider, "And now?", conversation_id=first.conversation_id)
    await _run(second)
    body = sim.chat_requests[-1].json
    key = "echo" if provider in ("ollama", "gemini") else part.call_id
    assert results_sent(provider, _before_last(provider, body)) == [(key, "kept")]
    assert "Tool echo said: kept" in json.dumps(body, ensure_ascii=False)


def _before_last(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request as it stood before its last (user) message."""
    key = "contents" if provider == "gemini" else "messages"
    trimmed = dict(body)
    messages = list(body[key])
    # drop the new prompt and the reply text that followed the tool results
    while messages and not _holds_results(provider, messages[-1]):
        messages.pop()
    trimmed[key] = messages
    return trimmed


def _holds_results(provider: str, message: dict[str, Any]) -> bool:
    if provider in ("openai", "ollama"):
        return bool(message.get("role") == "tool")
    if provider == "anthropic":
        content = message.get("content")
        return isinstance(content, list) and content[0].get("type") == "tool_result"
    return "functionResponse" in message["parts"][0]


async def test_export_and_import_keep_the_tool_calls(sim: Simulator, services: Services) -> None:
    chat = ChatService(services)
    turn = _send(chat, sim, "openai", 'call echo with {"text": "in ```fences```"}')
    await _run(turn)
    history = services.history
    assert history is not None and turn.conversation_id is not None

    markdown = history.export_markdown(turn.conversation_id)
    assert "**Tool call: echo** (local)" in markdown
    assert '````json\n{"text":"in ```fences```"}\n````' in markdown
    assert "````\nin ```fences```\n````" in markdown

    exported = history.export_json(turn.conversation_id)
    (reply,) = [m for m in exported["messages"] if m["role"] == "assistant"]
    (part,) = reply["tool_parts"]
    assert (part["name"], part["result"], part["ok"]) == ("echo", "in ```fences```", True)

    copy = history.import_json(json.dumps(exported))
    reopened = history.messages(copy)[-1]
    original = history.messages(turn.conversation_id)[-1]
    assert reopened.tool_parts == original.tool_parts
    assert context_messages(history.messages(copy)) == context_messages(
        history.messages(turn.conversation_id)
    )


async def test_a_bad_tool_part_in_an_import_is_refused_with_a_sentence(
    services: Services,
) -> None:
    history = services.history
    assert history is not None
    data = {
        "format": "rill.conversation",
        "version": 1,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "x", "tool_parts": [{"name": 5}]},
        ],
    }
    with pytest.raises(ValueError, match=r"messages\[1\]\.tool_parts\[0\]\.name must be a string"):
        history.import_json(data)


async def test_a_chat_with_tools_off_offers_none_and_sends_replies_as_text(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    first = _send(chat, sim, "anthropic", 'call echo with {"text": "t"}')
    await _run(first)
    second = _send(
        chat, sim, "anthropic", "Plain now", conversation_id=first.conversation_id, tools=()
    )
    await _run(second)

    body = sim.chat_requests[-1].json
    assert "tools" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"].startswith("Tool echo said: t")


async def test_tool_replies_are_not_served_from_the_cache(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    for _ in range(2):
        events = await _run(_send(chat, sim, "openai", 'call echo with {"text": "c"}'))
        assert not any(isinstance(e, CacheHit) for e in events)
        final = events[-1]
        assert isinstance(final, Finished) and not final.response.cached
    host = services.tools
    assert isinstance(host, LocalHost) and len(host.calls) == 2


async def test_a_restart_after_a_tool_round_keeps_both_versions_with_their_calls(
    sim: Simulator, services: Services
) -> None:
    sim.default_tokens = 40
    sim.script(Fault(), Fault(drop_after=25))
    chat = ChatService(services)
    turn = _send(chat, sim, "gemini", 'call echo with {"text": "once"}')
    events = await _run(turn)

    assert any(isinstance(e, Restarted) for e in events)
    host = services.tools
    assert isinstance(host, LocalHost) and len(host.calls) == 1
    assert len([e for e in events if isinstance(e, ToolResult)]) == 2  # shown, then replayed
    history = services.history
    assert history is not None and turn.reply_group is not None
    old, new = history.versions(turn.reply_group)
    assert old.status == "interrupted" and new.status == "complete"
    assert [p.result for p in history.tool_parts(old.id)] == ["once"]
    assert [p.result for p in history.tool_parts(new.id)] == ["once"]
    assert new.content.startswith("Tool echo said: once")


def test_context_rebuilds_each_round_of_a_reply() -> None:
    from desktop_app.core.history import StoredMessage
    from desktop_app.core.types import ToolCall, ToolPart

    def part(call_id: str, round_: int, offset: int) -> ToolPart:
        return ToolPart(
            call_id, "s", "t", "t", "{}", True, f"r{call_id}", False, False, 0.1, round_, offset
        )

    reply = StoredMessage(
        id=2, conversation_id=1, role="assistant", content="Looking.Again.Done.",
        status="complete", model=None, provider=None, input_tokens=None, output_tokens=None,
        cost=None, ttft_s=None, total_s=None, cached=False, error=None, finish_reason="stop",
        reply_group=2, version=1, active=True, version_count=1, created_at=0, updated_at=0,
        tool_parts=(part("a", 0, 8), part("b", 0, 8), part("c", 1, 14)),
    )  # fmt: skip
    assert reply.to_messages() == [
        Message("assistant", "Looking.", tool_calls=(ToolCall("a", "t", "{}"), ToolCall("b", "t", "{}"))),
        Message("tool", "ra", tool_call_id="a", name="t"),
        Message("tool", "rb", tool_call_id="b", name="t"),
        Message("assistant", "Again.", tool_calls=(ToolCall("c", "t", "{}"),)),
        Message("tool", "rc", tool_call_id="c", name="t"),
        Message("assistant", "Done."),
    ]  # fmt: skip
    assert context_messages([reply], tools=False) == [Message("assistant", "Looking.Again.Done.")]
