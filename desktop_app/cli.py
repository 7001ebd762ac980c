"""``q``: ask a model from the terminal, on the same engine as the window."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import shutil
import signal
import stat
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TextIO, cast

from desktop_app import __version__
from desktop_app.core.attachments import AttachmentRefused, check_total, read_attachment
from desktop_app.core.chat import ChatService, Services, Turn
from desktop_app.core.config import BUILT_IN_PROFILE, Config, check_base_url, load_config
from desktop_app.core.context_window import ContextWindows
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
    Stage,
    StageChanged,
    TextDelta,
    ToolCallStarted,
    ToolFailed,
    ToolProgress,
    ToolResult,
)
from desktop_app.core.history import MAX_SEARCH_TERMS, Conversation, shorten
from desktop_app.core.ledger import format_usage_report
from desktop_app.core.logs import setup_logging
from desktop_app.core.paths import AppPaths, app_paths
from desktop_app.core.pricing import is_local_url
from desktop_app.core.redaction import known_secrets, redact
from desktop_app.core.terminal import for_terminal, json_for_terminal
from desktop_app.core.text import has_surrogates, valid_text
from desktop_app.core.tools.base import Approver, Decision, ToolInfo
from desktop_app.core.tools.config import server_configs, set_tool_policy
from desktop_app.core.tools.mcp import McpHost
from desktop_app.core.types import (
    PROVIDERS,
    Attachment,
    GenerationResponse,
    TokenUsage,
    ToolPart,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 128 + 13
"""What a shell reports for a program whose reader went away (SIGPIPE)."""
MAX_STDIN_BYTES = 16 * 1024 * 1024
"""The longest prompt q reads from standard input."""
MAX_TOKENS_LIMIT = 10_000_000


class Writer:
    """One of q's output streams: all q writes goes through one of these.

    Text from outside Rill (a reply, a server's error, a model name, a stored title) is
    data, never terminal control: every write is passed through :func:`for_terminal`,
    unless the stream is a regular file (``q --export 3 > chat.md``), which keeps the text
    exactly as it was. A pipe is treated as a terminal, since it often ends in one
    (``| less -R``). Notes on stderr are also masked for secrets. Rill's own control
    sequences (the spinner, erasing a restarted answer) go to :attr:`raw` directly.

    When the reader goes away (``q … | head -c 20``), further output is dropped and
    :attr:`broken` is set, so q can stop the request and exit quietly. Ctrl+C while a
    write waits on a terminal that does not read (paused, or far behind) abandons that
    write and all later output to that terminal, so q can exit at once.
    """

    _open: ClassVar[list[Writer]] = []

    def __init__(self, stream: TextIO, *, mask: bool = False) -> None:
        self.raw = stream
        self.mask = mask
        self.keep_raw = _is_regular_file(stream)
        self.broken = False
        self.abandoned = False
        self._writing = False
        Writer._open.append(self)

    def write(self, text: str) -> int:
        if self.broken or self.abandoned:
            return 0
        return self._call(self.raw.write, self.shown(text)) or 0

    def shown(self, text: str) -> str:
        """What :meth:`write` puts out for ``text``: masked, and its controls made visible."""
        if self.mask:
            text = redact(text, known_secrets())
        return valid_text(text) if self.keep_raw else for_terminal(text)

    def flush(self) -> None:
        if not (self.broken or self.abandoned):
            self._call(self.raw.flush)

    def isatty(self) -> bool:
        return self.raw.isatty()

    def interrupt(self) -> None:
        """Called by the Ctrl+C handler: abandon the write in progress, if there is one."""
        if self._writing:
            self._writing = False
            raise _WriteAbandoned

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            self._writing = True
            return method(*args)
        except BrokenPipeError:
            self.broken = True
            self._silence()
        except _WriteAbandoned:
            same = [w for w in Writer._open if w is self or _same_file(w.raw, self.raw)]
            for writer in same:
                writer.abandoned = True
                writer._silence()
        finally:
            self._writing = False
        return None

    def _silence(self) -> None:
        """Point the stream's descriptor at /dev/null, so no later write (nor the flush at
        exit) meets the closed pipe or the terminal that does not read."""
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.raw.fileno())
            os.close(devnull)


class _WriteAbandoned(Exception):
    """Raised by the Ctrl+C handler inside a write that waits on the terminal."""


def _same_file(a: TextIO, b: TextIO) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _is_regular_file(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 2, got '{text}'")
    return value


def _max_tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_TOKENS_LIMIT:,}, got '{text}'"
        )
    return value


def _base_url(text: str) -> str:
    try:
        check_base_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _Parser(argparse.ArgumentParser):
    """Reports a wrong argument in one line (not the whole usage) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(for_terminal(f"q: {message}. See q --help.") + "\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="q",
        description="Ask a large language model from the terminal. The prompt comes from the "
        "arguments, from standard input, or both (the arguments first).",
    )
    p.add_argument("prompt", nargs="*", help="the question; read from stdin when omitted")
    p.add_argument("--profile", help="a profile from the config file")
    p.add_argument("--provider", choices=PROVIDERS, help="wire protocol")
    p.add_argument(
        "--base-url",
        type=_base_url,
        help="server address; OpenAI's includes /v1 (http://host:port/v1), the others do not",
    )
    p.add_argument("--model", help="model name")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temperature", type=_temperature, help="sampling temperature, 0 to 2")
    p.add_argument("--max-tokens", type=_max_tokens, help="most tokens in the answer")
    p.add_argument("--no-stream", action="store_true", help="print the whole answer at once")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--json", action="store_true", help="print one JSON GenerationResponse")
    p.add_argument("--debug", action="store_true", help="log each request and attempt on stderr")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key for this run, e.g. resilience.idle_timeout_s=3",
    )
    p.add_argument(
        "-c",
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue the most recent conversation",
    )
    p.add_argument("--no-log", action="store_true", help="do not record this exchange in history")
    p.add_argument("--list-models", action="store_true", help="list the server's models")
    p.add_argument(
        "--tools",
        metavar="none|all|SERVER,…",
        help="the MCP servers the model may use (default: all enabled ones)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="run tool calls that need approval without asking",
    )
    p.add_argument("--list-tools", action="store_true", help="list the MCP servers and their tools")
    p.add_argument("--cache-stats", action="store_true", help="show response cache statistics")
    p.add_argument("--clear-cache", action="store_true", help="empty the response cache")
    p.add_argument("--route-stats", action="store_true", help="show Auto's route cache statistics")
    p.add_argument("--clear-route-cache", action="store_true", help="empty Auto's route cache")
    p.add_argument("--usage", action="store_true", help="tokens and cost by day, month and model")
    p.add_argument("--history", action="store_true", help="list recent conversations")
    p.add_argument("--search", metavar="TEXT", help="full-text search over all messages")
    p.add_argument("--export", metavar="ID", type=int, help="print a conversation")
    p.add_argument(
        "--format", choices=("md", "json"), default="md", help="format for --export (md)"
    )
    p.add_argument("--import", dest="import_file", metavar="FILE", help="import a JSON export")
    p.add_argument(
        "-f",
        "--file",
        dest="attach",
        action="append",
        default=[],
        type=partial(_attach_spec, "file"),
        metavar="FILE",
        help="attach a file (image, text or code, PDF); repeat for more",
    )
    p.add_argument(
        "--image",
        dest="attach",
        action="append",
        type=partial(_attach_spec, "image"),
        metavar="FILE",
        help="attach an image (PNG, JPEG, WebP, GIF); repeat for more",
    )
    p.add_argument("--version", action="version", version=f"q (Rill) {__version__}")
    return p


def _attach_spec(option: str, path: str) -> tuple[str, str]:
    return option, path


def read_attachments(specs: Sequence[tuple[str, str]]) -> tuple[Attachment, ...]:
    """The files of ``-f`` and ``--image``, in the order given, read and checked before
    anything is sent; raises :class:`AttachmentRefused` with the sentence for the first
    one refused."""
    out: list[Attachment] = []
    for option, path in specs:
        attachment = read_attachment(path)
        if option == "image" and attachment.kind != "image":
            raise AttachmentRefused(
                f"{attachment.name} is not an image: --image takes PNG, JPEG, WebP and GIF "
                "files (attach other files with -f)."
            )
        out.append(attachment)
    check_total(out)
    return tuple(out)


async def images_refused(
    services: Services,
    chat: ChatService,
    config: Config,
    profile_name: str | None,
    given: dict[str, Any],
) -> str | None:
    """The sentence for images to a model its own server says takes none, before anything
    is sent; None when it takes them or nobody says. Only a server on this computer or
    its network is asked (Ollama's ``/api/show``, llama.cpp's ``/props``): one short
    request, where a cloud API would answer with its whole model list and no word on
    images."""
    try:
        profile = config.named_profile(profile_name or str(config["default_profile"]))
    except ValueError:
        return None
    if profile.auto is not None:
        return None
    request = chat.request_for(profile, (), **given)
    if request.provider not in ("ollama", "openai") or not is_local_url(request.base_url):
        return None
    windows = ContextWindows(services.engine)
    limits = await windows.limits(
        request.provider, request.base_url, request.model, request.profile
    )
    if limits.vision is not False:
        return None
    return (
        f"The model {request.model} does not take images, as its server says "
        f"({limits.source}). Choose a model that can, or send the prompt without its images."
    )


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    """One attached file for ``q --json``'s ``attachments``."""
    shown: dict[str, Any] = {
        "name": attachment.name,
        "kind": attachment.kind,
        "mime": attachment.mime,
        "bytes": attachment.size,
        "sha256": attachment.sha256,
    }
    if attachment.kind == "image":
        shown.update(width=attachment.width, height=attachment.height)
    elif attachment.kind == "pdf":
        shown["pages"] = attachment.pages
    return shown


@dataclass
class Output:
    """Where the answer and the notes about it go.

    On a terminal the answer streams, and when stderr shares that terminal every note is
    part of what is on screen: a note never lands in the middle of a line of the answer,
    and a restarted answer is erased (text and notes) before the notes are written again,
    so no text is ever on screen twice. The erase counts the rows the terminal used for
    what q wrote, as written (controls made visible): lines wrapped at the terminal's
    width, characters two cells wide, tabs. If the answer has grown taller than the
    screen, its start has scrolled out of reach: it stays, and the note that the answer
    starts again stands between it and the new one. Otherwise the answer is written once
    at the end.
    """

    out: Writer
    err: Writer
    stream: bool
    json: bool
    printed: list[str] = field(default_factory=list)
    buffered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screen: list[str] = field(default_factory=list)
    """What the answer put on the terminal so far, as written (notes too when shared)."""
    line_open: bool = False

    def __post_init__(self) -> None:
        self.shared = self.stream and self.err.isatty()
        self.spinner = Spinner(self.err.raw)

    def text(self, text: str) -> None:
        if self.json:
            return
        if not self.stream:
            self.buffered.append(text)
            return
        self.spinner.hide()
        self.out.write(text)
        self.out.flush()
        self.printed.append(text)
        self.screen.append(self.out.shown(text))
        self.line_open = not text.endswith("\n")

    def note(self, message: str) -> None:
        self.spinner.hide()
        if self.shared and self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.screen.append("\n")
            self.line_open = False
        self.err.write(message + "\n")
        self.err.flush()
        if self.shared:
            self.screen.append(self.err.shown(message + "\n"))
            self.notes.append(message + "\n")

    def stage(self, message: str) -> None:
        """A stage of an Auto turn: the live line on a terminal until the answer shows
        (after it, a line of its own), else a line on stderr."""
        if self.err.isatty() and not self.printed:
            self.waiting(message)
        else:
            self.note(message)

    def ask(self, question: str) -> None:
        """A question on stderr; the answer is typed on the same line."""
        self.spinner.hide()
        if self.shared and self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False
        self.screen.clear()  # the typed answer moves the lines: never erase above it
        self.err.write(question)
        self.err.flush()

    def waiting(self, message: str) -> None:
        if not self.line_open:
            self.spinner.show(message)

    def restart(self) -> None:
        """The answer starts again: take back what was shown so no text appears twice."""
        self.buffered.clear()
        if not (self.stream and self.printed):
            return
        self.spinner.hide()
        columns, lines = _terminal_size(self.out.raw)
        rows = screen_rows("".join(self.screen), columns)
        self.printed.clear()
        if rows >= lines:  # the start scrolled off: keep it, the next note marks the break
            self.screen.clear()
            if self.line_open:
                self.out.write("\n")
                self.out.flush()
            self.line_open = False
            self.notes.clear()  # they stay on screen above
            return
        _erase(self.out.raw, rows)
        self.screen.clear()
        self.line_open = False
        if self.shared:
            for note in self.notes:
                self.err.write(note)
                self.screen.append(self.err.shown(note))
            self.err.flush()

    def end(self, final: str | None = None) -> None:
        self.spinner.hide()
        if self.json:
            return
        if not self.stream:
            text = final if final is not None else "".join(self.buffered)
            self.out.write(text)
            if text and not text.endswith("\n"):
                self.out.write("\n")
        elif self.line_open:
            self.out.write("\n")
        self.line_open = False
        self.out.flush()


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """Columns and lines of the terminal ``stream`` writes to (the window, not $COLUMNS)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        size = shutil.get_terminal_size()
    return max(1, size.columns), max(1, size.lines)


def cell_width(char: str) -> int:
    """How many terminal cells ``char`` takes: 2 for wide East Asian characters and
    emoji, 0 for combining marks and format characters, else 1."""
    if char < "\u0300":
        return 1
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def screen_rows(text: str, columns: int) -> int:
    """How many rows down from where ``text`` started (at the left edge) a terminal
    ``columns`` wide leaves the cursor after writing it: newlines, and lines wrapped at
    the right edge (the cursor waits there until the next character), with wide
    characters, zero-width ones and tabs (to the next multiple of 8) as a terminal
    places them."""
    rows = col = 0
    pending = False
    for char in text:
        if char == "\n":
            rows += 1
            col, pending = 0, False
        elif char == "\t":
            col, pending = min(columns - 1, (col // 8 + 1) * 8), False
        else:
            width = cell_width(char)
            if width == 0:
                continue
            if pending or col + width > columns:
                rows += 1
                col, pending = 0, False
            col += width
            if col >= columns:
                col, pending = columns - 1, True
    return rows


def _erase(out: TextIO, rows: int) -> None:
    """Move the cursor up ``rows`` rows to the left edge and clear to the end of the screen."""
    out.write("\r" + (f"\x1b[{rows}A" if rows else "") + "\x1b[J")
    out.flush()


class Spinner:
    """A spinner on stderr while waiting, only when stderr is a terminal."""

    def __init__(self, err: TextIO) -> None:
        self._status: Any = None
        self._shown = False
        if err.isatty():
            from rich.console import Console

            self._status = Console(file=err, stderr=True).status("")

    def show(self, message: str) -> None:
        if self._status is not None:
            self._status.update(message)
            if not self._shown:
                self._status.start()
                self._shown = True

    def hide(self) -> None:
        if self._status is not None and self._shown:
            self._status.stop()
            self._shown = False


def _note(err: Writer, message: str) -> None:
    err.write(message + "\n")
    err.flush()


class InputError(ValueError):
    """The prompt or an argument cannot be used; ``str()`` is the sentence for the user."""


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse arguments that are not valid text (bytes that are not UTF-8)."""
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and has_surrogates(v) for v in values):
            option = "the prompt" if name == "prompt" else f"--{name.replace('_', '-')}"
            raise InputError(
                f"{option} is not UTF-8 text; q takes text in UTF-8 (convert it with iconv)."
            )


def read_prompt(args: argparse.Namespace, stdin: TextIO) -> str:
    parts = [" ".join(args.prompt)] if args.prompt else []
    if not stdin.isatty():
        piped = _read_stdin(stdin)
        if piped.strip():
            parts.append(piped)
    return "\n\n".join(p for p in parts if p.strip())


def _read_stdin(stdin: TextIO) -> str:
    """Standard input as text: at most :data:`MAX_STDIN_BYTES`, and only UTF-8."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:
        data = stdin.read(MAX_STDIN_BYTES + 1).encode("utf-8", "surrogateescape")
    else:
        data = buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise InputError(
            f"standard input is longer than {MAX_STDIN_BYTES // (1024 * 1024)} MB, "
            "more than q sends as a prompt."
        )
    try:
        return str(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"standard input is not UTF-8 text (byte {exc.start + 1} is not); q reads text "
            "only (convert it with iconv, or describe the file instead)."
        ) from None


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields given on the command line."""
    given = {
        "provider": args.provider,
        "base_url": args.base_url,
        "model": args.model,
        "system": args.system,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "stream": False if args.no_stream else None,
    }
    return {k: v for k, v in given.items() if v is not None}


def continued(
    conversation: Conversation,
    args: argparse.Namespace,
    config: Config,
    given: dict[str, Any],
) -> tuple[str | None, dict[str, Any]]:
    """The profile and request fields of ``q -c``: the conversation's own profile, server
    and model, except what the command line gives (a profile or provider given brings its
    own server and model)."""
    if args.profile or args.provider:
        return args.profile, given
    name = conversation.profile
    profile = name if name in config.profiles or name == BUILT_IN_PROFILE else None
    remembered = {
        "provider": conversation.provider,
        "base_url": conversation.base_url,
        "model": conversation.model,
    }
    return profile, {**{k: v for k, v in remembered.items() if v}, **given}


def load_settings(args: argparse.Namespace, err: Writer, paths: AppPaths) -> Config | None:
    config = load_config(paths.config_file)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            _note(err, f"q: --set takes KEY=VALUE, got '{item}'.")
            return None
        try:
            config.set(key.strip(), value.strip())
        except ValueError as exc:
            _note(err, f"q: --set {key.strip()}: {exc}.")
            return None
    try:
        config.named_profile(args.profile or str(config["default_profile"]))
    except ValueError as exc:
        _note(err, f"q: {exc}.")
        return None
    return config


async def run(
    args: argparse.Namespace,
    config: Config,
    prompt: str,
    out: Writer,
    err: Writer,
    attachments: Sequence[Attachment] = (),
) -> int:
    if Services.history_upgrade_pending(config, record=not args.no_log):
        _note(
            err,
            "q: updating the conversation history for this version of Rill (once; a large "
            "history can take a minute)…",
        )
    services = Services.open(config=config, record=not args.no_log)
    try:
        if services.cache is not None:
            await services.cache.ready()
            services.warnings.extend(services.cache.warnings)
        for warning in services.warnings:
            _note(err, f"q: {warning}")
        if args.cache_stats or args.clear_cache:
            return await _cache_command(services, args, out)
        if args.route_stats or args.clear_route_cache:
            return await route_command(services, args, out)
        if args.usage:
            return await _usage_command(services, out)
        if args.history or args.search or args.export is not None or args.import_file:
            return await _history_command(services, args, out, err)
        if args.list_tools:
            return await _list_tools(services, out)
        chat = ChatService(services)
        if args.list_models:
            return await _list_models(chat, args, out, err)
        try:
            tools = tool_selection(args.tools, config)
        except InputError as exc:
            _note(err, f"q: {exc}")
            return EXIT_USAGE
        conversation_id: int | None = None
        profile, given = args.profile, overrides(args)
        if args.continue_ and services.history is not None:
            latest = await services.run_io(services.history.latest_conversation)
            if latest is not None:
                conversation_id = latest.id
                profile, given = continued(latest, args, config, given)
        if any(a.kind == "image" for a in attachments):
            refusal = await images_refused(services, chat, config, profile, given)
            if refusal is not None:
                _note(err, f"q: {refusal}")
                return EXIT_USAGE
        turn = chat.send(
            prompt,
            conversation_id=conversation_id,
            profile=profile,
            read_cache=not args.no_cache,
            write_cache=not args.no_cache,
            record=not args.no_log,
            tools=tools,
            attachments=attachments,
            **given,
        )
        return await _ask(turn, args, out, err, attachments)
    finally:
        await services.aclose()


async def _cache_command(services: Services, args: argparse.Namespace, out: Writer) -> int:
    cache = services.cache
    if cache is None:
        out.write("The response cache is turned off (cache.enabled = false).\n")
        return EXIT_OK
    if args.clear_cache:
        removed = await cache.clear()
        out.write(f"Cleared the response cache ({removed} answers removed).\n")
    if args.cache_stats:
        stats = await cache.stats()
        out.write(
            f"Response cache at {services.paths.response_cache_dir}\n"
            f"  answers:   {stats.entries}\n"
            f"  size:      {stats.bytes / 1024 / 1024:.1f} MB\n"
            f"  hits:      {stats.hits}\n"
            f"  misses:    {stats.misses}\n"
            f"  hit rate:  {stats.hit_rate:.0%}\n"
            f"  saved:     ${stats.cost_saved:.4f}\n"
        )
        for model, hits in sorted(stats.hits_by_model.items(), key=lambda kv: -kv[1]):
            out.write(f"  {model}: {hits} hits\n")
    return EXIT_OK


async def _history_command(
    services: Services, args: argparse.Namespace, out: Writer, err: Writer
) -> int:
    history = services.history
    if history is None:
        if services.history_problem is None:  # else a warning has said why
            _note(err, "q: history is turned off (history.enabled = false).")
        return EXIT_FAILED
    try:
        if args.import_file:
            new_id = await services.run_io(history.import_file, Path(args.import_file))
            out.write(f"Imported as conversation {new_id}.\n")
        elif args.export is not None:
            if args.format == "json":
                exported = await services.run_io(history.export_json, args.export)
                text = json.dumps(exported, ensure_ascii=False, indent=2)
                out.write(json_for_terminal(text) + "\n")
            else:
                out.write(await services.run_io(history.export_markdown, args.export))
        elif args.search:
            hits = await services.run_search(history.search, args.search, 200)
            if hits.truncated:
                _note(
                    err, f"q: the search is long; only its first {MAX_SEARCH_TERMS} words are used."
                )
            listed: set[int] = set()
            for hit in hits:  # best first: each conversation once, by its best match
                if hit.conversation_id in listed:
                    continue
                listed.add(hit.conversation_id)
                out.write(f"{hit.conversation_id:>5}  {shorten(hit.conversation_title, 30):<30}  ")
                out.write(hit.snippet.replace("\n", " ") + "\n")
                if len(listed) == 20:
                    break
        else:
            for c in await services.run_io(history.list_conversations, 30):
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at))
                title = shorten(c.title, 60) or "(untitled)"
                out.write(f"{c.id:>5}  {when}  {c.model[:20]:<20}  {title}\n")
    except LookupError:
        _note(err, f"q: there is no conversation {args.export}. See q --history.")
        return EXIT_FAILED
    except OSError as exc:
        _note(err, f"q: cannot read {args.import_file}: {exc.strerror or exc}.")
        return EXIT_FAILED
    return EXIT_OK


async def _usage_command(services: Services, out: Writer) -> int:
    ledger = services.ledger
    if ledger is None:
        return EXIT_FAILED
    budget = float(services.config["budget.monthly_usd"])
    out.write(await services.run_io(format_usage_report, ledger, budget_usd=budget) + "\n")
    return EXIT_OK


async def _list_models(
    chat: ChatService, args: argparse.Namespace, out: Writer, err: Writer
) -> int:
    given = overrides(args)
    profile = chat.config.profile(args.profile)
    if profile.auto is not None:
        names = ", ".join(sorted({t.label for t in profile.auto.targets})) or "none"
        _note(
            err,
            f"q: '{profile.name}' is an Auto profile: it chooses a model among its targets "
            f"({names}) for each question. List a target's models with --profile TARGET.",
        )
        return EXIT_USAGE
    request = chat.request_for(
        profile,
        (),
        provider=given.get("provider"),
        base_url=given.get("base_url"),
    )
    try:
        models = await chat.services.engine.list_models(
            request.provider, request.base_url, request.profile
        )
    except RillError as exc:
        _note(err, f"q: {exc}")
        return EXIT_FAILED
    if not models:
        _note(err, "q: the server lists no models.")
    for name in models:
        out.write(name + "\n")
    model = str(given.get("model") or request.model)
    about = await chat.services.engine.server_info(
        request.provider, request.base_url, request.profile, model=model
    )
    if about.summary():
        _note(err, f"q: {about.summary()}")
    return EXIT_OK


async def _ask(
    turn: Turn,
    args: argparse.Namespace,
    out: Writer,
    err: Writer,
    attachments: Sequence[Attachment] = (),
) -> int:
    output = Output(out, err, stream=out.isatty() and not args.no_stream, json=args.json)
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint(_signum: int, _frame: object) -> None:
        # A plain signal handler, not the loop's: it runs even while a write waits on a
        # terminal that does not read, which it then abandons (the loop would wait too).
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            os._exit(EXIT_CANCELLED)
        loop.call_soon_threadsafe(turn.cancel)
        out.interrupt()
        err.interrupt()

    previous: Any = None
    with contextlib.suppress(ValueError):  # not the main thread: keep asyncio's handling
        previous = signal.signal(signal.SIGINT, on_sigint)
    result: GenerationResponse | None = None
    route: AutoRoute | None = None
    code = EXIT_FAILED
    turn.chat.approver = terminal_approver(output, sys.stdin, assume_yes=args.yes)
    turn.chat.on_always = partial(_allow_always, turn.services.paths.config_file, err)
    calls = _ToolLines(output)
    try:
        async for event in turn:
            if out.broken:
                turn.cancel()
            if type(event) is TextDelta:
                output.text(event.text)
            elif isinstance(event, AutoStage):
                output.stage(f"q: auto: {event.message}")
            elif isinstance(event, AutoRoute):
                if route is None:
                    for sentence in event.skipped:
                        output.note(f"q: auto: {sentence}.")
                route = event
            elif isinstance(event, ToolCallStarted | ToolProgress | ToolResult | ToolFailed):
                calls.show(event)
            elif isinstance(event, StageChanged):
                if event.stage is not Stage.STREAMING:
                    output.waiting(event.stage.value.capitalize() + "…")
            elif isinstance(event, Retrying):
                output.note(
                    f"q: retrying in {event.delay_s:.1f} s (attempt {event.attempt} of "
                    f"{event.max_attempts}): {event.reason}",
                )
            elif isinstance(event, RateLimitWait):
                until = time.strftime("%H:%M:%S", time.localtime(event.until))
                output.note(f"q: waiting {event.delay_s:.0f} s for the rate limit (until {until}).")
            elif isinstance(event, CircuitOpen):
                until = time.strftime("%H:%M:%S", time.localtime(event.until))
                output.note(f"q: {event.endpoint} is failing; its circuit is open until {until}.")
            elif isinstance(event, FallingBack):
                output.note(f"q: falling back from {event.from_model} to {event.to_model}.")
            elif isinstance(event, Restarted):
                output.restart()
                if route is None:  # an Auto turn's stage has said why
                    output.note(f"q: the answer broke off ({event.reason}); starting it again.")
            elif isinstance(event, Resumed):
                output.note(f"q: the answer broke off ({event.reason}); continuing it.")
            elif isinstance(event, CacheHit):
                if args.debug:
                    output.note(f"q: served from cache ({event.key[:12]}…)")
            elif isinstance(event, Finished):
                result = event.response
                code = EXIT_OK
            elif isinstance(event, Failed):
                output.end()
                output.note(f"q: {event.error}")
                if args.debug and event.error.detail:
                    output.note(f"q: {event.error.kind}: {event.error.detail}")
                return EXIT_FAILED
            elif isinstance(event, Cancelled):
                if out.broken:
                    return EXIT_BROKEN_PIPE
                output.end()
                output.note("q: cancelled.")
                return EXIT_CANCELLED
    finally:
        output.spinner.hide()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        _note_failed_servers(turn, output)
    if result is None:
        return code
    output.end(result.content)
    unsaved = await turn.wait_saved()
    if unsaved is not None:
        output.note(f"q: {unsaved}")
        code = EXIT_FAILED
    if args.json:
        shown = {**result.to_dict(), "saved": turn.saved}  # saved: what the cache saved
        if route is not None:
            shown["route"] = route.to_dict()
        shown["tool_calls_run"] = [tool_call_json(part) for part in turn.tool_parts]
        shown["attachments"] = [attachment_json(a) for a in attachments]
        out.write(json_for_terminal(json.dumps(shown, ensure_ascii=False)) + "\n")
        out.flush()
    if args.debug:
        t = result.timing
        output.note(
            f"q: done: {result.finish_reason} ({result.raw_finish_reason}), "
            f"tokens={_tokens(result.usage)}, "
            f"ttft={t.ttft_s}, total={t.total_s}, trace={result.trace_id}",
        )
    return code


async def route_command(services: Services, args: argparse.Namespace, out: Writer) -> int:
    """``--clear-route-cache`` and ``--route-stats`` (as JSON with ``--json``)."""
    cache = services.route_cache()
    if args.clear_route_cache:
        removed = await services.run_io(cache.clear)
        out.write(f"Cleared the route cache ({removed} routes removed).\n")
    if args.route_stats:
        stats = await services.run_io(cache.stats)
        if args.json:
            out.write(json_for_terminal(json.dumps(stats.to_dict(), ensure_ascii=False)) + "\n")
        else:
            out.write(
                f"Route cache at {cache.directory}\n"
                f"  routes:    {stats.size}\n"
                f"  hits:      {stats.hits}\n"
                f"  misses:    {stats.misses}\n"
                f"  hit rate:  {stats.hit_rate:.0%}\n"
            )
            for model, hits in sorted(stats.hits_by_model.items(), key=lambda kv: -kv[1]):
                out.write(f"  {model}: {hits} hits\n")
    if cache.problem is not None:
        out.write(cache.problem + "\n")
        return EXIT_FAILED
    return EXIT_OK


# -- tools ---------------------------------------------------------------------------------

TOOL_JSON_RESULT_CHARS = 1000
_SHOWN_ARGUMENTS = 120


def tool_selection(spec: str | None, config: Config) -> frozenset[str] | None:
    """The servers ``--tools`` names: None for all (the default), an empty set for none."""
    if spec is None or spec.strip() == "all":
        return None
    if spec.strip() == "none":
        return frozenset()
    names = [name.strip() for name in spec.split(",") if name.strip()]
    known = [s.name for s in server_configs(config)]
    unknown = [name for name in names if name not in known]
    if unknown:
        have = ", ".join(known) if known else "none"
        raise InputError(
            f"--tools: there is no MCP server named {unknown[0]!r} in the config "
            f"(its servers: {have})."
        )
    return frozenset(names)


def tool_call_json(part: ToolPart) -> dict[str, Any]:
    """One call for ``q --json``'s ``tool_calls_run``."""
    try:
        arguments: Any = json.loads(part.arguments) if part.arguments.strip() else {}
    except ValueError:
        arguments = part.arguments
    return {
        "server": part.server,
        "tool": part.name,
        "arguments": arguments,
        "ok": part.ok and not part.is_error,
        "duration_s": round(part.duration_s, 3),
        "result": part.result[:TOOL_JSON_RESULT_CHARS],
    }


class _ToolLines:
    """Each tool call and its outcome as one line on stderr; while one runs, the spinner
    says which (with its progress). A call shown again after a restart is not repeated."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.names: dict[str, str] = {}
        self.done: set[str] = set()

    def show(self, event: ToolCallStarted | ToolProgress | ToolResult | ToolFailed) -> None:
        if isinstance(event, ToolCallStarted):
            self.names[event.call_id] = event.name
            self.output.waiting(f"Running {event.name}…")
            return
        if isinstance(event, ToolProgress):
            name = self.names.get(event.call_id, "the tool")
            total = f" of {event.total:g}" if event.total is not None else ""
            said = f": {shorten(event.message, 60)}" if event.message else ""
            self.output.waiting(
                f"Running {name} ({event.elapsed_s:.0f} s, {event.progress:g}{total}){said}…"
            )
            return
        if event.call_id in self.done:
            return
        self.done.add(event.call_id)
        where = f"{event.server}/{event.name}" if event.server else event.name
        if isinstance(event, ToolResult):
            outcome = "error" if event.is_error else "ok"
            said = shorten(event.content, 100)
            self.output.note(f"q: tool {where}: {outcome} in {event.duration_s:.1f} s: {said}")
        elif event.denied:
            self.output.note(f"q: tool {where}: declined.")
        else:
            self.output.note(f"q: tool {where}: failed: {shorten(event.reason, 200)}")


def terminal_approver(output: Output, stdin: TextIO, *, assume_yes: bool) -> Approver:
    """Asks on the terminal about each call that needs approval: y (this once), a (always:
    saved to the config), n (deny). Without a terminal to ask on, such calls are denied
    unless ``assume_yes``."""

    async def approve(info: ToolInfo, arguments: str) -> Decision:
        if assume_yes:
            return "once"
        if not (stdin.isatty() and output.err.isatty()):
            output.note(
                f"q: {info.server}/{info.name} asks for approval and there is no terminal "
                "to ask on; --yes allows such calls."
            )
            return "deny"
        shown = shorten(arguments, _SHOWN_ARGUMENTS)
        output.ask(f"q: run {info.server}/{info.name} {shown}? [y]es once, [a]lways, [n]o: ")
        try:
            answer = (await _read_line(stdin)).strip().lower()
        except asyncio.CancelledError:  # Ctrl+C: what follows starts on a line of its own
            output.err.write("\n")
            output.err.flush()
            raise
        if answer in ("y", "yes"):
            return "once"
        if answer in ("a", "always"):
            return "always"
        return "deny"

    return approve


async def _read_line(stdin: TextIO) -> str:
    """A line from ``stdin``, read on a thread of its own (one that never delays exit)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        try:
            line = stdin.readline()
        except (OSError, ValueError):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="q-approval", daemon=True).start()
    return await answer


def _allow_always(config_file: Path, err: Writer, info: ToolInfo) -> None:
    """Save "always" as the tool's policy in the config file (as it is on disk: options of
    this run such as --set stay out of it)."""
    try:
        set_tool_policy(load_config(config_file), info.server, info.name, "always")
    except (OSError, ValueError, RillError) as exc:
        _note(err, f"q: could not save the choice to always allow {info.name}: {exc}")


def _note_failed_servers(turn: Turn, output: Output) -> None:
    """Say which chosen tool servers could not start, so their tools were not offered."""
    host = turn.services.tools
    if not isinstance(host, McpHost) or not turn.uses_tools:
        return
    for state in host.states():
        if state.state == "failed" and (turn.tools is None or state.name in turn.tools):
            output.note(f"q: tool server {state.name} failed: {shorten(state.reason, 300)}")


async def _list_tools(services: Services, out: Writer) -> int:
    host = services.tools
    if not isinstance(host, McpHost) or not host.servers():
        out.write("No MCP servers are configured (add [mcp.servers.NAME] to the config).\n")
        return EXIT_OK
    await host.list_tools()
    for state in host.states():
        tools = f"{len(state.tools)} tool{'s' if len(state.tools) != 1 else ''}"
        reason = f"  {shorten(state.reason, 300)}" if state.reason else ""
        out.write(f"{state.name}\t{state.state}\t{tools}{reason}\n")
        for tool in state.tools:
            policy = host.policy(state.name, tool.name)
            about = f"\t{shorten(tool.description, 100)}" if tool.description else ""
            out.write(f"  {state.name}/{tool.name}\t{policy}{about}\n")
    out.flush()
    return EXIT_OK


def _tokens(usage: TokenUsage | None) -> str:
    """Token counts for a note; estimated ones (the server sent none) marked ≈."""
    if usage is None:
        return "unknown"
    mark = "≈" if usage.estimated else ""
    return f"{mark}{usage.input_tokens} in + {mark}{usage.output_tokens} out" + (
        " (estimated)" if usage.estimated else ""
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = Writer(sys.stdout), Writer(sys.stderr, mask=True)
    code = _main(args, out, err)
    return EXIT_BROKEN_PIPE if out.broken and code == EXIT_OK else code


def _main(args: argparse.Namespace, out: Writer, err: Writer) -> int:
    paths = app_paths().ensure()
    log_stream = cast(TextIO, err) if args.debug else None
    try:
        setup_logging(paths.log_dir, debug=args.debug, stream=log_stream)
    except OSError:  # a log folder Rill may not write: no log, and nothing on stderr
        logging.getLogger("rill").addHandler(logging.NullHandler())
    config = load_settings(args, err, paths)
    if config is None:
        return EXIT_USAGE
    prompt = ""
    attachments: tuple[Attachment, ...] = ()
    commands = (
        args.cache_stats,
        args.clear_cache,
        args.route_stats,
        args.clear_route_cache,
        args.usage,
        args.history,
        args.search,
    )
    try:
        check_arguments(args)
        asks = not (args.list_models or args.list_tools or any(commands))
        if asks and args.export is None and not args.import_file:
            prompt = read_prompt(args, sys.stdin)
            attachments = read_attachments(args.attach)
            if not prompt and not attachments:
                _note(err, 'q: no prompt. Try: q "What is the capital of France?"')
                return EXIT_USAGE
    except (InputError, AttachmentRefused) as exc:
        _note(err, f"q: {exc}")
        return EXIT_USAGE
    try:
        return asyncio.run(run(args, config, prompt, out, err, attachments))
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except RillError as exc:
        _note(err, f"q: {exc}")
        return EXIT_FAILED
    except Exception as exc:
        if args.debug:
            raise
        _note(
            err, f"q: unexpected error: {type(exc).__name__}: {exc}. Run with --debug for details."
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
