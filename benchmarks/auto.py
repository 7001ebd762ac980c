"""9. Auto: analysis time, route cache hits, the time Auto adds before the first token, and
the analysis's accuracy on the labelled questions."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import tomllib
from pathlib import Path

from benchmarks.common import Row, at_least, below, info, log, median, percentile
from desktop_app.core.chat import ChatService, Services, Turn
from desktop_app.core.config import load_config
from desktop_app.core.events import AutoStage, AutoStageName, TextDelta
from desktop_app.core.paths import app_paths
from desktop_app.core.routing.analysis import analyse, evaluate
from desktop_app.core.routing.cache import CachedRoute, RouteCache, route_key
from desktop_app.core.routing.profile import CATEGORIES
from desktop_app.simulator import Simulator

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "auto_prompts.toml"
PROMPT_BYTES = 10_000
ANALYSES = 5_000
HITS = 2_000
ROUTES = 100
TURNS = 60
QUICK_ANALYSES = 500
QUICK_HITS = 200
QUICK_TURNS = 10

METHOD = f"""\
**Analysis**: `analyse()` on a {PROMPT_BYTES:,}-byte prompt (a question, a fenced code block
and prose), {ANALYSES:,} times; its p99 is the thread's CPU time (the analysis does no
I/O, so this leaves out only the time the machine spent on other processes), with the
wall-clock p99 in the note. **Route cache**: a `RouteCache` in a fresh folder holding
{ROUTES} routes (its default limit), then {HITS:,} `get`s of stored keys in random order —
each one the LRU touch plus the hit counters' writes, what a hit costs in the app.
**Before the first token**: the simulator (in process, unpaced) serves `sim-small`; for
{TURNS} distinct questions an ordinary turn on the `fast` profile and an Auto turn on an
Auto profile whose route for that question is already cached are timed from the start of
iteration to the first text, alternately, with the response cache not read. The figure
held to the target is the time from the start of the Auto turn to the moment it hands the
question to the target (its "generating" stage: analysis, the cached route through the
I/O thread, the availability checks and the stage events); the difference of the two
medians to the first text is shown beside it. **Accuracy**: the share of the labelled
questions in `tests/data/auto_prompts.toml` given their category, per category, and the
share whose complexity falls in its labelled range."""


def _prompt() -> str:
    parts = [
        "Why does this Python function return None for some inputs, and how do I fix it?\n",
        "```python\n",
    ]
    body = "def f(xs):\n    for x in xs:\n        if x > 0:\n            return x * 2\n"
    while sum(map(len, parts)) < PROMPT_BYTES // 2:
        parts.append(body)
    parts.append("```\n")
    prose = "It is called from a web handler that runs under load, with many threads. "
    while sum(map(len, parts)) < PROMPT_BYTES:
        parts.append(prose)
    return "".join(parts)[:PROMPT_BYTES]


def _labelled() -> list[tuple[str, str, int, int]]:
    data = tomllib.loads(LABELLED.read_text(encoding="utf-8"))
    return [
        (p["text"], p["category"], p["complexity"][0], p["complexity"][1]) for p in data["prompt"]
    ]


def _config_text(url: str) -> str:
    return f"""
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
targets = [{{ profile = "fast", tier = 1 }}, {{ profile = "strong", tier = 3 }}]
"""


async def _first_text(turn: Turn) -> tuple[float, float]:
    """Seconds to the first text, and to the moment Auto hands the question to the target
    (its "generating" stage; 0 for an ordinary turn)."""
    started = time.perf_counter()
    first: float | None = None
    handed = 0.0
    async for event in turn:
        if isinstance(event, AutoStage) and event.stage == AutoStageName.GENERATING:
            handed = time.perf_counter() - started
        if first is None and isinstance(event, TextDelta):
            first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the turn gave no text")
    await turn.wait_saved()
    return first, handed


async def _before_first_token(
    home: str, turns: int
) -> tuple[list[float], list[float], list[float]]:
    async with Simulator(tokens_per_s=0, default_tokens=30) as sim:
        paths = app_paths(home).ensure()
        paths.config_file.write_text(_config_text(sim.base_url("openai")), encoding="utf-8")
        config = load_config(paths.config_file)
        services = Services.open(config=config, paths=paths, api_key=lambda _r: "sk-bench")
        chat = ChatService(services)
        questions = [f"Hello, question {n} about rivers?" for n in range(turns)]
        try:
            for question in questions:  # route each once, so the timed turns hit the cache
                await _first_text(chat.send(question, profile="auto", read_cache=False))
            stats = await services.run_io(services.route_cache().stats)
            if stats.size != turns:
                raise RuntimeError(f"{stats.size} routes cached, not {turns}")
            plain: list[float] = []
            auto: list[float] = []
            handed: list[float] = []
            for question in questions:
                first, _ = await _first_text(chat.send(question, profile="fast", read_cache=False))
                plain.append(first)
                first, before = await _first_text(
                    chat.send(question, profile="auto", read_cache=False)
                )
                auto.append(first)
                handed.append(before)
            hits = (await services.run_io(services.route_cache().stats)).hits
            if hits != turns:
                raise RuntimeError(f"{hits} route cache hits, not {turns}")
        finally:
            await services.aclose()
    return plain, auto, handed


def run(quick: bool) -> list[Row]:
    analyses = QUICK_ANALYSES if quick else ANALYSES
    hits = QUICK_HITS if quick else HITS
    turns = QUICK_TURNS if quick else TURNS
    prompt = _prompt()
    found = analyse(prompt)
    log(f"the {len(prompt):,}-byte prompt: {found.summary}")
    analysis_ms: list[float] = []
    analysis_cpu_ms: list[float] = []
    for _ in range(analyses):
        started, cpu = time.perf_counter(), time.thread_time()
        analyse(prompt)
        analysis_cpu_ms.append((time.thread_time() - cpu) * 1000)
        analysis_ms.append((time.perf_counter() - started) * 1000)

    rng = random.Random(9)
    with tempfile.TemporaryDirectory(prefix="rill-bench-auto-") as home:
        cache = RouteCache(app_paths(home).route_cache_dir)
        keys = [route_key("auto", f"question {n}", "chat", 2) for n in range(ROUTES)]
        for key in keys:
            cache.put(key, CachedRoute("fast", "sim-small", 1, "cheapest"))
        hit_ms: list[float] = []
        for key in rng.choices(keys, k=hits):
            started = time.perf_counter()
            route = cache.get(key)
            hit_ms.append((time.perf_counter() - started) * 1000)
            if route is None:
                raise RuntimeError(f"route {key} was a miss")
        cache.close()
    with tempfile.TemporaryDirectory(prefix="rill-bench-auto-") as home:
        plain, auto, handed = asyncio.run(_before_first_token(home, turns))
    plain_ms = [s * 1000 for s in plain]
    auto_ms = [s * 1000 for s in auto]
    handed_ms = [s * 1000 for s in handed]

    accuracy = evaluate(_labelled())
    rows = [
        info("analysis of a 10 kB prompt, p50", median(analysis_ms), "ms"),
        below(
            "analysis of a 10 kB prompt, p99",
            percentile(analysis_cpu_ms, 99),
            "ms",
            1.0,
            note=(
                f"CPU time of the thread, {analyses:,} runs; wall clock p99 "
                f"{percentile(analysis_ms, 99):.3f} ms (includes time the machine ran "
                "other work)"
            ),
        ),
        info("route cache hit, p50", median(hit_ms), "ms"),
        below(
            "route cache hit, p99",
            percentile(hit_ms, 99),
            "ms",
            1.0,
            note=f"{ROUTES} routes, {hits:,} random hits",
        ),
        below(
            "time Auto adds before the first token, cached route, p99",
            percentile(handed_ms, 99),
            "ms",
            5.0,
            note=f"to the question handed to the target, p50 {median(handed_ms):.2f} ms",
        ),
        info(
            "first token, Auto with a cached route − ordinary turn, p50",
            median(auto_ms) - median(plain_ms),
            "ms",
            note=(
                f"{median(auto_ms):.2f} ms − {median(plain_ms):.2f} ms over {turns} questions "
                "(the difference is within the noise of the request itself)"
            ),
        ),
    ]
    for category in CATEGORIES:
        right, count = accuracy.by_category[category]
        rows.append(
            at_least(
                f"analysis accuracy: {category}",
                accuracy.rate(category) * 100,
                "%",
                85.0,
                note=f"{right} of {count} labelled questions",
            )
        )
    rows.append(
        info(
            "analysis: complexity within the labelled range",
            accuracy.complexity_rate * 100,
            "%",
            note=f"{accuracy.complexity_in_range} of {accuracy.total}",
        )
    )
    return rows
