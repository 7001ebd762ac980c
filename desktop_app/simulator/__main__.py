"""``python -m desktop_app.simulator``: run the simulator until Ctrl+C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from desktop_app.simulator import hostile
from desktop_app.simulator.server import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m desktop_app.simulator",
        description="A local LLM server speaking the OpenAI, Ollama, Anthropic and Gemini "
        "wire protocols on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    parser.add_argument(
        "--tokens-per-s",
        type=float,
        default=50.0,
        help="streaming pace; 0 sends as fast as possible (default 50)",
    )
    parser.add_argument(
        "--tokens", type=int, default=300, help="tokens in an ordinary reply (default 300)"
    )
    parser.add_argument(
        "--hostile",
        choices=sorted(hostile.CASES),
        help="answer every chat request with this hostile case (to try a client against)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    sim = Simulator(
        args.host,
        args.port,
        tokens_per_s=args.tokens_per_s,
        default_tokens=args.tokens,
        always=hostile.CASES[args.hostile] if args.hostile else None,
    )
    await sim.start()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(
        f"Rill simulator listening on {sim.url} — try: "
        f'q --base-url {sim.base_url("openai")} "hello"  '
        f"(other providers: --provider ollama|anthropic|gemini --base-url {sim.url}); "
        "Ctrl+C stops it.",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(
            f"The simulator could not listen on {args.host}:{args.port} ({exc.strerror or exc}). "
            "Choose another port with --port.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
