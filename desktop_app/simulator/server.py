"""The simulator: an aiohttp server on one port speaking four LLM wire protocols, with faults.

Paths decide the protocol: ``/v1/chat/completions`` (OpenAI), ``/api/chat`` and
``/api/generate`` (Ollama), ``/v1/messages`` (Anthropic),
``/v1beta/models/{model}:streamGenerateContent`` (SSE with ``alt=sse``, else a JSON array)
and ``:generateContent`` (Gemini). Beside chat it answers what SDKs commonly call: each
provider's model listing and model details (``/v1/models/{id}``, ``/v1beta/models/{id}``,
Ollama's ``/api/show``), token counts (Anthropic's ``/v1/messages/count_tokens``, Gemini's
``:countTokens``), and Ollama's ``/api/ps``, ``/api/version`` and ``/api/tags``; a model id
it does not serve gets the provider's own 404. Every request is recorded; each chat request
takes the first scripted :class:`Fault` for its protocol (a ``"models"`` fault takes any
request that is not a chat).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Literal, TypeVar

from aiohttp import web

from desktop_app.simulator.protocols import (
    CHAT_PROTOCOLS,
    BadRequest,
    Encoder,
    ProtocolName,
    anthropic_model,
    anthropic_models,
    anthropic_request_id,
    count_input_tokens,
    error_body,
    gemini_model,
    gemini_models,
    gemini_token_count,
    json_content_type,
    make_encoder,
    millis_value,
    model_not_found_body,
    ollama_load_body,
    ollama_ps,
    ollama_show,
    ollama_tags,
    openai_model,
    openai_models,
    parse_chat,
    parse_generate,
    plan_reply,
    random_id,
    retry_after_value,
    stream_content_type,
    unknown_url_body,
)

RecordedProtocol = Literal["openai", "ollama", "anthropic", "gemini", "models"]
FaultTarget = Literal["openai", "ollama", "anthropic", "gemini", "models"]

FAULT_HEADER = "x-rill-sim-fault"
"""A chat request carrying this header fails as its fault spec says (see ``faults``)."""

BATCH_BYTES = 64 * 1024
"""At full speed (``tokens_per_s == 0``) chunks are written in batches of about this size."""

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

OLLAMA_KEEP_ALIVE_S = 300.0
"""How long a model Ollama ran stays listed by ``/api/ps`` (Ollama's default keep-alive)."""

RAW_TIME_LIMIT_S = 120.0
"""A raw answer whose body never ends is cut after this long, so no test can run away."""
RAW_SLICE = 1 << 20
"""The most bytes of a :class:`Raw` body handed to the socket in one write."""


@dataclass(frozen=True)
class Raw:
    """An answer sent exactly as given: any status, any headers, any body.

    This is the simulator's hostile mode: a server that does not follow any protocol.
    ``body`` is bytes, or a function of the request that yields the body piece by piece
    (it may never end: the answer stops when the client goes away, or after
    :data:`RAW_TIME_LIMIT_S`). No header is added but the ones given (aiohttp adds
    ``Date``, ``Server`` and the framing headers).
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | Callable[[RecordedRequest], Iterable[bytes]] = b""
    piece_delay_s: float = 0.0
    time_limit_s: float = RAW_TIME_LIMIT_S


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to exactly one chat request.

    Token counts (``drop_after`` and friends) larger than the reply act just before the
    finish marker (for Gemini the marker rides on the last token, so they act after it).
    Non-streaming requests honour the status, headers and delays; ``stall_after`` waits
    ``stall_s`` before the body, ``error_event_after`` answers a provider-shaped 500,
    ``drop_after`` cuts the connection halfway through the body, and ``truncate_after`` /
    ``malformed_after`` end the body cleanly halfway through.
    """

    protocol: FaultTarget | None = None
    """Which requests take this fault; ``"models"`` is any model listing (never ``None``)."""
    status: int | None = None
    message: str | None = None
    retry_after: float | None = None
    """The wait a 429/503 asks for: a ``Retry-After`` header, except for Gemini, whose API
    says it only in the body (``google.rpc.RetryInfo.retryDelay``)."""
    retry_after_http_date: bool = False
    retry_after_ms: float | None = None
    """A ``retry-after-ms`` header (for Gemini: the body's ``retryDelay``, in ms)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers, sent as given (a Retry-After for Gemini only when given here)."""
    first_byte_delay: float = 0.0
    first_token_delay: float = 0.0
    drop_after: int | None = None
    truncate_after: int | None = None
    malformed_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 3600.0
    error_event_after: int | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    replay: bytes | None = None
    replay_pieces: tuple[int, ...] = (7, 1, 13, 3, 29, 2)
    replay_piece_delay_s: float = 0.002
    raw: Raw | None = None
    """Answer with these exact bytes instead (see :class:`Raw`); everything else is ignored."""


_NO_FAULT = Fault()


@dataclass
class RecordedRequest:
    """One request as the server saw it, and how its answer went."""

    protocol: RecordedProtocol
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float
    status: int | None = None
    first_chunk_at: float | None = None
    tokens_sent: int = 0
    completed: bool = False
    """The server finished sending the response (a truncated or error-ended one included)."""
    disconnected_at: float | None = None
    fault: Fault | None = None
    variant: int = 0
    """Which answer to this request it got: 0 for the first, n after n whole answers to
    the same body (a regenerate), so each has its own words; retries after a failure
    get the same one."""


class _Exchange:
    """Per-request state the disconnect handling needs."""

    __slots__ = ("aborted", "record", "request", "request_id", "response")

    def __init__(self, request: web.Request, record: RecordedRequest) -> None:
        self.request = request
        self.record = record
        self.response: web.StreamResponse | None = None
        self.aborted = False
        self.request_id = anthropic_request_id()
        """Anthropic's ``request-id``: in the headers and in any error body of this answer."""


def _positive_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _positive_int(value: str | None) -> int | None:
    number = _positive_float(value)
    return None if number is None else int(number)


class Simulator:
    """A local LLM server with scripted faults. Use ``async with Simulator() as sim``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tokens_per_s: float = 50.0,
        default_tokens: int = 300,
        models: tuple[str, ...] = ("sim-small", "sim-large"),
        always: Callable[[ProtocolName], Fault] | None = None,
        judge_scores: Mapping[str, int] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``always`` gives the fault for a chat request when none is scripted;
        ``judge_scores`` is the score the simulated judge gives each model's answers;
        ``tls``: serve ``https://`` with this server context."""
        self.host = host
        self.tls = tls
        self.judge_scores: dict[str, int] = dict(judge_scores or {})
        self.always = always
        self.port = port
        self.tokens_per_s = tokens_per_s
        self.default_tokens = default_tokens
        self.models = models
        self.requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._stopping = False
        self._active: set[_Exchange] = set()
        self._loaded: dict[str, float] = {}
        """Models Ollama ran, and when each is unloaded (``time.time()``), for ``/api/ps``."""
        self._answered: dict[tuple[str, str], int] = {}
        """Whole ordinary answers given so far, per request (protocol and body)."""
        self._header_uses: dict[tuple[str, str, bytes], int] = {}
        """Requests seen per fault header value and body: the n-th takes the n-th fault."""

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """What to give a client as its base URL for ``provider``."""
        return self.url + "/v1" if provider == "openai" else self.url

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model:.+}", self._get_model)
        app.router.add_post("/v1/messages", self._anthropic_chat)
        app.router.add_post("/v1/messages/count_tokens", self._anthropic_count_tokens)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_post("/api/generate", self._ollama_generate)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_post("/api/show", self._ollama_show)
        app.router.add_get("/api/ps", self._ollama_ps)
        app.router.add_get("/api/version", self._ollama_version)
        app.router.add_get("/v1beta/models", self._gemini_models)
        app.router.add_get("/v1beta/models/{model}", self._gemini_model)
        app.router.add_post("/v1beta/models/{target}", self._gemini_chat)
        app.router.add_get("/", self._root)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.tls)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._stopping = False
        self._changed = asyncio.Event()  # bound to the loop that serves
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for exchange in list(self._active):  # cut answers in flight, do not wait for them
            transport = exchange.request.transport
            if transport is not None:
                exchange.aborted = True
                transport.abort()
        try:
            await runner.cleanup()
        finally:
            self._stopping = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- scripting and inspection ----------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Queue faults; each chat request takes the first one for its protocol."""
        for fault in faults:
            if fault.protocol is not None and fault.protocol not in (*CHAT_PROTOCOLS, "models"):
                raise ValueError(
                    f"unknown protocol {fault.protocol!r}: use one of "
                    f"{', '.join(CHAT_PROTOCOLS)} or models"
                )
            if fault.protocol == "models" and fault.raw is None and fault.status is None:
                raise ValueError("a fault for model listings needs a status or a raw answer")
        self._faults.extend(faults)

    def clear(self) -> None:
        """Drop queued faults and recorded requests, and start answers afresh."""
        self._faults.clear()
        self.requests.clear()
        self._answered.clear()
        self._header_uses.clear()

    @property
    def pending_faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.protocol != "models"]

    @property
    def disconnects(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.disconnected_at is not None]

    async def wait_for_disconnect(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 (part of the API, shared with SimulatorThread)
    ) -> None:
        """Wait until at least ``count`` recorded requests saw their client go away."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.disconnects) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} client disconnect(s) within {timeout} s, "
                f"saw {len(self.disconnects)}"
            ) from None

    def reply_text(
        self,
        body: dict[str, Any] | RecordedRequest,
        protocol: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """The text an ordinary reply to this request has (empty for a tool call).

        ``body`` is a recorded request, or a request body: the answer the latest request
        with that body got (that very object first; for a body not sent yet, its first
        answer). The record gives the variant (a regenerate gets new words), its headers
        (unless ``headers`` is given) and its fault's token count.
        ``headers`` may carry the request's ``x-rill-sim-tokens`` override.
        """
        if isinstance(body, RecordedRequest):
            record: RecordedRequest | None = body
            protocol = protocol or body.protocol
            body = body.json
        else:
            record = self._record_for(body, protocol)
        if protocol not in CHAT_PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        if headers is None and record is not None:
            headers = record.headers
        inp = parse_chat(protocol, body, stream=False)
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        tokens = record.fault.tokens if record is not None and record.fault else None
        if tokens is None:
            tokens = _positive_int(lowered.get("x-rill-sim-tokens"))
        count = self.default_tokens if tokens is None else tokens
        return plan_reply(
            inp, count, record.variant if record is not None else 0, self.judge_scores
        ).text

    def _record_for(self, body: Any, protocol: str | None) -> RecordedRequest | None:
        """The latest chat request with ``body`` (that very object first)."""
        for record in reversed(self.requests):
            if record.json is body and record.protocol == protocol:
                return record
        key = _answer_key(protocol or "", body)
        for record in reversed(self.requests):
            if record.protocol == protocol and _answer_key(protocol, record.json) == key:
                return record
        return None

    # -- recording -------------------------------------------------------------------

    def _record(self, request: web.Request, protocol: RecordedProtocol) -> RecordedRequest:
        return RecordedRequest(
            protocol=protocol,
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=b"",
            json=None,
            received_at=time.monotonic(),
        )

    @staticmethod
    async def _read_body(request: web.Request, record: RecordedRequest) -> None:
        record.body = await request.read()
        if record.body:
            try:
                record.json = json.loads(record.body)
            except (ValueError, UnicodeDecodeError):
                record.json = None

    def _take_fault(self, protocol: FaultTarget) -> Fault | None:
        for i, fault in enumerate(self._faults):
            if fault.protocol == protocol or (fault.protocol is None and protocol != "models"):
                del self._faults[i]
                return fault
        return None

    def _note_disconnect(self, exchange: _Exchange) -> None:
        record = exchange.record
        if exchange.aborted or record.completed or record.disconnected_at is not None:
            return
        if self._stopping:
            return
        record.disconnected_at = time.monotonic()
        self._changed.set()

    # -- plain answers ---------------------------------------------------------------

    async def _send_whole(
        self,
        request: web.Request,
        exchange: _Exchange,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        response = web.Response(status=status, body=body)
        response.headers["Content-Type"] = content_type
        response.headers.update(headers or {})
        exchange.response = response
        exchange.record.status = status
        await response.prepare(request)
        await response.write_eof()
        exchange.record.completed = True
        return response

    async def _guarded(
        self,
        request: web.Request,
        protocol: RecordedProtocol,
        serve: Callable[[_Exchange], Any],
    ) -> web.StreamResponse:
        exchange = _Exchange(request, self._record(request, protocol))
        self._active.add(exchange)
        try:
            # Listed once its body is read (or failed to be): a test reading the list from
            # its own thread never sees a request whose JSON is still on its way.
            try:
                await self._read_body(request, exchange.record)
            finally:
                self.requests.append(exchange.record)
            if protocol == "models":
                fault = self._take_fault("models")
                if fault is not None:
                    exchange.record.fault = fault
                    return await self._models_fault(request, exchange, fault)
            response: web.StreamResponse = await serve(exchange)
            return response
        except asyncio.CancelledError:
            self._note_disconnect(exchange)
            raise
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one too
            self._note_disconnect(exchange)
            return exchange.response if exchange.response is not None else web.Response()
        except web.HTTPException as exc:  # e.g. a body over the size limit: aiohttp answers
            exchange.record.status = exc.status
            raise
        except Exception:
            _log.exception("simulator failed answering %s %s", request.method, request.path)
            started = exchange.response
            if started is not None and started.prepared:
                exchange.aborted = True
                if request.transport is not None:
                    request.transport.abort()
                return started
            proto: ProtocolName = _shape_of(request) if protocol == "models" else protocol
            return await self._send_whole(
                request,
                exchange,
                500,
                error_body(proto, 500, request_id=exchange.request_id),
                json_content_type(proto),
                self._id_headers(proto, exchange),
            )
        finally:
            self._active.discard(exchange)

    async def _models_fault(
        self, request: web.Request, exchange: _Exchange, fault: Fault
    ) -> web.StreamResponse:
        if fault.raw is not None:
            return await self._raw(request, exchange, fault.raw)
        assert fault.status is not None
        protocol = _shape_of(request)
        body = error_body(protocol, fault.status, fault.message, request_id=exchange.request_id)
        headers = {**self._id_headers(protocol, exchange), **fault.headers}
        return await self._send_whole(
            request, exchange, fault.status, body, json_content_type(protocol), headers
        )

    async def _raw(self, request: web.Request, exchange: _Exchange, raw: Raw) -> web.StreamResponse:
        """Send a :class:`Raw` answer: its status, its headers, its body as it comes."""
        record = exchange.record
        response = web.StreamResponse(status=raw.status)
        response.headers.update(raw.headers)
        exchange.response = response
        record.status = raw.status
        if isinstance(raw.body, bytes):
            response.content_length = len(raw.body)
            await response.prepare(request)
            # in slices, as a server's socket takes them: one write of a huge body would be
            # copied whole, twice, into the transport's buffer
            body = memoryview(raw.body)
            for start in range(0, len(body), RAW_SLICE):
                await response.write(body[start : start + RAW_SLICE])
        else:
            await response.prepare(request)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + raw.time_limit_s
            for piece in raw.body(record):
                await response.write(piece)
                if record.first_chunk_at is None:
                    record.first_chunk_at = time.perf_counter()
                if loop.time() > deadline:
                    await self._abort(request, exchange)
                    return response
                await asyncio.sleep(raw.piece_delay_s)  # also lets a disconnect be seen
        await response.write_eof()
        record.completed = True
        return response

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            if "x-api-key" in request.headers or "anthropic-version" in request.headers:
                body = anthropic_models(self.models)
            else:
                body = openai_models(self.models)
            return await self._send_whole(request, exchange, 200, body, "application/json")

        return await self._guarded(request, "models", serve)

    async def _ollama_tags(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            body = ollama_tags(self.models)
            return await self._send_whole(request, exchange, 200, body, json_content_type("ollama"))

        return await self._guarded(request, "models", serve)

    async def _ollama_version(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            return await self._send_whole(
                request, exchange, 200, b'{"version":"0.12.0"}', json_content_type("ollama")
            )

        return await self._guarded(request, "models", serve)

    async def _gemini_models(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            body = gemini_models(self.models)
            return await self._send_whole(request, exchange, 200, body, json_content_type("gemini"))

        return await self._guarded(request, "models", serve)

    async def _root(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            return await self._send_whole(
                request, exchange, 200, b"Ollama is running", "text/plain; charset=utf-8"
            )

        return await self._guarded(request, "models", serve)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        protocol = _shape_of(request)

        async def serve(exchange: _Exchange) -> web.StreamResponse:
            body, content_type = unknown_url_body(
                protocol, request.method, request.path, request_id=exchange.request_id
            )
            headers = self._id_headers(protocol, exchange)
            return await self._send_whole(request, exchange, 404, body, content_type, headers)

        return await self._guarded(request, "models", serve)

    # -- model details and token counts ----------------------------------------------

    def _serves(self, model: str) -> bool:
        """Whether ``model`` is one of this simulator's (Ollama's ``:latest`` tag allowed)."""
        return model in self.models or model.removesuffix(":latest") in self.models

    async def _model_answer(
        self,
        request: web.Request,
        exchange: _Exchange,
        protocol: ProtocolName,
        model: str,
        body: Callable[[], bytes],
    ) -> web.StreamResponse:
        """``body()`` for a model this simulator serves, else the provider's own 404."""
        headers = self._id_headers(protocol, exchange)
        content_type = json_content_type(protocol)
        if not self._serves(model):
            missing = model_not_found_body(protocol, model, request_id=exchange.request_id)
            return await self._send_whole(request, exchange, 404, missing, content_type, headers)
        return await self._send_whole(request, exchange, 200, body(), content_type, headers)

    async def _bad_request(
        self, request: web.Request, exchange: _Exchange, protocol: ProtocolName, message: str
    ) -> web.StreamResponse:
        return await self._send_whole(
            request,
            exchange,
            400,
            error_body(protocol, 400, message, request_id=exchange.request_id),
            json_content_type(protocol),
            self._id_headers(protocol, exchange),
        )

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        anthropic = "x-api-key" in request.headers or "anthropic-version" in request.headers

        async def serve(exchange: _Exchange) -> web.StreamResponse:
            if anthropic:
                return await self._model_answer(
                    request, exchange, "anthropic", model, lambda: anthropic_model(model)
                )
            return await self._model_answer(
                request, exchange, "openai", model, lambda: openai_model(model)
            )

        return await self._guarded(request, "models", serve)

    async def _gemini_model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]

        async def serve(exchange: _Exchange) -> web.StreamResponse:
            return await self._model_answer(
                request, exchange, "gemini", model, lambda: gemini_model(model)
            )

        return await self._guarded(request, "models", serve)

    async def _count_tokens(
        self, request: web.Request, protocol: ProtocolName, model: str | None
    ) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            body = exchange.record.json
            try:
                if body is None:
                    raise BadRequest("The request body must be a JSON object.")
                tokens = count_input_tokens(protocol, body)
            except BadRequest as exc:
                return await self._bad_request(request, exchange, protocol, str(exc))
            if protocol == "gemini":
                assert model is not None
                return await self._model_answer(
                    request, exchange, "gemini", model, lambda: gemini_token_count(tokens)
                )
            answer = json.dumps({"input_tokens": tokens}).encode()
            return await self._send_whole(
                request,
                exchange,
                200,
                answer,
                json_content_type(protocol),
                self._id_headers(protocol, exchange),
            )

        return await self._guarded(request, "models", serve)

    async def _anthropic_count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._count_tokens(request, "anthropic", None)

    async def _ollama_show(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            body = exchange.record.json if isinstance(exchange.record.json, dict) else {}
            model = body.get("model", body.get("name"))
            if not isinstance(model, str) or not model:
                return await self._bad_request(request, exchange, "ollama", "model is required")
            return await self._model_answer(
                request, exchange, "ollama", model, lambda: ollama_show(model)
            )

        return await self._guarded(request, "models", serve)

    async def _ollama_ps(self, request: web.Request) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            now = time.time()
            self._loaded = {m: until for m, until in self._loaded.items() if until > now}
            return await self._send_whole(
                request, exchange, 200, ollama_ps(self._loaded), json_content_type("ollama")
            )

        return await self._guarded(request, "models", serve)

    # -- chat ------------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai")

    async def _anthropic_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "anthropic")

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "ollama")

    async def _ollama_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "ollama", generate=True)

    async def _gemini_chat(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        if model and method == "countTokens":
            return await self._count_tokens(request, "gemini", model)
        if not model or method not in ("streamGenerateContent", "generateContent"):
            return await self._not_found(request)
        return await self._chat(
            request,
            "gemini",
            model=model,
            stream=method == "streamGenerateContent",
            sse=request.query.get("alt") == "sse",
        )

    async def _chat(
        self,
        request: web.Request,
        protocol: ProtocolName,
        *,
        model: str | None = None,
        stream: bool | None = None,
        sse: bool = True,
        generate: bool = False,
    ) -> web.StreamResponse:
        async def serve(exchange: _Exchange) -> web.StreamResponse:
            spec = request.headers.get(FAULT_HEADER)
            fault: Fault | None = None
            if spec is not None:
                try:
                    fault = self._header_fault(spec, protocol, exchange.record.body)
                except ValueError as exc:  # the spec does not parse: say where
                    return await self._bad_request(
                        request, exchange, protocol, f"{FAULT_HEADER}: {exc}"
                    )
            if fault is None:
                fault = self._take_fault(protocol)
            if fault is None and self.always is not None:
                fault = self.always(protocol)
            exchange.record.fault = fault
            return await self._serve_chat(
                request,
                exchange,
                protocol,
                fault or _NO_FAULT,
                model,
                stream,
                sse=sse,
                generate=generate,
            )

        return await self._guarded(request, protocol, serve)

    def _header_fault(self, spec: str, protocol: str, body: bytes) -> Fault | None:
        """The fault a request's fault header gives it: the n-th identical request (same
        header, same body) takes the n-th fault of the spec, later ones none."""
        from desktop_app.simulator.faults import parse_faults  # it builds this module's Fault

        faults = parse_faults(spec)
        key = (spec, protocol, body)
        seen = self._header_uses.get(key, 0)
        if seen <= len(faults):  # stop counting once the spec is used up
            self._header_uses[key] = seen + 1
        return faults[seen] if seen < len(faults) else None

    @staticmethod
    def _id_headers(protocol: ProtocolName, exchange: _Exchange) -> dict[str, str]:
        """The request id header an answer in ``protocol`` carries."""
        if protocol == "openai":
            return {"x-request-id": "req_" + random_id(32)}
        if protocol == "anthropic":
            return {"request-id": exchange.request_id}
        return {}

    def _headers(
        self, exchange: _Exchange, protocol: ProtocolName, fault: Fault, streaming: bool
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if streaming:
            headers["Cache-Control"] = "no-cache"
        headers.update(self._id_headers(protocol, exchange))
        headers.update(fault.headers)
        return headers

    async def _serve_chat(
        self,
        request: web.Request,
        exchange: _Exchange,
        protocol: ProtocolName,
        fault: Fault,
        model: str | None,
        stream: bool | None,
        *,
        sse: bool = True,
        generate: bool = False,
    ) -> web.StreamResponse:
        record = exchange.record
        key = _answer_key(protocol, record.json)
        record.variant = self._answered.get(key, 0)
        if fault.first_byte_delay > 0:
            await asyncio.sleep(fault.first_byte_delay)
        if fault.raw is not None:
            return await self._raw(request, exchange, fault.raw)
        if fault.status is not None:
            return await self._status_fault(request, exchange, protocol, fault, model)
        if fault.replay is not None:
            return await self._replay(request, exchange, protocol, fault)
        try:
            if record.json is None:
                raise BadRequest(
                    "We could not parse the JSON body of your request: "
                    "the body must be a JSON object."
                )
            if generate:
                inp = parse_generate(record.json)
            else:
                inp = parse_chat(protocol, record.json, model=model, stream=stream)
        except BadRequest as exc:
            return await self._send_whole(
                request,
                exchange,
                400,
                error_body(protocol, 400, str(exc), request_id=exchange.request_id),
                json_content_type(protocol),
                self._headers(exchange, protocol, fault, streaming=False),
            )
        if protocol == "ollama":
            self._loaded[inp.model] = time.time() + OLLAMA_KEEP_ALIVE_S
            if inp.generate and not inp.last_user:
                return await self._send_whole(
                    request,
                    exchange,
                    200,
                    ollama_load_body(inp.model),
                    json_content_type("ollama"),
                    self._headers(exchange, protocol, fault, streaming=False),
                )
        tokens = fault.tokens
        if tokens is None:
            tokens = _positive_int(request.headers.get("x-rill-sim-tokens"))
        if tokens is None:
            tokens = self.default_tokens
        rate = fault.tokens_per_s
        if rate is None:
            rate = _positive_float(request.headers.get("x-rill-sim-tokens-per-s"))
        if rate is None:
            rate = self.tokens_per_s
        reply = plan_reply(inp, tokens, record.variant, self.judge_scores)
        encoder = make_encoder(inp, reply, request_id=exchange.request_id, sse=sse)
        if inp.stream:
            response = await self._stream(request, exchange, fault, encoder, rate)
        else:
            response = await self._whole_reply(request, exchange, fault, encoder)
        cut = (fault.drop_after, fault.truncate_after, fault.malformed_after)
        if record.completed and fault.error_event_after is None and cut == (None, None, None):
            self._answered[key] = max(self._answered.get(key, 0), record.variant + 1)
        return response

    async def _status_fault(
        self,
        request: web.Request,
        exchange: _Exchange,
        protocol: ProtocolName,
        fault: Fault,
        model: str | None,
    ) -> web.StreamResponse:
        """A scripted error status, with the wait it asks for where the provider puts it."""
        assert fault.status is not None
        headers = self._headers(exchange, protocol, fault, streaming=False)
        retry_delay_s: float | None = None
        if protocol == "gemini":  # the Gemini API says its wait in the body, not a header
            if fault.retry_after_ms is not None:
                retry_delay_s = fault.retry_after_ms / 1000
            else:
                retry_delay_s = fault.retry_after
        else:
            if fault.retry_after is not None:
                if fault.retry_after_http_date:
                    value = formatdate(time.time() + fault.retry_after, usegmt=True)
                else:
                    value = retry_after_value(fault.retry_after)
                headers["Retry-After"] = value
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = millis_value(fault.retry_after_ms)
            headers.update(fault.headers)
        body = error_body(
            protocol,
            fault.status,
            fault.message,
            request_id=exchange.request_id,
            retry_delay_s=retry_delay_s,
            model=model or "sim-small",
        )
        return await self._send_whole(
            request, exchange, fault.status, body, json_content_type(protocol), headers
        )

    async def _whole_reply(
        self,
        request: web.Request,
        exchange: _Exchange,
        fault: Fault,
        encoder: Encoder,
    ) -> web.StreamResponse:
        """A non-streaming answer. Stream faults map onto the body as a whole."""
        protocol: ProtocolName = encoder.inp.protocol
        record = exchange.record
        if fault.first_token_delay > 0:
            await asyncio.sleep(fault.first_token_delay)
        if fault.stall_after is not None:
            await asyncio.sleep(fault.stall_s)
        headers = self._headers(exchange, protocol, fault, streaming=False)
        if fault.error_event_after is not None:
            return await self._send_whole(
                request,
                exchange,
                500,
                error_body(protocol, 500, fault.message, request_id=exchange.request_id),
                json_content_type(protocol),
                headers,
            )
        sent = len(encoder.reply.chunks)
        body: bytes = encoder.full_body(sent)
        cut = (fault.drop_after, fault.truncate_after, fault.malformed_after)
        if all(value is None for value in cut):
            record.tokens_sent = sent
            return await self._send_whole(
                request, exchange, 200, body, json_content_type(protocol), headers
            )
        response = web.StreamResponse(status=200, headers=headers)
        response.headers["Content-Type"] = json_content_type(protocol)
        if fault.drop_after is not None:
            response.content_length = len(body)
        exchange.response = response
        record.status = 200
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if fault.drop_after is not None:
            await self._abort(request, exchange)
            return response
        await response.write_eof()
        record.completed = True
        return response

    async def _abort(self, request: web.Request, exchange: _Exchange) -> None:
        """Cut the TCP connection once what was written has left the process."""
        exchange.aborted = True
        transport = request.transport
        if transport is None:
            return
        for _ in range(1000):  # at most about a second
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.001)
        transport.abort()

    async def _replay(
        self, request: web.Request, exchange: _Exchange, protocol: ProtocolName, fault: Fault
    ) -> web.StreamResponse:
        assert fault.replay is not None
        response = web.StreamResponse(
            status=200, headers=self._headers(exchange, protocol, fault, True)
        )
        response.headers["Content-Type"] = stream_content_type(protocol)
        exchange.response = response
        exchange.record.status = 200
        await response.prepare(request)
        if fault.first_token_delay > 0:
            await asyncio.sleep(fault.first_token_delay)
        data = fault.replay
        sizes = tuple(max(1, s) for s in fault.replay_pieces) or (len(data) or 1,)
        pos = 0
        i = 0
        while pos < len(data):
            piece = data[pos : pos + sizes[i % len(sizes)]]
            await response.write(piece)
            if exchange.record.first_chunk_at is None:
                exchange.record.first_chunk_at = time.perf_counter()
            pos += len(piece)
            i += 1
            if fault.replay_piece_delay_s > 0:
                await asyncio.sleep(fault.replay_piece_delay_s)
        await response.write_eof()
        exchange.record.completed = True
        return response

    async def _stream(
        self,
        request: web.Request,
        exchange: _Exchange,
        fault: Fault,
        encoder: Encoder,
        rate: float,
    ) -> web.StreamResponse:
        protocol: ProtocolName = encoder.inp.protocol
        record = exchange.record
        response = web.StreamResponse(
            status=200, headers=self._headers(exchange, protocol, fault, True)
        )
        response.headers["Content-Type"] = encoder.content_type
        exchange.response = response
        record.status = 200
        await response.prepare(request)
        head: bytes = encoder.head()
        if head:
            await response.write(head)
        if fault.first_token_delay > 0:
            await asyncio.sleep(fault.first_token_delay)

        chunks: list[str] = encoder.reply.chunks
        total = len(chunks)

        def at(value: int | None) -> int | None:
            return None if value is None else min(max(value, 0), total)

        stall_at = at(fault.stall_after)
        enders = [
            (at(fault.drop_after), "drop"),
            (at(fault.truncate_after), "truncate"),
            (at(fault.malformed_after), "malformed"),
            (at(fault.error_event_after), "error"),
        ]
        live = [(index, kind) for index, kind in enders if index is not None]
        end_at, end_kind = min(live, key=lambda item: item[0]) if live else (None, "")

        buffer = bytearray()
        pending = 0
        lead_sent = False

        async def flush() -> None:
            nonlocal pending
            if buffer:
                await response.write(bytes(buffer))
                buffer.clear()
            if pending:
                record.tokens_sent += pending
                pending = 0
                if record.first_chunk_at is None:
                    record.first_chunk_at = time.perf_counter()

        loop = asyncio.get_running_loop()
        interval = 1.0 / rate if rate > 0 else 0.0
        next_at = loop.time()
        for index in range(total + 1):
            if index == stall_at:
                await flush()
                await asyncio.sleep(fault.stall_s)
                next_at = loop.time()
            if index == end_at:
                await flush()
                if end_kind == "drop":
                    await self._abort(request, exchange)
                    return response
                if end_kind == "malformed":
                    await response.write(encoder.malformed(index))
                elif end_kind == "error":
                    await response.write(encoder.error_event())
                await response.write_eof()
                record.completed = True
                return response
            if index == total:
                break
            if interval:
                now = loop.time()
                if next_at > now:
                    await flush()
                    await asyncio.sleep(next_at - now)
                elif now - next_at > interval:
                    next_at = now
                next_at += interval
            if not lead_sent:
                buffer += encoder.lead()
                lead_sent = True
            buffer += encoder.token(index)
            pending += 1
            if interval or index == 0 or len(buffer) >= BATCH_BYTES:
                await flush()
        if not lead_sent:
            buffer += encoder.lead()
        buffer += encoder.tail(record.tokens_sent + pending)
        await flush()
        await response.write_eof()
        record.completed = True
        return response


def _answer_key(protocol: str, body: Any) -> tuple[str, str]:
    """What makes two chat requests the same request: protocol and body (keys sorted)."""
    try:
        text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(body)
    return protocol, text


def _shape_of(request: web.Request) -> ProtocolName:
    """Whose error shape a request outside the chat routes gets, from its path and headers."""
    path = request.path
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/v1beta/"):
        return "gemini"
    if (
        path.startswith("/v1/messages")
        or "anthropic-version" in request.headers
        or "x-api-key" in request.headers
    ):
        return "anthropic"
    return "openai"


class SimulatorThread:
    """The same simulator on its own event loop in a background thread, for sync code."""

    def __init__(self, **kwargs: Any) -> None:
        self.sim = Simulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorThread:
        if self._loop is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="rill-simulator", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.sim.start(), loop).result(timeout=30)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), loop).result(timeout=30)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=30)
        with contextlib.suppress(RuntimeError):
            loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the simulator's loop and wait for it."""
        loop = self._loop
        if loop is None:
            return fn(*args)
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=30)

    @property
    def url(self) -> str:
        return self.sim.url

    @property
    def port(self) -> int:
        return self.sim.port

    def base_url(self, provider: str) -> str:
        return self.sim.base_url(provider)

    @property
    def tokens_per_s(self) -> float:
        return self.sim.tokens_per_s

    @tokens_per_s.setter
    def tokens_per_s(self, value: float) -> None:
        self.sim.tokens_per_s = value

    @property
    def default_tokens(self) -> int:
        return self.sim.default_tokens

    @default_tokens.setter
    def default_tokens(self, value: int) -> None:
        self.sim.default_tokens = value

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.sim.requests

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return self.sim.chat_requests

    @property
    def disconnects(self) -> list[RecordedRequest]:
        return self.sim.disconnects

    def script(self, *faults: Fault) -> None:
        self._call(self.sim.script, *faults)

    def clear(self) -> None:
        self._call(self.sim.clear)

    def reply_text(
        self,
        body: dict[str, Any] | RecordedRequest,
        protocol: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        return self._call(lambda: self.sim.reply_text(body, protocol, headers=headers))

    def wait_for_disconnect(self, count: int = 1, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator thread is not running")
        future = asyncio.run_coroutine_threadsafe(
            self.sim.wait_for_disconnect(count, timeout), loop
        )
        future.result(timeout=timeout + 5.0)
