"""The four wire protocols: how a request reads, and the exact bytes a reply is made of.

Every encoder turns one planned reply into byte chunks shaped like the provider's own
stream (field names, field order, separators and JSON spacing follow real captures):

- ``head()``: sent with the headers, before any wait (Anthropic's ``message_start`` and
  ``ping``; empty elsewhere),
- ``lead()``: sent just before the first token (OpenAI's role chunk),
- ``token(i)``: one chunk per token (or per tool-call argument fragment),
- ``tail(sent)``: the finish marker, usage and terminator,
- ``error_event()`` / ``malformed(i)``: the in-stream error and a chunk with broken JSON,
- ``full_body(sent)``: the non-streaming answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, ClassVar, Literal

from desktop_app.simulator.routing import routing_reply
from desktop_app.simulator.text import (
    count_words,
    demo_kind,
    demo_tokens,
    echo_tokens,
    reply_tokens,
    seed_for,
)

ProtocolName = Literal["openai", "ollama", "anthropic", "gemini"]
CHAT_PROTOCOLS: tuple[ProtocolName, ...] = ("openai", "ollama", "anthropic", "gemini")
Finish = Literal["stop", "length", "tool_calls"]

_ALNUM = string.ascii_letters + string.digits


def random_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def compact(obj: Any) -> str:
    """JSON as OpenAI and Anthropic send it: no spaces, UTF-8 left as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def spaced(obj: Any) -> str:
    """JSON as Gemini streams it: a space after each colon, none after commas."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ": "))


def go_json(obj: Any) -> str:
    """JSON as Go's ``encoding/json`` writes it (Ollama): HTML characters and U+2028/9 escaped."""
    return (
        compact(obj)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class BadRequest(Exception):
    """The request cannot be answered; the message goes into a provider-shaped 400."""


# ---------------------------------------------------------------------------------------
# Reading requests


@dataclass(frozen=True, slots=True)
class ChatInput:
    """What the simulator needs from one chat request, whatever its protocol."""

    protocol: ProtocolName
    model: str
    stream: bool
    last_user: str
    input_tokens: int
    max_tokens: int | None
    tool_calls: tuple[tuple[str, str], ...] = ()
    """The calls the reply makes: (tool name, arguments JSON text), one for each ``call NAME
    with {JSON}`` in the last user message (or in the tool results just sent) whose tool
    the request offers."""
    tool_results: tuple[tuple[str, str], ...] = ()
    """(tool name, result text) of the tool results that end the request: the reply
    begins by quoting them."""
    include_usage: bool = False
    seed_model: str = ""
    """The model named in the body (Gemini bodies name none): part of the reply's seed."""
    prefill: str | None = None
    """Text of a trailing assistant message: the reply continues it instead of starting over."""
    generate: bool = False
    """An Ollama ``/api/generate`` request (a prompt, answered in ``response`` fields)."""
    attachments: tuple[str, ...] = ()
    """One answer line for each file of the last user message (:mod:`.attachments`)."""


def _typed_text(content: Any) -> str:
    """The text the user typed: a string, or the text blocks/parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block["text"]
            for block in content
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _all_text(content: Any) -> str:
    """Every piece of text in a message, tool results included (for usage counts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for block in content:
            if isinstance(block, str):
                pieces.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    pieces.append(block["text"])
                elif "content" in block:
                    pieces.append(_all_text(block["content"]))
        return "\n".join(pieces)
    return ""


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, int(value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _prefill(last: dict[str, Any], assistant: str, content_key: str) -> str | None:
    return _typed_text(last.get(content_key)) if last.get("role") == assistant else None


def _last_user(messages: list[Any], role_key: str, content_key: str) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get(role_key, "user") != "user":
            continue
        text = _typed_text(message.get(content_key))
        if text:
            return text
    return ""


_CALL = re.compile(r"\bcall\s+([A-Za-z0-9_.:-]{1,128})\s+with\s+(?=\{)")
_MAX_CALLS = 16
QUOTE_CHARS = 200
"""How much of each tool result the answer after it quotes."""


def requested_calls(
    text: str, offered: list[str], *, objects_only: bool = False
) -> tuple[tuple[str, str], ...]:
    """Each ``call NAME with {JSON}`` in ``text`` whose NAME is offered, as (name, arguments
    JSON text). Arguments that are not a JSON object are kept as written up to the end of
    their line (a model's broken call), unless ``objects_only`` (protocols whose calls carry
    an object, not text)."""
    out: list[tuple[str, str]] = []
    decoder = json.JSONDecoder()
    for match in _CALL.finditer(text):
        name = match.group(1)
        if name not in offered:
            continue
        try:
            args, _ = decoder.raw_decode(text, match.end())
        except ValueError:
            args = None
        if isinstance(args, dict):
            out.append((name, compact(args)))
        elif not objects_only:
            out.append((name, text[match.end() :].split("\n", 1)[0]))
        if len(out) >= _MAX_CALLS:
            break
    return tuple(out)


def _tool_plan(
    offered: list[str],
    last_user: str,
    results: list[tuple[str, str]] | None,
    *,
    objects_only: bool = False,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The calls a reply makes and the results it quotes. ``results`` is None unless the
    request ends with tool results: then the reply quotes them, unless they themselves ask
    for calls (so a tool can keep a model calling, round after round)."""
    if results is None:
        return requested_calls(last_user, offered, objects_only=objects_only), ()
    chained = requested_calls(
        "\n".join(text for _, text in results), offered, objects_only=objects_only
    )
    if chained:
        return chained, ()
    return (), tuple(results)


def thought_signature(calls: tuple[tuple[str, str], ...]) -> str:
    """An opaque token for a step's calls (base64, as Gemini's are)."""
    digest = hashlib.sha256(compact(calls).encode()).digest()
    return base64.b64encode(digest * 3).decode()


def _missing_signature(model: str, contents: list[Any]) -> str | None:
    """Gemini 3's refusal of a request whose current turn has a step of function calls
    without its thought signature (None when there is nothing to refuse)."""
    if not model.removeprefix("models/").startswith("gemini-3"):
        return None
    start = 0
    for index, content in enumerate(contents):
        parts = _list(_dict(content).get("parts"))
        if _dict(content).get("role", "user") == "user" and any("text" in _dict(p) for p in parts):
            start = index  # the current turn begins with the last prompt
    for index in range(start, len(contents)):
        parts = [_dict(p) for p in _list(_dict(contents[index]).get("parts"))]
        calls = [p for p in parts if "functionCall" in p]
        if calls and "thoughtSignature" not in calls[0]:
            name = _dict(calls[0]["functionCall"]).get("name")
            return (
                f"Function call `{name}` in the `{index + 1}.` content block is missing a "
                "`thought_signature`."
            )
    return None


def _result_text(content: Any) -> str:
    """A tool result's text: a string, text blocks, or JSON (shown compactly)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    return compact(content)


def _openai_results(messages: list[Any]) -> list[tuple[str, str]] | None:
    """The tool messages that end an OpenAI or Ollama request, named by the calls they
    answer (Ollama's messages name their tool)."""
    tail: list[dict[str, Any]] = []
    for message in reversed(messages):
        if _dict(message).get("role") != "tool":
            break
        tail.insert(0, message)
    if not tail:
        return None
    names: dict[str, str] = {}
    for message in messages:
        for call in _list(_dict(message).get("tool_calls")):
            fn = _dict(_dict(call).get("function"))
            if isinstance(call.get("id"), str) and isinstance(fn.get("name"), str):
                names[call["id"]] = fn["name"]
    out: list[tuple[str, str]] = []
    for message in tail:
        name = message.get("tool_name") or message.get("name")
        if not isinstance(name, str):
            name = names.get(str(message.get("tool_call_id")), "")
        out.append((name, _result_text(message.get("content"))))
    return out


def _anthropic_results(messages: list[Any]) -> list[tuple[str, str]] | None:
    last = _dict(messages[-1]) if messages else {}
    blocks = [_dict(b) for b in _list(last.get("content")) if _dict(b).get("type") == "tool_result"]
    if last.get("role") != "user" or not blocks:
        return None
    names: dict[str, str] = {}
    for message in messages:
        for block in _list(_dict(message).get("content")):
            block = _dict(block)
            if block.get("type") == "tool_use" and isinstance(block.get("name"), str):
                names[str(block.get("id"))] = block["name"]
    return [
        (names.get(str(b.get("tool_use_id")), ""), _result_text(b.get("content", "")))
        for b in blocks
    ]


def _gemini_results(parts: list[Any]) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    for part in parts:
        part = _dict(part)
        response = _dict(part.get("functionResponse", part.get("function_response")))
        if not response:
            continue
        value = _dict(response.get("response"))
        result = value.get("result", value) if set(value) <= {"result"} else value
        name = response.get("name")
        out.append((name if isinstance(name, str) else "", _result_text(result)))
    return out or None


def parse_chat(
    protocol: ProtocolName,
    body: Any,
    *,
    model: str | None = None,
    stream: bool | None = None,
) -> ChatInput:
    """Read a chat request body. ``model``/``stream`` come from the URL for Gemini.

    The reply's seed is the last user message and the model the body names, so the body
    alone decides the reply text (Gemini's model is in the URL and does not count).
    """
    from desktop_app.simulator.attachments import attachment_lines

    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if protocol == "gemini":
        return _parse_gemini(body, model or "sim-small", bool(stream))
    messages = _list(body.get("messages"))
    body_model = body.get("model")
    seed_model = body_model if isinstance(body_model, str) else ""
    name = seed_model or model or "sim-small"
    words = sum(count_words(_all_text(_dict(m).get("content"))) for m in messages)
    last = _dict(messages[-1]) if messages else {}
    if protocol == "anthropic":
        words += count_words(_all_text(body.get("system")))
        tools = _list(body.get("tools"))
        names = [t["name"] for t in tools if isinstance(_dict(t).get("name"), str)]
        tools_off = _dict(body.get("tool_choice")).get("type") == "none"
        prefill = _prefill(last, "assistant", "content")
        results = _anthropic_results(messages)
        calls, quoted = _tool_plan(
            names if not tools_off and prefill is None else [],
            _last_user(messages, "role", "content"),
            results,
        )
        return ChatInput(
            protocol=protocol,
            model=name,
            stream=body.get("stream") is True,
            last_user=_last_user(messages, "role", "content"),
            input_tokens=words,
            max_tokens=_int_or_none(body.get("max_tokens")),
            tool_calls=calls,
            tool_results=quoted,
            seed_model=seed_model,
            prefill=prefill,
            attachments=attachment_lines(protocol, body),
        )
    # OpenAI and Ollama share the message shape.
    functions = [_dict(t).get("function") for t in _list(body.get("tools")) if isinstance(t, dict)]
    names = [f["name"] for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]
    tools_off = body.get("tool_choice") == "none"
    prefill = _prefill(last, "assistant", "content")
    calls, quoted = _tool_plan(
        names if not tools_off and prefill is None else [],
        _last_user(messages, "role", "content"),
        _openai_results(messages),
        objects_only=protocol == "ollama",
    )
    if protocol == "ollama":
        num_predict = _dict(body.get("options")).get("num_predict")
        limit = None if isinstance(num_predict, int) and num_predict < 0 else num_predict
        return ChatInput(
            protocol=protocol,
            model=name,
            stream=body.get("stream", True) is not False,
            last_user=_last_user(messages, "role", "content"),
            input_tokens=words,
            max_tokens=_int_or_none(limit),
            tool_calls=calls,
            tool_results=quoted,
            seed_model=seed_model,
            prefill=prefill,
            attachments=attachment_lines(protocol, body),
        )
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    return ChatInput(
        protocol=protocol,
        model=name,
        stream=body.get("stream") is True,
        last_user=_last_user(messages, "role", "content"),
        input_tokens=words,
        max_tokens=_int_or_none(limit),
        tool_calls=calls,
        tool_results=quoted,
        include_usage=_dict(body.get("stream_options")).get("include_usage") is True,
        seed_model=seed_model,
        prefill=prefill,
        attachments=attachment_lines(protocol, body),
    )


def _parse_gemini(body: dict[str, Any], model: str, stream: bool) -> ChatInput:
    from desktop_app.simulator.attachments import attachment_lines

    contents = _list(body.get("contents"))
    system = body.get("systemInstruction", body.get("system_instruction"))
    words = count_words(
        _all_text(_dict(system).get("parts") if isinstance(system, dict) else system)
    )
    words += sum(count_words(_all_text(_dict(c).get("parts"))) for c in contents)
    config = _dict(body.get("generationConfig", body.get("generation_config")))
    limit = config.get("maxOutputTokens", config.get("max_output_tokens"))
    last_parts = _list(_dict(contents[-1]).get("parts")) if contents else []
    names: list[str] = []
    for tool in _list(body.get("tools")):
        tool = _dict(tool)
        for decl in _list(tool.get("functionDeclarations", tool.get("function_declarations"))):
            if isinstance(_dict(decl).get("name"), str):
                names.append(decl["name"])
    tool_config = _dict(body.get("toolConfig", body.get("tool_config")))
    calling = _dict(
        tool_config.get("functionCallingConfig", tool_config.get("function_calling_config"))
    )
    tools_off = calling.get("mode") == "NONE"
    prefill = _prefill(_dict(contents[-1]) if contents else {}, "model", "parts")
    refusal = _missing_signature(model, contents)
    if refusal is not None:
        raise BadRequest(refusal)
    calls, quoted = _tool_plan(
        names if not tools_off and prefill is None else [],
        _last_user(contents, "role", "parts"),
        _gemini_results(last_parts),
        objects_only=True,
    )
    return ChatInput(
        protocol="gemini",
        model=model,
        stream=stream,
        last_user=_last_user(contents, "role", "parts"),
        input_tokens=words,
        max_tokens=_int_or_none(limit),
        tool_calls=calls,
        tool_results=quoted,
        prefill=prefill,
        attachments=attachment_lines("gemini", body),
    )


def parse_generate(body: Any) -> ChatInput:
    """Read an Ollama ``/api/generate`` body: ``model``, ``prompt``, ``system``, ``stream``,
    ``options.num_predict``."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    prompt = body.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    system = body.get("system")
    words = count_words(prompt) + (count_words(system) if isinstance(system, str) else 0)
    num_predict = _dict(body.get("options")).get("num_predict")
    limit = None if isinstance(num_predict, int) and num_predict < 0 else num_predict
    name = model if isinstance(model, str) else ""
    return ChatInput(
        protocol="ollama",
        model=name or "sim-small",
        stream=body.get("stream", True) is not False,
        last_user=prompt,
        input_tokens=words,
        max_tokens=_int_or_none(limit),
        seed_model=name,
        generate=True,
    )


def count_input_tokens(protocol: ProtocolName, body: Any) -> int:
    """What a chat request with ``body`` would report as its input tokens (Anthropic's
    ``count_tokens`` and Gemini's ``countTokens``, which may wrap it in
    ``generateContentRequest``)."""
    if protocol == "gemini" and isinstance(body, dict):
        wrapped = body.get("generateContentRequest", body.get("generate_content_request"))
        if isinstance(wrapped, dict):
            body = wrapped
    return parse_chat(protocol, body).input_tokens


# ---------------------------------------------------------------------------------------
# Planning a reply


@dataclass(frozen=True, slots=True)
class Reply:
    """What will be sent: text tokens, or tool calls cut into argument fragments.

    For tool calls, ``owner[i]`` is the call chunk ``i`` belongs to; where it changes, the
    chunk opens that call (OpenAI's first delta of a call, Anthropic's ``tool_use`` block).
    """

    chunks: list[str]
    finish: Finish
    calls: tuple[tuple[str, str], ...] = ()
    """(name, arguments JSON text) of each call."""
    owner: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        return "" if self.calls else "".join(self.chunks)

    def opens_call(self, index: int) -> int | None:
        """The call chunk ``index`` opens, when it opens one after the first."""
        if not self.calls or index <= 0 or index >= len(self.owner):
            return None
        call = self.owner[index]
        return call if call != self.owner[index - 1] else None

    def call_of(self, index: int) -> int:
        return self.owner[index] if 0 <= index < len(self.owner) else 0

    def args(self, call: int) -> Any:
        """A call's arguments as an object (Gemini and Ollama send objects)."""
        try:
            value = json.loads(self.calls[call][1])
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def _fragments(text: str, sizes: tuple[int, ...]) -> list[str]:
    out: list[str] = []
    pos = 0
    i = 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        out.append(text[pos : pos + size])
        pos += size
        i += 1
    return out


def plan_reply(
    inp: ChatInput,
    tokens: int,
    variant: int = 0,
    judge_scores: Mapping[str, int] | None = None,
) -> Reply:
    """The reply to ``inp`` when an ordinary reply has ``tokens`` tokens.

    ``variant`` numbers the answers to the same request: each has its own words (a tool
    call's arguments and an ``/echo`` are the same for all). Auto's classifier and judge
    requests get their JSON answer (:mod:`.routing`; ``judge_scores`` by model).
    """
    if inp.tool_calls:
        return _call_reply(inp)
    if inp.last_user.startswith("/echo "):
        chunks = _continuation(echo_tokens(inp.last_user[len("/echo ") :]), inp.prefill)
        return Reply(chunks=chunks, finish="stop")
    verdict = routing_reply(inp.last_user, judge_scores or {})
    if verdict is not None:
        return Reply(chunks=echo_tokens(verdict, 8), finish="stop")
    if inp.attachments:
        chunks = _continuation(echo_tokens("\n".join(inp.attachments)), inp.prefill)
        return Reply(chunks=chunks, finish="stop")
    seed = seed_for(inp.last_user, inp.seed_model, variant)
    kind = demo_kind(inp.last_user)
    if kind is None:
        planned = reply_tokens(seed, max(0, tokens))
    else:
        planned = demo_tokens(kind, inp.last_user, seed, max(0, tokens))
    if inp.tool_results:
        quoted = "".join(
            f"Tool {name} said: {text[:QUOTE_CHARS]}\n\n" for name, text in inp.tool_results
        )
        planned = echo_tokens(quoted) + planned
    chunks = _continuation(planned, inp.prefill)
    if inp.max_tokens is not None and inp.max_tokens < len(chunks):
        return Reply(chunks=chunks[: inp.max_tokens], finish="length")
    return Reply(chunks=chunks, finish="stop")


def _call_reply(inp: ChatInput) -> Reply:
    """Tool calls as each protocol streams them: OpenAI's arguments in small fragments,
    Anthropic's ``input_json_delta`` pieces (an empty one first), Gemini's and Ollama's
    whole calls in one chunk."""
    chunks: list[str] = []
    owner: list[int] = []
    for call, (_, arguments) in enumerate(inp.tool_calls):
        if inp.protocol == "openai":
            pieces = _fragments(arguments, (5, 3, 8, 4)) or [""]
        elif inp.protocol == "anthropic":
            try:
                shown = json.dumps(json.loads(arguments), ensure_ascii=False)
            except ValueError:
                shown = arguments
            pieces = ["", *_fragments(shown, (7, 9, 2, 6))]
        else:
            pieces = [""] if call == 0 else []
        if call > 0 and pieces:
            pieces = ["", *pieces]  # the chunk that opens the call
        chunks += pieces
        owner += [call] * len(pieces)
    return Reply(chunks=chunks, finish="tool_calls", calls=inp.tool_calls, owner=tuple(owner))


def _continuation(tokens: list[str], prefill: str | None) -> list[str]:
    """What is left of ``tokens`` after the text the client prefilled.

    A prefill that is not the start of the reply is ignored (the whole reply is sent); one
    that ends inside a token gets the rest of that token first.
    """
    if not prefill or not "".join(tokens).startswith(prefill):
        return tokens
    pos = 0
    for index, token in enumerate(tokens):
        end = pos + len(token)
        if end > len(prefill):
            return [token[len(prefill) - pos :], *tokens[index + 1 :]]
        pos = end
    return []


# ---------------------------------------------------------------------------------------
# Error bodies

_DEFAULT_MESSAGES: dict[int, str] = {
    400: "The request is not valid.",
    401: "Incorrect API key provided.",
    403: "You do not have access to this resource.",
    404: "The model does not exist or you do not have access to it.",
    408: "The request timed out.",
    413: "The request is too large.",
    429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request.",
    502: "Bad gateway.",
    503: "The model is overloaded. Please try again later.",
    504: "The server timed out while processing your request.",
    529: "Overloaded",
}

_ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_GEMINI_STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_OPENAI_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def default_message(status: int) -> str:
    if status in _DEFAULT_MESSAGES:
        return _DEFAULT_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def anthropic_request_id() -> str:
    """A request id as Anthropic spells it; the ``request-id`` header and an error body's
    ``request_id`` carry the same one."""
    return "req_011" + random_id(21)


def google_duration(seconds: float) -> str:
    """A ``google.protobuf.Duration`` in its JSON form: ``"5s"``, ``"0.400s"``."""
    seconds = max(0.0, seconds)
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s" if round(seconds, 3) == seconds else f"{seconds:.9f}s"


_GEMINI_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
GEMINI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/rate-limit."
)


def _gemini_quota_details(model: str, retry_delay_s: float | None) -> list[dict[str, Any]]:
    """The ``details`` of the Gemini API's 429: the quota that ran out, where to read about
    it and, when the wait is known, ``RetryInfo`` (the API sends no Retry-After header)."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": _GEMINI_QUOTA_METRIC,
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "10",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry_delay_s is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": google_duration(retry_delay_s),
            }
        )
    return details


def error_body(
    protocol: ProtocolName,
    status: int,
    message: str | None = None,
    *,
    request_id: str | None = None,
    retry_delay_s: float | None = None,
    model: str = "sim-small",
) -> bytes:
    """The JSON body the provider answers an HTTP error with.

    ``request_id`` is Anthropic's (a new one when not given); ``retry_delay_s`` and
    ``model`` shape Gemini's 429, which names the quota and says the wait in ``RetryInfo``.
    """
    text = message if message is not None else default_message(status)
    if protocol == "openai":
        kind, code = _OPENAI_TYPES.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        err = {"message": text, "type": kind, "param": None, "code": code}
        return json.dumps({"error": err}, ensure_ascii=False, indent=4).encode() + b"\n"
    if protocol == "anthropic":
        kind = _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return compact(
            {
                "type": "error",
                "error": {"type": kind, "message": text},
                "request_id": request_id or anthropic_request_id(),
            }
        ).encode()
    if protocol == "gemini":
        state = _GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        if status == 429 and message is None:
            text = GEMINI_QUOTA_MESSAGE
            if retry_delay_s is not None:
                text += f" Please retry in {google_duration(retry_delay_s)}."
        gerr: dict[str, Any] = {"code": status, "message": text, "status": state}
        if status == 429:
            gerr["details"] = _gemini_quota_details(model, retry_delay_s)
        return json.dumps({"error": gerr}, ensure_ascii=False, indent=2).encode() + b"\n"
    return go_json({"error": text}).encode()


def unknown_url_body(
    protocol: ProtocolName, method: str, path: str, *, request_id: str | None = None
) -> tuple[bytes, str]:
    """What each provider answers for a path it does not serve: (body, content type)."""
    if protocol == "openai":
        err = {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return json.dumps({"error": err}, indent=4).encode() + b"\n", "application/json"
    if protocol == "ollama":
        return b"404 page not found", "text/plain"
    if protocol == "anthropic":
        return error_body("anthropic", 404, "Not Found", request_id=request_id), "application/json"
    body_bytes = error_body("gemini", 404, f"Unknown request URL: {method} {path}.")
    return body_bytes, json_content_type("gemini")


def model_not_found_body(
    protocol: ProtocolName, model: str, *, request_id: str | None = None
) -> bytes:
    """The 404 each provider answers for a model id it does not serve."""
    if protocol == "openai":
        err = {
            "message": f"The model '{model}' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        return json.dumps({"error": err}, ensure_ascii=False, indent=4).encode() + b"\n"
    if protocol == "anthropic":
        return error_body("anthropic", 404, f"model: {model}", request_id=request_id)
    if protocol == "gemini":
        return error_body(
            "gemini",
            404,
            f"models/{model} is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
        )
    return go_json({"error": f"model '{model}' not found"}).encode()


def json_content_type(protocol: ProtocolName) -> str:
    if protocol == "gemini":
        return "application/json; charset=UTF-8"
    if protocol == "ollama":
        return "application/json; charset=utf-8"
    return "application/json"


def stream_content_type(protocol: ProtocolName) -> str:
    if protocol == "ollama":
        return "application/x-ndjson"
    if protocol == "gemini":
        return "text/event-stream"
    return "text/event-stream; charset=utf-8"


def retry_after_value(seconds: float) -> str:
    return str(max(0, math.ceil(seconds)))


def millis_value(ms: float) -> str:
    return str(int(ms)) if float(ms).is_integer() else repr(float(ms))


# ---------------------------------------------------------------------------------------
# Encoders


class Encoder(ABC):
    """The bytes of one reply in one protocol.

    ``render`` (the JSON of a chunk) and ``frame`` (the event around it) are separate so
    ``malformed`` can cut a chunk's JSON short and still frame it.
    """

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        self.inp = inp
        self.reply = reply
        self.request_id = request_id
        """The id the answer's headers carry, for errors that name it (Anthropic)."""
        self.created = int(time.time())
        self.received = time.perf_counter()
        self.first_token_at: float | None = None

    @property
    def content_type(self) -> str:
        """The Content-Type of a streamed answer."""
        return stream_content_type(self.inp.protocol)

    def head(self) -> bytes:
        return b""

    def lead(self) -> bytes:
        return b""

    @abstractmethod
    def frame(self, payload: str) -> bytes:
        """One event/line around a JSON text of a token chunk."""

    @abstractmethod
    def render(self, index: int, piece: str) -> str:
        """The JSON text of the chunk that carries ``piece`` as token ``index``."""

    def token_json(self, index: int) -> str:
        return self.render(index, self.reply.chunks[index])

    def token(self, index: int) -> bytes:
        if index == 0:
            self.first_token_at = time.perf_counter()
        return self.frame(self.token_json(index))

    @abstractmethod
    def tail(self, sent: int) -> bytes: ...

    @abstractmethod
    def error_event(self) -> bytes: ...

    def malformed(self, index: int) -> bytes:
        """The chunk for token ``index`` cut inside its text, so its JSON never closes."""
        chunk = self.reply.chunks[index] if index < len(self.reply.chunks) else "x"
        payload = self.render(index, chunk)
        marker = json.dumps(chunk, ensure_ascii=False)
        at = payload.rfind(marker) if chunk else -1
        cut = at + 2 if at >= 0 else max(1, len(payload) // 2)
        return self.frame(payload[:cut])

    @abstractmethod
    def full_body(self, sent: int) -> bytes:
        """The non-streaming answer, with the first ``sent`` chunks of the reply."""

    def _text(self, sent: int) -> str:
        return "".join(self.reply.chunks[:sent])


class OpenAIEncoder(Encoder):
    _FINISH: ClassVar[dict[str, str]] = {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool_calls",
    }

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        super().__init__(inp, reply, request_id)
        self.id = "chatcmpl-" + random_id(29)
        self.call_ids = ["call_" + random_id(24) for _ in reply.calls]
        self._prefix = (
            f'{{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{compact(inp.model)},"system_fingerprint":"fp_rill_sim","choices":['
        )

    def frame(self, payload: str) -> bytes:
        return ("data: " + payload + "\n\n").encode()

    def _choice(self, delta: str, finish: str | None = None) -> str:
        reason = "null" if finish is None else f'"{finish}"'
        return (
            f'{self._prefix}{{"index":0,"delta":{delta},"logprobs":null,'
            f'"finish_reason":{reason}}}]}}'
        )

    def _opening(self, call: int) -> str:
        opening = {
            "index": call,
            "id": self.call_ids[call],
            "type": "function",
            "function": {"name": self.reply.calls[call][0], "arguments": ""},
        }
        return compact(opening)

    def lead(self) -> bytes:
        if not self.reply.calls:
            return self.frame(self._choice('{"role":"assistant","content":"","refusal":null}'))
        delta = (
            f'{{"role":"assistant","content":null,"tool_calls":[{self._opening(0)}],'
            '"refusal":null}'
        )
        return self.frame(self._choice(delta))

    def render(self, index: int, piece: str) -> str:
        text = compact(piece)
        if not self.reply.calls:
            return self._choice('{"content":' + text + "}")
        opened = self.reply.opens_call(index)
        if opened is not None:
            return self._choice('{"tool_calls":[' + self._opening(opened) + "]}")
        call = self.reply.call_of(index)
        return self._choice(
            f'{{"tool_calls":[{{"index":{call},"function":{{"arguments":' + text + "}}]}"
        )

    def _usage(self, sent: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.inp.input_tokens,
            "completion_tokens": sent,
            "total_tokens": self.inp.input_tokens + sent,
        }

    def tail(self, sent: int) -> bytes:
        out = self.frame(self._choice("{}", self._FINISH[self.reply.finish]))
        if self.inp.include_usage:
            out += self.frame(self._prefix + '],"usage":' + compact(self._usage(sent)) + "}")
        return out + b"data: [DONE]\n\n"

    def error_event(self) -> bytes:
        err = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return self.frame(compact({"error": err}))

    def full_body(self, sent: int) -> bytes:
        message: dict[str, Any] = {"role": "assistant"}
        if not self.reply.calls:
            message["content"] = self._text(sent)
        else:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": self.call_ids[call],
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for call, (name, arguments) in enumerate(self.reply.calls)
            ]
        message["refusal"] = None
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.inp.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._FINISH[self.reply.finish],
                }
            ],
            "usage": self._usage(sent),
            "system_fingerprint": "fp_rill_sim",
        }
        return json.dumps(body, ensure_ascii=False, indent=2).encode()


class AnthropicEncoder(Encoder):
    _FINISH: ClassVar[dict[str, str]] = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
    }

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        super().__init__(inp, reply, request_id)
        self.id = "msg_01" + random_id(22)
        self.tool_ids = ["toolu_01" + random_id(22) for _ in reply.calls]

    @staticmethod
    def _event(name: str, payload: str) -> bytes:
        return f"event: {name}\ndata: {payload}\n\n".encode()

    def frame(self, payload: str) -> bytes:
        return self._event("content_block_delta", payload)

    def _block(self, call: int = 0) -> dict[str, Any]:
        if not self.reply.calls:
            return {"type": "text", "text": ""}
        name = self.reply.calls[call][0]
        return {"type": "tool_use", "id": self.tool_ids[call], "name": name, "input": {}}

    def _block_start(self, index: int) -> bytes:
        start = {"type": "content_block_start", "index": index, "content_block": self._block(index)}
        return self._event("content_block_start", compact(start))

    def _block_stop(self, index: int) -> bytes:
        return self._event("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}')

    def token(self, index: int) -> bytes:
        opened = self.reply.opens_call(index)
        if opened is None:
            return super().token(index)
        return self._block_stop(opened - 1) + self._block_start(opened)

    def head(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.inp.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.inp.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return (
            self._event("message_start", compact({"type": "message_start", "message": message}))
            + self._block_start(0)
            + self._event("ping", '{"type": "ping"}')
        )

    def render(self, index: int, piece: str) -> str:
        text = compact(piece)
        if not self.reply.calls:
            delta = '{"type":"text_delta","text":' + text + "}"
        else:
            delta = '{"type":"input_json_delta","partial_json":' + text + "}"
        block = self.reply.call_of(index)
        return f'{{"type":"content_block_delta","index":{block},"delta":' + delta + "}"

    def tail(self, sent: int) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self._FINISH[self.reply.finish], "stop_sequence": None},
            "usage": {"output_tokens": sent},
        }
        return (
            self._block_stop(len(self.reply.calls) - 1 if self.reply.calls else 0)
            + self._event("message_delta", compact(delta))
            + self._event("message_stop", '{"type":"message_stop"}')
        )

    def error_event(self) -> bytes:
        err = {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": self.request_id or anthropic_request_id(),
        }
        return self._event("error", compact(err))

    def full_body(self, sent: int) -> bytes:
        content: list[dict[str, Any]]
        if not self.reply.calls:
            content = [{"type": "text", "text": self._text(sent)}]
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": self.tool_ids[call],
                    "name": name,
                    "input": self.reply.args(call),
                }
                for call, (name, _) in enumerate(self.reply.calls)
            ]
        body = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.inp.model,
            "content": content,
            "stop_reason": self._FINISH[self.reply.finish],
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.inp.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": sent,
            },
        }
        return compact(body).encode()


class GeminiEncoder(Encoder):
    _FINISH: ClassVar[dict[str, str]] = {
        "stop": "STOP",
        "length": "MAX_TOKENS",
        "tool_calls": "STOP",
    }

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        super().__init__(inp, reply, request_id)
        self.response_id = random_id(23)
        self._model = spaced(inp.model)

    def frame(self, payload: str) -> bytes:
        return ("data: " + payload + "\r\n\r\n").encode()

    def _usage(self, out: int) -> str:
        p = self.inp.input_tokens
        return (
            f'{{"promptTokenCount": {p},"candidatesTokenCount": {out},'
            f'"totalTokenCount": {p + out},'
            f'"promptTokensDetails": [{{"modality": "TEXT","tokenCount": {p}}}]}}'
        )

    def _chunk(self, part: str, finish: str | None, out: int) -> str:
        reason = "" if finish is None else f',"finishReason": "{finish}"'
        return (
            f'{{"candidates": [{{"content": {{"parts": [{part}],"role": "model"}}{reason},'
            f'"index": 0}}],"usageMetadata": {self._usage(out)},'
            f'"modelVersion": {self._model},"responseId": "{self.response_id}"}}'
        )

    def render(self, index: int, piece: str) -> str:
        last = index == len(self.reply.chunks) - 1
        finish = self._FINISH[self.reply.finish] if last else None
        if self.reply.calls:
            parts = ",".join(spaced(part) for part in self._call_parts())
            return self._chunk(parts, finish, index + 1)
        part = '{"text": ' + spaced(piece) + "}"
        return self._chunk(part, finish, index + 1)

    def _call_parts(self) -> list[dict[str, Any]]:
        """The calls as ``functionCall`` parts; the first carries the step's
        ``thoughtSignature``, as Gemini 3 sends it (and wants it back)."""
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": name, "args": self.reply.args(call)}}
            for call, (name, _) in enumerate(self.reply.calls)
        ]
        if parts:
            parts[0]["thoughtSignature"] = thought_signature(self.reply.calls)
        return parts

    def tail(self, sent: int) -> bytes:
        if sent > 0:
            return b""  # The last token carried the finish reason.
        return self.frame(self._chunk('{"text": ""}', self._FINISH[self.reply.finish], 0))

    def error_event(self) -> bytes:
        err: dict[str, Any] = {
            "code": 503,
            "message": _DEFAULT_MESSAGES[503],
            "status": "UNAVAILABLE",
        }
        return self.frame(spaced({"error": err}))

    def full_body(self, sent: int) -> bytes:
        parts = self._call_parts() if self.reply.calls else [{"text": self._text(sent)}]
        p = self.inp.input_tokens
        body = {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": self._FINISH[self.reply.finish],
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": p,
                "candidatesTokenCount": sent,
                "totalTokenCount": p + sent,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}],
            },
            "modelVersion": self.inp.model,
            "responseId": self.response_id,
        }
        return json.dumps(body, ensure_ascii=False, indent=2).encode()


class GeminiArrayEncoder(GeminiEncoder):
    """``:streamGenerateContent`` without ``alt=sse``: the same chunks as one JSON array,
    sent as it grows (``[{...}`` then ``,\r\n{...}`` for each chunk, ``]`` at the end), each
    chunk indented as the API does."""

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        super().__init__(inp, reply, request_id)
        self._opened = False

    @property
    def content_type(self) -> str:
        return json_content_type("gemini")

    def frame(self, payload: str) -> bytes:
        try:
            text = json.dumps(json.loads(payload), ensure_ascii=False, indent=2)
        except ValueError:  # a malformed chunk goes out as it is
            text = payload
        lead = "\n,\r\n" if self._opened else "["
        self._opened = True
        return (lead + text).encode()

    def tail(self, sent: int) -> bytes:
        return super().tail(sent) + (b"\n]" if self._opened else b"[]")

    def error_event(self) -> bytes:
        return super().error_event() + b"\n]"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OllamaEncoder(Encoder):
    _FINISH: ClassVar[dict[str, str]] = {"stop": "stop", "length": "length", "tool_calls": "stop"}

    def __init__(self, inp: ChatInput, reply: Reply, request_id: str | None = None) -> None:
        super().__init__(inp, reply, request_id)
        self._model = go_json(inp.model)

    def frame(self, payload: str) -> bytes:
        return (payload + "\n").encode()

    def render(self, index: int, piece: str) -> str:
        head = f'{{"model":{self._model},"created_at":"{_now_rfc3339()}",'
        if self.reply.calls:
            calls = ",".join(go_json(call) for call in self._calls())
            message = '{"role":"assistant","content":"","tool_calls":[' + calls + "]}"
        else:
            message = '{"role":"assistant","content":' + go_json(piece) + "}"
        return head + '"message":' + message + ',"done":false}'

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {"function": {"name": name, "arguments": self.reply.args(call)}}
            for call, (name, _) in enumerate(self.reply.calls)
        ]

    def _done(self, sent: int, message: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        first = self.first_token_at if self.first_token_at is not None else now
        load = 1_250_000
        return {
            "model": self.inp.model,
            "created_at": _now_rfc3339(),
            "message": message,
            "done_reason": self._FINISH[self.reply.finish],
            "done": True,
            "total_duration": int((now - self.received) * 1e9) + load,
            "load_duration": load,
            "prompt_eval_count": self.inp.input_tokens,
            "prompt_eval_duration": max(0, int((first - self.received) * 1e9)),
            "eval_count": sent,
            "eval_duration": max(0, int((now - first) * 1e9)),
        }

    def tail(self, sent: int) -> bytes:
        return self.frame(go_json(self._done(sent, {"role": "assistant", "content": ""})))

    def error_event(self) -> bytes:
        return self.frame(
            go_json({"error": "an error was encountered while running the model: unexpected EOF"})
        )

    def full_body(self, sent: int) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.reply.calls:
            message["tool_calls"] = self._calls()
        else:
            message["content"] = self._text(sent)
        return go_json(self._done(sent, message)).encode()


class OllamaGenerateEncoder(OllamaEncoder):
    """Ollama's ``/api/generate``: NDJSON lines with ``response`` text; the last one adds
    ``context`` (the conversation's token ids) to the usual counts."""

    def render(self, index: int, piece: str) -> str:
        return (
            f'{{"model":{self._model},"created_at":"{_now_rfc3339()}",'
            f'"response":{go_json(piece)},"done":false}}'
        )

    def _generated(self, sent: int, text: str) -> dict[str, Any]:
        done = self._done(sent, {})
        del done["message"]
        out: dict[str, Any] = {"model": done.pop("model"), "created_at": done.pop("created_at")}
        out["response"] = text
        out.update(done)
        out["context"] = list(range(1, self.inp.input_tokens + sent + 1))
        return out

    def tail(self, sent: int) -> bytes:
        return self.frame(go_json(self._generated(sent, "")))

    def full_body(self, sent: int) -> bytes:
        return go_json(self._generated(sent, self._text(sent))).encode()


def make_encoder(
    inp: ChatInput, reply: Reply, *, request_id: str | None = None, sse: bool = True
) -> Encoder:
    """The encoder for ``inp``'s protocol; ``sse=False`` is Gemini's JSON-array stream."""
    if inp.protocol == "openai":
        return OpenAIEncoder(inp, reply, request_id)
    if inp.protocol == "anthropic":
        return AnthropicEncoder(inp, reply, request_id)
    if inp.protocol == "gemini":
        if sse:
            return GeminiEncoder(inp, reply, request_id)
        return GeminiArrayEncoder(inp, reply, request_id)
    if inp.generate:
        return OllamaGenerateEncoder(inp, reply, request_id)
    return OllamaEncoder(inp, reply, request_id)


# ---------------------------------------------------------------------------------------
# Model listings and details

CONTEXT_LENGTH = 131072
"""The context window every simulated Ollama model reports."""
_OLLAMA_SIZE = 2019393189


def _openai_model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1735689600, "owned_by": "rill-simulator"}


def openai_models(models: tuple[str, ...]) -> bytes:
    data = [_openai_model(m) for m in models]
    return json.dumps({"object": "list", "data": data}, indent=2).encode()


def openai_model(model: str) -> bytes:
    """``GET /v1/models/{id}``."""
    return json.dumps(_openai_model(model), indent=2).encode()


def _anthropic_model(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": "2025-01-01T00:00:00Z",
    }


def anthropic_models(models: tuple[str, ...]) -> bytes:
    data = [_anthropic_model(m) for m in models]
    return compact(
        {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
    ).encode()


def anthropic_model(model: str) -> bytes:
    """``GET /v1/models/{id}``."""
    return compact(_anthropic_model(model)).encode()


def _gemini_model(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "description": "A simulated model served by the Rill simulator.",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "streamGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }


def gemini_models(models: tuple[str, ...]) -> bytes:
    data = [_gemini_model(m) for m in models]
    return json.dumps({"models": data}, indent=2).encode() + b"\n"


def gemini_model(model: str) -> bytes:
    """``GET /v1beta/models/{id}``."""
    return json.dumps(_gemini_model(model), indent=2).encode() + b"\n"


def gemini_token_count(tokens: int) -> bytes:
    """``models/{id}:countTokens``."""
    body = {
        "totalTokens": tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
    }
    return json.dumps(body, indent=2).encode() + b"\n"


def _ollama_details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }


def ollama_tags(models: tuple[str, ...]) -> bytes:
    data = [
        {
            "name": m,
            "model": m,
            "modified_at": "2025-01-01T00:00:00.000000000Z",
            "size": _OLLAMA_SIZE,
            "digest": hashlib.sha256(m.encode()).hexdigest(),
            "details": _ollama_details(),
        }
        for m in models
    ]
    return go_json({"models": data}).encode()


def ollama_show(model: str) -> bytes:
    """``POST /api/show``: the Modelfile, parameters, template, details, ``model_info``
    (GGUF metadata, ``<arch>.context_length`` among it) and capabilities: ``vision`` for a
    model named like a vision model (``sim-vision``, ``…-vl``), as Ollama lists it for
    LLaVA or Qwen2.5-VL."""
    template = (
        "<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
    )
    parameters = 'stop                           "<|eot_id|>"'
    body = {
        "license": "A simulated model: no license applies.",
        "modelfile": f"# Modelfile generated by the Rill simulator\nFROM {model}\n"
        f'TEMPLATE """{template}"""\nPARAMETER {parameters}\n',
        "parameters": parameters,
        "template": template,
        "details": _ollama_details(),
        "model_info": {
            "general.architecture": "llama",
            "general.basename": model,
            "general.file_type": 15,
            "general.parameter_count": 3212749888,
            "general.quantization_version": 2,
            "llama.attention.head_count": 24,
            "llama.attention.head_count_kv": 8,
            "llama.attention.key_length": 128,
            "llama.attention.layer_norm_rms_epsilon": 0.00001,
            "llama.attention.value_length": 128,
            "llama.block_count": 28,
            "llama.context_length": CONTEXT_LENGTH,
            "llama.embedding_length": 3072,
            "llama.feed_forward_length": 8192,
            "llama.rope.dimension_count": 128,
            "llama.rope.freq_base": 500000,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.bos_token_id": 128000,
            "tokenizer.ggml.eos_token_id": 128009,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "llama-bpe",
        },
        "tensors": [],
        "capabilities": ["completion", "tools", *(["vision"] if _sees(model) else [])],
        "modified_at": "2025-01-01T00:00:00.000000000Z",
    }
    return go_json(body).encode()


def _sees(model: str) -> bool:
    """Whether the simulator's Ollama lists ``model`` as taking images."""
    name = model.lower()
    return "vision" in name or "llava" in name or re.search(r"[-_.]vl\b", name) is not None


def ollama_ps(loaded: dict[str, float]) -> bytes:
    """``GET /api/ps``: the models loaded, each with when it is unloaded (``expires_at``)."""
    data = [
        {
            "name": m,
            "model": m,
            "size": _OLLAMA_SIZE + 1_000_000_000,
            "digest": hashlib.sha256(m.encode()).hexdigest(),
            "details": _ollama_details(),
            "expires_at": datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "size_vram": _OLLAMA_SIZE + 1_000_000_000,
            "context_length": 4096,
        }
        for m, until in loaded.items()
    ]
    return go_json({"models": data}).encode()


def ollama_load_body(model: str) -> bytes:
    """``/api/generate`` with no prompt: the model is loaded and nothing is generated."""
    body = {
        "model": model,
        "created_at": _now_rfc3339(),
        "response": "",
        "done": True,
        "done_reason": "load",
    }
    return go_json(body).encode()
