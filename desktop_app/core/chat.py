"""Conversations on the engine: what ``q`` and the window both do with a prompt.

:class:`Services` opens everything Rill keeps (config, history, cache, engine) once per
process. :class:`ChatService` turns a prompt in a conversation into a :class:`Turn`: an
async iterator of the engine's events that also records the exchange — the user's message
before anything is sent, the reply at least every 500 ms while it streams, and its final
state — on a worker thread, never on the event loop.

Saves of a reply coalesce (:class:`ReplySaver`): however slowly the disk writes, at most
one save of a reply waits on the I/O thread, holding the newest text. Searches run on a
thread of their own (:meth:`Services.run_search`), so a long search never delays a save.
When the history cannot be opened or written (a full disk, a folder Rill may not write)
the reply is still shown; :meth:`Turn.wait_saved` then says what was and was not saved.

A turn settles what its reply cost (:func:`~desktop_app.core.pricing.reply_cost`): the
profile's own prices, else nothing from a server on this computer or its network, else the
price list. An answer from the cache costs nothing; :attr:`Turn.saved` is what it saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from desktop_app.core.blobs import AttachmentUnavailable, BlobStore, unloaded
from desktop_app.core.cache import AsyncResponseCache, cache_key
from desktop_app.core.config import Config, Profile, load_config
from desktop_app.core.errors import RillError
from desktop_app.core.events import (
    Cancelled,
    Failed,
    FallingBack,
    Finished,
    Restarted,
    StreamEvent,
    TextDelta,
    ToolFailed,
    ToolResult,
    UsageUpdate,
)
from desktop_app.core.history import History, HistoryError, MessageStatus, StoredMessage
from desktop_app.core.ledger import Ledger, LedgerError, LedgerStatus, ledger_path
from desktop_app.core.paths import AppPaths, app_paths
from desktop_app.core.pricing import PriceTable, load_price_table, profile_price, reply_cost
from desktop_app.core.secrets import Secrets, key_lookup
from desktop_app.core.tools.base import Approver, ToolHost, ToolInfo, deny_all
from desktop_app.core.tools.mcp import McpHost
from desktop_app.core.types import (
    Attachment,
    ChatRequest,
    GenerationResponse,
    Message,
    TokenUsage,
    ToolPart,
)

if TYPE_CHECKING:
    from desktop_app.core.engine import Engine, Generation, KeyLookup, Pricing
    from desktop_app.core.routing.cache import RouteCache
    from desktop_app.core.tools.loop import ToolLoop

log = logging.getLogger("rill.chat")
_T = TypeVar("_T")

SAVE_INTERVAL_S = 0.5


@dataclass
class Services:
    """Everything a Rill process opens once: config, history, cache and the engine."""

    paths: AppPaths
    config: Config
    history: History | None
    cache: AsyncResponseCache | None
    io: ThreadPoolExecutor
    ledger: Ledger | None = None
    secrets: Secrets | None = None
    prices: PriceTable | None = None
    warnings: list[str] = field(default_factory=list)
    history_problem: RillError | None = None
    """Why the history could not be opened (it is then None, and a warning says so)."""
    search_io: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="rill-search")
    )
    _route_cache: RouteCache | None = None
    _blobs: BlobStore | None = None
    _engine: Engine | None = None
    _engine_options: dict[str, Any] = field(default_factory=dict)
    """What the engine is made with, when it is first used."""

    @property
    def engine(self) -> Engine:
        """The engine, made when it is first used: importing it brings in the HTTP stack
        (httpx, TLS, retries, the providers' parsers), which the window's first frame does
        not need. Made with the config's resilience settings of that moment."""
        if self._engine is None:
            from desktop_app.core.engine import Engine
            from desktop_app.core.resilience import ResilienceSettings

            options = dict(self._engine_options)
            read_interval_s = float(options.pop("read_interval_s", 0.0))
            engine = Engine(
                resilience=ResilienceSettings.from_values(self.config.values), **options
            )
            engine.read_interval_s = read_interval_s
            self._engine = engine
        return self._engine

    def set_read_interval(self, seconds: float) -> None:
        """Read a stream at most once per ``seconds`` (the window's frame), from now on."""
        self._engine_options["read_interval_s"] = seconds
        if self._engine is not None:
            self._engine.read_interval_s = seconds

    @property
    def blobs(self) -> BlobStore:
        """The attached files under the data folder (the history's own store when there is
        a history, so both see the same files)."""
        if self._blobs is None:
            history = self.history
            self._blobs = (
                history.blobs if history is not None else BlobStore(self.paths.attachments_dir)
            )
        return self._blobs

    def viewable_copy(self, attachment: Attachment) -> Path:
        """A copy of an attached file under its own name in the cache folder, for the
        system's viewer (blocking: run it off the UI thread); see
        :meth:`BlobStore.named_copy`. Copies not opened for a day, and those of files no
        chat holds any more, are removed first."""
        self.prune_viewer_copies()
        return self.blobs.named_copy(attachment, self._viewer_copies)

    def prune_viewer_copies(self) -> int:
        """Remove the viewer copies :meth:`viewable_copy` made that are old or whose file no
        chat holds any more (blocking: run it off the UI thread)."""
        return self.blobs.prune_copies(self._viewer_copies)

    @property
    def _viewer_copies(self) -> Path:
        """The folder of the copies made for the system's viewer."""
        return self.paths.cache_dir / "opened"

    def route_cache(self) -> RouteCache:
        """Auto's route cache under the cache folder, opened on first use."""
        from desktop_app.core.routing.cache import RouteCache

        if self._route_cache is None:
            self._route_cache = RouteCache(
                self.paths.route_cache_dir,
                ttl_s=float(self.config["auto.route_cache_ttl_s"]),
                max_entries=int(self.config["auto.route_cache_entries"]),
            )
        return self._route_cache

    tools: ToolHost | None = None
    """The tools turns may offer the model (the MCP servers of the config); None: no tools."""

    @staticmethod
    def history_upgrade_pending(
        config: Config, paths: AppPaths | None = None, *, record: bool = True
    ) -> bool:
        """Whether :meth:`open` with these arguments brings an existing history up to this
        version's schema (once; it can take a while, see :meth:`History.upgrade_pending`)."""
        if not (record and config["history.enabled"]):
            return False
        return History.upgrade_pending((paths or app_paths()).history_db)

    @classmethod
    def open(
        cls,
        *,
        config: Config | None = None,
        paths: AppPaths | None = None,
        record: bool = True,
        api_key: KeyLookup | None = None,
        pricing: Pricing | None = None,
        secrets: Secrets | None = None,
        check_stores: bool = True,
    ) -> Services:
        """Open everything once. With ``check_stores`` false the history and the ledger
        skip SQLite's integrity check (it reads the whole file) until
        :meth:`verify_stores` runs it."""
        paths = (paths or app_paths()).ensure()
        config = config if config is not None else load_config(paths.config_file)
        warnings = [f"Config problem: {p}" for p in config.problems]
        history: History | None = None
        history_problem: RillError | None = None
        if record and config["history.enabled"]:
            try:
                history = History(
                    paths.history_db,
                    blobs=BlobStore(paths.attachments_dir),
                    check_on_open=check_stores,
                )
            except HistoryError as exc:
                history_problem = exc
                warnings.append(f"{exc.message} Conversations are not saved in this session.")
        if history is not None and history.recovered_from is not None:
            warnings.append(
                f"The conversation history could not be opened, so a new one was started. "
                f"The old file was moved to {history.recovered_from}."
            )
        cache: AsyncResponseCache | None = None
        if config["cache.enabled"]:
            cache = AsyncResponseCache(
                paths.response_cache_dir,
                ttl_s=float(config["cache.ttl_s"]),
                size_limit_bytes=int(config["cache.size_limit_mb"]) * 1024 * 1024,
            )
        ledger: Ledger | None = None
        try:
            ledger = Ledger(ledger_path(paths), check_on_open=check_stores)
        except LedgerError as exc:
            warnings.append(f"{exc.message} Usage and cost are not recorded in this session.")
        if ledger is not None and ledger.recovered_from is not None:
            warnings.append(
                f"The usage ledger could not be opened, so a new one was started. "
                f"The old file was moved to {ledger.recovered_from}."
            )
        prices: PriceTable | None = None
        if pricing is None:
            prices = load_price_table(paths.config_dir)
            warnings.extend(f"Pricing problem: {p}" for p in prices.problems)
            pricing = prices.cost
        if api_key is None:
            secrets = secrets or Secrets()
            api_key = key_lookup(secrets)
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rill-io")
        services = cls(
            paths,
            config,
            history,
            cache,
            io,
            ledger,
            secrets,
            prices,
            warnings,
            history_problem,
            _engine_options={
                "api_key": api_key,
                "cache": cache,
                "cache_key": cache_key,
                "pricing": pricing,
            },
        )
        # the servers of the config as it is when each is used (none starts before then)
        services.tools = McpHost(lambda: services.config, secrets=secrets)
        return services

    def verify_stores(self) -> list[str]:
        """Check the history and the ledger files with SQLite's integrity check; return a
        sentence for each that is damaged (blocking: run it off the UI thread). A damaged
        file is checked again, and moved aside if it still is, the next time it is opened."""
        found: list[str] = []
        stores = (
            (self.history, "conversation history", "Export the conversations you need now. "),
            (self.ledger, "usage ledger", ""),
        )
        for store, name, advice in stores:
            if store is None:
                continue
            try:
                problem = store.verify()
            except RuntimeError:  # closed meanwhile: the window is quitting
                continue
            if problem is not None:
                found.append(
                    f"Rill found damage in its {name} at {store.path} ({problem[:300]}). "
                    f"{advice}When Rill next starts it checks the file again, and if the "
                    "damage is still there it moves the file aside and starts a new one."
                )
        return found

    def cost(
        self,
        request: ChatRequest,
        profile: Profile,
        usage: TokenUsage | None,
        *,
        model: str | None = None,
    ) -> float | None:
        """What a reply to ``request`` (by ``model``, else the request's) using ``usage``
        cost: the profile's own prices, else nothing from a server on this computer or its
        network, else the price list."""
        prices = self.prices
        return reply_cost(
            provider=request.provider,
            model=model or request.model,
            usage=usage,
            base_url=request.base_url,
            own=profile_price(profile),
            pricing=prices.cost if prices is not None else self.engine.pricing,
        )

    async def run_io(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run blocking I/O on the worker thread, in order with every other write."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io, partial(fn, *args, **kwargs))

    async def run_search(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a search (or another long read) on the search thread, beside the I/O thread,
        so it never delays a save."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.search_io, partial(fn, *args, **kwargs))

    def submit_io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue blocking I/O on the worker thread without waiting; failures are logged."""

        def guarded() -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("background write failed")
                return None

        return self.io.submit(guarded)

    async def aclose(self) -> None:
        if self.tools is not None:
            await self.tools.aclose()
        if self._engine is not None:
            await self._engine.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self._route_cache is not None:
            await self.run_io(self._route_cache.close)
        self.search_io.shutdown(wait=True)
        if self.history is not None:
            await self.run_io(self.history.close)
        if self.ledger is not None:
            await self.run_io(self.ledger.close)
        self.io.shutdown(wait=True)


TurnMode = Literal["new", "edit", "regenerate", "continue"]


class SaveFailed(RillError):
    """A reply was shown but not (all of it) saved to the history."""


def _disk_full(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == 13:
            return True
        exc = exc.__cause__
    return False


class ReplySaver:
    """Writes a reply's message rows on the I/O thread, never more than one save behind.

    :meth:`save` merges its fields into the save waiting for that message (newer fields
    win) and queues one job on the I/O thread if none is queued. The job writes one
    waiting save and queues itself again while more wait, so other I/O takes turns with
    it. However slowly the disk writes, each message has at most one save waiting, and the
    I/O queue holds at most one job of this saver.
    """

    def __init__(self, services: Services, history: History) -> None:
        self.services = services
        self.history = history
        self._lock = threading.Lock()
        self._waiting: dict[int, dict[str, Any]] = {}
        self._queued = False
        self.saved_chars: dict[int, int] = {}
        """For each message, how many characters of its content are on disk."""
        self.error: RillError | None = None
        """The first save that failed, if any did."""

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._queued

    def save(self, message_id: int, **fields: Any) -> None:
        with self._lock:
            waiting = self._waiting.setdefault(message_id, {})
            waiting.update(fields)
            if self._queued:
                return
            self._queued = True
        self.services.io.submit(self._run)

    def _run(self) -> None:
        with self._lock:
            if not self._waiting:
                self._queued = False
                return
            message_id = next(iter(self._waiting))
            fields = self._waiting.pop(message_id)
        try:
            self.history.update_message(message_id, **fields)
        except Exception as exc:
            if isinstance(exc, RillError):
                problem = exc
            else:
                log.exception("saving a reply failed")
                problem = RillError(f"Rill could not save the reply ({exc}).")
            with self._lock:
                self.error = self.error or problem
        else:
            if "content" in fields:
                with self._lock:
                    self.saved_chars[message_id] = len(fields["content"])
        with self._lock:
            if not self._waiting:
                self._queued = False
                return
        self.services.io.submit(self._run)


class ChatService:
    """Builds requests from profiles and conversations, and starts turns."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.approver: Approver = deny_all
        """Asks the user about a tool call whose policy is "ask" (the front end's own)."""
        self.on_always: Callable[[ToolInfo], None] | None = None
        """Called when the user allows a tool always (the front end saves the policy)."""

    def _turn(self, **kwargs: Any) -> Turn:
        """A turn on ``profile``: an Auto turn when it is an Auto profile."""
        if kwargs["profile"].auto is not None:
            from desktop_app.core.routing.auto import AutoTurn

            return AutoTurn(self, **kwargs)
        return Turn(self, **kwargs)

    @property
    def config(self) -> Config:
        return self.services.config

    def request_for(
        self,
        profile: Profile,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        base_url: str | None = None,
        provider: str | None = None,
        stream: bool | None = None,
    ) -> ChatRequest:
        options: tuple[tuple[str, Any], ...] = ()
        if profile.accepts_prefill:
            options = (("rill_accepts_prefill", True),)
        if provider and provider != profile.provider:
            profile = replace(profile, provider=provider, base_url="", model="")  # type: ignore[arg-type]
        return ChatRequest(
            provider=profile.provider,
            base_url=base_url or profile.resolved_base_url,
            model=model or profile.resolved_model,
            messages=tuple(messages),
            system=system if system is not None else (profile.system_prompt or None),
            temperature=temperature if temperature is not None else profile.temperature,
            max_tokens=max_tokens if max_tokens is not None else profile.max_tokens,
            stream=profile.stream if stream is None else stream,
            options=options,
            profile=profile.name,
        )

    def fallbacks_for(self, request: ChatRequest, profile: Profile) -> list[ChatRequest]:
        """A profile's fallbacks: other profiles by name, or other models on the same server."""
        out: list[ChatRequest] = []
        for name in profile.fallbacks:
            if name in self.config.profiles:
                other = self.config.profiles[name]
                out.append(
                    self.request_for(
                        other,
                        request.messages,
                        system=request.system,
                        temperature=request.temperature,
                        max_tokens=request.max_tokens,
                    )
                )
            else:
                out.append(replace(request, model=name))
        return out

    def send(
        self,
        prompt: str,
        *,
        conversation_id: int | None = None,
        profile: str | None = None,
        read_cache: bool = True,
        write_cache: bool = True,
        record: bool = True,
        tools: Collection[str] | None = None,
        attachments: Sequence[Attachment] = (),
        **overrides: Any,
    ) -> Turn:
        """Ask ``prompt`` in a conversation (a new one when ``conversation_id`` is None).

        ``tools`` chooses the tool servers the model may use: None for every enabled one,
        a set of server names for those, an empty set for none. ``attachments`` are the
        files sent with the prompt (with their bytes, as read when attached); the turn keeps
        their bytes in the blob store and the prompt refers to them."""
        return self._turn(
            mode="new",
            prompt=prompt,
            attachments=tuple(attachments),
            conversation_id=conversation_id,
            profile=self.config.profile(profile),
            read_cache=read_cache,
            write_cache=write_cache,
            record=record,
            overrides=overrides,
            tools=tools,
        )

    def regenerate(
        self,
        conversation_id: int,
        reply_group: int,
        *,
        profile: str | None = None,
        tools: Collection[str] | None = None,
        **overrides: Any,
    ) -> Turn:
        """A new version of a reply: the cache is not read, and the new answer is written."""
        return self._turn(
            mode="regenerate",
            prompt=None,
            conversation_id=conversation_id,
            profile=self.config.profile(profile),
            read_cache=False,
            write_cache=True,
            record=True,
            overrides=overrides,
            reply_group=reply_group,
            tools=tools,
        )

    def edit(
        self,
        conversation_id: int,
        message_id: int,
        prompt: str,
        *,
        profile: str | None = None,
        tools: Collection[str] | None = None,
        attachments: Sequence[Attachment] | None = None,
        **overrides: Any,
    ) -> Turn:
        """Ask ``prompt`` as a new version of the prompt ``message_id``: the new version
        follows the same message and gets replies of its own.

        ``attachments`` are the new version's files; None keeps those of the prompt being
        edited (an empty sequence sends none)."""
        return self._turn(
            mode="edit",
            prompt=prompt,
            attachments=None if attachments is None else tuple(attachments),
            conversation_id=conversation_id,
            profile=self.config.profile(profile),
            read_cache=True,
            write_cache=True,
            record=True,
            overrides=overrides,
            edit_of=message_id,
            tools=tools,
        )

    def continue_reply(
        self, conversation_id: int, message_id: int, *, profile: str | None = None, **overrides: Any
    ) -> Turn:
        """Continue an interrupted or cancelled reply from where it stopped."""
        return self._turn(
            mode="continue",
            prompt=None,
            conversation_id=conversation_id,
            profile=self.config.profile(profile),
            read_cache=False,
            write_cache=False,
            record=True,
            overrides=overrides,
            message_id=message_id,
        )


def context_messages(stored: Sequence[StoredMessage], *, tools: bool = True) -> list[Message]:
    """The messages of a conversation worth sending back as context. A reply that called
    tools stands for its calls and their results too, unless ``tools`` is False (a request
    that offers no tools gets the reply's text only: some APIs refuse tool calls then)."""
    out: list[Message] = []
    for m in stored:
        if m.role == "system":
            continue
        used_tools = bool(m.tool_parts) and tools
        if m.role == "assistant" and ((not m.content and not used_tools) or m.status == "failed"):
            continue
        out.extend(m.to_messages() if used_tools else [m.to_message()])
    return out


MISSING_ATTACHMENT = "[file {name} is no longer available]"
"""The line sent in place of an earlier message's file whose stored copy is gone."""


def with_attachment_data(blobs: BlobStore, messages: Sequence[Message]) -> list[Message]:
    """``messages`` with the bytes of each attached file read from ``blobs`` (blocking: run
    it off the event loop).

    A file of an earlier message whose copy has gone missing or is damaged is left out,
    and a line saying so (:data:`MISSING_ATTACHMENT`) ends that message's text: the model
    learns that a file was there, and the conversation can go on."""
    out: list[Message] = []
    for message in messages:
        if not any(map(unloaded, message.attachments)):
            out.append(message)
            continue
        kept: list[Attachment] = []
        lines: list[str] = []
        for attachment in message.attachments:
            try:
                kept.append(blobs.load(attachment))
            except AttachmentUnavailable as exc:
                log.warning("sending a conversation without a file: %s", exc.message)
                lines.append(MISSING_ATTACHMENT.format(name=attachment.name))
        content = "\n\n".join([message.content, *lines]) if message.content else "\n".join(lines)
        out.append(replace(message, content=content, attachments=tuple(kept)))
    return out


class Turn:
    """One prompt and its reply, recorded as it streams. Iterate it for events."""

    def __init__(
        self,
        chat: ChatService,
        *,
        mode: TurnMode,
        prompt: str | None,
        conversation_id: int | None,
        profile: Profile,
        read_cache: bool,
        write_cache: bool,
        record: bool,
        overrides: dict[str, Any],
        reply_group: int | None = None,
        message_id: int | None = None,
        edit_of: int | None = None,
        tools: Collection[str] | None = None,
        attachments: Sequence[Attachment] | None = (),
    ) -> None:
        self.chat = chat
        self.services = chat.services
        self.mode = mode
        self.prompt = prompt
        self.attachments: tuple[Attachment, ...] | None = (
            None if attachments is None else tuple(attachments)
        )
        """The files sent with the prompt of a "new" or "edit" turn, with their bytes once
        the turn is prepared (None in an edit: those of the prompt edited)."""
        self.conversation_id = conversation_id
        self.profile = profile
        self.read_cache = read_cache
        self.write_cache = write_cache
        self.record = record and self.services.history is not None
        self.overrides = overrides
        self.reply_group = reply_group
        self.assistant_message_id = message_id
        self.user_message_id: int | None = None
        self.edit_of = edit_of
        """In "edit" mode, the prompt of which this turn asks a new version."""
        self._edited: StoredMessage | None = None
        self.recorded = False
        """The prompt (or the new reply version) is in the history: the turn got as far as
        sending. A turn that fails before (no key, the budget) leaves the history as it was."""
        self.tools = None if tools is None else frozenset(tools)
        """The tool servers this turn may use (None: every enabled one; empty: none)."""
        self.request: ChatRequest | None = None
        self.generation: Generation | ToolLoop | None = None
        self.response: GenerationResponse | None = None
        self.kept = ""
        self._cancel = False
        self._settled = False
        self._began: float | None = None
        self._first_text: float | None = None
        self._saver: ReplySaver | None = None
        if self.record and self.services.history is not None:
            self._saver = ReplySaver(self.services, self.services.history)
        self._save_problem: RillError | None = None
        self._shown = ""
        self._answering: tuple[ChatRequest, Profile] | None = None
        """The request (and its profile) being answered: the first, or the fallback in use."""
        self.saved: float | None = None
        """For an answer from the cache, what it would have cost (None when unknown)."""
        self.stage = "answer"
        """What the ledger records this turn's spending as (an Auto turn's escalations)."""

    async def wait_saved(self) -> RillError | None:
        """Wait until every save of this turn is on disk (or failed); return what went
        wrong, as a sentence saying how much of the reply was saved, or None."""
        saver = self._saver
        if saver is not None:
            while not saver.idle:
                await self.services.run_io(lambda: None)  # after the saver's queued job
        if self._save_problem is not None:
            return self._save_problem
        if saver is None or saver.error is None:
            return None
        saved = saver.saved_chars.get(self.assistant_message_id or -1, 0)
        shown = len(self._shown)
        if _disk_full(saver.error):
            return SaveFailed(
                f"The disk is full; the reply was shown but only {saved:,} of its "
                f"{shown:,} characters were saved.",
                action="Free some disk space; Rill works normally again once there is room.",
                detail=saver.error.detail,
            )
        return SaveFailed(
            f"The reply was shown but only {saved:,} of its {shown:,} characters were saved: "
            f"{saver.error.message}",
            action=saver.error.action,
            detail=saver.error.detail,
        )

    def cancel(self) -> None:
        self._cancel = True
        if self.generation is not None:
            self.generation.cancel()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        try:
            await self._prepare()
        except RillError as exc:
            yield Failed(exc, "")
            return
        assert self.request is not None
        fallbacks = self.chat.fallbacks_for(self.request, self.profile)
        self._answering = (self.request, self.profile)
        self.generation = self._generation(self.request, fallbacks)
        if self._cancel:
            self.generation.cancel()
        loop = asyncio.get_running_loop()
        self._began = time.perf_counter()
        parts: list[str] = [self.kept] if self.kept else []
        usage: TokenUsage | None = None
        last_save = loop.time()
        try:
            async for event in self.generation:
                kind = type(event)
                if kind is TextDelta:
                    if self._first_text is None:
                        self._first_text = time.perf_counter()
                    parts.append(event.text)  # type: ignore[union-attr]
                    now = loop.time()
                    if self.record and now - last_save >= SAVE_INTERVAL_S:
                        last_save = now
                        self._save(content="".join(parts), status="streaming")
                elif isinstance(event, UsageUpdate):
                    usage = event.usage
                elif isinstance(event, Restarted):
                    await self._restart(event.discarded)
                    parts = []
                elif isinstance(event, FallingBack):
                    self._fall_back(event, fallbacks)
                elif isinstance(event, Finished):
                    event = Finished(self._priced(event.response))
                    self.response = event.response
                    self._shown = (
                        self.kept + event.response.content
                        if self.mode == "continue"
                        else event.response.content
                    )
                    self._settle_finished(event.response)
                elif isinstance(event, Failed):
                    partial_text = "".join(parts)
                    status: MessageStatus = "interrupted" if event.partial else "failed"
                    self._settle(partial_text, status, error=str(event.error), usage=usage)
                elif isinstance(event, Cancelled):
                    self._settle("".join(parts), "cancelled", usage=usage)
                elif isinstance(event, ToolResult | ToolFailed):
                    self._save_tool_parts()
                yield event
        finally:
            if not self._settled:
                self._settle("".join(parts), "cancelled", usage=usage)

    # -- tools -----------------------------------------------------------------------------

    @property
    def uses_tools(self) -> bool:
        """The model is offered tools in this turn: tools are on for it (a continued reply
        never is) and, for the MCP servers of the config, one chosen is enabled."""
        host = self.services.tools
        if host is None or self.tools == frozenset() or self.mode == "continue":
            return False
        if isinstance(host, McpHost):
            return any(
                s.enabled and (self.tools is None or s.name in self.tools) for s in host.servers()
            )
        return True

    @property
    def tool_parts(self) -> list[ToolPart]:
        """The tool calls of this turn so far, in the order the model made them."""
        from desktop_app.core.tools.loop import ToolLoop

        loop = self.generation
        return list(loop.records) if isinstance(loop, ToolLoop) else []

    def _generation(
        self, request: ChatRequest, fallbacks: Sequence[ChatRequest]
    ) -> Generation | ToolLoop:
        from desktop_app.core.tools.loop import ToolLoop

        engine = self.services.engine
        host = self.services.tools
        if host is None or not self.uses_tools:
            return engine.stream(
                request,
                fallbacks=fallbacks,
                read_cache=self.read_cache,
                write_cache=self.write_cache,
            )
        return ToolLoop(
            engine,
            request,
            host=host,
            approver=self.chat.approver,
            servers=self.tools,
            max_rounds=int(self.services.config["tools.max_rounds"]),
            fallbacks=fallbacks,
            read_cache=self.read_cache,
            write_cache=self.write_cache,
            on_always=self.chat.on_always,
        )

    def _save_tool_parts(self) -> None:
        from desktop_app.core.tools.loop import ToolLoop

        loop = self.generation
        history = self.services.history
        if not isinstance(loop, ToolLoop) or history is None or not self.record:
            return
        if self.assistant_message_id is None:
            return
        self.services.submit_io(history.set_tool_parts, self.assistant_message_id, self.tool_parts)

    # -- cost ------------------------------------------------------------------------------

    def _fall_back(self, event: FallingBack, fallbacks: Sequence[ChatRequest]) -> None:
        """Price what follows as the fallback the engine moved to."""
        for request in fallbacks:
            if request.model == event.to_model and (
                event.to_profile is None or request.profile == event.to_profile
            ):
                profile = self.services.config.profiles.get(request.profile, self.profile)
                self._answering = (request, profile)
                return

    def _cost(self, model: str, usage: TokenUsage | None) -> float | None:
        """What a reply of ``model`` using ``usage`` cost from the server being asked."""
        if self._answering is None:
            return None
        request, profile = self._answering
        return self.services.cost(request, profile, usage, model=model)

    def _priced(self, response: GenerationResponse) -> GenerationResponse:
        """``response`` with what it cost; an answer from the cache costs 0 and
        :attr:`saved` is what it would have cost."""
        cost = self._cost(response.model, response.usage)
        if response.cached:
            self.saved = cost
            cost = 0.0
        return response if cost == response.cost else replace(response, cost=cost)

    async def _prepare(self) -> None:
        services = self.services
        history = services.history if self.record else None
        prompt = self.prompt
        if self.mode == "new":
            assert prompt is not None
            earlier: list[Message] = []
            if history is not None and self.conversation_id is not None:
                stored = await services.run_io(history.messages, self.conversation_id)
                earlier = context_messages(stored, tools=self.uses_tools)
            attached = await self._attached(self.attachments or ())
            messages = [*earlier, Message("user", prompt, attachments=attached)]
        elif self.mode == "edit":
            assert prompt is not None and history is not None and self.conversation_id is not None
            stored = await services.run_io(history.messages, self.conversation_id)
            index = next((i for i, m in enumerate(stored) if m.id == self.edit_of), None)
            if index is None or stored[index].role != "user":
                raise RillError(
                    "That prompt is no longer in the conversation.",
                    action="Reload the conversation and try again.",
                )
            self._edited = stored[index]
            chosen = self.attachments
            attached = await self._attached(self._edited.attachments if chosen is None else chosen)
            messages = [
                *context_messages(stored[:index], tools=self.uses_tools),
                Message("user", prompt, attachments=attached),
            ]
        else:
            assert history is not None and self.conversation_id is not None
            stored = await services.run_io(history.messages, self.conversation_id)
            messages, target = self._context_for(stored)
            if self.mode == "continue":
                self.kept = target.content.rstrip()
                self.reply_group = target.reply_group
                messages.append(Message("assistant", self.kept))
        messages = await services.run_io(with_attachment_data, services.blobs, messages)
        self.request = request = self.chat.request_for(self.profile, messages, **self.overrides)
        budget = float(services.config["budget.monthly_usd"])
        if services.ledger is not None and budget > 0:
            await services.run_io(services.ledger.check_budget, budget)
        if services.secrets is not None:
            # the keychain may be slow (D-Bus, an unlock prompt): ask it off the loop
            await services.run_io(services.secrets.get, request.profile, request.provider)
        # A turn that cannot be sent (no key) fails here, before anything is recorded.
        from desktop_app.core.engine import check_key
        from desktop_app.core.providers import get_provider

        api_key = await services.run_io(services.engine.api_key, request)
        check_key(get_provider(request.provider), request, api_key)
        if history is None:
            return
        try:
            await self._record_prompt(history, request, prompt)
        except (HistoryError, AttachmentUnavailable) as exc:
            # (a file that cannot be stored: a full disk, a folder Rill may not write)
            if self.mode not in ("new", "edit"):
                raise
            # Answer anyway; wait_saved() tells that nothing of this exchange was saved.
            self.record = False
            self._saver = None
            self.assistant_message_id = None
            self._save_problem = SaveFailed(
                f"{exc.message} The reply is shown but this exchange is not saved.",
                action=exc.action,
                detail=exc.detail,
            )

    async def _record_prompt(
        self, history: History, request: ChatRequest, prompt: str | None
    ) -> None:
        services = self.services
        if self.mode == "new":
            assert prompt is not None
            created: int | None = None
            if self.conversation_id is None:
                conversation = await services.run_io(
                    history.create_conversation,
                    profile=self.profile.name,
                    provider=request.provider,
                    model=request.model,
                    system_prompt=request.system,
                )
                self.conversation_id = conversation.id
                created = conversation.id
            try:
                user = await services.run_io(
                    history.add_message,
                    self.conversation_id,
                    "user",
                    prompt,
                    attachments=self.attachments or (),
                )
            except (HistoryError, AttachmentUnavailable):
                if created is not None:  # leave no empty conversation behind
                    self.conversation_id = None
                    with contextlib.suppress(HistoryError):
                        await services.run_io(history.delete_conversation, created)
                raise
        elif self.mode == "edit":
            assert prompt is not None and self._edited is not None
            user = await services.run_io(
                history.add_version,
                self._edited.reply_group,
                prompt,
                attachments=self.attachments or (),
            )
        if self.mode in ("new", "edit"):
            assert self.conversation_id is not None
            self.user_message_id = user.id
            reply = await services.run_io(
                history.add_message,
                self.conversation_id,
                "assistant",
                "",
                status="streaming",
                after=user.id,
                model=request.model,
                provider=request.provider,
            )
            self.assistant_message_id = reply.id
            self.reply_group = reply.reply_group
        elif self.mode == "regenerate":
            assert self.reply_group is not None
            reply = await services.run_io(
                history.add_version,
                self.reply_group,
                "",
                status="streaming",
                model=request.model,
                provider=request.provider,
            )
            self.assistant_message_id = reply.id
        else:
            assert self.assistant_message_id is not None
            await services.run_io(
                history.update_message, self.assistant_message_id, status="streaming"
            )
        assert self.conversation_id is not None
        self.recorded = True
        await services.run_io(
            history.set_conversation_server,
            self.conversation_id,
            profile=request.profile,
            provider=request.provider,
            model=request.model,
            base_url=request.base_url,
        )

    async def _attached(self, attachments: Sequence[Attachment]) -> tuple[Attachment, ...]:
        """The prompt's files with their bytes (read from the store, off the loop, for any
        given without); kept as :attr:`attachments`. A file whose stored copy is gone fails
        the turn with a sentence naming it, before anything is recorded."""
        if any(map(unloaded, attachments)):
            blobs = self.services.blobs
            attachments = await self.services.run_io(
                lambda: tuple(blobs.load(a) for a in attachments)
            )
        self.attachments = tuple(attachments)
        return self.attachments

    def _context_for(self, stored: Sequence[StoredMessage]) -> tuple[list[Message], StoredMessage]:
        """The messages before the reply being regenerated or continued, and that reply."""
        for index, message in enumerate(stored):
            hit = (
                message.reply_group == self.reply_group
                if self.mode == "regenerate"
                else message.id == self.assistant_message_id
            )
            if hit:
                return context_messages(stored[:index], tools=self.uses_tools), message
        raise RillError(
            "That reply is no longer in the conversation.",
            action="Reload the conversation and try again.",
        )

    # -- recording ---------------------------------------------------------------------------

    def _save(self, **fields: Any) -> None:
        if self._saver is None or self.assistant_message_id is None:
            return
        self._saver.save(self.assistant_message_id, **fields)

    async def _restart(self, discarded: str) -> None:
        """Keep the interrupted text as an earlier version; the new answer gets a new one."""
        history = self.services.history
        if not self.record or history is None or self.reply_group is None:
            return
        assert self.assistant_message_id is not None
        self._save(content=self.kept + discarded, status="interrupted")
        reply = await self.services.run_io(
            history.add_version,
            self.reply_group,
            "",
            status="streaming",
            model=self.request.model if self.request else None,
            provider=self.request.provider if self.request else None,
        )
        self.assistant_message_id = reply.id
        self.kept = ""

    def _settle_finished(self, response: GenerationResponse) -> None:
        self._settled = True
        ledger = self.services.ledger
        if ledger is not None:
            profile = self.request.profile if self.request else "default"
            self.services.submit_io(
                ledger.record_response,
                response,
                profile=profile,
                saved=self.saved,
                stage=self.stage,
            )
        usage = response.usage
        self._save(
            content=(self.kept + response.content) if self.mode == "continue" else response.content,
            status="complete",
            model=response.model,
            provider=response.provider,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cost=response.cost,
            ttft_s=response.timing.ttft_s,
            total_s=response.timing.total_s,
            cached=response.cached,
            finish_reason=response.finish_reason,
            estimated=bool(usage and usage.estimated),
        )

    def _record_usage(self, status: LedgerStatus, usage: TokenUsage | None) -> None:
        """A cancelled reply is recorded (its tokens unknown when the stream had not said);
        a failed one when the stream reported what it used."""
        ledger, request = self.services.ledger, self.request
        if ledger is None or request is None or self.generation is None:
            return
        if usage is None and status == "failed":
            return  # nothing known to have been used
        answering = self._answering[0] if self._answering is not None else request
        cost = self._cost(answering.model, usage)
        self.services.submit_io(
            ledger.record,
            provider=answering.provider,
            model=answering.model,
            usage=usage,
            cost=cost,
            profile=answering.profile,
            status=status,
            trace_id=self.generation.trace_id,
            stage=self.stage,
        )

    def _settle(
        self,
        content: str,
        status: MessageStatus,
        *,
        error: str | None = None,
        usage: TokenUsage | None = None,
    ) -> None:
        self._settled = True
        answering = self._answering[0] if self._answering is not None else self.request
        if usage is None and content and answering is not None:
            usage = TokenUsage.estimate(answering, content)
        self._record_usage("failed" if status in ("failed", "interrupted") else "cancelled", usage)
        fields: dict[str, Any] = {"content": content, "status": status}
        if error is not None:
            fields["error"] = error
        if usage is not None:
            fields["input_tokens"] = usage.input_tokens
            fields["output_tokens"] = usage.output_tokens
            fields["estimated"] = usage.estimated
        if self._began is not None:
            now = time.perf_counter()
            fields["total_s"] = now - self._began
            if self._first_text is not None:
                fields["ttft_s"] = self._first_text - self._began
        self._save(**fields)
