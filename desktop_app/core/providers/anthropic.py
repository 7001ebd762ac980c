"""Anthropic Messages API: named SSE events from message_start to message_stop."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from desktop_app.core.attachments import safe_name
from desktop_app.core.events import StreamEvent, UsageUpdate
from desktop_app.core.providers.base import (
    Provider,
    StreamParser,
    attached,
    b64,
    corrupt_chunk,
    file_text,
    grouped_tool_results,
    in_stream_error,
    loads_chunk,
    model_list,
    sent_as_text,
    status_for_type,
    tool_arguments,
)
from desktop_app.core.types import ChatRequest, FinishReason, Message, ProviderName, TokenUsage

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096


class AnthropicParser(StreamParser):
    provider = "anthropic"
    title = "Anthropic"
    finish_map: ClassVar[dict[str, FinishReason]] = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }

    def __init__(self, request: ChatRequest) -> None:
        super().__init__(request)
        self._input_tokens = 0
        self._output_tokens = 0

    def parse(self, event: str, data: str) -> list[StreamEvent]:
        if event == "ping":
            return []
        chunk = loads_chunk(data, self.title)
        if not isinstance(chunk, dict):
            raise corrupt_chunk(self.title, data)
        kind = chunk.get("type") or event
        if kind == "content_block_delta":
            delta = chunk.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                return self._text(text) if text else []
            if dtype == "input_json_delta":
                part = delta.get("partial_json") or ""
                return [self._tool_args(chunk.get("index", 0), part)] if part else []
            return []  # thinking and signature deltas are not part of the answer
        if kind == "content_block_start":
            self.begun = True
            block = chunk.get("content_block") or {}
            btype = block.get("type")
            if btype == "text":
                text = block.get("text")
                return self._text(text) if text else []
            if btype == "tool_use":
                return [
                    self._tool_start(chunk.get("index", 0), block.get("id"), block.get("name", ""))
                ]
            return []
        if kind == "message_start":
            message = chunk.get("message") or {}
            self._set_model(message.get("model"))
            self._take_usage(message.get("usage"))
            return []
        if kind == "message_delta":
            delta = chunk.get("delta") or {}
            if delta.get("stop_reason"):
                self._set_finish(delta["stop_reason"])
            if self._take_usage(chunk.get("usage")):
                assert self.usage is not None
                return [UsageUpdate(self.usage)]
            return []
        if kind == "message_stop":
            self.done = True
            return []
        if kind == "error":
            err = chunk.get("error") or {}
            etype = str(err.get("type") or "") if isinstance(err, dict) else ""
            raise in_stream_error(err, self.title, status=status_for_type(etype))
        return []  # content_block_stop and event types added later

    def parse_whole(self, data: str) -> list[StreamEvent]:
        """A whole ``message`` object (or an ``error``), as a non-streaming request gets."""
        body = loads_chunk(data, self.title)
        if not isinstance(body, dict):
            raise corrupt_chunk(self.title, data)
        if body.get("type") == "error" or "error" in body:
            err = body.get("error") or {}
            etype = str(err.get("type") or "") if isinstance(err, dict) else ""
            raise in_stream_error(err, self.title, status=status_for_type(etype))
        if body.get("type") != "message" or not isinstance(body.get("content"), list):
            raise corrupt_chunk(self.title, data)
        self.begun = True
        self._set_model(body.get("model"))
        out: list[StreamEvent] = []
        for index, block in enumerate(body["content"]):
            btype = block.get("type")
            if btype == "text":
                out += self._text(block.get("text") or "")
            elif btype == "tool_use":
                args = json.dumps(block.get("input") or {}, ensure_ascii=False)
                out.append(self._tool_start(index, block.get("id"), block.get("name", ""), args))
        if body.get("stop_reason"):
            self._set_finish(body["stop_reason"])
        self.done = True
        if self._take_usage(body.get("usage")):
            assert self.usage is not None
            out.append(UsageUpdate(self.usage))
        return out

    def _take_usage(self, usage: Any) -> bool:
        if not isinstance(usage, dict):
            return False
        if usage.get("input_tokens") is not None:
            self._input_tokens = int(usage["input_tokens"])
        if usage.get("output_tokens") is not None:
            self._output_tokens = int(usage["output_tokens"])
        self.usage = TokenUsage(self._input_tokens, self._output_tokens)
        return True


def _content(group: list[Message]) -> Any:
    m = group[0]
    if m.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": r.tool_call_id,
                "content": r.content,
                **({"is_error": True} if r.is_error else {}),
            }
            for r in group
        ]
    if m.tool_calls:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        for tc in m.tool_calls:
            args = tool_arguments(tc.arguments)
            blocks.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": args})
        return blocks
    if attached(m):
        return _blocks_with_files(m)
    return m.content


def _blocks_with_files(m: Message) -> list[dict[str, Any]]:
    """A user message with files as Anthropic content blocks, in the order they were
    attached and the text last: an image as an ``image`` block and a PDF as a
    ``document`` block (base64 sources), a text file (and a PDF marked ``as_text``) as a
    ``text`` block."""
    blocks: list[dict[str, Any]] = []
    for a in m.attachments:
        if sent_as_text(a):
            blocks.append({"type": "text", "text": file_text(a)})
            continue
        source = {"type": "base64", "media_type": a.mime, "data": b64(a.data)}
        if a.kind == "image":
            blocks.append({"type": "image", "source": source})
        else:
            blocks.append({"type": "document", "source": source, "title": safe_name(a.name)})
    if m.content:
        blocks.append({"type": "text", "text": m.content})
    return blocks


class AnthropicProvider(Provider):
    name: ClassVar[ProviderName] = "anthropic"
    title = "Anthropic"
    framing = "sse"
    key_env = "ANTHROPIC_API_KEY"
    needs_key = True
    default_base_url = "https://api.anthropic.com"
    accepts_prefill = True

    def url(self, request: ChatRequest) -> str:
        return self.join_url(request.base_url, "/v1/messages")

    def headers(self, api_key: str | None, *, stream: bool = True) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def body(self, request: ChatRequest) -> dict[str, Any]:
        messages = [
            {"role": "user" if g[0].role == "tool" else g[0].role, "content": _content(g)}
            for g in grouped_tool_results(request.messages)
            if g[0].role != "system"
        ]
        system = "\n\n".join(
            ([request.system] if request.system else [])
            + [m.content for m in request.messages if m.role == "system"]
        )
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
            "stream": request.stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        body.update(dict(request.options))
        return body

    def parser(self, request: ChatRequest) -> StreamParser:
        return AnthropicParser(request)

    def models_url(self, base_url: str) -> str:
        return self.join_url(base_url, "/v1/models")

    def parse_models(self, body: Any) -> list[str]:
        return sorted(str(m["id"]) for m in model_list(body, "data"))
