"""Auto over real sockets: the simulator serves a small and a large model, and acts as the
classifier and the judge (its judge scores each answer by the model that wrote it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from desktop_app.core.chat import ChatService, Services
from desktop_app.core.config import Config, load_config
from desktop_app.core.events import (
    AutoRoute,
    AutoStage,
    AutoStageName,
    Cancelled,
    Failed,
    Finished,
    Restarted,
    StreamEvent,
    TextDelta,
    ToolResult,
)
from desktop_app.core.paths import app_paths
from desktop_app.core.routing.auto import AutoTurn
from desktop_app.core.types import TokenUsage
from desktop_app.simulator import Fault, Simulator
from tests.local_tools import LocalHost, echo

SIMPLE = "hello there"
COMPLEX = (
    "Implement a thread-safe, lock-free queue in Rust with unit tests, and explain the "
    "memory ordering of each atomic operation. It must be production-ready."
)


@pytest.fixture
async def judged() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        tokens_per_s=0, default_tokens=20, judge_scores={"sim-small": 3, "sim-large": 9}
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def auto_config(home: Path, sim: Simulator, extra: str = "") -> Config:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = sim.base_url("openai")
    path.write_text(
        f"""
[resilience]
max_retries = 0
base_delay_s = 0.01
[profiles.fast]
provider = "openai"
base_url = "{url}"
model = "sim-small"
[profiles.strong]
provider = "openai"
base_url = "{url}"
model = "sim-large"
[profiles.auto]
kind = "auto"
targets = [
  {{ profile = "fast", tier = "fast" }},
  {{ profile = "strong", tier = "strong", strengths = ["code", "math"] }},
]
{extra}
""",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.problems == []
    return config


def open_services(home: Path, config: Config) -> Services:
    return Services.open(config=config, paths=app_paths(), api_key=lambda _r: "sk-test")


async def run(turn: AutoTurn, on: Callable[[StreamEvent], None] | None = None) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    async for event in turn:
        events.append(event)
        if on is not None:
            on(event)
    return events


def stages(events: Sequence[StreamEvent]) -> list[AutoStageName]:
    return [e.stage for e in events if isinstance(e, AutoStage)]


def last_route(events: Sequence[StreamEvent]) -> AutoRoute:
    return [e for e in events if isinstance(e, AutoRoute)][-1]


def models_asked(sim: Simulator) -> list[str]:
    return [r.json["model"] for r in sim.chat_requests]


def ask(services: Services, prompt: str) -> AutoTurn:
    turn = ChatService(services).send(prompt, profile="auto")
    assert isinstance(turn, AutoTurn)
    return turn


async def test_a_simple_question_goes_to_the_cheap_target_and_a_complex_code_one_to_the_strong(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged))
    try:
        events = await run(ask(services, SIMPLE))
        assert stages(events) == [
            AutoStageName.ANALYSING,
            AutoStageName.ANALYSED,
            AutoStageName.ROUTING,
            AutoStageName.ROUTED,
            AutoStageName.GENERATING,
            AutoStageName.COMPLETE,
        ]
        progress = [e.progress for e in events if isinstance(e, AutoStage)]
        assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0
        messages = {e.stage: e.message for e in events if isinstance(e, AutoStage)}
        assert messages[AutoStageName.ANALYSED] == "chat, complexity 1/10"
        assert messages[AutoStageName.ROUTED] == "→ sim-small, fast"
        assert messages[AutoStageName.COMPLETE].endswith(" s")
        assert isinstance(events[-1], Finished) and events[-1].response.model == "sim-small"
        route = last_route(events)
        assert (route.category, route.profile, route.cached) == ("chat", "fast", False)

        events = await run(ask(services, COMPLEX))
        route = last_route(events)
        assert route.category == "code" and route.complexity >= 7
        assert (route.profile, route.model, route.tier) == ("strong", "sim-large", 3)
        assert isinstance(events[-1], Finished) and events[-1].response.model == "sim-large"
        assert models_asked(judged) == ["sim-small", "sim-large"]
    finally:
        await services.aclose()


async def test_a_similar_question_uses_the_cached_route_and_skips_routing(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged))
    try:
        await run(ask(services, COMPLEX))
        events = await run(ask(services, COMPLEX.upper() + "!"))
        assert AutoStageName.CACHED_ROUTE in stages(events)
        assert AutoStageName.ROUTING not in stages(events)
        message = next(
            e for e in events if isinstance(e, AutoStage) and e.stage == "using cached route"
        )
        assert message.message == "using cached route"
        assert last_route(events).cached and last_route(events).profile == "strong"
        stats = services.route_cache().stats()
        assert (stats.size, stats.hits, stats.misses) == (1, 1, 1)
        assert stats.hits_by_model == {"sim-large": 1}
    finally:
        await services.aclose()


async def test_a_failed_check_escalates_and_the_passing_answer_is_kept_as_a_new_version(
    judged: Simulator, rill_home: Path
) -> None:
    config = auto_config(rill_home, judged, 'validate = true\njudge = "fast"')
    services = open_services(rill_home, config)
    try:
        turn = ask(services, SIMPLE)
        events = await run(turn)
        assert stages(events) == [
            AutoStageName.ANALYSING,
            AutoStageName.ANALYSED,
            AutoStageName.ROUTING,
            AutoStageName.ROUTED,
            AutoStageName.GENERATING,
            AutoStageName.VALIDATING,
            AutoStageName.FAILED_CHECK,
            AutoStageName.GENERATING,
            AutoStageName.VALIDATING,
            AutoStageName.VERIFIED,
            AutoStageName.COMPLETE,
        ]
        failed = next(e for e in events if isinstance(e, AutoStage) and e.stage == "failed check")
        assert failed.message == "quality 3/10 — retrying with a stronger model"
        assert failed.attempt == 1
        verified = next(e for e in events if isinstance(e, AutoStage) and e.stage == "verified")
        assert verified.message == "quality 9/10" and verified.attempt == 2
        restarted = [e for e in events if isinstance(e, Restarted)]
        assert len(restarted) == 1 and restarted[0].discarded
        final = events[-1]
        assert isinstance(final, Finished) and final.response.model == "sim-large"
        route = last_route(events)
        assert [(a.model, a.score, a.passed) for a in route.attempts] == [
            ("sim-small", 3, False),
            ("sim-large", 9, True),
        ]
        assert route.kept == 1 and route.total_cost == 0.0
        assert models_asked(judged) == ["sim-small", "sim-small", "sim-large", "sim-small"]
        assert services.history is not None and turn.reply_group is not None
        versions = services.history.versions(turn.reply_group)
        assert [(v.model, v.status, v.active) for v in versions] == [
            ("sim-small", "complete", False),
            ("sim-large", "complete", True),
        ]
        assert versions[0].content == restarted[0].discarded
        assert versions[1].content == final.response.content
        assert turn.conversation_id is not None
        conversation = services.history.get_conversation(turn.conversation_id)
        assert conversation is not None and conversation.profile == "auto"
    finally:
        await services.aclose()


async def test_when_no_answer_passes_the_best_scoring_one_is_kept(rill_home: Path) -> None:
    async with Simulator(
        tokens_per_s=0, default_tokens=20, judge_scores={"sim-small": 5, "sim-large": 4}
    ) as sim:
        services = open_services(rill_home, auto_config(rill_home, sim, "validate = true"))
        try:
            turn = ask(services, SIMPLE)
            events = await run(turn)
            final = events[-1]
            assert isinstance(final, Finished) and final.response.model == "sim-small"
            route = last_route(events)
            assert [a.score for a in route.attempts] == [5, 4] and route.kept == 0
            failed = [e for e in events if isinstance(e, AutoStage) and e.stage == "failed check"]
            assert failed[-1].message == "quality 4/10 — no stronger target"
            restarted = [e for e in events if isinstance(e, Restarted)]
            assert restarted[-1].reason.startswith("kept the best answer (quality 5/10")
            after = events[events.index(restarted[-1]) + 1 :]
            shown = "".join(e.text for e in after if isinstance(e, TextDelta))
            assert shown == final.response.content
            assert services.history is not None and turn.reply_group is not None
            active = [v.model for v in services.history.versions(turn.reply_group) if v.active]
            assert active == ["sim-small"]
        finally:
            await services.aclose()


async def test_when_every_target_fails_the_turn_fails_after_trying_each(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged))
    judged.script(Fault(status=500), Fault(status=500))
    try:
        events = await run(ask(services, SIMPLE))
        assert isinstance(events[-1], Failed)
        failed = [e for e in events if isinstance(e, AutoStage) and e.stage == "failed check"]
        assert len(failed) == 1 and "trying sim-large" in failed[0].message
        assert models_asked(judged) == ["sim-small", "sim-large"]
        assert [a.model for a in last_route(events).attempts] == ["sim-small", "sim-large"]
    finally:
        await services.aclose()


async def test_a_target_whose_circuit_is_open_is_skipped_saying_so(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged))
    try:
        chat = ChatService(services)
        fast = chat.request_for(services.config.profile("fast"), [])
        breaker = services.engine.breakers.get(fast.endpoint)
        for _ in range(breaker.threshold):
            breaker.failure()
        assert breaker.state == "open"
        events = await run(ask(services, SIMPLE))
        route = last_route(events)
        assert route.profile == "strong"
        assert len(route.skipped) == 1
        assert route.skipped[0].startswith("fast skipped: its circuit is open until ")
        assert models_asked(judged) == ["sim-large"]
    finally:
        await services.aclose()


async def test_the_classifier_is_asked_and_the_heuristic_stands_in_when_it_fails(
    judged: Simulator, rill_home: Path
) -> None:
    extra = 'classifier = "fast"\nclassifier_timeout_s = 0.5'
    services = open_services(rill_home, auto_config(rill_home, judged, extra))
    try:
        events = await run(ask(services, "please compare these two " + "words " * 40))
        route = last_route(events)
        # the simulated classifier: research, 2 + one per 15 words (44 words)
        assert (route.source, route.category, route.complexity) == ("classifier", "research", 4)
        assert models_asked(judged)[0] == "sim-small"
        judged.script(Fault(status=500))
        events = await run(ask(services, "tell me a joke"))
        assert last_route(events).source == "heuristic"
        judged.script(Fault(first_byte_delay=5.0))
        began = asyncio.get_running_loop().time()
        events = await run(ask(services, "tell me another joke"))
        assert last_route(events).source == "heuristic"
        assert asyncio.get_running_loop().time() - began < 4.0
    finally:
        await services.aclose()


async def test_the_ledger_records_what_each_stage_spent(judged: Simulator, rill_home: Path) -> None:
    extra = 'validate = true\njudge = "fast"\nclassifier = "fast"'
    services = open_services(rill_home, auto_config(rill_home, judged, extra))
    try:
        turn = ask(services, SIMPLE)
        await run(turn)
        await turn.wait_saved()
        await services.run_io(lambda: None)
        assert services.ledger is not None
        entries = sorted(services.ledger.entries(), key=lambda e: e.id)
        assert [(e.stage, e.model) for e in entries] == [
            ("classify", "sim-small"),
            ("answer", "sim-small"),
            ("judge", "sim-small"),
            ("escalation", "sim-large"),
            ("judge", "sim-small"),
        ]
    finally:
        await services.aclose()


@pytest.mark.parametrize(
    "stage",
    [
        AutoStageName.ANALYSING,
        AutoStageName.ANALYSED,
        AutoStageName.ROUTED,
        AutoStageName.GENERATING,
        AutoStageName.VALIDATING,
    ],
)
async def test_cancel_stops_whatever_stage_is_running(
    judged: Simulator, rill_home: Path, stage: AutoStageName
) -> None:
    extra = 'validate = true\nclassifier = "fast"'
    services = open_services(rill_home, auto_config(rill_home, judged, extra))
    if stage == AutoStageName.ANALYSING:
        judged.script(Fault(first_byte_delay=30.0))  # the classifier hangs
    elif stage == AutoStageName.GENERATING:
        judged.script(Fault(), Fault(stall_after=3, stall_s=30.0))  # the answer stalls
    elif stage == AutoStageName.VALIDATING:
        judged.script(Fault(), Fault(), Fault(first_byte_delay=30.0))  # the judge hangs
    try:
        turn = ask(services, SIMPLE)
        loop = asyncio.get_running_loop()

        def on(event: StreamEvent) -> None:
            if isinstance(event, AutoStage) and event.stage == stage:
                if stage in (AutoStageName.ANALYSED, AutoStageName.ROUTED):
                    turn.cancel()  # these stages do not wait on the network
                else:
                    loop.call_later(0.2, turn.cancel)

        began = loop.time()
        events = await asyncio.wait_for(run(turn, on), 10)
        assert loop.time() - began < 5
        assert isinstance(events[-1], Cancelled)
        assert not any(isinstance(e, Finished) for e in events)
        if stage in (AutoStageName.ANALYSING, AutoStageName.GENERATING, AutoStageName.VALIDATING):
            await judged.wait_for_disconnect(1, timeout=5)
    finally:
        await services.aclose()


async def test_a_target_without_a_key_is_skipped_saying_so(
    judged: Simulator, rill_home: Path
) -> None:
    config = auto_config(rill_home, judged)
    fast = config.profiles["fast"]
    config.profiles["fast"] = replace(fast, provider="anthropic", base_url=judged.url)
    services = Services.open(
        config=config,
        paths=app_paths(),
        api_key=lambda r: None if r.profile == "fast" else "sk-test",
    )
    try:
        events = await run(ask(services, SIMPLE))
        route = last_route(events)
        assert route.profile == "strong"
        assert route.skipped[0].startswith("fast skipped: no API key (There is no API key")
        assert isinstance(events[-1], Finished)
    finally:
        await services.aclose()


async def test_a_spent_budget_stops_every_target_and_the_classifier_before_sending(
    judged: Simulator, rill_home: Path
) -> None:
    config = auto_config(rill_home, judged, 'classifier = "fast"\nvalidate = true')
    config.values["budget.monthly_usd"] = 0.01
    services = open_services(rill_home, config)
    try:
        assert services.ledger is not None
        services.ledger.record(
            provider="openai", model="gpt-4o", usage=TokenUsage(10, 10), cost=1.0
        )
        events = await run(ask(services, SIMPLE))
        final = events[-1]
        assert isinstance(final, Failed)
        assert "has no target it can use now" in final.error.message
        assert "fast skipped:" in final.error.message and "budget" in final.error.message
        assert judged.chat_requests == []
    finally:
        await services.aclose()


async def test_regenerate_and_edit_of_an_auto_reply_are_routed_again(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged))
    try:
        chat = ChatService(services)
        first = ask(services, SIMPLE)
        await run(first)
        assert first.conversation_id is not None and first.reply_group is not None
        again = chat.regenerate(first.conversation_id, first.reply_group, profile="auto")
        assert isinstance(again, AutoTurn)
        events = await run(again)
        assert isinstance(events[-1], Finished)
        assert last_route(events).category == "chat" and last_route(events).cached
        assert services.history is not None
        assert len(services.history.versions(first.reply_group)) == 2

        assert first.user_message_id is not None
        edited = chat.edit(first.conversation_id, first.user_message_id, COMPLEX, profile="auto")
        events = await run(edited)
        assert isinstance(events[-1], Finished)
        assert events[-1].response.model == "sim-large"
        shown = services.history.messages(first.conversation_id)
        assert [m.content for m in shown if m.role == "user"] == [COMPLEX]
    finally:
        await services.aclose()


async def test_the_cheapest_target_by_its_prices_answers_and_the_details_have_its_cost(
    judged: Simulator, rill_home: Path
) -> None:
    config = auto_config(rill_home, judged)
    for name, price in (("fast", 10.0), ("strong", 1.0)):
        config.profiles[name] = replace(
            config.profiles[name], price_input_per_mtok=price, price_output_per_mtok=price
        )
    services = open_services(rill_home, config)
    try:
        events = await run(ask(services, "Write a Python function that reverses a string."))
        route = last_route(events)
        assert (route.category, route.complexity) == ("code", 2)
        assert route.profile == "strong"  # it covers complexity 2 and code, and costs less
        final = events[-1]
        assert isinstance(final, Finished) and final.response.cost is not None
        assert final.response.cost > 0
        assert route.attempts[0].cost == final.response.cost
        assert route.total_cost == final.response.cost
    finally:
        await services.aclose()


async def test_when_the_stronger_target_fails_the_checked_answer_is_shown_again_and_kept(
    judged: Simulator, rill_home: Path
) -> None:
    services = open_services(rill_home, auto_config(rill_home, judged, "validate = true"))
    judged.script(Fault(), Fault(), Fault(status=500))  # answer, judge, then sim-large fails
    try:
        turn = ask(services, SIMPLE)
        events = await run(turn)
        final = events[-1]
        assert isinstance(final, Finished) and final.response.model == "sim-small"
        restarted = [e for e in events if isinstance(e, Restarted)]
        assert [r.reason.split(" (")[0] for r in restarted] == [
            "quality 3/10 — retrying with a stronger model",
            "kept the best answer",
        ]
        after = events[events.index(restarted[-1]) + 1 :]
        assert "".join(e.text for e in after if isinstance(e, TextDelta)) == final.response.content
        assert services.history is not None and turn.reply_group is not None
        versions = services.history.versions(turn.reply_group)
        assert [(v.model, v.status, v.active) for v in versions] == [
            ("sim-small", "complete", True),
            ("sim-large", "failed", False),
        ]
        assert last_route(events).kept == 0
    finally:
        await services.aclose()


async def test_an_auto_turn_offers_tools_and_keeps_the_calls_of_the_kept_answer(
    judged: Simulator, rill_home: Path
) -> None:
    rule = 'rules = [{ category = "code", min = 1, max = 10, target = "fast" }]'
    services = open_services(rill_home, auto_config(rill_home, judged, f"validate = true\n{rule}"))
    services.tools = LocalHost({"echo": echo})
    try:
        turn = ask(services, 'call echo with {"text": "kept"}')
        events = await run(turn)
        final = events[-1]
        assert isinstance(final, Finished) and final.response.model == "sim-large"
        results = [e for e in events if isinstance(e, ToolResult)]
        assert [r.content for r in results] == ["kept", "kept"]  # each attempt called it
        assert [(p.name, p.result) for p in turn.tool_parts] == [("echo", "kept")]
        assert final.response.content.startswith("Tool echo said: kept")
        judges = [r for r in judged.chat_requests if "Judge this answer" in json.dumps(r.json)]
        assert judges and all("tools" not in r.json for r in judges)
    finally:
        await services.aclose()
