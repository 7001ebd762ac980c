"""The engine: one request in, a stream of events out.

budget check → cache lookup → circuit breaker → provider stream under the retry policy →
cache on finish. The CLI, the GUI, the tests and the benchmarks all consume
:class:`Generation`, an async iterator of :mod:`desktop_app.core.events`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import logging
import os
import re
import time
import uuid
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote

import httpx
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from desktop_app.core.attachments import fit_request
from desktop_app.core.errors import (
    AuthError,
    BadRequest,
    CircuitOpenError,
    ConfigError,
    ConnectionFailed,
    ConnectionRefused,
    ConnectTimeout,
    CorruptStream,
    FirstTokenTimeout,
    NotFound,
    RateLimited,
    RateLimitTooLong,
    ReplyTooLarge,
    RillError,
    StreamStalled,
    WrongServer,
    final,
    human_seconds,
    scrub,
)
from desktop_app.core.events import (
    CacheHit,
    Cancelled,
    CircuitOpen,
    Failed,
    FallingBack,
    Finished,
    RateLimitWait,
    Restarted,
    Resumed,
    Retrying,
    Stage,
    StageChanged,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageUpdate,
)
from desktop_app.core.http import make_client
from desktop_app.core.providers import Provider, StreamParser, get_provider
from desktop_app.core.providers.base import UNPARSABLE, WHOLE_BODY, NoModelList
from desktop_app.core.redaction import register_secret
from desktop_app.core.resilience import (
    Backoff,
    Breakers,
    RateLimitGate,
    ResilienceSettings,
    retry_after_seconds,
)
from desktop_app.core.text import valid_text
from desktop_app.core.types import ChatRequest, GenerationResponse, Message, Timing, TokenUsage

if TYPE_CHECKING:
    from desktop_app.core.net import SocketStream

log = logging.getLogger("rill.engine")

KeyLookup = Callable[[ChatRequest], str | None]
Pricing = Callable[[str, str, TokenUsage | None], float | None]

_ERROR_BODY_LIMIT = 64 * 1024
_MODELS_BODY_LIMIT = 16 * 1000 * 1000
_MATTERING_HEADERS = ("retry-after", "retry-after-ms", "request-id", "x-request-id")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server says about itself (see :meth:`Engine.server_info`); None where it
    said nothing Rill could use."""

    server: str | None = None
    """The server software, when it named itself: ``Ollama``, ``llama.cpp``."""
    version: str | None = None
    """Its version or build, as it gave it (plain text, at most 40 characters)."""
    context_length: int | None = None
    """The model's context length in tokens: what the server runs it with where it says
    (llama.cpp, an Ollama ``num_ctx``), else the most the model takes."""

    def summary(self) -> str:
        """One line for people: ``Ollama 0.12.0 · context 8,192`` ("" when nothing)."""
        parts = [" ".join(p for p in (self.server, self.version) if p)]
        if self.context_length is not None:
            parts.append(f"context {self.context_length:,}")
        return " · ".join(p for p in parts if p)


SERVER_INFO_TIMEOUT_S = 5.0
"""The longest each question of :meth:`Engine.server_info` may take."""
_INFO_BODY_LIMIT = 1_000_000
_INFO_TEXT_LIMIT = 40
_MAX_CONTEXT = 1_000_000_000


class ResponseCacheLike(Protocol):
    async def get(self, key: str) -> GenerationResponse | None: ...

    async def put(self, key: str, response: GenerationResponse) -> bool: ...


def env_keys(request: ChatRequest) -> str | None:
    """API keys from the environment: one variable per provider."""
    env = get_provider(request.provider).key_env
    return os.environ.get(env) if env else None


class _UserCancel(Exception):
    """The user cancelled the generation (internal to the engine)."""


class Engine:
    """Long-lived: owns the shared HTTP client, the circuit breakers and the rate-limit gate."""

    def __init__(
        self,
        *,
        resilience: ResilienceSettings | None = None,
        api_key: KeyLookup = env_keys,
        cache: ResponseCacheLike | None = None,
        cache_key: Callable[[ChatRequest], str] | None = None,
        pricing: Pricing | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = resilience or ResilienceSettings()
        self.api_key = api_key
        self.cache = cache
        self.cache_key = cache_key
        self.pricing = pricing
        self.client = client or make_client(self.settings.connect_timeout_s)
        self.clock = clock
        self.breakers = Breakers(
            self.settings.failure_threshold, self.settings.recovery_timeout_s, clock
        )
        self.gate = RateLimitGate(clock)
        self.backoff = Backoff(self.settings)
        self.read_interval_s = 0.0
        """While a window shows the stream, the least time between two reads of a reply's
        body once its text has begun (a frame): what arrives meanwhile waits in the
        kernel's buffer and is read, decoded and shown at once. The reads before the first
        text, and a read after a longer silence, are never delayed. 0: read each piece as
        it arrives."""

    def apply_settings(self, settings: ResilienceSettings) -> None:
        """Use new resilience settings from the next attempt on. Circuit state is kept
        unless the breaker's own settings changed."""
        old = self.settings
        self.settings = settings
        self.backoff = Backoff(settings)
        if (old.failure_threshold, old.recovery_timeout_s) != (
            settings.failure_threshold,
            settings.recovery_timeout_s,
        ):
            self.breakers = Breakers(
                settings.failure_threshold, settings.recovery_timeout_s, self.clock
            )

    def timeout(self) -> httpx.Timeout:
        """Connect timeout from the settings; the engine times reads itself."""
        return httpx.Timeout(
            connect=self.settings.connect_timeout_s, read=None, write=60.0, pool=60.0
        )

    def stream(
        self,
        request: ChatRequest,
        *,
        fallbacks: Sequence[ChatRequest] = (),
        read_cache: bool = True,
        write_cache: bool = True,
    ) -> Generation:
        return Generation(self, request, fallbacks, read_cache, write_cache)

    async def complete(self, request: ChatRequest, **kwargs: Any) -> GenerationResponse:
        """Run a request to the end; return its response or raise its error."""
        async for event in self.stream(request, **kwargs):
            if isinstance(event, Finished):
                return event.response
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Cancelled):
                raise asyncio.CancelledError
        raise RuntimeError("the stream ended without a result")

    async def key_for(self, request: ChatRequest) -> str | None:
        """The API key for ``request``, looked up on a worker thread: a keychain may block
        (a D-Bus round trip, an unlock prompt), and the event loop may be the window's."""
        return await asyncio.to_thread(self.api_key, request)

    async def info_key(self, probe: ChatRequest) -> str | None:
        """The key for questions a server answers about itself (its version, a model's
        context): none for a server on this machine, which answers them without one, so
        such questions never open the keychain; the profile's key for any other."""
        return None if _is_loopback(probe.base_url) else await self.key_for(probe)

    async def list_models(
        self, provider_name: str, base_url: str, profile: str = "default"
    ) -> list[str]:
        """The models the server at ``base_url`` offers.

        A server on this machine (Ollama, LM Studio, llama.cpp) is asked without a key
        first, and again with the profile's key only if it refuses: listing a local
        server's models, as the window does when it starts, never opens the keychain for a
        key that such servers seldom need."""
        provider = get_provider(provider_name)
        probe = ChatRequest(
            provider=provider.name, base_url=base_url, model="", messages=(), profile=profile
        )
        if not _is_loopback(base_url):
            return await self._list_models(provider, probe, await self.key_for(probe))
        try:
            return await self._list_models(provider, probe, None)
        except AuthError:
            api_key = await self.key_for(probe)
            if not api_key:
                raise
        return await self._list_models(provider, probe, api_key)

    async def _list_models(
        self, provider: Provider, probe: ChatRequest, api_key: str | None
    ) -> list[str]:
        base_url = probe.base_url
        profile = probe.profile
        headers = provider.headers(api_key)
        headers["Accept"] = "application/json"
        url = provider.models_url(base_url)
        server = _server(provider.title, url)
        try:
            try:
                built = self.client.build_request(
                    "GET", url, headers=headers, timeout=self.settings.connect_timeout_s + 20
                )
            except httpx.InvalidURL as exc:
                raise _bad_url(url, exc) from None
            except (ValueError, TypeError):
                raise ConfigError(
                    f"The request to {server} could not be made: the API key or a header "
                    "holds characters HTTP cannot carry.",
                    action="Check the API key in Settings for stray characters.",
                ) from None
            try:
                response = await self.client.send(built, stream=True)
            except ExceptionGroup as group:
                raise _from_group(group, url, provider.title, profile) from None
            try:
                if response.status_code >= 400:
                    content = await _read_head(response, provider.title, _ERROR_BODY_LIMIT)
                    error = provider.parse_error(response.status_code, content, profile=profile)
                    if response.status_code in (404, 405):
                        error = _no_model_list(provider, base_url, url, error)
                    raise error
                if 300 <= response.status_code < 400:
                    raise _redirected(response, url, provider.title)
                content = await _read_all(response, provider.title, _MODELS_BODY_LIMIT)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise final(
                scrub(
                    _map_transport_error(
                        exc, url, provider.title, has_output=False, profile=profile
                    ),
                    (api_key,),
                )
            ) from None
        except RillError as exc:
            raise final(scrub(exc, (api_key,))) from None
        try:
            body = json.loads(content)
        except UNPARSABLE:
            raise scrub(
                WrongServer(
                    f"{_upper_first(server)} answered the list of models with "
                    f"{_what_came_back(content, response.headers.get('content-type', ''))}.",
                    action="Check the base URL and the provider.",
                ),
                (api_key,),
            ) from None
        try:
            return [valid_text(name) for name in provider.parse_models(body)]
        except UNPARSABLE as exc:
            missing = f" without a '{exc.field}' list" if isinstance(exc, NoModelList) else ""
            raise scrub(
                WrongServer(
                    f"{_upper_first(server)} answered the list of models{missing}: "
                    f"{_quote(content)}",
                    action="Check the base URL and the provider.",
                ),
                (api_key,),
            ) from exc

    async def server_info(
        self,
        provider_name: str,
        base_url: str,
        profile: str = "default",
        *,
        model: str = "",
        timeout_s: float = SERVER_INFO_TIMEOUT_S,
    ) -> ServerInfo:
        """What the server at ``base_url`` says about itself and about ``model``.

        Ollama: its version (``/api/version``) and the model's context (``/api/show``: a
        ``num_ctx`` parameter, else ``<arch>.context_length``). An OpenAI-compatible
        server that is llama.cpp: its build and the context it runs with (``/props``, else
        ``/v1/models``). Gemini: the model's input token limit. Other servers say nothing.

        Each question is one short request (``timeout_s``) with a bounded answer; whatever
        goes wrong only leaves that part None: this never raises for the server's sake.
        """
        provider = get_provider(provider_name)
        probe = ChatRequest(
            provider=provider.name, base_url=base_url, model=model, messages=(), profile=profile
        )
        headers = provider.headers(await self.info_key(probe))
        headers["Accept"] = "application/json"
        ask = _InfoAsker(self.client, headers, timeout_s, provider.title)
        root = base_url.rstrip("/")
        if provider.name == "ollama":
            version = _info_text(_field(await ask.get(root + "/api/version"), "version"))
            context = None
            if model:
                shown = await ask.post(root + "/api/show", {"model": model})
                context = _ollama_context(shown)
            return ServerInfo("Ollama" if version else None, version, context)
        if provider.name == "openai":
            props = await ask.get(root.removesuffix("/v1") + "/props")
            build = _info_text(_field(props, "build_info"))
            if build is None and not isinstance(_field(props, "default_generation_settings"), dict):
                return ServerInfo()
            context = _count(_field(_field(props, "default_generation_settings"), "n_ctx"))
            if context is None:
                listed = _field(await ask.get(root + "/v1/models"), "data")
                for entry in listed if isinstance(listed, list) else ():
                    if not model or _field(entry, "id") == model:
                        context = listed_context(entry)
                        break
            return ServerInfo("llama.cpp", build, context)
        if provider.name == "gemini" and model:
            name = model.removeprefix("models/")
            url = provider.join_url(base_url, "/v1beta/models/" + quote(name, safe="-._~"))
            return ServerInfo(context_length=_count(_field(await ask.get(url), "inputTokenLimit")))
        return ServerInfo()

    async def aclose(self) -> None:
        await self.client.aclose()


class Generation:
    """One reply being generated: iterate it for events; ``cancel()`` stops it at once.

    Cancelling closes the HTTP response (the server sees the disconnect), interrupts any
    backoff wait, and ends the stream with a :class:`Cancelled` event holding the partial
    text. Cancelling the consuming task also closes the response.
    """

    def __init__(
        self,
        engine: Engine,
        request: ChatRequest,
        fallbacks: Sequence[ChatRequest],
        read_cache: bool,
        write_cache: bool,
    ) -> None:
        self.engine = engine
        self.request = request
        self.fallbacks = tuple(fallbacks)
        self.read_cache = read_cache
        self.write_cache = write_cache
        self.trace_id = uuid.uuid4().hex
        self.cancelled = False
        self._task: asyncio.Task[Any] | None = None
        self._reading = False
        self._interrupt: str | None = None
        self._wake: asyncio.Event | None = None
        self._shown: list[str] = []
        self._started = 0.0

    @property
    def partial(self) -> str:
        """The text given to the consumer for the answer now in progress."""
        return "".join(self._shown)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        if self._wake is not None:
            self._wake.set()
        if self._reading and self._task is not None and self._interrupt is None:
            self._interrupt = "cancel"
            self._task.cancel()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    # -- the reply -------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[StreamEvent]:
        self._task = asyncio.current_task()
        self._wake = asyncio.Event()
        self._started = time.perf_counter()
        engine = self.engine
        try:
            if self.cancelled:
                raise _UserCancel
            key = engine.cache_key(self.request) if engine.cache and engine.cache_key else None
            if key is not None and self.read_cache and engine.cache is not None:
                hit = await engine.cache.get(key)
                if hit is not None:
                    for event in self._replay(key, hit):
                        yield event
                    return
            candidates = (self.request, *self.fallbacks)
            error: RillError | None = None
            for index, request in enumerate(candidates):
                if index > 0:
                    assert error is not None
                    previous = candidates[index - 1]
                    log.warning(
                        "falling back from %s to %s: %s",
                        _loggable(previous.model),
                        _loggable(request.model),
                        _loggable(error.message),
                    )
                    yield FallingBack(
                        previous.model,
                        request.model,
                        request.profile if request.profile != previous.profile else None,
                        error.message,
                    )
                    if self._shown:
                        yield Restarted(error.message, self.partial)
                        self._shown = []
                try:
                    async for event in self._attempts(request):
                        yield event
                    return
                except (CircuitOpenError, RateLimitTooLong, ConnectionRefused) as exc:
                    error = exc
                except RillError as exc:
                    if not exc.retryable:
                        raise
                    error = exc
            assert error is not None
            raise error
        except _UserCancel:
            yield Cancelled(self.partial)
        except RillError as exc:
            failure = final(exc)
            log.error("reply failed: %s", _loggable(failure.message))
            yield Failed(failure, self.partial)
        except Exception as exc:  # nothing a server sends may end a turn without a sentence
            log.error("unexpected %s while generating", type(exc).__name__)
            yield Failed(
                RillError(
                    "Rill could not finish this reply because of an unexpected problem.",
                    action="Try again; if it keeps happening, report it.",
                    detail=type(exc).__name__,
                ),
                self.partial,
            )

    def _replay(self, key: str, hit: GenerationResponse) -> list[StreamEvent]:
        elapsed = time.perf_counter() - self._started
        response = GenerationResponse(
            content=hit.content,
            model=hit.model,
            provider=hit.provider,
            usage=hit.usage,
            finish_reason=hit.finish_reason,
            raw_finish_reason=hit.raw_finish_reason,
            trace_id=self.trace_id,
            timing=Timing(ttft_s=elapsed, total_s=elapsed),
            tool_calls=hit.tool_calls,
            cost=hit.cost,
            cached=True,
        )
        events: list[StreamEvent] = [CacheHit(key)]
        if hit.content:
            events.append(TextDelta(hit.content))
        for i, tc in enumerate(hit.tool_calls):
            events.append(ToolCallDelta(i, tc.id, tc.name, tc.arguments))
        if hit.usage is not None:
            events.append(UsageUpdate(hit.usage))
        events.append(Finished(response))
        return events

    async def _attempts(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The retry loop around one endpoint, with the attempt itself inlined (hot path)."""
        engine = self.engine
        settings = engine.settings
        provider = get_provider(request.provider)
        api_key = await engine.key_for(request)
        register_secret(api_key)  # every log line masks it
        check_key(provider, request, api_key)
        url = provider.url(request)
        headers = provider.headers(api_key, stream=request.stream)
        body = await _encoded(provider, request)
        server = _server(provider.title, url)
        breaker = engine.breakers.get(request.endpoint)
        timeout = engine.timeout()
        gate_key = f"{request.provider}|{request.base_url}"
        loop = asyncio.get_running_loop()
        attempt = 1
        kept = ""  # text kept from an interrupted attempt in "continue" mode
        skip_ws = 0
        while True:
            if self.cancelled:
                raise _UserCancel
            if not breaker.acquire():
                now = engine.clock()
                log.warning(
                    "the circuit of %s (%s) is open for %s more: not asking it",
                    server,
                    _loggable(request.model),
                    human_seconds(max(0.0, breaker.until - now)),
                )
                yield CircuitOpen(request.endpoint, breaker.until)
                raise CircuitOpenError(request.endpoint, breaker.until, now)
            hold = engine.gate.hold_until(gate_key)
            if hold is not None:
                delay = hold - engine.clock()
                log.info("waiting %s for the rate limit of %s", human_seconds(delay), server)
                yield RateLimitWait(hold, delay, "The rate limit is used up until it resets.")
                await self._sleep(delay)
            parser = provider.parser(request)
            parser.max_chars = settings.max_reply_chars - len(kept)
            yield StageChanged(Stage.CONNECTING, attempt)
            t0 = loop.time()
            watchdog = _Watchdog(
                self, loop, t0 + settings.first_token_timeout_s, settings.idle_timeout_s
            )
            response: httpx.Response | None = None
            reader: _FrameReader | None = None
            paced: SocketStream | None = None
            first = True
            ttft: float | None = None
            try:
                try:
                    http_request = _build_request(
                        engine.client, url, body, headers, timeout, server
                    )
                    self._reading = True
                    try:
                        response = await engine.client.send(http_request, stream=True)
                    except ExceptionGroup as group:
                        raise _from_group(group, url, provider.title, request.profile) from None
                    finally:
                        self._reading = False
                    engine.gate.observe(gate_key, response.headers)
                    if log.isEnabledFor(logging.DEBUG):
                        _log_response(request, attempt, response, loop.time() - t0)
                    if response.status_code >= 400:
                        raise await self._error_from(provider, request, response)
                    if 300 <= response.status_code < 400:
                        raise _redirected(response, url, provider.title)
                    yield StageChanged(Stage.WAITING, attempt)
                    reader = _FrameReader(
                        provider, response, settings, request=request, server=server
                    )
                    pieces = reader.pieces
                    next_piece = pieces.__anext__
                    feed = parser.feed
                    shown = self._shown
                    at_end = False
                    from desktop_app.core.net import SocketStream  # loaded with the client

                    connection = response.extensions.get("network_stream")
                    if isinstance(connection, SocketStream):
                        paced = connection
                    now = loop.time()
                    pause_at = now + _YIELD_EVERY_S
                    while not at_end:
                        if self.cancelled:
                            raise _UserCancel
                        self._reading = True
                        try:
                            frames = reader.decode(await next_piece())
                        except StopAsyncIteration:
                            frames = reader.finish()
                            at_end = True
                        finally:
                            self._reading = False
                        now = watchdog.last = loop.time()
                        if now >= pause_at:
                            # a body that is always there (a fast server, a decompressing
                            # one) must still let a cancel and the rest of the app run
                            pause_at = now + _YIELD_EVERY_S
                            await asyncio.sleep(0)
                        texts: list[str] = []  # the text of this read: one delta
                        broken: Exception | None = None
                        for event_name, data in frames:
                            try:
                                events = feed(event_name, data)
                            except Exception as exc:  # after the text that came before it
                                broken = exc
                                break
                            for event in events:
                                if first and (
                                    type(event) is TextDelta or type(event) is ToolCallDelta
                                ):
                                    first = False
                                    if paced is not None and engine.read_interval_s:
                                        # from now on what arrives within a frame is read
                                        # at once (the first text was shown at once)
                                        paced.pace(engine.read_interval_s)
                                    if not watchdog.streaming:
                                        watchdog.start_streaming()
                                    ttft = time.perf_counter() - self._started
                                    yield StageChanged(Stage.STREAMING, attempt)
                                if type(event) is TextDelta:
                                    if skip_ws:
                                        event, skip_ws = _skip_leading_space(event, skip_ws)
                                        if not event.text:
                                            continue
                                    texts.append(event.text)
                                    continue
                                if texts:
                                    text = "".join(texts)
                                    shown.append(text)
                                    yield TextDelta(text, len(texts))
                                    texts = []
                                yield event
                            if self.cancelled:
                                raise _UserCancel
                        if texts:
                            text = "".join(texts)
                            shown.append(text)
                            yield TextDelta(text, len(texts))
                        if broken is not None:
                            raise broken
                        if parser.begun and not watchdog.streaming:
                            # the content began (a block, a role chunk, a candidate): a
                            # silence from now on is a stall, not a wait for the first token
                            watchdog.start_streaming()
                    for event in parser.end():  # text held back until the end, if any
                        if first:
                            first = False
                            ttft = time.perf_counter() - self._started
                            yield StageChanged(Stage.STREAMING, attempt)
                        if type(event) is TextDelta:
                            shown.append(event.text)
                        yield event
                finally:
                    watchdog.stop()
                    if paced is not None:
                        paced.pace(0)  # the connection goes back to the pool
                    if reader is not None:
                        await reader.aclose()
                    if response is not None:
                        await response.aclose()
            except asyncio.CancelledError:
                kind = self._interrupt
                task = self._task
                if kind is None or task is None or task.uncancel() > 0:
                    breaker.release()
                    raise
                self._interrupt = None
                if kind == "cancel":
                    breaker.release()
                    raise _UserCancel from None
                error: RillError = (
                    FirstTokenTimeout(
                        f"No answer came within {human_seconds(settings.first_token_timeout_s)}.",
                        action="Rill tries again.",
                    )
                    if kind == "first_token"
                    else StreamStalled(
                        f"The stream stalled: nothing arrived for "
                        f"{human_seconds(settings.idle_timeout_s)}.",
                        action="Rill tries again.",
                    )
                )
            except httpx.HTTPError as exc:
                error = _map_transport_error(
                    exc,
                    url,
                    provider.title,
                    has_output=parser.has_output,
                    profile=request.profile,
                )
            except RillError as exc:
                error = exc
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.success()
                finished = self._finished(request, parser, kept, ttft)
                usage = finished.response.usage
                if usage is not None and usage.estimated:
                    yield UsageUpdate(usage)
                if self.write_cache and engine.cache is not None and engine.cache_key is not None:
                    await engine.cache.put(engine.cache_key(request), finished.response)
                yield finished
                return

            # the attempt failed -----------------------------------------------------------
            scrub(error, (api_key,))
            if error.counts_for_breaker:
                breaker.failure()
            else:
                breaker.release()
            log.warning(
                "attempt %d of %d to %s (%s) failed: %s%s",
                attempt,
                settings.max_attempts,
                server,
                _loggable(request.model),
                _loggable(error.message),
                f" [{_loggable(error.detail)}]" if error.detail else "",
            )
            if not error.retryable or attempt >= settings.max_attempts:
                raise error
            if isinstance(error, CorruptStream) and attempt >= 2:
                raise error  # a server that sent it twice is likely to send it again
            if self._shown and settings.mid_stream == "off":
                raise error
            delay = engine.backoff.delay(attempt)
            if isinstance(error, RateLimited) and error.retry_after_s is not None:
                wait = error.retry_after_s
                if wait > settings.max_rate_limit_wait_s:
                    if not settings.wait_on_rate_limit:
                        raise RateLimitTooLong(
                            f"The {provider.title} server asked to wait {human_seconds(wait)}, "
                            f"longer than the {human_seconds(settings.max_rate_limit_wait_s)} "
                            "Rill waits by itself.",
                            action="Try again later, or allow longer waits in Settings.",
                            status=429,
                        )
                    until = engine.clock() + wait
                    yield RateLimitWait(until, wait, error.message)
                    await self._sleep(wait)
                    delay = 0.0
                else:
                    delay = wait
            log.info(
                "retrying %s in %s (attempt %d of %d)",
                server,
                human_seconds(delay),
                attempt + 1,
                settings.max_attempts,
            )
            if delay > 0:
                yield Retrying(attempt + 1, settings.max_attempts, delay, error.message)
                await self._sleep(delay)
            else:
                yield Retrying(attempt + 1, settings.max_attempts, 0.0, error.message)
            attempt += 1
            if self._shown:
                partial = self.partial
                if settings.mid_stream == "continue" and (
                    provider.accepts_prefill or _accepts_prefill(request)
                ):
                    kept = partial
                    prefill = partial.rstrip()
                    skip_ws = len(partial) - len(prefill)
                    request = _with_prefill(request, prefill)
                    body = await _encoded(provider, request)
                    yield Resumed(error.message, partial)
                else:
                    kept = ""
                    self._shown = []
                    yield Restarted(error.message, partial)

    async def _sleep(self, seconds: float) -> None:
        """A wait that a cancel interrupts at once."""
        assert self._wake is not None
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
        if self.cancelled:
            raise _UserCancel

    async def _error_from(
        self, provider: Provider, request: ChatRequest, response: httpx.Response
    ) -> RillError:
        content = await _read_head(response, provider.title, _ERROR_BODY_LIMIT)
        error = provider.parse_error(
            response.status_code,
            content,
            profile=request.profile,
            retry_after_s=retry_after_seconds(response.headers),
        )
        if isinstance(error, NotFound):
            hint = _v1_hint(provider, request.base_url)
            if hint:
                error.action = hint
        if _NO_IMAGES.search(f"{error.message} {error.detail}") and any(
            a.kind == "image" for m in request.messages for a in m.attachments
        ):
            # sending the same images again cannot help: said once, not retried
            return BadRequest(
                f"The model {_printable(request.model, 120)} cannot read images. {error.message}",
                action="Choose a model that can, or send the message without its images.",
                status=error.status,
                detail=error.detail,
            )
        return error

    def _finished(
        self, request: ChatRequest, parser: StreamParser, kept: str, ttft: float | None
    ) -> Finished:
        engine = self.engine
        content = kept + parser.text if kept else parser.text
        usage = parser.usage
        if usage is None or (usage.total_tokens == 0 and (content or parser.has_output)):
            # the server said nothing of what the reply used: estimate it from the text
            usage = TokenUsage.estimate(request, content, parser.tool_calls)
        cost = engine.pricing(request.provider, parser.model, usage) if engine.pricing else None
        response = GenerationResponse(
            content=content,
            model=parser.model,
            provider=request.provider,
            usage=usage,
            finish_reason=parser.finish_reason,
            raw_finish_reason=parser.raw_finish,
            trace_id=self.trace_id,
            timing=Timing(ttft_s=ttft, total_s=time.perf_counter() - self._started),
            tool_calls=parser.tool_calls,
            cost=cost,
        )
        return Finished(response)


class _Watchdog:
    """Times the first token and the gaps between chunks at almost no cost per chunk.

    One timer; each chunk only records the time. When the timer fires it either re-arms for
    the new deadline or, if the stream is waiting on the network past its deadline,
    interrupts the read.
    """

    def __init__(
        self, gen: Generation, loop: asyncio.AbstractEventLoop, first_deadline: float, idle: float
    ) -> None:
        self.gen = gen
        self.loop = loop
        self.first_deadline = first_deadline
        self.idle = idle
        self.last = loop.time()
        self.streaming = False
        self.handle: asyncio.TimerHandle | None = loop.call_at(first_deadline, self._check)

    def start_streaming(self) -> None:
        """The first token came: from now on only the gaps between chunks are timed."""
        self.streaming = True
        if self.handle is not None:
            self.handle.cancel()
            self.handle = self.loop.call_at(self.last + self.idle, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        due = self.last + self.idle if self.streaming else self.first_deadline
        if now < due:
            self.handle = self.loop.call_at(due, self._check)
            return
        gen = self.gen
        if not gen._reading or gen._task is None or gen._interrupt is not None:
            # the consumer is busy with the last chunk: that is not the server stalling
            self.last = now
            self.handle = self.loop.call_at(now + self.idle, self._check)
            return
        gen._interrupt = "idle" if self.streaming else "first_token"
        gen._task.cancel()
        self.handle = None

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


_PIECE = 256 * 1024
"""The most decoded bytes handled between two chances for the event loop to run."""
_YIELD_EVERY_S = 0.004
"""How long the read loop may keep the event loop busy before letting it run."""


class _Body:
    """An answer's body as it arrives, decoded: ``pieces`` yields its bytes.

    Decompression is Rill's own (``gzip`` and ``deflate``, in pieces of at most
    :data:`_PIECE` bytes), so a small compressed body cannot expand into one huge piece.
    Readers count what they take against ``limit`` and end with ``over_limit()`` past it.
    """

    def __init__(self, response: httpx.Response, provider: str, limit: int) -> None:
        self.provider = provider
        self.limit = limit
        encoding = response.headers.get("content-encoding", "").strip().lower()
        raw = cast(AsyncGenerator[bytes], response.aiter_raw())
        self._zlib: Any = None
        self.pieces: AsyncGenerator[bytes]
        if encoding in ("", "identity"):
            self.pieces = raw
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(47)  # a gzip or zlib header, whichever it is
            self._raw_deflate = encoding == "deflate"
            self.pieces = self._inflated(raw)
        else:
            raise CorruptStream(
                f"The {provider} server sent its answer in the '{_printable(encoding, 40)}' "
                "encoding, which Rill does not read.",
                action="Check the server or a proxy in between.",
            )

    def over_limit(self) -> RillError:
        return ReplyTooLarge(
            f"The {self.provider} server's answer passed {_mb(self.limit)}, more than any "
            "reply Rill keeps, so Rill stopped reading it; the text that arrived is kept.",
            action="Check the server.",
        )

    async def _inflated(self, raw: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        try:
            async for data in raw:
                for piece in self._inflate(data):
                    yield piece
            tail = self._zlib.flush()
            if tail:
                yield tail
        finally:
            await raw.aclose()

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        try:
            while data:
                d = self._zlib
                try:
                    out = d.decompress(data, _PIECE)
                except zlib.error:
                    if not self._raw_deflate:
                        raise
                    # "deflate" that is raw deflate, without the zlib header
                    self._raw_deflate = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                self._raw_deflate = False
                if out:
                    yield out
                while d.unconsumed_tail or len(out) == _PIECE:
                    out = d.decompress(d.unconsumed_tail, _PIECE)
                    if not out:
                        break
                    yield out
                data = b""
                if d.eof and d.unused_data:  # another gzip member follows
                    data = d.unused_data
                    self._zlib = zlib.decompressobj(47)
        except zlib.error as exc:
            raise CorruptStream(
                f"The {self.provider} server's compressed answer could not be decoded.",
                action="Rill tries again.",
            ) from exc


class _SSELines(SSELineDecoder):
    """httpx-sse's line decoder, copying a long ``data`` line once instead of four times.

    A line that comes in many pieces is kept as a list of them. The library joins the list
    and then adds the piece that ends the line, a second copy of the whole line; here that
    piece goes into the list first, so the join is the only copy. And when such a line is
    a ``data`` field, its name is taken off its first piece as soon as the line begins: the
    join then gives the field's value itself, which the field reader would otherwise copy
    out of the line (and copy again to drop the one space after the colon).
    :attr:`value_first` says that the first line :meth:`decode` (or :meth:`flush`) returned
    is such a value, for :meth:`_SSEEvents.data`. For a 16 MB event, the largest Rill
    reads by default, that is three fewer copies of 16 MB."""

    def __init__(self) -> None:
        super().__init__()
        self.value_first = False
        self._value = False  # the line being read is a data field's value, its name off

    def decode(self, text: str) -> list[str]:
        if self.buffer and not self.trailing_cr:  # a line goes on; text may end it
            end = _line_end(text)
            if end > 0:
                self.buffer.append(text[:end])
                text = text[end:]
        went_on = self._value
        lines = super().decode(text)
        self.value_first = went_on and bool(lines)
        if self.value_first:
            self._value = False
        if len(self.buffer) == 1 and not self._value:  # a line has begun and not ended
            self._value = self._take_name()
        return lines

    def _take_name(self) -> bool:
        """Take ``data:`` and the space after it off the line just begun, if it is one."""
        first = self.buffer[0]
        if first.startswith("data: "):
            self.buffer[0] = first[6:]
        elif first.startswith("data:") and len(first) > 5:  # the next piece may be a space
            self.buffer[0] = first[5:]
        else:
            return False
        return True

    def flush(self) -> list[str]:
        self.value_first, self._value = self._value and bool(self.buffer), False
        return super().flush()


class _SSEEvents(SSEDecoder):
    """httpx-sse's field reader, also taking a ``data`` value read without its name, and
    ending an event without making the library's event object.

    Every event of a stream is a ``data`` line and a blank line (OpenAI's, Gemini's), or an
    ``event`` line before them (Anthropic's): the data line is taken by :meth:`data` and
    the blank line by :meth:`end`, which do what :meth:`decode` does for those two lines
    with a method call less and no :class:`ServerSentEvent` per event. Every other line
    (a comment, ``event``, ``id``, ``retry``, a field without its space) is the library's
    to read."""

    def data(self, value: str) -> None:
        """Add the value of a ``data`` field (see :attr:`_SSELines.value_first`)."""
        self._data.append(value)

    def end(self) -> tuple[str, str] | None:
        """The blank line: the event's name and data, or None for an event without data
        (which is no event). The state is left as :meth:`decode` leaves it."""
        data = self._data
        if not data:
            self.decode("")
            return None
        event = self._event or "message"
        self._event = ""
        self._data = []
        self._retry = None
        value = data[0] if len(data) == 1 else "\n".join(data)
        return (event, value) if value else None


def _line_end(text: str) -> int:
    """Where the first line break in ``text`` is, or -1 (``str.find`` scans at memory
    speed; a regular expression looks at each character)."""
    lf = text.find("\n")
    cr = text.find("\r", 0, lf if lf >= 0 else len(text))
    return cr if cr >= 0 else lf


class _FrameReader:
    """Splits a response body into frames, one decoded piece at a time.

    SSE bodies give (event name, data) pairs; NDJSON bodies give ("", line), split on
    ``\\n`` only; a whole JSON answer gives one (:data:`WHOLE_BODY`, text) at the end. The
    engine awaits each piece itself and decodes all the frames it holds in a plain loop, so
    the cost per frame stays a function call, not an await. One event or line may hold at
    most ``max_event`` characters, and the whole body ``max_body`` decoded bytes; past
    either the reply ends with :class:`ReplyTooLarge`.

    The body decides how it is read unless its Content-Type says what it is: servers send
    event streams as ``text/plain``, ``application/octet-stream`` or with no type at all,
    and errors as JSON with 200. Its first bytes tell: SSE fields are an event stream, a
    JSON object or array is a whole answer (or an error) or, for NDJSON, the first line;
    anything else (an HTML page, text) is :class:`WrongServer`, saying what came back.
    """

    def __init__(
        self,
        provider: Provider,
        response: httpx.Response,
        settings: ResilienceSettings,
        *,
        request: ChatRequest | None = None,
        server: str = "",
    ) -> None:
        self.provider = provider.title
        self.server = server or f"the {provider.title} server"
        self.profile = request.profile if request is not None else "default"
        self.framing = provider.framing
        self.stream = request.stream if request is not None else True
        self.max_event = settings.max_event_bytes
        self.content_type = response.headers.get("content-type", "")
        self.body = _Body(response, provider.title, settings.max_body_bytes)
        self.pieces = self.body.pieces
        self._size = 0  # decoded bytes of the body so far
        self._max_body = settings.max_body_bytes
        self.mode = ""
        # the decoder as a plain function, not a method bound to the reader, so the reader
        # (and the response and socket it holds) is freed when the reply ends, not at the
        # garbage collector's next full pass
        self._decoder: Callable[[_FrameReader, Any], list[tuple[str, str]]]
        self._decoder = _FrameReader._decode_first
        self._head = b""  # the first bytes, until they tell what the body is
        kind = self.content_type.lower()
        if "text/event-stream" in kind and (self.framing == "sse" or not self.stream):
            self._start("sse")
        elif "ndjson" in kind and self.framing == "ndjson" and self.stream:
            self._start("ndjson")

    def _start(self, mode: str) -> None:
        self.mode = mode
        if mode == "sse":
            self._utf8 = codecs.getincrementaldecoder("utf-8")("replace").decode
            self._lines = _SSELines()
            self._events = _SSEEvents()
            self._event_size = 0  # characters of the event being read, lines complete
            self._line_size = 0  # characters of the line being read
            self._decoder = _FrameReader._decode_sse
        elif mode == "ndjson":
            self._parts: list[bytes] = []
            self._pending = 0
            self._decoder = _FrameReader._decode_ndjson
        else:
            self._whole: list[bytes] = []
            self._decoder = _FrameReader._decode_whole

    def decode(self, piece: bytes) -> list[tuple[str, str]]:
        """The frames ``piece`` completes (see the class)."""
        return self._decoder(self, piece)

    def _decode_first(self, piece: bytes) -> list[tuple[str, str]]:
        """Hold the first bytes until they tell how to read the body, then read it so."""
        head = self._head + piece
        mode = _body_kind(head, at_end=False)
        if mode is None:
            if len(head) > _SNIFF_LIMIT:
                mode = "other"
            else:
                self._head = head
                return []
        self._head = b""
        self._choose(mode, head)
        return self.decode(head)

    def _choose(self, kind: str, head: bytes) -> None:
        if kind == "sse" and self.framing == "sse":
            self._start("sse")
        elif kind == "json" and self.framing == "ndjson" and self.stream:
            self._start("ndjson")
        elif kind == "json":
            self._start("whole")
        else:
            raise self.wrong_server(head)

    def wrong_server(self, head: bytes) -> WrongServer:
        expected = "an event stream" if self.stream else "a JSON answer"
        return WrongServer(
            f"{_upper_first(self.server)} answered with "
            f"{_what_came_back(head, self.content_type)} instead of {expected}: this address "
            f"does not serve the {self.provider} API.",
            action=f"Check the base URL and the provider of profile '{self.profile}'.",
        )

    def _decode_whole(self, piece: bytes) -> list[tuple[str, str]]:
        self._size += len(piece)
        if self._size > self.max_event:
            raise self.too_large()
        self._whole.append(piece)
        return []

    def too_large(self) -> ReplyTooLarge:
        return ReplyTooLarge(
            f"The {self.provider} server sent one event larger than {_mb(self.max_event)}, "
            "more than Rill reads, so the reply was stopped; the text that arrived is kept.",
            action="Check the server.",
        )

    def _decode_sse(self, piece: bytes) -> list[tuple[str, str]]:
        self._size += len(piece)
        if self._size > self._max_body:
            raise self.body.over_limit()
        text = self._utf8(piece)
        return self._sse_lines(text) if text else []

    def _sse_lines(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        decode = self._events.decode
        lines = self._lines.decode(text)
        if not lines:
            self._line_size += len(text)
        else:
            size = self._event_size  # the partial line is now the first of ``lines``
            if self._lines.value_first:
                value = lines[0]
                size += len(value)
                self._events.data(value)
                del lines[0]
            events = self._events
            for line in lines:
                if line:
                    size += len(line)
                    if line.startswith("data: "):
                        events.data(line[6:])
                    else:
                        decode(line)
                    if size > self.max_event:
                        raise self.too_large()
                else:
                    size = 0
                    event = events.end()
                    if event is not None:
                        out.append(event)
            self._event_size = size
            rest = self._lines.buffer
            self._line_size = len(rest[0]) if rest else 0
        if self._event_size + self._line_size > self.max_event:
            raise self.too_large()
        return out

    def _decode_ndjson(self, piece: bytes) -> list[tuple[str, str]]:
        self._size += len(piece)
        if self._size > self._max_body:
            raise self.body.over_limit()
        if b"\n" not in piece:
            self._parts.append(piece)
            self._pending += len(piece)
            if self._pending > self.max_event:
                raise self.too_large()
            return []
        lines: list[bytes] = []
        if self._parts:
            # the line that goes on ends in this piece: joined once (not joined and split,
            # which copies a long line twice)
            head, _, piece = piece.partition(b"\n")
            lines.append(b"".join([*self._parts, head]))
        *complete, rest = piece.split(b"\n")
        lines += complete
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        if self._pending > self.max_event:
            raise self.too_large()
        provider = self.provider
        return [("", _decode_line(raw, provider)) for raw in lines if raw.strip()]

    def finish(self) -> list[tuple[str, str]]:
        """The frames left at the end of the body."""
        if not self.mode:
            head, self._head = self._head, b""
            kind = _body_kind(head, at_end=True)
            if kind is None:  # no body, or only white space: no frames at all
                return []
            self._choose(kind, head)
            return [*self.decode(head), *self.finish()]
        if self.mode == "whole":
            text = b"".join(self._whole).decode("utf-8", "replace")
            self._whole = []
            return [(WHOLE_BODY, text)] if text.strip() else []
        if self.mode == "ndjson":
            rest = b"".join(self._parts)
            self._parts = []
            return [("", _decode_line(rest, self.provider))] if rest.strip() else []
        left = self._utf8(b"", True)
        out: list[tuple[str, str]] = self._sse_lines(left) if left else []
        # A last line that ended with a newline counts even when the blank line closing its
        # event never came: the event is whole. A line cut short does not.
        ended_with_cr = self._lines.trailing_cr
        tail = self._lines.flush()
        if ended_with_cr or not tail:
            if self._lines.value_first:
                self._events.data(tail.pop(0))
            for line in [*tail, ""]:
                sse = self._events.decode(line)
                if sse is not None and sse.data:
                    out.append((sse.event, sse.data))
        return out

    async def aclose(self) -> None:
        await self.pieces.aclose()


_NO_IMAGES = re.compile(
    r"image input is not supported|(does ?n[o']t|not) support(s|ed)? (image|vision)"
    r"|images? (are|is) not supported|image_url is only supported|mmproj",
    re.IGNORECASE,
)
"""What servers say when the model takes no images (llama.cpp without a projector, Ollama's
text models, OpenAI's text models)."""


async def _encoded(provider: Provider, request: ChatRequest) -> bytes:
    """The body of ``request``; with files, fitted to what ``provider`` takes and encoded
    on a worker thread (CPU work that would stall the event loop)."""
    if any(m.attachments for m in request.messages):
        return await asyncio.to_thread(_prepared_body, provider, request)
    return provider.encode_body(request)


def _prepared_body(provider: Provider, request: ChatRequest) -> bytes:
    """The body of ``request`` with its files fitted to what ``provider`` takes."""
    return provider.encode_body(fit_request(request, provider.name))


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.3g} MB"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _printable(text: str, limit: int) -> str:
    """Text from a server, safe to put in a sentence: no control characters, clipped."""
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _read_head(response: httpx.Response, provider: str, limit: int) -> bytes:
    """At most the first ``limit`` bytes of a body (an error answer's, say)."""
    content = bytearray()
    pieces = _Body(response, provider, limit).pieces
    try:
        async for piece in pieces:
            content += piece
            if len(content) >= limit:
                break
    finally:
        await pieces.aclose()
    return bytes(content[:limit])


async def _read_all(response: httpx.Response, provider: str, limit: int) -> bytes:
    """A whole body, or :class:`ReplyTooLarge` once it passes ``limit`` bytes."""
    content = bytearray()
    body = _Body(response, provider, limit)
    pieces = body.pieces
    try:
        async for piece in pieces:
            content += piece
            if len(content) > limit:
                raise body.over_limit()
    finally:
        await pieces.aclose()
    return bytes(content)


def _decode_line(line: bytes, provider: str) -> str:
    try:
        return line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise CorruptStream(
            f"The {provider} server sent a line that is not UTF-8.",
            action="Rill tries again.",
        ) from exc


_SNIFF_LIMIT = 64 * 1024
"""The most leading bytes held to tell what a body is (white space, an HTML head)."""
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


def _body_kind(head: bytes, *, at_end: bool) -> str | None:
    """What a body's first bytes are: ``sse``, ``json``, ``html`` or ``other``; None when
    more bytes are needed (or, at the end, when the body is empty)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        return None
    if text[:1] in (b"{", b"["):
        return "json"
    if text.startswith(_SSE_FIELDS):
        return "sse"
    if not at_end and any(f.startswith(text) for f in _SSE_FIELDS):
        return None  # the start of a field name, cut by the network
    if text[:1] == b"<":
        if at_end or len(text) >= 4096 or b"</title>" in text.lower():
            return "html"
        return None
    return "other" if at_end or len(text) >= 200 else None


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _what_came_back(content: bytes, content_type: str) -> str:
    """A few words on an answer that is not what was asked for: kind, title or first text,
    and its content type."""
    kind = f" ({_printable(content_type, 80)})" if content_type else " (no content type)"
    if not content.strip():
        return "an empty answer" + kind
    text = content.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:1] == b"<":
        match = _TITLE.search(text[:8192])
        title = " ".join(match.group(1).decode("utf-8", "replace").split()) if match else ""
        titled = f' titled "{_printable(title, 120)}"' if title else ""
        return f"an HTML page{titled}{kind}"
    return f"text beginning {_quote(text)}{kind}"


def _quote(content: bytes, limit: int = 200) -> str:
    """The start of a body, on one line, as printable text in quotes."""
    text = " ".join(content.decode("utf-8", "replace").split())
    return f'"{_printable(text, limit)}"'


def _address(url: str) -> str:
    """``host:port`` of a URL (the scheme's port when none is given)."""
    try:
        parsed = httpx.URL(url)
        host = _printable(parsed.host, 200)
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "an address Rill cannot read"
    if not host:
        return "an address without a host"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _server(title: str, url: str) -> str:
    """``the OpenAI server at 127.0.0.1:8080``: how sentences name the other side."""
    return f"the {title} server at {_address(url)}"


def _is_loopback(url: str) -> bool:
    """Whether ``url`` points at this computer (localhost, 127.0.0.0/8, ::1, 0.0.0.0)."""
    try:
        host = httpx.URL(url).host.lower().rstrip(".")
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _refused(exc: BaseException) -> bool:
    """Whether a connection failed because nothing listens there (every address refused)."""
    current: BaseException | None = exc
    for _ in range(16):
        if current is None:
            return False
        if isinstance(current, ConnectionRefusedError):
            return True
        if isinstance(current, BaseExceptionGroup):
            return all(_refused(e) for e in current.exceptions)
        current = current.__cause__ or current.__context__
    return False


def _v1_hint(provider: Provider, base_url: str) -> str | None:
    """For a 404 from an OpenAI-style path under a base URL without a version: add /v1."""
    if provider.name != "openai":
        return None
    try:
        path = httpx.URL(base_url).path
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    if re.search(r"/v\d", path):
        return None
    fixed = _printable(base_url.rstrip("/"), 200) + "/v1"
    return f"OpenAI-compatible servers answer under /v1: make the base URL {fixed}."


def _no_model_list(provider: Provider, base_url: str, url: str, error: RillError) -> RillError:
    """A 404 or 405 for the list of models: this server does not list them there."""
    said = error.message.find(" The server said:")
    path = _printable(httpx.URL(url).path, 200)
    return NotFound(
        f"{_upper_first(_server(provider.title, url))} does not list its models at {path} "
        f"({error.status}).{error.message[said:] if said >= 0 else ''}",
        action=_v1_hint(provider, base_url)
        or "Check the base URL; if this server cannot list its models, enter the model "
        "name in the profile.",
        status=error.status,
        detail=error.detail,
    )


def _build_request(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: httpx.Timeout,
    server: str,
) -> httpx.Request:
    """The HTTP request, or a :class:`ConfigError` saying why it cannot be made."""
    try:
        return client.build_request("POST", url, content=body, headers=headers, timeout=timeout)
    except httpx.InvalidURL as exc:
        raise _bad_url(url, exc) from None
    except (ValueError, TypeError) as exc:  # a header that HTTP cannot carry
        raise ConfigError(
            f"The request to {server} could not be made: the API key or a header holds "
            "characters HTTP cannot carry.",
            action="Check the API key in Settings for stray characters.",
            detail=type(exc).__name__,
        ) from None


def _bad_url(url: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"The base URL '{_printable(url, 200)}' is not a valid http(s) address.",
        action="Correct the base URL.",
        detail=_printable(str(exc), 200),
    )


def _not_connected(
    url: str, provider: str, profile: str, refused: bool, detail: str
) -> ConnectionFailed:
    """Could not connect: at once when nothing listens on this computer, else retried."""
    server = f"{_server(provider, url)} (profile '{profile}')"
    if refused and _is_loopback(url):
        return ConnectionRefused(
            f"Could not connect to {server}: nothing is listening there.",
            action=f"Start the server, or correct the base URL of profile '{profile}'.",
            detail=detail,
        )
    return ConnectionFailed(
        f"Could not connect to {server}.",
        action="Check that the server is running and the base URL is right.",
        detail=detail,
    )


def _from_group(
    group: BaseExceptionGroup[Any], url: str, provider: str, profile: str = "default"
) -> RillError:
    """A transport failure that came as a group of exceptions (one per address tried)."""
    leaves = [str(e) for e in group.exceptions]
    return _not_connected(
        url, provider, profile, _refused(group), _printable("; ".join(leaves), 500)
    )


def _redirected(response: httpx.Response, url: str, provider: str) -> RillError:
    """A 3xx answer: never followed, since the API key would go along to the new place."""
    location = response.headers.get("location", "")
    try:
        target = str(httpx.URL(url).join(location)) if location else ""
    except (httpx.InvalidURL, ValueError, TypeError):
        target = location
    where = f"to {_printable(target, 300)}" if target else "elsewhere"
    return ConfigError(
        f"{_upper_first(_server(provider, url))} redirected the request "
        f"({response.status_code}) {where}. Rill does not follow redirects, so the API key "
        "was not sent there.",
        action="If that address is the right one, make it the base URL.",
        status=response.status_code,
    )


def _map_transport_error(
    exc: httpx.HTTPError, url: str, provider: str, *, has_output: bool, profile: str = "default"
) -> RillError:
    server = _server(provider, url) if url else f"the {provider} server"
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(
            f"Connecting to {server} (profile '{profile}') timed out.",
            action="Check the network and the base URL; Rill tries again.",
        )
    if isinstance(exc, httpx.ConnectError):
        return _not_connected(url, provider, profile, _refused(exc), str(exc))
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return _bad_url(url, exc)
    if isinstance(exc, httpx.DecodingError):
        return CorruptStream(
            f"The answer of {server} could not be decoded.", action="Rill tries again."
        )
    if isinstance(exc, httpx.TimeoutException):
        return ConnectTimeout(f"The connection to {server} timed out.", action="Rill tries again.")
    where = "in the middle of the answer" if has_output else "before the answer began"
    return ConnectionFailed(
        f"The connection to {server} dropped {where}.",
        action="Rill tries again.",
        detail=f"{type(exc).__name__}: {exc}",
    )


def check_key(provider: Provider, request: ChatRequest, api_key: str | None) -> None:
    """Fail before sending when the provider needs a key and there is none."""
    official_openai = provider.name == "openai" and "api.openai.com" in request.base_url
    if api_key or not (provider.needs_key or official_openai):
        return
    env = f"Set {provider.key_env} or add" if provider.key_env else "Add"
    raise AuthError(
        f"There is no API key for {provider.title} (profile '{request.profile}').",
        action=f"{env} a key for profile '{request.profile}' in Settings.",
    )


_LOG_TEXT_LIMIT = 500


def _loggable(text: str) -> str:
    """Outside text for one log line: control characters escaped, at most 500 characters."""
    if len(text) > _LOG_TEXT_LIMIT:
        text = text[: _LOG_TEXT_LIMIT - 1] + "…"
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _skip_leading_space(event: TextDelta, skip: int) -> tuple[TextDelta, int]:
    """Drop up to ``skip`` leading whitespace characters that were shown already."""
    text = event.text
    lead = len(text) - len(text.lstrip())
    cut = min(skip, lead)
    remaining = 0 if lead < len(text) else skip - cut
    return (TextDelta(text[cut:]) if cut else event), remaining


def _accepts_prefill(request: ChatRequest) -> bool:
    return any(k == "rill_accepts_prefill" and v for k, v in request.options)


def _with_prefill(request: ChatRequest, prefill: str) -> ChatRequest:
    messages: tuple[Message, ...] = (*request.messages, Message("assistant", prefill))
    return replace(request, messages=messages)


def _log_response(
    request: ChatRequest, attempt: int, response: httpx.Response, elapsed: float
) -> None:
    mattering = {
        k: v for k, v in response.headers.items() if k in _MATTERING_HEADERS or "ratelimit" in k
    }
    log.debug(
        "attempt %d: POST %s model=%s -> %d in %.3f s %s",
        attempt,
        response.request.url,
        request.model,
        response.status_code,
        elapsed,
        " ".join(f"{k}={v}" for k, v in sorted(mattering.items())),
    )


_INFO_FAILURES: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    RillError,
    TimeoutError,
    ExceptionGroup,
    *UNPARSABLE,
)


class _InfoAsker:
    """The short, bounded questions of :meth:`Engine.server_info`: the JSON of a 200
    answer, or None for anything else (an error, a timeout, a body that is too big)."""

    def __init__(
        self, client: httpx.AsyncClient, headers: dict[str, str], timeout_s: float, title: str
    ) -> None:
        self.client = client
        self.headers = headers
        self.timeout_s = timeout_s
        self.title = title

    async def get(self, url: str) -> Any:
        return await self._ask("GET", url, None)

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        return await self._ask("POST", url, body)

    async def _ask(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        headers = dict(self.headers)
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(self.timeout_s):
                request = self.client.build_request(
                    method, url, headers=headers, content=content, timeout=self.timeout_s
                )
                response = await self.client.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        return None
                    raw = await _read_all(response, self.title, _INFO_BODY_LIMIT)
                finally:
                    await response.aclose()
            return json.loads(raw)
        except _INFO_FAILURES as exc:
            log.debug("server info: %s %s gave nothing (%s)", method, url, type(exc).__name__)
            return None


def _field(value: Any, name: str) -> Any:
    """``value[name]`` when ``value`` is a JSON object, else None."""
    return value.get(name) if isinstance(value, dict) else None


def _info_text(value: Any) -> str | None:
    """A short text a server gave about itself, as plain printable text (None if none)."""
    if not isinstance(value, str):
        return None
    text = " ".join(_CONTROL.sub("", valid_text(value[: _INFO_TEXT_LIMIT * 4])).split())
    if len(text) > _INFO_TEXT_LIMIT:
        text = text[: _INFO_TEXT_LIMIT - 1] + "…"
    return text or None


def _count(value: Any) -> int | None:
    """A token count a server gave: a whole number from 1 up to a billion, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= _MAX_CONTEXT else None


_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d{1,10})\s*$", re.MULTILINE)


_LISTED_CONTEXT_FIELDS = ("context_length", "max_model_len", "max_context_length")
"""Where OpenAI-compatible servers put a model's context in their model list: LM Studio
and OpenRouter, vLLM, others."""


def listed_context(entry: Any) -> int | None:
    """The context of a model's entry in an OpenAI-compatible model list: one of
    :data:`_LISTED_CONTEXT_FIELDS`, else llama.cpp's ``meta.n_ctx`` / ``meta.n_ctx_train``."""
    for name in _LISTED_CONTEXT_FIELDS:
        found = _count(_field(entry, name))
        if found is not None:
            return found
    meta = _field(entry, "meta")
    return _count(_field(meta, "n_ctx")) or _count(_field(meta, "n_ctx_train"))


def _ollama_context(shown: Any) -> int | None:
    """The context of an ``/api/show`` answer: its ``num_ctx`` parameter (what Ollama runs
    the model with), else ``model_info["<architecture>.context_length"]``."""
    parameters = _field(shown, "parameters")
    if isinstance(parameters, str):
        match = _NUM_CTX.search(parameters[:_INFO_BODY_LIMIT])
        if match is not None:
            return _count(int(match.group(1)))
    info = _field(shown, "model_info")
    arch = _field(info, "general.architecture")
    if not isinstance(arch, str):
        return None
    return _count(_field(info, f"{arch}.context_length"))
