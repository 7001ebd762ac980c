"""OpenAI chat completions, and every OpenAI-compatible server (LM Studio, vLLM,
llama.cpp server, OpenRouter, DeepSeek, Qwen's compatible mode). SSE ending in [DONE]."""

from __future__ import annotations

from typing import Any, ClassVar

from desktop_app.core.events import StreamEvent, TextDelta, UsageUpdate
from desktop_app.core.providers.base import (
    Provider,
    StreamParser,
    corrupt_chunk,
    in_stream_error,
    loads_chunk,
    model_list,
    openai_style_messages,
    openai_style_tools,
)
from desktop_app.core.types import ChatRequest, FinishReason, ProviderName, TokenUsage


class OpenAIParser(StreamParser):
    provider = "openai"
    title = "OpenAI"
    finish_map: ClassVar[dict[str, FinishReason]] = {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
        "function_call": "tool_calls",
        "content_filter": "content_filter",
    }

    def parse(self, event: str, data: str) -> list[StreamEvent]:
        if data == "[DONE]":
            self.done = True
            return []
        chunk = loads_chunk(data, self.title)
        if type(chunk) is not dict:
            raise corrupt_chunk(self.title, data)
        choices = chunk.get("choices")
        if choices and "usage" not in chunk and "error" not in chunk:
            # the common case: one choice whose delta holds only plain text
            choice = choices[0]
            delta = choice.get("delta")
            if (
                delta is not None
                and len(delta) == 1
                and choice.get("finish_reason") is None
                and type(content := delta.get("content")) is str
            ):
                if not content:
                    return []
                if not content.isascii() or self._joiner.held:
                    return self._text(content)
                self.size += len(content)
                if self.size > self.max_chars:
                    self._count(0)  # raises ReplyTooLarge
                self.text_parts.append(content)
                return [TextDelta(content)]
        return self._feed_chunk(chunk)

    def _feed_chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        if "error" in chunk:
            raise in_stream_error(chunk["error"], self.title)
        out: list[StreamEvent] = []
        self._set_model(chunk.get("model"))
        choices = chunk.get("choices")
        if choices:
            self.begun = True
            choice = choices[0]
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                out += self._text(content)
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                for tc in tool_calls:
                    index = tc.get("index", 0)
                    fn = tc.get("function") or {}
                    if tc.get("id") or fn.get("name"):
                        out.append(
                            self._tool_start(
                                index, tc.get("id"), fn.get("name") or "", fn.get("arguments") or ""
                            )
                        )
                    elif fn.get("arguments"):
                        out.append(self._tool_args(index, fn["arguments"]))
            finish = choice.get("finish_reason")
            if finish:
                self._set_finish(finish)
        return out + self._usage(chunk.get("usage"))

    def _usage(self, usage: Any) -> list[StreamEvent]:
        if not usage:
            return []
        self.usage = TokenUsage(
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
        return [UsageUpdate(self.usage)]

    def parse_whole(self, data: str) -> list[StreamEvent]:
        """A ``chat.completion`` object: the whole message, its finish reason and usage."""
        body = loads_chunk(data, self.title)
        if type(body) is not dict:
            raise corrupt_chunk(self.title, data)
        if "error" in body:
            raise in_stream_error(body["error"], self.title)
        choices = body.get("choices")
        if not choices or "message" not in choices[0]:
            raise corrupt_chunk(self.title, data)
        self.begun = True
        self._set_model(body.get("model"))
        choice = choices[0]
        message = choice["message"] or {}
        out: list[StreamEvent] = []
        content = message.get("content")
        if content:
            out += self._text(content)
        for index, tc in enumerate(message.get("tool_calls") or ()):
            fn = tc.get("function") or {}
            out.append(
                self._tool_start(
                    index, tc.get("id"), fn.get("name") or "", fn.get("arguments") or ""
                )
            )
        if choice.get("finish_reason"):
            self._set_finish(choice["finish_reason"])
        self.done = True
        return out + self._usage(body.get("usage"))


class OpenAIProvider(Provider):
    name: ClassVar[ProviderName] = "openai"
    title = "OpenAI"
    framing = "sse"
    key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"

    def url(self, request: ChatRequest) -> str:
        return self.join_url(request.base_url, "/chat/completions")

    def headers(self, api_key: str | None, *, stream: bool = True) -> dict[str, str]:
        accept = "text/event-stream" if stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": openai_style_messages(request),
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.tools:
            body["tools"] = openai_style_tools(request)
        body.update(dict(request.options))
        return body

    def parser(self, request: ChatRequest) -> StreamParser:
        return OpenAIParser(request)

    def models_url(self, base_url: str) -> str:
        return self.join_url(base_url, "/models")

    def parse_models(self, body: Any) -> list[str]:
        return sorted(str(m["id"]) for m in model_list(body, "data"))
