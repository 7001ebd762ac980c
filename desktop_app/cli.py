"""``q``: ask a model from the terminal, on the same engine as the window."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from desktop_app import __version__
from desktop_app.core.chat import ChatService, Services, Turn
from desktop_app.core.config import Config, load_config
from desktop_app.core.errors import RillError
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
    TextDelta,
)
from desktop_app.core.ledger import format_usage_report
from desktop_app.core.logs import setup_logging
from desktop_app.core.paths import AppPaths, app_paths
from desktop_app.core.types import PROVIDERS, GenerationResponse

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="q",
        description="Ask a large language model from the terminal. The prompt comes from the "
        "arguments, from standard input, or both (the arguments first).",
    )
    p.add_argument("prompt", nargs="*", help="the question; read from stdin when omitted")
    p.add_argument("--profile", help="a profile from the config file")
    p.add_argument("--provider", choices=PROVIDERS, help="wire protocol")
    p.add_argument(
        "--base-url",
        help="server address; OpenAI's includes /v1 (http://host:port/v1), the others do not",
    )
    p.add_argument("--model", help="model name")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int)
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
    p.add_argument("--cache-stats", action="store_true", help="show response cache statistics")
    p.add_argument("--clear-cache", action="store_true", help="empty the response cache")
    p.add_argument("--usage", action="store_true", help="tokens and cost by day, month and model")
    p.add_argument("--history", action="store_true", help="list recent conversations")
    p.add_argument("--search", metavar="TEXT", help="full-text search over all messages")
    p.add_argument("--export", metavar="ID", type=int, help="print a conversation")
    p.add_argument(
        "--format", choices=("md", "json"), default="md", help="format for --export (md)"
    )
    p.add_argument("--import", dest="import_file", metavar="FILE", help="import a JSON export")
    p.add_argument("--version", action="version", version=f"q (Rill) {__version__}")
    return p


@dataclass
class Output:
    """Where the answer and the notes about it go.

    On a terminal the answer streams, and when stderr shares that terminal every note is
    part of what is on screen: a note never lands in the middle of a line of the answer,
    and a restarted answer is erased (text and notes) before the notes are written again,
    so no text is ever on screen twice. Otherwise the answer is written once at the end.
    """

    out: TextIO
    err: TextIO
    stream: bool
    json: bool
    printed: list[str] = field(default_factory=list)
    buffered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screen: list[str] = field(default_factory=list)
    line_open: bool = False

    def __post_init__(self) -> None:
        self.shared = self.stream and self.err.isatty()
        self.spinner = Spinner(self.err)

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
        if self.shared:
            self.screen.append(text)
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
            self.screen.append(message + "\n")
            self.notes.append(message + "\n")

    def waiting(self, message: str) -> None:
        if not self.line_open:
            self.spinner.show(message)

    def restart(self) -> None:
        """The answer starts again: take back what was shown so no text appears twice."""
        self.buffered.clear()
        if self.stream and self.printed:
            shown = "".join(self.screen) if self.shared else "".join(self.printed)
            _erase(self.out, shown)
            self.printed.clear()
            self.screen.clear()
            self.line_open = False
            if self.shared:
                for note in self.notes:
                    self.err.write(note)
                    self.screen.append(note)
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


def _erase(out: TextIO, text: str) -> None:
    """Move the cursor back over ``text`` (as wrapped by the terminal) and clear from there."""
    width = max(1, shutil.get_terminal_size().columns)
    lines = text.split("\n")
    rows = sum(max(1, -(-len(line) // width)) for line in lines)
    out.write("\r" + "\x1b[1A" * (rows - 1) + "\x1b[J")
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


def _note(err: TextIO, message: str) -> None:
    err.write(message + "\n")
    err.flush()


def read_prompt(args: argparse.Namespace, stdin: TextIO) -> str:
    parts = [" ".join(args.prompt)] if args.prompt else []
    if not stdin.isatty():
        piped = stdin.read()
        if piped.strip():
            parts.append(piped)
    return "\n\n".join(p for p in parts if p.strip())


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The request fields given on the command line."""
    given = {
        "provider": args.provider,
        "base_url": args.base_url,
        "model": args.model,
        "system": args.system,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
    }
    return {k: v for k, v in given.items() if v is not None}


def load_settings(args: argparse.Namespace, err: TextIO, paths: AppPaths) -> Config | None:
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
    return config


async def run(
    args: argparse.Namespace,
    config: Config,
    prompt: str,
    out: TextIO,
    err: TextIO,
) -> int:
    services = Services.open(config=config, record=not args.no_log)
    try:
        if services.cache is not None:
            await services.cache.ready()
            services.warnings.extend(services.cache.warnings)
        for warning in services.warnings:
            _note(err, f"q: {warning}")
        if args.cache_stats or args.clear_cache:
            return await _cache_command(services, args, out)
        if args.usage:
            return await _usage_command(services, out)
        if args.history or args.search or args.export is not None or args.import_file:
            return await _history_command(services, args, out, err)
        chat = ChatService(services)
        if args.list_models:
            return await _list_models(chat, args, out, err)
        conversation_id: int | None = None
        if args.continue_ and services.history is not None:
            latest = await services.run_io(services.history.latest_conversation)
            conversation_id = latest.id if latest is not None else None
        turn = chat.send(
            prompt,
            conversation_id=conversation_id,
            profile=args.profile,
            read_cache=not args.no_cache,
            write_cache=not args.no_cache,
            record=not args.no_log,
            **overrides(args),
        )
        return await _ask(turn, args, out, err)
    finally:
        await services.aclose()


async def _cache_command(services: Services, args: argparse.Namespace, out: TextIO) -> int:
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
    services: Services, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    history = services.history
    if history is None:
        _note(err, "q: history is turned off (history.enabled = false).")
        return EXIT_FAILED
    try:
        if args.import_file:
            data = await services.run_io(Path(args.import_file).read_text, encoding="utf-8")
            new_id = await services.run_io(history.import_json, data)
            out.write(f"Imported as conversation {new_id}.\n")
        elif args.export is not None:
            if args.format == "json":
                exported = await services.run_io(history.export_json, args.export)
                out.write(json.dumps(exported, ensure_ascii=False, indent=2) + "\n")
            else:
                out.write(await services.run_io(history.export_markdown, args.export))
        elif args.search:
            for hit in await services.run_io(history.search, args.search, 20):
                out.write(f"{hit.conversation_id:>5}  {hit.conversation_title[:30]:<30}  ")
                out.write(hit.snippet.replace("\n", " ") + "\n")
        else:
            for c in await services.run_io(history.list_conversations, 30):
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at))
                out.write(f"{c.id:>5}  {when}  {c.model[:20]:<20}  {c.title or '(untitled)'}\n")
    except LookupError:
        _note(err, f"q: there is no conversation {args.export}. See q --history.")
        return EXIT_FAILED
    except OSError as exc:
        _note(err, f"q: cannot read {args.import_file}: {exc.strerror}.")
        return EXIT_FAILED
    return EXIT_OK


async def _usage_command(services: Services, out: TextIO) -> int:
    ledger = services.ledger
    if ledger is None:
        return EXIT_FAILED
    budget = float(services.config["budget.monthly_usd"])
    out.write(await services.run_io(format_usage_report, ledger, budget_usd=budget) + "\n")
    return EXIT_OK


async def _list_models(
    chat: ChatService, args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    given = overrides(args)
    profile = chat.config.profile(args.profile)
    request = chat.request_for(
        profile,
        (),
        provider=given.get("provider"),  # type: ignore[arg-type]
        base_url=given.get("base_url"),  # type: ignore[arg-type]
    )
    try:
        models = await chat.services.engine.list_models(
            request.provider, request.base_url, request.profile
        )
    except RillError as exc:
        _note(err, f"q: {exc}")
        return EXIT_FAILED
    for name in models:
        out.write(name + "\n")
    return EXIT_OK


async def _ask(turn: Turn, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    output = Output(out, err, stream=out.isatty() and not args.no_stream, json=args.json)
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            os._exit(EXIT_CANCELLED)
        turn.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    result: GenerationResponse | None = None
    code = EXIT_FAILED
    try:
        async for event in turn:
            if type(event) is TextDelta:
                output.text(event.text)
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
                output.end()
                output.note("q: cancelled.")
                return EXIT_CANCELLED
    finally:
        output.spinner.hide()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    if result is None:
        return code
    output.end(result.content)
    if args.json:
        out.write(result.to_json() + "\n")
        out.flush()
    if args.debug:
        t = result.timing
        output.note(
            f"q: done: {result.finish_reason} ({result.raw_finish_reason}), "
            f"usage={result.usage.to_dict() if result.usage else None}, "
            f"ttft={t.ttft_s}, total={t.total_s}, trace={result.trace_id}",
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    paths = app_paths().ensure()
    setup_logging(paths.log_dir, debug=args.debug, stream=err if args.debug else None)
    config = load_settings(args, err, paths)
    if config is None:
        return EXIT_USAGE
    prompt = ""
    commands = (args.cache_stats, args.clear_cache, args.usage, args.history, args.search)
    if not (args.list_models or any(commands) or args.export is not None or args.import_file):
        prompt = read_prompt(args, sys.stdin)
        if not prompt:
            _note(err, 'q: no prompt. Try: q "What is the capital of France?"')
            return EXIT_USAGE
    try:
        return asyncio.run(run(args, config, prompt, out, err))
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
