"""A Gemini 429 that arrives inside a stream begun with 200 OK (an error event, as the API
sends when the quota runs out mid-request) waits as long as its RetryInfo asks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from desktop_app.core import errors
from desktop_app.core.engine import Generation
from desktop_app.core.events import Failed, Retrying
from desktop_app.core.providers.base import in_stream_error
from desktop_app.core.providers.gemini import retry_info_delay
from desktop_app.simulator import hostile
from tests.helpers import FAST, engine_for, request_for


def _quota_event(retry_delay: str | None) -> bytes:
    error: dict[str, Any] = {
        "code": 429,
        "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED",
    }
    if retry_delay is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
        ]
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


async def _retries(sim: Any, body: bytes) -> tuple[list[Retrying], list[Failed]]:
    sim.script(
        hostile.pieces("gemini", lambda _r: [body], headers={"Content-Type": "text/event-stream"})
    )
    engine = engine_for(FAST)
    generation: Generation = engine.stream(request_for(sim, "gemini"))
    retries: list[Retrying] = []
    failed: list[Failed] = []
    try:
        async for event in generation:
            if isinstance(event, Retrying):
                retries.append(event)
                generation.cancel()  # the wait itself is not the test's business
            elif isinstance(event, Failed):
                failed.append(event)
    finally:
        await engine.aclose()
    return retries, failed


async def test_an_in_stream_quota_error_waits_its_retry_delay(sim: Any) -> None:
    retries, failed = await _retries(sim, _quota_event("7s"))
    assert failed == []
    assert [r.delay_s for r in retries] == [7.0]
    assert "asked to wait" in retries[0].reason


async def test_an_in_stream_quota_error_without_retry_info_backs_off(sim: Any) -> None:
    retries, _ = await _retries(sim, _quota_event(None))
    assert len(retries) == 1
    assert retries[0].delay_s <= FAST.max_delay_s


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [("5s", 5.0), ("0.25s", 0.25), ("12", None), ("-1s", None), ("1e400s", None), (5, None)],
)
def test_retry_info_delay_reads_durations(delay: object, seconds: float | None) -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    body = {"error": {"details": [info]}}
    assert retry_info_delay(body) == seconds


def test_in_stream_error_carries_the_wait() -> None:
    error = in_stream_error({"code": 429, "status": "RESOURCE_EXHAUSTED"}, "Gemini", None, 3.0)
    assert isinstance(error, errors.RateLimited) and error.retry_after_s == 3.0
