"""``python -m desktop_app.simulator``: run the simulator until Ctrl+C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from desktop_app.simulator import hostile
from desktop_app.simulator.faults import FAULT_HEADER, SPEC_HELP, FaultSpecError, parse_faults
from desktop_app.simulator.routing import parse_judge_scores
from desktop_app.simulator.server import Fault, Simulator


def _fault_spec(text: str) -> list[Fault]:
    try:
        return parse_faults(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _judge_scores(text: str) -> dict[str, int]:
    try:
        return parse_judge_scores(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _models(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one model, e.g. sim-small,sim-vision")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m desktop_app.simulator",
        description="A local LLM server speaking the OpenAI, Ollama, Anthropic and Gemini "
        "wire protocols on one port. A prompt asking for code, a table or a list gets one; "
        "'/echo TEXT' answers TEXT; asking the same again gets new words.",
        epilog=SPEC_HELP
        + f"\nThe same spec in a request's {FAULT_HEADER} header makes that request fail:\n"
        "the first identical request (same header, same body) takes the first fault, the\n"
        "next the second, and so on; later ones are answered, so a client's retries get\n"
        "through.\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--fault",
        action="append",
        default=[],
        type=_fault_spec,
        metavar="SPEC",
        help="fail the next chat requests as SPEC says, e.g. 503x2, 429:retry-after=2, "
        "drop@20, stall@10:5s, malformed@5 (repeatable; the spec language is below)",
    )
    parser.add_argument(
        "--models",
        type=_models,
        default=("sim-small", "sim-large"),
        metavar="NAME,...",
        help="the models it serves (default sim-small,sim-large); one named like a vision "
        "model (sim-vision, …-vl, llava…) is listed by its Ollama as taking images",
    )
    parser.add_argument(
        "--judge-scores",
        type=_judge_scores,
        default={},
        metavar="MODEL=SCORE,...",
        help="as Auto's judge, score answers by the model that wrote them, e.g. "
        "sim-small=3,sim-large=9 (any other model: 8)",
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
        judge_scores=args.judge_scores,
        models=args.models,
    )
    for faults in args.fault:
        sim.script(*faults)
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
    if sim.pending_faults:
        print(
            f"The next {len(sim.pending_faults)} chat request(s) will fail as scripted.",
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
