"""An Auto turn: analyse → route → generate → validate → escalate, as one stream of events.

:class:`AutoTurn` is a :class:`~desktop_app.core.chat.Turn` whose profile is an Auto
profile. It yields :class:`AutoStage` events as it goes, :class:`AutoRoute` whenever the
route or an attempt's score changes, and the events of each answer (an ordinary turn on
the chosen target, recorded in the history like any other). An escalated attempt is a new
version of the same reply (a regenerate on the stronger target), announced to consumers
by :class:`Restarted` so the earlier text becomes an earlier version; when no attempt
passes the check, the best-scoring version is made the shown one.

Every request the classifier and the judge make goes through the engine (resilience,
the budget check, the ledger, where each is recorded with its stage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from desktop_app.core.chat import ChatService, Turn, TurnMode, context_messages
from desktop_app.core.config import Profile
from desktop_app.core.engine import Generation, check_key
from desktop_app.core.errors import RillError
from desktop_app.core.events import (
    AutoAttempt,
    AutoRoute,
    AutoStage,
    AutoStageName,
    Cancelled,
    Failed,
    Finished,
    Restarted,
    StreamEvent,
    TextDelta,
)
from desktop_app.core.providers import get_provider
from desktop_app.core.routing.analysis import Analysis, analyse
from desktop_app.core.routing.cache import CachedRoute, route_key
from desktop_app.core.routing.judge import (
    REPLY_TOKENS,
    classifier_prompt,
    judge_prompt,
    read_classification,
    read_verdict,
)
from desktop_app.core.routing.profile import AutoSettings, AutoTarget, tier_name
from desktop_app.core.routing.table import NoRoute, Route, choose, stronger
from desktop_app.core.types import ChatRequest, GenerationResponse, Message, TokenUsage

log = logging.getLogger("rill.routing")

PER_MILLION = TokenUsage(1_000_000, 1_000_000)
"""The usage a target's price is compared at (a million tokens in and out)."""
SERVER_OVERRIDES = ("model", "provider", "base_url")
"""Overrides that name one server: an Auto turn chooses its servers itself."""


@dataclass(slots=True)
class _Answer:
    target: AutoTarget
    turn: Turn
    response: GenerationResponse | None = None
    score: int | None = None
    reason: str = ""


class AutoTurn(Turn):
    """A turn on an Auto profile. Iterate it for events; ``cancel()`` stops any stage."""

    def __init__(self, chat: ChatService, **kwargs: Any) -> None:
        super().__init__(chat, **kwargs)
        self._given = kwargs
        """What this turn was started with: each answer's turn takes the same (the tools
        it may offer among them), with its own target, mode and reply."""
        assert self.profile.auto is not None
        self.settings: AutoSettings = self.profile.auto
        self.route: AutoRoute | None = None
        self.analysis: Analysis | None = None
        self._answers: list[_Answer] = []
        self._current: Turn | None = None
        self._helper: Generation | None = None
        self._overhead: float | None = 0.0

    # -- the turn's interface --------------------------------------------------------------

    @property
    def attempt_message_ids(self) -> list[int | None]:
        """The reply message (version) of each attempt so far, in order."""
        return [answer.turn.assistant_message_id for answer in self._answers]

    def cancel(self) -> None:
        self._cancel = True
        if self._current is not None:
            self._current.cancel()
        if self._helper is not None:
            self._helper.cancel()

    async def wait_saved(self) -> RillError | None:
        problem: RillError | None = None
        for answer in self._answers:
            found = await answer.turn.wait_saved()
            problem = problem or found
        return problem

    def _follow(self, turn: Turn) -> None:
        """Show the state of ``turn`` as this turn's own."""
        self.conversation_id = turn.conversation_id
        self.reply_group = turn.reply_group or self.reply_group
        self.assistant_message_id = turn.assistant_message_id
        self.user_message_id = turn.user_message_id or self.user_message_id
        self.request = turn.request or self.request
        self.generation = turn.generation
        self.recorded = self.recorded or turn.recorded
        self.response = turn.response
        self.saved = turn.saved

    # -- the stages ---------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[StreamEvent]:
        began = time.perf_counter()
        settings = self.settings
        attempts_max = 1 + (settings.max_escalations if settings.validate else 0)

        def at(stage: AutoStageName, progress: float, message: str, k: int = 1) -> AutoStage:
            return AutoStage(stage, max(0.0, min(1.0, progress)), message, k)

        def attempt_progress(k: int, part: float) -> float:
            return 0.25 + 0.7 * (k - 1 + part) / attempts_max

        yield at(AutoStageName.ANALYSING, 0.0, "analysing")
        try:
            question, earlier = await self._question()
        except RillError as exc:
            yield Failed(exc, "")
            return
        analysis = analyse(question, earlier_messages=earlier)
        if settings.classifier and not self._cancel:
            analysis = await self._classify(question, analysis)
        if self._cancel:
            yield Cancelled("")
            return
        self.analysis = analysis
        yield at(AutoStageName.ANALYSED, 0.1, analysis.summary)

        availability = await self._availability()
        cache = self.services.route_cache()
        key = route_key(self.profile.name, question, analysis.category, analysis.complexity)
        hit = await self.services.run_io(cache.get, key) if cache is not None else None
        route = self._from_cache(hit, availability)
        from_cache = route is not None
        if self._cancel:
            yield Cancelled("")
            return
        if route is not None:
            yield at(AutoStageName.CACHED_ROUTE, 0.15, "using cached route")
        else:
            yield at(AutoStageName.ROUTING, 0.15, "routing")
            try:
                route = choose(
                    settings,
                    analysis,
                    available=lambda t: availability.get(t),
                    price=self._price,
                )
            except NoRoute as exc:
                yield Failed(self._no_route(exc.skipped), "")
                return
            if cache is not None:
                model = self._target_profile(route.target).resolved_model
                cached = CachedRoute(route.target.profile, model, route.target.tier, route.reason)
                self.services.submit_io(cache.put, key, cached)
        target = route.target
        target_profile = self._target_profile(target)
        self.route = AutoRoute(
            category=analysis.category,
            complexity=analysis.complexity,
            source=analysis.source,
            profile=target.profile,
            model=target_profile.resolved_model,
            tier=target.tier,
            cached=from_cache,
            reason=route.reason,
            skipped=route.skipped,
        )
        yield at(
            AutoStageName.ROUTED,
            0.2,
            f"→ {target_profile.resolved_model}, {tier_name(target.tier)}",
        )
        yield self.route

        tried: list[AutoTarget] = []
        failure: Failed | None = None
        shown: list[str] = []  # the text on screen since the answer last started again
        k = 0
        while target is not None:
            if self._cancel:
                yield Cancelled("")
                return
            k += 1
            tried.append(target)
            label = self._target_profile(target).resolved_model
            yield at(AutoStageName.GENERATING, attempt_progress(k, 0), f"generating ({label})", k)
            turn = self._turn_for(target)
            answer = _Answer(target, turn)
            self._answers.append(answer)
            self._current = turn
            failure = None
            async for event in turn:
                self._follow(turn)
                if type(event) is TextDelta:
                    shown.append(event.text)
                elif isinstance(event, Restarted):
                    shown = []
                elif isinstance(event, Finished):
                    answer.response = event.response
                    continue  # the turn's own Finished comes at the very end
                elif isinstance(event, Failed):
                    failure = event
                    continue
                elif isinstance(event, Cancelled):
                    yield event
                    return
                yield event
            self._current = None
            await self._keep_conversation_profile(turn)
            if self._cancel:
                yield Cancelled("".join(shown))
                return
            self._update_route(answer)
            assert self.route is not None
            yield self.route
            if answer.response is None:
                assert failure is not None
                next_target, _ = self._next(target, tried, availability)
                if next_target is None:
                    break
                message = (
                    f"{label} failed ({failure.error.message}) — trying "
                    f"{self._target_profile(next_target).resolved_model}"
                )
                yield at(AutoStageName.FAILED_CHECK, attempt_progress(k, 1), message, k)
                if shown:
                    yield Restarted(message, "".join(shown))
                    shown = []
                target = next_target
                continue
            if not settings.validate or self.mode == "continue":
                break
            yield at(AutoStageName.VALIDATING, attempt_progress(k, 0.8), "validating", k)
            await self._judge(question, answer)
            if self._cancel:
                yield Cancelled("")
                return
            self._update_route(answer)
            yield self.route
            if answer.score is None or answer.score >= settings.threshold:
                quality = "not scored" if answer.score is None else f"quality {answer.score}/10"
                yield at(AutoStageName.VERIFIED, attempt_progress(k, 1), quality, k)
                break
            next_target, _ = self._next(target, tried, availability)
            if k > settings.max_escalations or next_target is None:
                why = "no stronger target" if next_target is None else "no escalations left"
                yield at(
                    AutoStageName.FAILED_CHECK,
                    attempt_progress(k, 1),
                    f"quality {answer.score}/10 — {why}",
                    k,
                )
                break
            message = f"quality {answer.score}/10 — retrying with a stronger model"
            yield at(AutoStageName.FAILED_CHECK, attempt_progress(k, 1), message, k)
            yield Restarted(message, "".join(shown))
            shown = []
            target = next_target

        finished = [a for a in self._answers if a.response is not None]
        if not finished:
            yield failure or Failed(RillError("No Auto target could answer."), "")
            return
        kept = max(finished, key=lambda a: (a.score or 0, self._answers.index(a)))
        if kept is not self._answers[-1]:  # what is shown now is another attempt's
            assert kept.response is not None
            quality = "not scored" if kept.score is None else f"quality {kept.score}/10"
            message = f"kept the best answer ({quality}, {kept.response.model})"
            yield Restarted(message, "".join(shown))
            yield TextDelta(kept.response.content)
            await self._show_version(kept.turn)
        self._follow(kept.turn)
        assert self.route is not None
        self.route = replace(self.route, kept=self._answers.index(kept))
        yield self.route
        elapsed = time.perf_counter() - began
        yield at(AutoStageName.COMPLETE, 1.0, f"{elapsed:.1f} s", len(self._answers))
        assert kept.response is not None
        yield Finished(kept.response)

    # -- analysis -----------------------------------------------------------------------------

    async def _question(self) -> tuple[str, int]:
        """The question being answered, and how many messages came before it."""
        if self.mode in ("new", "edit") and self.prompt is not None:
            earlier = 0
            history = self.services.history if self.record else None
            if history is not None and self.conversation_id is not None:
                stored = await self.services.run_io(history.messages, self.conversation_id)
                earlier = len(context_messages(stored))
            return self.prompt, earlier
        history = self.services.history
        if history is None or self.conversation_id is None:
            raise RillError("That reply is no longer in the conversation.")
        stored = await self.services.run_io(history.messages, self.conversation_id)
        messages, _ = self._context_for(stored)
        users = [m for m in messages if m.role == "user"]
        if not users:
            raise RillError("That reply has no question before it.")
        return users[-1].content, len(messages) - 1

    async def _classify(self, question: str, heuristic: Analysis) -> Analysis:
        """The classifier's analysis, or ``heuristic`` when it fails or is too slow."""
        config = self.services.config
        profile = config.profile(self.settings.classifier)
        request = self.chat.request_for(
            profile,
            [Message("user", classifier_prompt(question))],
            temperature=0.0,
            max_tokens=REPLY_TOKENS,
        )
        response = await self._helper_request(
            request, profile, "classify", self.settings.classifier_timeout_s
        )
        if response is None:
            return heuristic
        try:
            return read_classification(response.content)
        except ValueError as exc:
            log.info("the classifier's answer could not be read (%s); using the heuristic", exc)
            return heuristic

    async def _helper_request(
        self, request: ChatRequest, profile: Profile, stage: str, limit_s: float | None
    ) -> GenerationResponse | None:
        """Run a classifier or judge request through the engine (after the budget check,
        like every request); record it in the ledger with its stage."""
        services = self.services
        budget = float(services.config["budget.monthly_usd"])
        if services.ledger is not None and budget > 0:
            try:
                await services.run_io(services.ledger.check_budget, budget)
            except RillError as exc:
                log.info("the %s request was not sent: %s", stage, exc.message)
                return None
        engine = self.services.engine
        generation = engine.stream(request, read_cache=self.read_cache, write_cache=True)
        self._helper = generation
        if self._cancel:
            generation.cancel()

        async def run() -> GenerationResponse | None:
            async for event in generation:
                if isinstance(event, Finished):
                    return event.response
                if isinstance(event, Failed):
                    log.info("the %s request failed: %s", stage, event.error)
                    return None
            return None

        try:
            response = await asyncio.wait_for(run(), limit_s)
        except TimeoutError:
            log.info("the %s request took longer than %.1f s", stage, limit_s)
            response = None
        finally:
            self._helper = None
        if response is None:
            return None
        cost = 0.0 if response.cached else self.services.cost(request, profile, response.usage)
        if self._overhead is not None:
            self._overhead = None if cost is None else self._overhead + cost
        ledger = self.services.ledger
        if ledger is not None:
            self.services.submit_io(
                ledger.record_response,
                replace(response, cost=cost),
                profile=request.profile,
                stage=stage,
            )
        return response

    # -- routing ------------------------------------------------------------------------------

    def _target_profile(self, target: AutoTarget) -> Profile:
        profile = self.services.config.profile(target.profile)
        return replace(profile, model=target.model) if target.model else profile

    def _price(self, target: AutoTarget) -> float | None:
        profile = self._target_profile(target)
        request = self.chat.request_for(profile, [])
        return self.services.cost(request, profile, PER_MILLION)

    async def _availability(self) -> dict[AutoTarget, str | None]:
        """For each target, None when it can be used now, else the sentence why not."""
        services = self.services
        out: dict[AutoTarget, str | None] = {}
        budget = float(services.config["budget.monthly_usd"])
        spent: str | None = None
        if services.ledger is not None and budget > 0:
            try:
                await services.run_io(services.ledger.check_budget, budget)
            except RillError as exc:
                spent = exc.message
        for target in self.settings.targets:
            profile = self._target_profile(target)
            request = self.chat.request_for(profile, [])
            if profile.auto is not None:
                out[target] = "it is an Auto profile"
                continue
            if spent is not None:
                out[target] = spent
                continue
            breaker = services.engine.breakers.get(request.endpoint)
            if breaker.state == "open":
                until = time.strftime("%H:%M:%S", time.localtime(breaker.until))
                out[target] = f"its circuit is open until {until}"
                continue
            try:
                key = await services.run_io(services.engine.api_key, request)
                check_key(get_provider(request.provider), request, key)
            except RillError as exc:
                out[target] = f"no API key ({exc.message})"
                continue
            out[target] = None
        return out

    def _from_cache(
        self, hit: CachedRoute | None, availability: dict[AutoTarget, str | None]
    ) -> Route | None:
        """The cached route when its target is still one of this profile's and usable."""
        if hit is None:
            return None
        for target in self.settings.targets:
            if (
                target.profile == hit.profile
                and target.tier == hit.tier
                and self._target_profile(target).resolved_model == hit.model
                and availability.get(target) is None
            ):
                return Route(target, hit.reason)
        return None

    def _no_route(self, skipped: tuple[str, ...]) -> RillError:
        return RillError(
            f"The Auto profile '{self.profile.name}' has no target it can use now: "
            + "; ".join(skipped)
            + ".",
            action="Add a target in Settings → Profiles, or wait for a failing one to recover.",
        )

    def _next(
        self,
        current: AutoTarget,
        tried: list[AutoTarget],
        availability: dict[AutoTarget, str | None],
    ) -> tuple[AutoTarget | None, list[str]]:
        return stronger(
            self.settings,
            current,
            tried=tried,
            available=lambda t: availability.get(t),
            price=self._price,
        )

    # -- answers ------------------------------------------------------------------------------

    def _turn_for(self, target: AutoTarget) -> Turn:
        """An ordinary turn on ``target``: the first answer in this turn's own mode, a later
        one as a new version of the same reply."""
        overrides = {k: v for k, v in self.overrides.items() if k not in SERVER_OVERRIDES}
        profile = self._target_profile(target)
        previous = self._answers[-1].turn if self._answers else None
        mode: TurnMode = self.mode
        prompt = self.prompt
        if previous is not None:
            if previous.recorded and previous.reply_group is not None:
                mode = "regenerate"
            elif mode == "edit":
                mode = "new"
        reply_group = self.reply_group if previous is None else previous.reply_group
        given = {
            **self._given,
            "mode": mode,
            "prompt": prompt,
            "conversation_id": self.conversation_id,
            "profile": profile,
            "read_cache": self.read_cache and previous is None,
            "record": self.record,
            "overrides": overrides,
            "reply_group": reply_group,
            "message_id": self.assistant_message_id if self.mode == "continue" else None,
        }
        turn = Turn(self.chat, **given)
        turn.stage = "answer" if previous is None else "escalation"
        return turn

    async def _judge(self, question: str, answer: _Answer) -> None:
        assert answer.response is not None
        content = answer.response.content
        config = self.services.config
        name = self.settings.judge
        if name:
            profile = config.profile(name)
        else:
            cheapest = min(self.settings.targets, key=lambda t: (self._price(t) or 0.0, t.tier))
            profile = self._target_profile(cheapest)
        request = self.chat.request_for(
            profile,
            [Message("user", judge_prompt(question, content, answer.response.model))],
            temperature=0.0,
            max_tokens=REPLY_TOKENS,
        )
        response = await self._helper_request(request, profile, "judge", None)
        if response is None:
            return
        try:
            answer.score, answer.reason = read_verdict(response.content)
        except ValueError as exc:
            log.info("the judge's answer could not be read (%s)", exc)

    def _update_route(self, answer: _Answer) -> None:
        assert self.route is not None
        attempts = list(self.route.attempts)
        index = self._answers.index(answer)
        response = answer.response
        planned = self._target_profile(answer.target)
        record = AutoAttempt(
            profile=answer.target.profile,
            model=response.model if response else planned.resolved_model,
            tier=answer.target.tier,
            score=answer.score,
            cost=response.cost if response else 0.0,
            passed=None if answer.score is None else answer.score >= self.settings.threshold,
        )
        if index < len(attempts):
            attempts[index] = record
        else:
            attempts.append(record)
        self.route = replace(self.route, attempts=tuple(attempts), overhead_cost=self._overhead)

    async def _show_version(self, turn: Turn) -> None:
        history = self.services.history
        if history is None or not turn.recorded or turn.assistant_message_id is None:
            return
        try:
            await self.services.run_io(history.set_active_version, turn.assistant_message_id)
        except (LookupError, RillError) as exc:
            log.warning("could not show the kept version: %s", exc)

    async def _keep_conversation_profile(self, turn: Turn) -> None:
        """The conversation stays on the Auto profile (the turn set it to the target's)."""
        history = self.services.history
        request = turn.request
        if history is None or not turn.recorded or turn.conversation_id is None or not request:
            return
        try:
            await self.services.run_io(
                history.set_conversation_server,
                turn.conversation_id,
                profile=self.profile.name,
                provider=request.provider,
                model=request.model,
                base_url=request.base_url,
            )
        except RillError as exc:
            log.warning("could not keep the conversation's profile: %s", exc)


def _money(cost: float | None) -> str:
    if cost is None:
        return "cost unknown"
    return "free" if cost == 0 else f"${cost:.4f}"


def describe_route(route: AutoRoute) -> str:
    """The route in a line: analysis, target, whether cached, each attempt, total cost."""
    parts = [f"Auto: {route.category}, complexity {route.complexity}/10"]
    target = f"→ {route.profile} ({route.model}, {tier_name(route.tier)})"
    parts.append(target + (", cached route" if route.cached else ""))
    if len(route.attempts) > 1 or any(a.score is not None for a in route.attempts):
        tries = []
        for index, attempt in enumerate(route.attempts, start=1):
            score = "not scored" if attempt.score is None else f"{attempt.score}/10"
            kept = " kept" if route.kept == index - 1 and len(route.attempts) > 1 else ""
            tries.append(f"{index}. {attempt.model} {score}{kept}")
        parts.append("attempts: " + ", ".join(tries))
    parts.append(f"all attempts {_money(route.total_cost)}")
    return " · ".join(parts)


def describe_why(route: AutoRoute) -> str:
    """Why the route was taken (the details' tooltip)."""
    lines = [f"Analysed by the {route.source}; {route.reason}."]
    lines += [f"{line}." for line in route.skipped]
    return "\n".join(lines)
