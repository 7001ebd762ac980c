"""The simulator in its own process, pacing tokens on a microsecond-resolution timer.

``python -m benchmarks.paced_simulator --port PORT --tokens N --tokens-per-s RATE`` serves
:class:`desktop_app.simulator.Simulator` unchanged, on an asyncio loop whose selector is
``select()`` rather than the default ``epoll``. ``epoll_wait`` takes its timeout in whole
milliseconds and asyncio rounds it up, so the simulator's sub-millisecond sleeps last at least
1 ms and a 2,000 tokens/s stream arrives at about 1,700 tokens/s; ``select()`` takes
microseconds, and the same code then keeps the pace asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import selectors
import signal
import sys

from benchmarks.common import RunningSimulator, simulator_process
from desktop_app.simulator.server import Simulator


async def _serve(host: str, port: int, tokens: int, tokens_per_s: float) -> None:
    await serve_until_sigterm(
        Simulator(host, port, tokens_per_s=tokens_per_s, default_tokens=tokens)
    )


async def serve_until_sigterm(sim: Simulator) -> None:
    """Run ``sim`` in this child process until it is sent SIGTERM."""
    await sim.start()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paced_simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--tokens-per-s", type=float, required=True)
    args = parser.parse_args(argv)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(args.host, args.port, args.tokens, args.tokens_per_s))
    finally:
        loop.close()
    return 0


def paced_simulator(
    *, tokens: int, tokens_per_s: float, startup_timeout_s: float = 30.0
) -> contextlib.AbstractContextManager[RunningSimulator]:
    """This module's server in a child process; yields once its port accepts connections."""
    return simulator_process(
        tokens=tokens,
        tokens_per_s=tokens_per_s,
        startup_timeout_s=startup_timeout_s,
        module="benchmarks.paced_simulator",
    )


if __name__ == "__main__":
    sys.exit(main())
