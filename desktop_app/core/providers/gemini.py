"""Google Gemini ``streamGenerateContent?alt=sse``: cumulative usage, finishReason on the
last chunk, no [DONE]."""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import quote

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
    raw_json,
    sent_as_text,
    tool_arguments,
)
from desktop_app.core.types import ChatRequest, FinishReason, Message, ProviderName, TokenUsage

_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")


class GeminiParser(StreamParser):
    provider = "gemini"
    title = "Gemini"
    finish_map: ClassVar[dict[str, FinishReason]] = {
        "STOP": "stop",
        "MAX_TOKENS": "length",
        **{reason: "content_filter" for reason in _FILTERED},
    }

    def __init__(self, request: ChatRequest) -> None:
        super().__init__(request)
        self._blocked = False

    @property
    def finish_reason(self) -> FinishReason:
        return "content_filter" if self._blocked else super().finish_reason

    def parse(self, event: str, data: str) -> list[StreamEvent]:
        chunk = loads_chunk(data, self.title)
        if not isinstance(chunk, dict):
            raise corrupt_chunk(self.title, data)
        if "error" in chunk:
            raise in_stream_error(chunk["error"], self.title, retry_after_s=retry_info_delay(chunk))
        out: list[StreamEvent] = []
        self._set_model(chunk.get("modelVersion"))
        candidates = chunk.get("candidates")
        if candidates:
            self.begun = True
            candidate = candidates[0]
            for part in (candidate.get("content") or {}).get("parts") or ():
                if part.get("thought"):
                    continue
                text = part.get("text")
                if text:
                    out += self._text(text)
                call = part.get("functionCall")
                if call is not None:
                    raw = raw_json(data, call.get("args") or {}, compact=False)
                    index = len(self._tools)
                    out.append(self._tool_start(index, call.get("id"), call.get("name", ""), raw))
                    # Gemini 3 refuses a history whose calls lack the signature they came with
                    self._tool_signature(index, part.get("thoughtSignature"))
            if candidate.get("finishReason"):
                self._set_finish(candidate["finishReason"])
                self.done = True
        else:
            feedback = chunk.get("promptFeedback") or {}
            if feedback.get("blockReason"):
                self._set_finish(str(feedback["blockReason"]))
                self._blocked = True
                self.done = True
        usage = chunk.get("usageMetadata")
        if usage:
            self.usage = TokenUsage(
                int(usage.get("promptTokenCount") or 0), int(usage.get("candidatesTokenCount") or 0)
            )
            out.append(UsageUpdate(self.usage))
        return out

    def parse_whole(self, data: str) -> list[StreamEvent]:
        """A ``GenerateContentResponse``, or the JSON array of them that
        ``streamGenerateContent`` answers without ``alt=sse``."""
        body = loads_chunk(data, self.title)
        if not isinstance(body, list):
            return self.parse("", data)
        out: list[StreamEvent] = []
        for chunk in body:
            out += self.parse("", json.dumps(chunk, ensure_ascii=False))
        return out


def _parts_with_files(m: Message) -> list[dict[str, Any]]:
    """A user message's files as Gemini parts, in the order they were attached: an image
    and a PDF as ``inline_data`` (base64, with its MIME type), a text file (and a PDF
    marked ``as_text``) as ``text``."""
    parts: list[dict[str, Any]] = []
    for a in m.attachments:
        if sent_as_text(a):
            parts.append({"text": file_text(a)})
        else:
            parts.append({"inline_data": {"mime_type": a.mime, "data": b64(a.data)}})
    return parts


class GeminiProvider(Provider):
    name: ClassVar[ProviderName] = "gemini"
    title = "Gemini"
    framing = "sse"
    key_env = "GEMINI_API_KEY"
    needs_key = True
    default_base_url = "https://generativelanguage.googleapis.com"

    def url(self, request: ChatRequest) -> str:
        model = quote(request.model.removeprefix("models/"), safe="-._~")
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        return self.join_url(request.base_url, f"/v1beta/models/{model}:{method}")

    def headers(self, api_key: str | None, *, stream: bool = True) -> dict[str, str]:
        accept = "text/event-stream" if stream else "application/json"
        headers = {"Content-Type": "application/json", "Accept": accept}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers

    def body(self, request: ChatRequest) -> dict[str, Any]:
        contents: list[dict[str, Any]] = []
        for group in grouped_tool_results(request.messages):
            m = group[0]
            if m.role == "system":
                continue
            if m.role == "tool":
                responses = [
                    {"functionResponse": {"name": r.name or "", "response": {"result": r.content}}}
                    for r in group
                ]
                contents.append({"role": "user", "parts": responses})
                continue
            parts = _parts_with_files(m) if attached(m) else []
            if m.content:
                parts.append({"text": m.content})
            for tc in m.tool_calls:
                call: dict[str, Any] = {
                    "functionCall": {"name": tc.name, "args": tool_arguments(tc.arguments)}
                }
                if tc.signature:
                    call["thoughtSignature"] = tc.signature
                parts.append(call)
            contents.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        system = "\n\n".join(
            ([request.system] if request.system else [])
            + [m.content for m in request.messages if m.role == "system"]
        )
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.seed is not None:
            config["seed"] = request.seed
        if config:
            body["generationConfig"] = config
        if request.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": t.name, "description": t.description, "parameters": t.parameters}
                        for t in request.tools
                    ]
                }
            ]
        body.update(dict(request.options))
        return body

    def parser(self, request: ChatRequest) -> StreamParser:
        return GeminiParser(request)

    def models_url(self, base_url: str) -> str:
        return self.join_url(base_url, "/v1beta/models")

    def parse_models(self, body: Any) -> list[str]:
        return sorted(str(m["name"]).removeprefix("models/") for m in model_list(body, "models"))

    def retry_delay(self, body: Any) -> float | None:
        return retry_info_delay(body)


def retry_info_delay(body: Any) -> float | None:
    """``google.rpc.RetryInfo.retryDelay`` (a Duration such as ``"5s"``) in the details of
    an error body ``{"error": {...}}``: the Gemini API's only word on how long to wait, in
    an HTTP 429's body and in an error event inside a stream alike."""
    err = body.get("error") if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if 0 <= seconds < 1e9 else None
    return None
