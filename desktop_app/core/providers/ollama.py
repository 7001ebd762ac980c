"""Ollama's native ``/api/chat``: NDJSON, one object per ``\\n``-terminated line."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from desktop_app.core.events import StreamEvent, UsageUpdate
from desktop_app.core.providers.base import (
    Provider,
    StreamParser,
    attached,
    b64,
    corrupt_chunk,
    in_stream_error,
    loads_chunk,
    model_list,
    openai_style_messages,
    openai_style_tools,
    raw_json,
    text_with_files,
    tool_arguments,
)
from desktop_app.core.types import ChatRequest, FinishReason, ProviderName, TokenUsage


def ollama_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages as Ollama's ``/api/chat`` takes them: a call's arguments as an object, a
    tool result named by ``tool_name``, and a user message's images as base64 in
    ``images`` with its text files and PDFs (as text) in ``content``."""
    out = openai_style_messages(request)
    for msg in out:
        for call in msg.get("tool_calls") or ():
            fn = call["function"]
            call.pop("id", None)
            call.pop("type", None)
            fn["arguments"] = tool_arguments(fn["arguments"])
        if msg["role"] == "tool":
            msg.pop("tool_call_id", None)
    for msg, m in zip(out[len(out) - len(request.messages) :], request.messages, strict=True):
        if m.role == "tool" and m.name:
            msg["tool_name"] = m.name
        if attached(m):
            msg["content"] = text_with_files(m)
            images = [b64(a.data) for a in m.attachments if a.kind == "image"]
            if images:
                msg["images"] = images
    return out


class OllamaParser(StreamParser):
    provider = "ollama"
    title = "Ollama"
    finish_map: ClassVar[dict[str, FinishReason]] = {
        "stop": "stop",
        "length": "length",
        "load": "stop",
        "unload": "stop",
    }

    def __init__(self, request: ChatRequest) -> None:
        super().__init__(request)
        self._tool_index = 0

    def parse_whole(self, data: str) -> list[StreamEvent]:
        """The one object ``"stream": false`` answers (or, from a server that streamed
        anyway, its lines)."""
        try:
            json.loads(data)
        except ValueError:
            out: list[StreamEvent] = []
            for line in data.split("\n"):
                if line.strip():
                    out += self.parse("", line)
            return out
        return self.parse("", data)

    def parse(self, event: str, data: str) -> list[StreamEvent]:
        chunk = loads_chunk(data, self.title)
        if not isinstance(chunk, dict):
            raise corrupt_chunk(self.title, data)
        if "error" in chunk:
            raise in_stream_error(chunk["error"], self.title, status=500)
        out: list[StreamEvent] = []
        self._set_model(chunk.get("model"))
        message = chunk.get("message")
        if message:
            self.begun = True
            content = message.get("content")
            if content:
                out += self._text(content)
            for tc in message.get("tool_calls") or ():
                fn = tc.get("function") or {}
                args = fn.get("arguments")
                raw = args if isinstance(args, str) else raw_json(data, args, compact=True)
                out.append(
                    self._tool_start(self._tool_index, tc.get("id"), fn.get("name", ""), raw)
                )
                self._tool_index += 1
        if chunk.get("done"):
            self.done = True
            reason = chunk.get("done_reason")
            if reason is not None:
                self._set_finish(reason)
            if "prompt_eval_count" in chunk or "eval_count" in chunk:
                self.usage = TokenUsage(
                    int(chunk.get("prompt_eval_count") or 0), int(chunk.get("eval_count") or 0)
                )
                out.append(UsageUpdate(self.usage))
        return out


class OllamaProvider(Provider):
    name: ClassVar[ProviderName] = "ollama"
    title = "Ollama"
    framing = "ndjson"
    default_base_url = "http://127.0.0.1:11434"

    def url(self, request: ChatRequest) -> str:
        return self.join_url(request.base_url, "/api/chat")

    def headers(self, api_key: str | None, *, stream: bool = True) -> dict[str, str]:
        accept = "application/x-ndjson" if stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def body(self, request: ChatRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        body: dict[str, Any] = {
            "model": request.model,
            "messages": ollama_messages(request),
            "stream": request.stream,
        }
        if options:
            body["options"] = options
        if request.tools:
            body["tools"] = openai_style_tools(request)
        body.update(dict(request.options))
        return body

    def parser(self, request: ChatRequest) -> StreamParser:
        return OllamaParser(request)

    def models_url(self, base_url: str) -> str:
        return self.join_url(base_url, "/api/tags")

    def parse_models(self, body: Any) -> list[str]:
        return sorted(str(m["name"]) for m in model_list(body, "models"))
