"""The simulator as a demo: faults from the command line and per request, demo replies
with code, tables and lists, new words on a regenerate, clean punctuation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from desktop_app.simulator import Fault, Simulator
from desktop_app.simulator.faults import FaultSpecError, parse_faults
from desktop_app.simulator.text import reply_tokens

# -- the fault spec language -------------------------------------------------------------


def test_the_spec_language_names_the_existing_faults() -> None:
    assert parse_faults("503x2") == [Fault(status=503), Fault(status=503)]
    assert parse_faults("429:retry-after=2") == [Fault(status=429, retry_after=2.0)]
    assert parse_faults("429:retry-after-ms=1500") == [Fault(status=429, retry_after_ms=1500.0)]
    assert parse_faults("drop@20") == [Fault(drop_after=20)]
    assert parse_faults("stall@10:5s") == [Fault(stall_after=10, stall_s=5.0)]
    assert parse_faults("stall@1:250ms") == [Fault(stall_after=1, stall_s=0.25)]
    assert parse_faults("malformed@5") == [Fault(malformed_after=5)]
    assert parse_faults("truncate@3,error@4") == [
        Fault(truncate_after=3),
        Fault(error_event_after=4),
    ]
    assert parse_faults("ok, 500:on=ollama:delay=1s") == [
        Fault(),
        Fault(status=500, protocol="ollama", first_byte_delay=1.0),
    ]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("200", "400 to 599"),
        ("503x0", "count"),
        ("drop@", "is not a fault"),
        ("429:retry-after=soon", "not a duration"),
        ("drop@3:5s", "not an option"),
        ("503:colour=red", "unknown option"),
        ("503:on=mars", "on= takes"),
        ("x" * 1_000_000, "longer than"),
        ("\x1b]0;owned\x07" + "y" * 100, "is not a fault"),
    ],
)
def test_a_spec_that_does_not_parse_says_where(spec: str, says: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_faults(spec)
    message = str(info.value)
    assert says in message
    assert len(message) < 300
    assert "\x1b" not in message and "\x07" not in message


# -- --fault on the command line -----------------------------------------------------------


def test_fault_from_the_command_line_fails_the_next_requests(tmp_path: Any) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "desktop_app.simulator",
            "--port",
            "0",
            "--tokens-per-s",
            "0",
            "--fault",
            "503x2",
            "--fault",
            "429:retry-after=7",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RILL_HOME": str(tmp_path)},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url, first
        assert "3 chat request(s) will fail" in process.stdout.readline()
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(base_url=url.group(), timeout=10) as client:
            answers = [client.post("/v1/chat/completions", json=body) for _ in range(4)]
        assert [a.status_code for a in answers] == [503, 503, 429, 200]
        assert answers[2].headers["retry-after"] == "7"
        assert answers[3].json()["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_help_documents_the_spec_language() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "desktop_app.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    for example in ("--fault SPEC", "503x2", "429:retry-after=2", "drop@20", "stall@10:5s"):
        assert example in result.stdout
    assert "x-rill-sim-fault" in result.stdout


# -- the fault header ----------------------------------------------------------------------


def _body(prompt: str = "hello", stream: bool = False) -> dict[str, Any]:
    return {
        "model": "sim-small",
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    }


async def test_the_header_fails_identical_requests_in_turn(sim: Simulator) -> None:
    url = sim.base_url("openai") + "/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"x-rill-sim-fault": "503x2"}
        statuses = [
            (await client.post(url, json=_body(), headers=headers)).status_code for _ in range(3)
        ]
        assert statuses == [503, 503, 200]
        # Another prompt with the same header starts its own count.
        other = await client.post(url, json=_body("other"), headers=headers)
        assert other.status_code == 503
        limited = await client.post(
            url, json=_body(), headers={"x-rill-sim-fault": "429:retry-after=2"}
        )
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
        dropped = await client.post(
            url, json=_body(stream=True), headers={"x-rill-sim-fault": "malformed@2"}
        )
        assert dropped.status_code == 200
        assert b"data: {" in dropped.content and b"[DONE]" not in dropped.content
        bad = await client.post(url, json=_body(), headers={"x-rill-sim-fault": "drop@soon"})
        assert bad.status_code == 400
        assert "x-rill-sim-fault" in bad.json()["error"]["message"]
    assert [r.fault for r in sim.chat_requests[:3]] == [Fault(status=503)] * 2 + [None]


async def test_the_header_stall_and_drop_reach_the_client(sim: Simulator) -> None:
    url = sim.base_url("openai") + "/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:
        stalled = await client.post(
            url, json=_body(stream=True), headers={"x-rill-sim-fault": "stall@3:10ms"}
        )
        assert stalled.status_code == 200 and b"[DONE]" in stalled.content
        with pytest.raises(httpx.HTTPError):
            await client.post(url, json=_body(stream=True), headers={"x-rill-sim-fault": "drop@3"})
    assert sim.chat_requests[0].fault == Fault(stall_after=3, stall_s=0.01)
    assert sim.chat_requests[1].tokens_sent == 3


# -- regenerate: new words -----------------------------------------------------------------


async def _text(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> str:
    answer = await client.post(url, json=body)
    assert answer.status_code == 200, answer.text
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content


async def test_asking_again_gets_new_words_and_a_retry_the_same(sim: Simulator) -> None:
    url = sim.base_url("openai") + "/chat/completions"
    body = _body("Tell me about rivers")
    async with httpx.AsyncClient(timeout=10) as client:
        first = await _text(client, url, body)
        second = await _text(client, url, body)
        sim.script(Fault(status=503))
        assert (await client.post(url, json=body)).status_code == 503
        third = await _text(client, url, body)  # the retry of a failed third answer
    assert len({first, second, third}) == 3
    records = sim.chat_requests
    assert [r.variant for r in records] == [0, 1, 2, 2]
    assert [sim.reply_text(r) for r in (records[0], records[1], records[3])] == [
        first,
        second,
        third,
    ]
    assert sim.reply_text(body, "openai") == third  # what the latest request got


# -- demo replies --------------------------------------------------------------------------


async def _ask(sim: Simulator, prompt: str) -> str:
    url = sim.base_url("openai") + "/chat/completions"
    async with httpx.AsyncClient(timeout=10) as client:
        return await _text(client, url, _body(prompt))


async def test_a_prompt_asking_for_code_gets_a_fenced_block(sim: Simulator) -> None:
    text = await _ask(sim, "Write a Python function that keeps the short lines")
    assert re.search(r"\n\n```python\ndef \w+\(.*:\n(    .*\n)+```\n\n", text), text
    assert text.split("```")[0].strip().endswith(":")  # a short paragraph leads in
    rust = await _ask(sim, "Show me some Rust code")
    assert "```rust\nfn " in rust
    assert text == sim.reply_text(sim.chat_requests[0])


async def test_a_prompt_asking_for_a_table_gets_a_markdown_table(sim: Simulator) -> None:
    text = await _ask(sim, "Make a table of places to visit")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) >= 4
    assert rows[1] == "|---|---:|---|"
    assert all(row.count("|") == 4 for row in rows)


async def test_a_prompt_asking_for_steps_gets_a_list(sim: Simulator) -> None:
    steps = await _ask(sim, "What are the steps to bake bread?")
    assert re.search(r"\n\n1\. [A-Z].*\.\n2\. [A-Z].*\.\n3\. ", steps), steps
    bullets = await _ask(sim, "Give me a list of ideas")
    assert re.search(r"\n\n- [A-Z].*\.\n- [A-Z]", bullets), bullets


async def test_other_prompts_get_prose_and_echo_is_kept(sim: Simulator) -> None:
    prose = await _ask(sim, "Tell me about the weather")
    assert "```" not in prose and "\n|" not in prose
    assert await _ask(sim, "/echo **bold** `code`") == "**bold** `code`"


def test_prose_punctuation_is_clean() -> None:
    for seed in range(400):
        for count in (1, 7, 40, 120):
            text = "".join(reply_tokens(seed, count))
            assert text[0].isupper(), text
            assert text[-1] in ".!", text
            for bad in (",.", ",!", " .", " ,", "—.", "🌊.", ".,"):
                assert bad not in text, (seed, count, text)
            for start in re.findall(r"[.!]\s+(\S)", text):
                assert start.isupper(), (seed, count, text)


def test_a_demo_reply_keeps_its_token_count() -> None:
    from desktop_app.simulator.protocols import parse_chat, plan_reply

    inp = parse_chat("openai", _body("Write a script"), stream=False)
    for count in (3, 30, 300):
        reply = plan_reply(inp, count)
        assert len(reply.chunks) == count
    assert plan_reply(inp, 300).text.startswith(plan_reply(inp, 30).text[:-1])
    json.dumps(plan_reply(inp, 300).chunks)  # every chunk is plain text
