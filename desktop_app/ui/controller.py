"""The one Qt-facing controller of a window: runs turns on the qasync loop, emits signals.

The controller owns the :class:`ChatService`, keeps a strong reference to the running
asyncio task and its :class:`Turn`, cancels them itself, and turns every
:class:`StreamEvent` into a Qt signal. History reads and writes for the window run on the
services' I/O thread (``services.run_io``), never on the UI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QBuffer, QIODevice, QObject, QSize, Signal
from PySide6.QtGui import QImage

from desktop_app.core.attachments import (
    AttachmentRefused,
    attachment_from_bytes,
    check_total,
    estimate_tokens,
    read_attachment,
)
from desktop_app.core.blobs import BlobStore
from desktop_app.core.chat import ChatService, Services, Turn
from desktop_app.core.config import Config, Profile
from desktop_app.core.errors import RillError
from desktop_app.core.events import (
    AutoRoute,
    AutoStage,
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
    StageChanged,
    StreamEvent,
    TextDelta,
    ToolApprovalNeeded,
    ToolCallDelta,
    ToolCallStarted,
    ToolFailed,
    ToolProgress,
    ToolResult,
    ToolRoundStarted,
    UsageUpdate,
)
from desktop_app.core.history import Conversation, SearchHit, StoredMessage
from desktop_app.core.tools.base import POLICIES, Decision, ToolInfo
from desktop_app.core.tools.config import server_configs, set_tool_policy
from desktop_app.core.types import Attachment, TokenUsage
from desktop_app.ui.attachment_chips import decode_image
from desktop_app.ui.chat_view import FRAME_MS

if TYPE_CHECKING:
    from desktop_app.core.context_window import ContextWindows, ModelLimits

log = logging.getLogger("rill.ui")

MAX_PROMPT_CHARS = 2_000_000
"""Longest prompt Rill sends (about half a million tokens, beyond any model's context)."""

READ_INTERVAL_S = FRAME_MS / 1000
"""A frame: while the window shows a stream, its body is read at most this often (the
window draws no more often anyway), so a fast stream costs one wake-up per frame."""

SEARCH_MARKS = ("\x02", "\x03")
"""Around each match in a search excerpt; the sidebar highlights what is between them."""


@dataclass(slots=True)
class StreamStats:
    """Live numbers of the reply in flight, read by the status bar."""

    started: float = 0.0
    first_token: float | None = None
    deltas: int = 0
    chars: int = 0
    max_tokens: int | None = None
    output_tokens: int | None = None
    tools_running: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Tool calls running now: call id → (tool name, ``time.monotonic()`` when it started)."""
    approvals_waiting: int = 0
    """Tool calls waiting for the user's decision."""

    @property
    def tokens(self) -> int:
        return self.output_tokens if self.output_tokens is not None else self.deltas

    def rate(self, now: float | None = None) -> float:
        """Tokens per second since the first token."""
        if self.first_token is None:
            return 0.0
        elapsed = (now if now is not None else time.monotonic()) - self.first_token
        return self.deltas / elapsed if elapsed > 0.05 else 0.0


@dataclass(slots=True)
class Settings:
    """What the header chose for the next turn."""

    profile: str = ""
    model: str = ""
    system: str | None = None
    temperature: float | None = None


class ChatController(QObject):
    """Runs one conversation's turns and history operations for a window."""

    stage_changed = Signal(str, int)
    text_appended = Signal(str)
    retrying = Signal(int, int, float, str)
    rate_limit_wait = Signal(float, str)
    circuit_open = Signal(str, float)
    falling_back = Signal(str, str)
    restarted = Signal(str)
    resumed = Signal(str)
    cache_hit = Signal()
    usage = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal(str)
    turn_started = Signal(str, str)
    turn_ended = Signal()
    busy_changed = Signal(bool)
    conversation_changed = Signal(int)
    conversation_loaded = Signal(object, list)
    conversation_synced = Signal(int, list)
    conversations_listed = Signal(list)
    search_results = Signal(str, list)
    history_changed = Signal()
    models_listed = Signal(str, list)
    models_failed = Signal(str, str)
    notice = Signal(str)
    auto_stage = Signal(str, float, str, int)
    """An Auto turn's stage: its name, progress (0 to 1), message and attempt."""
    auto_route = Signal(object, object)
    """An Auto turn's :class:`AutoRoute`, and the reply message id it describes (or None)."""
    tool_call_delta = Signal(int, str, str, str)
    """(index, call id, name, arguments piece) of a tool call streaming in."""
    tool_approval_needed = Signal(str, str, str, str)
    """(call id, name, server, arguments): the call waits for :meth:`decide`."""
    tool_started = Signal(str, str, str, str)
    """(call id, name, server, arguments) of a call that runs now."""
    tool_progress = Signal(str, float, object, str)
    """(call id, progress, total or None, message) of a running call."""
    tool_result = Signal(object)
    """A :class:`ToolResult`."""
    tool_failed = Signal(object)
    """A :class:`ToolFailed`."""
    tool_round = Signal(int, int)
    """(round, max rounds): the model is asked again with the tools' results."""
    attachment_read = Signal(int, object, object, int)
    """(key, the :class:`Attachment` with its bytes, its thumbnail ``QImage`` or None, its
    token estimate) for a file or image given to :meth:`read_file` / :meth:`read_image`."""
    attachment_refused = Signal(int, str)
    """(key, a sentence naming the file) for one that cannot be attached."""
    prompt_stored = Signal()
    """The prompt of the turn in flight (and its attachments) is in the history."""
    limits_known = Signal(str, str, object)
    """(profile, model, :class:`ModelLimits`) as the model's server says."""
    thumbnail_ready = Signal(str, object)
    """(hash, thumbnail ``QImage``) of a stored image asked for with :meth:`load_thumbnail`."""
    image_ready = Signal(str, object)
    """(name, ``QImage`` to fit the screen) of a stored image to show full size."""
    file_ready = Signal(str)
    """The path of a copy of a stored file, named as attached, to open in its viewer."""

    def __init__(self, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.chat = ChatService(services)
        self.chat.approver = self.approve
        self.chat.on_always = self._always
        services.set_read_interval(READ_INTERVAL_S)
        self.conversation_id: int | None = None
        self.messages: list[StoredMessage] = []
        self.settings = Settings(profile=str(services.config["default_profile"]))
        self.turn: Turn | None = None
        self.task: asyncio.Task[None] | None = None
        self.stats = StreamStats()
        self._background: set[asyncio.Future[Any]] = set()
        self._load_seq = 0
        self._search_seq = 0
        self._retry_now = False
        self._adopt = False
        self._asked: list[tuple[str, str, str]] = []
        """(call id, server, name) of each approval event whose decision was not asked yet."""
        self._answers: dict[str, asyncio.Future[Decision]] = {}
        """The approval each waiting call awaits, by call id."""
        self.saving_config: Callable[[], Config] = lambda: self.services.config
        """The config as it is written to the file (sharing its ``[mcp]`` tables with the
        config in use, so a change made through it is seen at once)."""
        self._decided: dict[str, Decision] = {}
        """Answers given before the loop asked for them (the row shows with the event)."""
        self.tools_off: dict[int | None, set[str]] = {}
        """Tool servers the user turned off, per conversation (None: the new chat)."""
        self._text: list[str] = []
        """Streamed text not yet emitted: what arrived together goes out in one signal."""
        self._windows: ContextWindows | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def windows(self) -> ContextWindows:
        """Context lengths and image support, as the servers say (made at first use, with
        the engine)."""
        if self._windows is None:
            from desktop_app.core.context_window import ContextWindows

            self._windows = ContextWindows(self.services.engine)
        return self._windows

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def profile(self) -> Profile:
        return self.services.config.profile(self.settings.profile or None)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run a coroutine on the loop, keeping a reference until it ends; errors are logged."""
        future = asyncio.ensure_future(coro)
        self._background.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("background task failed", exc_info=exc)
            self.notice.emit(_sentence(exc))

    # -- turns -------------------------------------------------------------------------------

    def check_prompt(self, prompt: str, attachments: Sequence[Attachment] = ()) -> str | None:
        """Why ``prompt`` (with ``attachments``) cannot be sent, or None when it can."""
        if attachments:
            try:
                check_total(attachments)
            except AttachmentRefused as exc:
                return str(exc)
        if not prompt.strip() and not attachments:
            return "There is nothing to send."
        if len(prompt) > MAX_PROMPT_CHARS:
            return (
                f"This message has {len(prompt):,} characters; Rill sends at most "
                f"{MAX_PROMPT_CHARS:,} in one message (about 500,000 tokens, more than any "
                "model reads). Shorten it or send it in parts."
            )
        return None

    def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> bool:
        """Ask ``prompt`` (with ``attachments``, read with their bytes) in the current
        conversation (a new one if none is open)."""
        if self.busy or self.check_prompt(prompt, attachments) is not None:
            return False
        turn = self.chat.send(
            prompt,
            conversation_id=self.conversation_id,
            profile=self.settings.profile or None,
            tools=self.turn_tools(),
            attachments=attachments,
            **self._overrides(),
        )
        self._start(turn, "new", prompt)
        return True

    def regenerate(self, reply_group: int | None = None) -> bool:
        """A new version of a reply (the last one by default)."""
        if self.busy or self.conversation_id is None:
            return False
        group = reply_group if reply_group is not None else self._last_reply_group()
        if group is None:
            return False
        turn = self.chat.regenerate(
            self.conversation_id,
            group,
            profile=self.settings.profile or None,
            tools=self.turn_tools(),
            **self._overrides(),
        )
        self._start(turn, "regenerate", "")
        return True

    def continue_reply(self, message_id: int | None = None) -> bool:
        """Continue a cancelled or interrupted reply (the last one by default)."""
        if self.busy or self.conversation_id is None:
            return False
        if message_id is None:
            last = self._last_assistant()
            if last is None:
                return False
            message_id = last.id
        turn = self.chat.continue_reply(
            self.conversation_id,
            message_id,
            profile=self.settings.profile or None,
            **self._overrides(),
        )
        self._start(turn, "continue", "")
        return True

    def edit_and_resend(self, prompt: str, attachments: Sequence[Attachment] | None = None) -> bool:
        """Ask ``prompt`` with ``attachments`` (None: those of the prompt edited; stored
        ones are sent again from the store) as a new version of the last prompt shown; it
        gets its own replies, and the earlier version keeps its own."""
        if (
            self.busy
            or self.conversation_id is None
            or self.check_prompt(prompt, attachments or ()) is not None
        ):
            return False
        user = self._last_prompt()
        if user is None or self.services.history is None:
            return False
        turn = self.chat.edit(
            self.conversation_id,
            user.id,
            prompt,
            profile=self.settings.profile or None,
            tools=self.turn_tools(),
            attachments=attachments,
            **self._overrides(),
        )
        self._start(turn, "regenerate", prompt)  # the view redoes the last exchange
        return True

    def stop(self) -> bool:
        """Cancel the reply in flight; its partial text is kept, marked cancelled."""
        if self.turn is None:
            return False
        self.turn.cancel()
        self._drop_approvals()
        return True

    def retry_now(self) -> bool:
        """Skip a retry wait: cancel the turn and ask again at once as a new version."""
        if self.turn is None:
            return False
        self._retry_now = True
        self.turn.cancel()
        return True

    async def shutdown(self) -> None:
        """Cancel any reply and wait until its partial text is recorded."""
        task = self.task
        if self.turn is not None:
            self.turn.cancel()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for future in list(self._background):
            future.cancel()

    def _overrides(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {}
        if s.model:
            out["model"] = s.model
        if s.system is not None:
            out["system"] = s.system
        if s.temperature is not None:
            out["temperature"] = s.temperature
        return out

    def _start(self, turn: Turn, mode: str, prompt: str) -> None:
        self.turn = turn
        self._retry_now = False
        self._asked.clear()
        self._decided.clear()
        self._adopt = self.conversation_id is None
        max_tokens = self._overrides().get("max_tokens") or turn.profile.max_tokens
        self.stats = StreamStats(started=time.monotonic(), max_tokens=max_tokens)
        self.turn_started.emit(mode, prompt)
        self.task = asyncio.ensure_future(self._consume(turn))
        self.busy_changed.emit(True)

    async def _consume(self, turn: Turn) -> None:
        before = self.conversation_id
        stored = False
        try:
            async for event in turn:
                if not stored and turn.recorded:
                    stored = True
                    self.prompt_stored.emit()
                if self._adopt and turn.conversation_id is not None:
                    # the turn created the conversation the window is showing
                    self._adopt = False
                    off = self.tools_off.pop(None, None)
                    if off is not None:
                        self.tools_off[turn.conversation_id] = off
                        self._save_tools_off(turn.conversation_id, off)
                    self.conversation_id = turn.conversation_id
                    self.conversation_changed.emit(turn.conversation_id)
                    self.history_changed.emit()
                if type(event) is TextDelta:
                    self._take_text(event)
                    continue
                self._emit_text()  # text first, then what came after it
                self._dispatch(event)
            unsaved = await turn.wait_saved()
            if unsaved is not None:  # a full disk, a folder Rill may not write
                self.notice.emit(str(unsaved))
        except asyncio.CancelledError:
            self._emit_text()
            self.cancelled.emit("")
            raise
        except Exception as exc:
            self._emit_text()
            log.exception("the reply failed unexpectedly")
            self.failed.emit(_sentence(exc), type(exc).__name__)
        finally:
            self._emit_text()
            if not stored and turn.recorded:
                self.prompt_stored.emit()
            self.turn = None
            self.task = None
            retry = self._retry_now
            self._retry_now = False
            self.turn_ended.emit()
            self.busy_changed.emit(False)
            shown = turn.conversation_id
            if turn.recorded and shown is not None and shown == self.conversation_id:
                # (a turn that recorded nothing keeps its prompt and error on screen)
                self.spawn(self._sync(shown, retry_group=turn.reply_group if retry else None))
            if before != self.conversation_id or turn.mode == "new":
                self.history_changed.emit()

    def _take_text(self, event: TextDelta) -> None:
        """Keep a delta's text; the deltas that arrive together are emitted once, when the
        loop next turns (or before the next event of another kind)."""
        stats = self.stats
        if stats.first_token is None:
            stats.first_token = time.monotonic()
        stats.deltas += event.pieces
        stats.chars += len(event.text)
        if not self._text:
            asyncio.get_running_loop().call_soon(self._emit_text)
        self._text.append(event.text)

    def _emit_text(self) -> None:
        if self._text:
            text = "".join(self._text)
            self._text = []
            self.text_appended.emit(text)

    def _dispatch(self, event: StreamEvent) -> None:
        if isinstance(event, StageChanged):
            self.stage_changed.emit(str(event.stage), event.attempt)
        elif isinstance(event, UsageUpdate):
            self.stats.output_tokens = event.usage.output_tokens
            self.usage.emit(event.usage)
        elif isinstance(event, Retrying):
            self.retrying.emit(event.attempt, event.max_attempts, event.delay_s, event.reason)
        elif isinstance(event, RateLimitWait):
            self.rate_limit_wait.emit(event.until, event.reason)
        elif isinstance(event, CircuitOpen):
            self.circuit_open.emit(event.endpoint, event.until)
        elif isinstance(event, FallingBack):
            target = event.to_profile or event.to_model
            self.falling_back.emit(target, event.reason)
        elif isinstance(event, Restarted):
            self.stats.first_token = None
            self.stats.deltas = 0
            self.restarted.emit(event.reason)
        elif isinstance(event, Resumed):
            self.resumed.emit(event.reason)
        elif isinstance(event, CacheHit):
            self.cache_hit.emit()
        elif isinstance(event, Finished):
            self.finished.emit(event.response)
        elif isinstance(event, Failed):
            self.failed.emit(str(event.error), event.error.kind)
        elif isinstance(event, Cancelled):
            self.cancelled.emit(event.partial)
        elif isinstance(event, ToolCallDelta):
            self.tool_call_delta.emit(
                event.index, event.id or "", event.name or "", event.arguments
            )
        elif isinstance(event, AutoStage):
            self.auto_stage.emit(str(event.stage), event.progress, event.message, event.attempt)
        elif isinstance(event, AutoRoute):
            turn = self.turn
            self.auto_route.emit(event, turn.assistant_message_id if turn else None)
        else:
            self._dispatch_tool(event)

    # -- tools -------------------------------------------------------------------------------

    def _dispatch_tool(self, event: StreamEvent) -> None:
        stats = self.stats
        if isinstance(event, ToolApprovalNeeded):
            self._asked.append((event.call_id, event.server, event.name))
            stats.approvals_waiting += 1
            self.tool_approval_needed.emit(event.call_id, event.name, event.server, event.arguments)
        elif isinstance(event, ToolCallStarted):
            stats.tools_running[event.call_id] = (event.name, time.monotonic())
            self.tool_started.emit(event.call_id, event.name, event.server, event.arguments)
        elif isinstance(event, ToolProgress):
            self.tool_progress.emit(event.call_id, event.progress, event.total, event.message or "")
        elif isinstance(event, ToolResult):
            stats.tools_running.pop(event.call_id, None)
            self.tool_result.emit(event)
        elif isinstance(event, ToolFailed):
            stats.tools_running.pop(event.call_id, None)
            self._forget_asked(event.call_id)
            self.tool_failed.emit(event)
        elif isinstance(event, ToolRoundStarted):
            stats.tools_running.clear()
            stats.first_token = None
            stats.deltas = 0
            self.tool_round.emit(event.round, event.max_rounds)

    async def approve(self, info: ToolInfo, arguments: str) -> Decision:
        """Wait for the user's answer on the card of the call just announced (the turn's
        approver: it is asked right after the call's :class:`ToolApprovalNeeded`)."""
        call_id = self._take_asked(info.server, info.name)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        early = self._decided.pop(call_id, None)
        if early is not None:  # answered before the loop asked
            future.set_result(early)
        self._answers[call_id] = future
        try:
            return await future
        finally:
            if self._answers.get(call_id) is future:
                del self._answers[call_id]
            self.stats.approvals_waiting = max(0, self.stats.approvals_waiting - 1)

    def _always(self, info: ToolInfo) -> None:
        """The user allowed a tool always: keep it in the config (its server keeps running)."""
        self.spawn(self.set_tool_policy(info.server, info.name, "always"))

    def decide(self, call_id: str, decision: str) -> bool:
        """The user's answer for a call waiting for approval ("once", "always", "deny")."""
        if decision not in ("once", "always", "deny"):
            return False
        future = self._answers.get(call_id)
        if future is None:
            if not any(asked[0] == call_id for asked in self._asked):
                return False
            self._decided[call_id] = decision  # type: ignore[assignment]
            return True
        if future.done():
            return False
        future.set_result(decision)  # type: ignore[arg-type]
        return True

    @property
    def waiting_for_approval(self) -> list[str]:
        """Call ids whose approval is being awaited now (or about to be)."""
        waiting = [cid for cid, f in self._answers.items() if not f.done()]
        return waiting + [a[0] for a in self._asked if a[0] not in self._decided]

    async def set_tool_policy(self, server: str, tool: str, policy: str) -> None:
        """Keep ``policy`` for a tool in the config (its server keeps running)."""
        if policy not in POLICIES:
            raise ValueError(f"a policy is one of {', '.join(POLICIES)}, not {policy!r}")
        await self.services.run_io(set_tool_policy, self.saving_config(), server, tool, policy)

    def enabled_servers(self) -> list[str]:
        """The tool servers turned on in the config."""
        return [s.name for s in server_configs(self.services.config) if s.enabled]

    def turn_tools(self) -> frozenset[str] | None:
        """The tool servers the next turn may use: None for every enabled one, else those
        the user left on for this chat (empty: no tools)."""
        if self.services.tools is None:
            return frozenset()
        enabled = self.enabled_servers()
        off = self.tools_off.get(self.conversation_id, set())
        if not enabled:
            return frozenset()
        if not off & set(enabled):
            return None
        return frozenset(n for n in enabled if n not in off)

    def set_tools_off(self, off: set[str]) -> None:
        """Turn tool servers off (or back on) for the chat shown; a saved chat keeps it."""
        self.tools_off[self.conversation_id] = set(off)
        if self.conversation_id is not None:
            self._save_tools_off(self.conversation_id, set(off))

    def _save_tools_off(self, conversation_id: int, off: set[str]) -> None:
        history = self.services.history
        if history is not None:
            self.services.submit_io(history.set_tools_off, conversation_id, off)

    def _take_asked(self, server: str, name: str) -> str:
        for i, (call_id, s, n) in enumerate(self._asked):
            if (s, n) == (server, name):
                del self._asked[i]
                return call_id
        if self._asked:
            return self._asked.pop(0)[0]
        return f"{server}/{name}"

    def _forget_asked(self, call_id: str) -> None:
        self._asked = [a for a in self._asked if a[0] != call_id]

    def _drop_approvals(self) -> None:
        """Stop waiting for decisions (the turn is being stopped)."""
        for future in self._answers.values():
            if not future.done():
                future.cancel()
        self._asked.clear()
        self._decided.clear()

    async def _sync(self, conversation_id: int, retry_group: int | None = None) -> None:
        history = self.services.history
        if history is None:
            return
        messages = await self.services.run_io(history.messages, conversation_id)
        if conversation_id != self.conversation_id or self.busy:
            return  # another turn started meanwhile; its own end brings the view up to date
        self.messages = messages
        self.conversation_synced.emit(conversation_id, messages)
        if retry_group is not None and not self.busy:
            self.regenerate(retry_group)

    def _last_assistant(self) -> StoredMessage | None:
        """The last message shown, when it is a reply."""
        last = self.messages[-1] if self.messages else None
        return last if last is not None and last.role == "assistant" else None

    def _last_reply_group(self) -> int | None:
        last = self._last_assistant()
        return None if last is None else last.reply_group

    def _last_prompt(self) -> StoredMessage | None:
        """The last prompt shown, when only its reply (if any) follows it."""
        shown = [m for m in self.messages if m.role in ("user", "assistant")]
        if shown and shown[-1].role == "user":
            return shown[-1]
        if len(shown) >= 2 and shown[-2].role == "user":
            return shown[-2]
        return None

    # -- conversations ---------------------------------------------------------------------

    def new_conversation(self) -> None:
        """Start an empty chat; the conversation is created when the first prompt is sent."""
        if self.busy:
            self.stop()
        self._adopt = False
        self._load_seq += 1
        self.conversation_id = None
        self.tools_off.pop(None, None)
        self.messages = []
        self.settings.system = None
        self.conversation_loaded.emit(None, [])

    def open_conversation(self, conversation_id: int) -> None:
        """Load a conversation into the window (a reply in flight is stopped first)."""
        if self.busy:
            self.stop()
        self._adopt = False
        history = self.services.history
        if history is None:
            return
        self._load_seq += 1
        seq = self._load_seq

        async def load() -> None:
            if self.task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self.task)
            conversation = await self.services.run_io(history.get_conversation, conversation_id)
            if conversation is None:
                self.notice.emit("That conversation no longer exists.")
                self.history_changed.emit()
                return
            messages = await self.services.run_io(history.messages, conversation_id)
            if seq != self._load_seq:
                return
            self.conversation_id = conversation_id
            self.messages = messages
            self.tools_off[conversation_id] = set(conversation.tools_off)
            if conversation.profile and conversation.profile in self.services.config.profiles:
                self.settings.profile = conversation.profile
            self.settings.system = conversation.system_prompt
            self.conversation_loaded.emit(conversation, messages)

        self.spawn(load())

    def refresh_conversations(self) -> None:
        history = self.services.history
        if history is None:
            self.conversations_listed.emit([])
            return

        async def run() -> None:
            items: list[Conversation] = await self.services.run_io(history.list_conversations)
            self.conversations_listed.emit(items)

        self.spawn(run())

    def search(self, query: str) -> None:
        """Full-text search over every message; results arrive as ``search_results``."""
        history = self.services.history
        self._search_seq += 1
        seq = self._search_seq
        if history is None or not query.strip():
            self.search_results.emit(query, [])
            return

        async def run() -> None:
            hits: list[SearchHit] = await self.services.run_search(
                history.search, query, 100, marks=SEARCH_MARKS
            )
            if seq == self._search_seq:
                self.search_results.emit(query, hits)

        self.spawn(run())

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        history = self.services.history
        if history is None or not title.strip():
            return

        async def run() -> None:
            await self.services.run_io(history.rename_conversation, conversation_id, title)
            self.history_changed.emit()

        self.spawn(run())

    def delete_conversation(self, conversation_id: int) -> None:
        history = self.services.history
        if history is None:
            return
        if conversation_id == self.conversation_id:
            self.new_conversation()

        async def run() -> None:
            await self.services.run_io(history.delete_conversation, conversation_id)
            self.history_changed.emit()
            # the copies made to open its files go with them
            await self.services.run_io(self.services.prune_viewer_copies)

        self.spawn(run())

    def switch_version(self, reply_group: int, version: int) -> None:
        """Show another version of a reply."""
        history = self.services.history
        conversation_id = self.conversation_id
        if history is None or conversation_id is None or self.busy:
            return

        async def run() -> None:
            versions = await self.services.run_io(history.versions, reply_group)
            target = next((m for m in versions if m.version == version), None)
            if target is None:
                return
            await self.services.run_io(history.set_active_version, target.id)
            await self._sync(conversation_id)

        self.spawn(run())

    # -- attachments -------------------------------------------------------------------------

    def read_file(self, key: int, path: str) -> None:
        """Read a file to attach off the UI thread: ``attachment_read`` or
        ``attachment_refused`` follows with ``key``."""
        self._attach(key, _read_file, path)

    def read_image(self, key: int, image: QImage, name: str) -> None:
        """Attach an image (pasted) as a PNG named ``name``, encoded off the UI thread."""
        self._attach(key, _read_image, image, name)

    def _attach(self, key: int, fn: Callable[..., Any], *args: Any) -> None:
        async def run() -> None:
            try:
                att, image, tokens = await self.services.run_search(fn, *args)
            except AttachmentRefused as exc:
                self.attachment_refused.emit(key, str(exc))
            except Exception as exc:
                log.warning("attaching failed: %s", type(exc).__name__)
                self.attachment_refused.emit(key, _sentence(exc))
            else:
                self.attachment_read.emit(key, att, image, tokens)

        self.spawn(run())

    def load_thumbnail(self, sha256: str) -> None:
        """Decode a stored image's thumbnail off the UI thread (``thumbnail_ready``)."""
        blobs = self.services.blobs

        async def run() -> None:
            image = await self.services.run_search(_stored_image, blobs, sha256, None)
            if image is not None:
                self.thumbnail_ready.emit(sha256, image)

        self.spawn(run())

    def open_attachment(self, att: Attachment, screen: QSize) -> None:
        """Show a stored attachment: an image full size (``image_ready``, scaled to fit
        ``screen``), any other file as a copy named as attached (``file_ready``)."""
        blobs = self.services.blobs

        async def run() -> None:
            if att.kind == "image":
                image = await self.services.run_search(_stored_image, blobs, att.sha256, screen)
                if image is None:
                    self.notice.emit(f"The image {att.name} cannot be shown.")
                else:
                    self.image_ready.emit(att.name, image)
                return
            try:
                path = await self.services.run_search(self.services.viewable_copy, att)
            except RillError as exc:
                self.notice.emit(str(exc))
            else:
                self.file_ready.emit(str(path))

        self.spawn(run())

    def history_tokens(self) -> int:
        """An estimate of the conversation shown, as it is sent with the next prompt."""
        total = 0
        for m in self.messages:
            total += TokenUsage.estimate_tokens(m.content)
            total += sum(estimate_tokens(a) for a in m.attachments)
        return total

    def look_up_limits(self) -> None:
        """Ask the server of the profile in use what its model reads (``limits_known``)."""
        profile = self.profile
        model = self.settings.model or profile.resolved_model
        if profile.auto is not None:
            from desktop_app.core.context_window import ModelLimits

            self.limits_known.emit(profile.name, model, ModelLimits())
            return

        async def run() -> None:
            limits = await self.windows.limits(
                profile.provider, profile.resolved_base_url, model, profile.name
            )
            self.limits_known.emit(profile.name, model, limits)

        self.spawn(run())

    def known_limits(self) -> ModelLimits | None:
        """What is known of the model in use now (None until it has been looked up)."""
        profile = self.profile
        model = self.settings.model or profile.resolved_model
        return self.windows.known(profile.provider, profile.resolved_base_url, model)

    # -- models ------------------------------------------------------------------------------

    def list_models(self, profile_name: str) -> None:
        """List a profile's models; results arrive as ``models_listed`` or ``models_failed``."""
        profile = self.services.config.profile(profile_name or None)
        if profile.auto is not None:  # Auto chooses the model for each question
            self.models_listed.emit(profile.name, [profile.resolved_model])
            return

        async def run() -> None:
            try:
                models = await self.services.engine.list_models(
                    profile.provider, profile.resolved_base_url, profile.name
                )
            except RillError as exc:
                self.models_failed.emit(profile.name, str(exc))
            except Exception as exc:
                self.models_failed.emit(profile.name, _sentence(exc))
            else:
                self.models_listed.emit(profile.name, models)

        self.spawn(run())


def _read_file(path: str) -> tuple[Attachment, QImage | None, int]:
    """A file read to attach, its thumbnail and its token estimate (on a worker thread)."""
    att = read_attachment(path)
    image = decode_image(att.data) if att.kind == "image" else None
    return att, image, estimate_tokens(att)


def _read_image(image: QImage, name: str) -> tuple[Attachment, QImage | None, int]:
    """A pasted image as a PNG attachment, its thumbnail and tokens (on a worker thread)."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]
        raise AttachmentRefused(f"{name} cannot be attached: the image could not be encoded.")
    att = attachment_from_bytes(bytes(buffer.data().data()), name)
    return att, decode_image(att.data), estimate_tokens(att)


def _stored_image(blobs: BlobStore, sha256: str, fit: QSize | None) -> QImage | None:
    """A stored image decoded (a thumbnail, or to fit ``fit``); None when it is gone."""
    try:
        data = blobs.read(sha256)
    except RillError:
        return None
    return decode_image(data) if fit is None else decode_image(data, fit)


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, RillError):
        return str(exc)
    return f"Something went wrong: {type(exc).__name__}: {exc}"
