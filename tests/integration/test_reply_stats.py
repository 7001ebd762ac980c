"""What is known of a reply that did not finish is kept: tokens so far (estimated when the
server had not said), the time to its first text and how long it ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from desktop_app.core.chat import ChatService, Services
from desktop_app.core.events import TextDelta
from desktop_app.core.paths import app_paths
from desktop_app.simulator import Fault


async def test_a_cancelled_reply_keeps_its_estimated_tokens_and_times(
    sim: Any, tmp_path: Path
) -> None:
    sim.script(Fault(tokens=400, tokens_per_s=200))
    services = Services.open(paths=app_paths(tmp_path / "home"), api_key=lambda _r: "k")
    try:
        turn = ChatService(services).send(
            "Tell me a long story", provider="openai", base_url=sim.base_url("openai"), model="m"
        )
        shown = ""
        async for event in turn:
            if isinstance(event, TextDelta):
                shown += event.text
                if len(shown) > 40:
                    turn.cancel()
        assert services.history is not None
        await services.run_io(lambda: None)  # the last save has landed
        await turn.wait_saved()
        reply = services.history.messages(turn.conversation_id)[-1]
        assert reply.status == "cancelled"
        assert reply.content and reply.estimated is True
        assert reply.output_tokens is not None and reply.output_tokens > 0
        assert reply.ttft_s is not None and reply.total_s is not None
        assert 0 <= reply.ttft_s <= reply.total_s
    finally:
        await services.aclose()
