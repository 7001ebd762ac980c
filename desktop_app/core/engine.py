"""The engine: one request in, a stream of events out.

budget check → cache lookup → circuit breaker → provider stream under the retry policy →
cache on finish. The CLI, the GUI, the tests and the benchmarks all consume
:class:`Generation`, an async iterator of :mod:`desktop_app.core.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import httpx
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from desktop_app.core.errors import (
    AuthError,
    CircuitOpenError,
    ConfigError,
    ConnectionFailed,
    ConnectTimeout,
    CorruptStream,
    FirstTokenTimeout,
    RateLimited,
    RateLimitTooLong,
    RillError,
    StreamStalled,
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
from desktop_app.core.resilience import (
    Backoff,
    Breakers,
    RateLimitGate,
    ResilienceSettings,
    retry_after_seconds,
)
from desktop_app.core.types import ChatRequest, GenerationResponse, Message, Timing, TokenUsage

log = logging.getLogger("rill.engine")

KeyLookup = Callable[[ChatRequest], str | None]
Pricing = Callable[[str, str, TokenUsage | None], float | None]

_ERROR_BODY_LIMIT = 64 * 1024
_MATTERING_HEADERS = ("retry-after", "retry-after-ms", "request-id", "x-request-id")


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

    async def list_models(
        self, provider_name: str, base_url: str, profile: str = "default"
    ) -> list[str]:
        provider = get_provider(provider_name)
        probe = ChatRequest(
            provider=provider.name, base_url=base_url, model="", messages=(), profile=profile
        )
        api_key = self.api_key(probe)
        headers = provider.headers(api_key)
        headers["Accept"] = "application/json"
        url = provider.models_url(base_url)
        try:
            response = await self.client.get(
                url, headers=headers, timeout=self.settings.connect_timeout_s + 20
            )
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc, url, provider.name, has_output=False) from None
        if response.status_code >= 400:
            error = provider.parse_error(
                response.status_code, response.content[:_ERROR_BODY_LIMIT], profile=profile
            )
            raise scrub(error, (api_key,))
        try:
            return provider.parse_models(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptStream(
                f"The {provider.name} server's list of models could not be read.",
                action="Check the base URL.",
            ) from exc

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
                except (CircuitOpenError, RateLimitTooLong) as exc:
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
            yield Failed(exc, self.partial)

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
        api_key = engine.api_key(request)
        _check_key(provider, request, api_key)
        url = provider.url(request)
        headers = provider.headers(api_key)
        body = provider.encode_body(request)
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
                yield CircuitOpen(request.endpoint, breaker.until)
                raise CircuitOpenError(request.endpoint, breaker.until)
            hold = engine.gate.hold_until(gate_key)
            if hold is not None:
                delay = hold - engine.clock()
                yield RateLimitWait(hold, delay, "The rate limit is used up until it resets.")
                await self._sleep(delay)
            parser = provider.parser(request)
            yield StageChanged(Stage.CONNECTING, attempt)
            t0 = loop.time()
            watchdog = _Watchdog(
                self, loop, t0 + settings.first_token_timeout_s, settings.idle_timeout_s
            )
            response: httpx.Response | None = None
            reader: _FrameReader | None = None
            first = True
            ttft: float | None = None
            try:
                try:
                    self._reading = True
                    try:
                        response = await engine.client.send(
                            engine.client.build_request(
                                "POST", url, content=body, headers=headers, timeout=timeout
                            ),
                            stream=True,
                        )
                    finally:
                        self._reading = False
                    engine.gate.observe(gate_key, response.headers)
                    if log.isEnabledFor(logging.DEBUG):
                        _log_response(request, attempt, response, loop.time() - t0)
                    if response.status_code >= 400:
                        raise await self._error_from(provider, request, response)
                    yield StageChanged(Stage.WAITING, attempt)
                    reader = _FrameReader(provider, response)
                    pieces = reader.pieces
                    next_piece = pieces.__anext__
                    decode = reader.decode
                    feed = parser.feed
                    shown = self._shown
                    at_end = False
                    while not at_end:
                        if self.cancelled:
                            raise _UserCancel
                        self._reading = True
                        try:
                            frames = decode(await next_piece())
                        except StopAsyncIteration:
                            frames = reader.finish()
                            at_end = True
                        finally:
                            self._reading = False
                        watchdog.last = loop.time()
                        for event_name, data in frames:
                            for event in feed(event_name, data):
                                if first and (
                                    type(event) is TextDelta or type(event) is ToolCallDelta
                                ):
                                    first = False
                                    watchdog.start_streaming()
                                    ttft = time.perf_counter() - self._started
                                    yield StageChanged(Stage.STREAMING, attempt)
                                if type(event) is TextDelta:
                                    if skip_ws:
                                        event, skip_ws = _skip_leading_space(event, skip_ws)
                                        if not event.text:
                                            continue
                                    shown.append(event.text)
                                yield event
                            if self.cancelled:
                                raise _UserCancel
                    parser.end()
                finally:
                    watchdog.stop()
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
                error = _map_transport_error(exc, url, provider.name, has_output=parser.has_output)
            except RillError as exc:
                error = exc
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.success()
                finished = self._finished(request, parser, kept, ttft)
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
            log.debug(
                "attempt %d failed: %s (%s)", attempt, error.kind, error.detail or error.message
            )
            if not error.retryable or attempt >= settings.max_attempts:
                raise error
            if self._shown and settings.mid_stream == "off":
                raise error
            delay = engine.backoff.delay(attempt)
            if isinstance(error, RateLimited) and error.retry_after_s is not None:
                wait = error.retry_after_s
                if wait > settings.max_rate_limit_wait_s:
                    if not settings.wait_on_rate_limit:
                        raise RateLimitTooLong(
                            f"The {provider.name} server asked to wait {human_seconds(wait)}, "
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
                    body = provider.encode_body(request)
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
        content = bytearray()
        async for piece in response.aiter_bytes():
            content += piece
            if len(content) >= _ERROR_BODY_LIMIT:
                break
        return provider.parse_error(
            response.status_code,
            bytes(content[:_ERROR_BODY_LIMIT]),
            profile=request.profile,
            retry_after_s=retry_after_seconds(response.headers),
        )

    def _finished(
        self, request: ChatRequest, parser: StreamParser, kept: str, ttft: float | None
    ) -> Finished:
        engine = self.engine
        content = kept + parser.text if kept else parser.text
        cost = (
            engine.pricing(request.provider, parser.model, parser.usage) if engine.pricing else None
        )
        response = GenerationResponse(
            content=content,
            model=parser.model,
            provider=request.provider,
            usage=parser.usage,
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


class _FrameReader:
    """Splits a response body into frames, one network read at a time.

    SSE bodies give (event name, data) pairs; NDJSON bodies give ("", line), split on
    ``\\n`` only. The engine awaits each read itself and decodes all the frames it holds in
    a plain loop, so the cost per frame stays a function call, not an await.
    """

    def __init__(self, provider: Provider, response: httpx.Response) -> None:
        self.provider = provider.name
        self.sse = provider.framing == "sse"
        self.decode: Callable[[Any], list[tuple[str, str]]]
        if self.sse:
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type:
                raise CorruptStream(
                    f"The {provider.name} server answered with "
                    f"'{content_type or 'no content type'}' instead of an event stream.",
                    action="Check the base URL and the provider.",
                )
            self._lines = SSELineDecoder()
            self._events = SSEDecoder()
            self.pieces: Any = response.aiter_text()
            self.decode = self._decode_sse
        else:
            self._buffer = b""
            self.pieces = response.aiter_bytes()
            self.decode = self._decode_ndjson

    def _decode_sse(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        decode = self._events.decode
        for line in self._lines.decode(text):
            sse = decode(line)
            if sse is not None and sse.data:  # an event without data is no event
                out.append((sse.event, sse.data))
        return out

    def _decode_ndjson(self, piece: bytes) -> list[tuple[str, str]]:
        if b"\n" not in piece:
            self._buffer += piece
            return []
        *complete, self._buffer = (self._buffer + piece).split(b"\n")
        return [("", _decode_line(raw, self.provider)) for raw in complete if raw.strip()]

    def finish(self) -> list[tuple[str, str]]:
        """The frames left at the end of the body."""
        if not self.sse:
            rest, self._buffer = self._buffer, b""
            return [("", _decode_line(rest, self.provider))] if rest.strip() else []
        # A last line that ended with a newline counts even when the blank line closing its
        # event never came: the event is whole. A line cut short does not.
        ended_with_cr = self._lines.trailing_cr
        tail = self._lines.flush()
        out: list[tuple[str, str]] = []
        if ended_with_cr or not tail:
            for line in [*tail, ""]:
                sse = self._events.decode(line)
                if sse is not None and sse.data:
                    out.append((sse.event, sse.data))
        return out

    async def aclose(self) -> None:
        await self.pieces.aclose()


def _decode_line(line: bytes, provider: str) -> str:
    try:
        return line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise CorruptStream(
            f"The {provider} server sent a line that is not UTF-8.",
            action="Rill tries again.",
        ) from exc


def _map_transport_error(
    exc: httpx.HTTPError, url: str, provider: str, *, has_output: bool
) -> RillError:
    host = httpx.URL(url).host if url else "the server"
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(
            f"Connecting to {host} timed out.",
            action="Check the network and the base URL; Rill tries again.",
        )
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailed(
            f"Could not connect to the {provider} server at {host}.",
            action="Check that the server is running and the base URL is right.",
            detail=str(exc),
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return ConfigError(
            f"The base URL '{url}' is not a valid http(s) address.",
            action="Correct the base URL.",
        )
    if isinstance(exc, httpx.DecodingError):
        return CorruptStream(
            f"The {provider} server's answer could not be decoded.", action="Rill tries again."
        )
    if isinstance(exc, httpx.TimeoutException):
        return ConnectTimeout(f"The connection to {host} timed out.", action="Rill tries again.")
    where = "in the middle of the answer" if has_output else "before the answer began"
    return ConnectionFailed(
        f"The connection to {host} dropped {where}.",
        action="Rill tries again.",
        detail=f"{type(exc).__name__}: {exc}",
    )


def _check_key(provider: Provider, request: ChatRequest, api_key: str | None) -> None:
    official_openai = provider.name == "openai" and "api.openai.com" in request.base_url
    if api_key or not (provider.needs_key or official_openai):
        return
    env = f"Set {provider.key_env} or add" if provider.key_env else "Add"
    raise AuthError(
        f"There is no API key for {provider.name} (profile '{request.profile}').",
        action=f"{env} a key for profile '{request.profile}' in Settings.",
    )


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
