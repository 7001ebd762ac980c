"""Small helpers for tests that drive the engine against the simulator."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from desktop_app.core.engine import Engine, Generation
from desktop_app.core.events import StreamEvent, TextDelta
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import ChatRequest, Message, ProviderName

FAST = ResilienceSettings(
    max_retries=3,
    base_delay_s=0.01,
    max_delay_s=0.1,
    connect_timeout_s=2.0,
    first_token_timeout_s=5.0,
    idle_timeout_s=2.0,
)


def request_for(
    sim: Any,
    provider: ProviderName,
    prompt: str = "Tell me about rivers",
    *,
    model: str = "sim-small",
    **kwargs: Any,
) -> ChatRequest:
    return ChatRequest(
        provider=provider,
        base_url=sim.base_url(provider),
        model=model,
        messages=(Message("user", prompt),),
        **kwargs,
    )


def engine_for(settings: ResilienceSettings = FAST, **kwargs: Any) -> Engine:
    return Engine(resilience=settings, api_key=lambda _r: "sk-test-key", **kwargs)


async def collect(stream: Generation) -> list[StreamEvent]:
    return [event async for event in stream]


def text_of(events: Sequence[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true (for state in another process or thread)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def run_q(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``q`` with ``args`` in a process of its own, with ``home`` as its RILL_HOME, no API
    key from the environment and an empty standard input."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["RILL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "desktop_app.cli", *args],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def while_held(hold: Callable[[], AbstractContextManager[object]]) -> Iterator[None]:
    """Run the block while another thread is inside ``hold()`` (a store's lock, a write
    transaction, as a slow save holds them); the thread leaves it when the block ends."""
    inside = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with hold():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)
