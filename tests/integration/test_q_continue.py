"""``q -c`` continues a conversation on the server it was held with; a turn that fails
before anything is sent leaves the conversation as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread
from tests.integration.test_cli import q


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def exported(home: Path) -> dict[str, object]:
    listed = q("--history", home=home).stdout.split()
    result = q("--export", listed[0], "--format", "json", home=home)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_continue_uses_the_conversations_server_and_model(
    simt: SimulatorThread, rill_home: Path
) -> None:
    url = simt.base_url("openai")
    first = q("--base-url", url, "--model", "sim-large", "Query", home=rill_home)
    assert first.returncode == 0, first.stderr
    second = q("-c", "And then?", home=rill_home)
    assert second.returncode == 0, second.stderr
    request = simt.sim.chat_requests[-1].json
    assert request["model"] == "sim-large"
    assert [m["content"] for m in request["messages"]] == [
        "Query",
        first.stdout.strip(),
        "And then?",
    ]
    # what the command line gives wins over what the conversation remembers
    third = q("-c", "--model", "sim-small", "Once more", home=rill_home)
    assert third.returncode == 0, third.stderr
    assert simt.sim.chat_requests[-1].json["model"] == "sim-small"
    assert len(simt.sim.chat_requests[-1].json["messages"]) == 5


def test_a_turn_that_cannot_be_sent_is_not_saved(simt: SimulatorThread, rill_home: Path) -> None:
    url = simt.base_url("openai")
    assert q("--base-url", url, "Query", home=rill_home).returncode == 0
    before = exported(rill_home)
    failed = q(
        "-c",
        "--base-url",
        "https://api.openai.com/v1",
        "No key here",
        home=rill_home,
        env={"OPENAI_API_KEY": ""},
    )
    assert failed.returncode != 0
    assert "no API key" in failed.stderr
    after = exported(rill_home)
    assert after["messages"] == before["messages"]
    assert len(simt.sim.chat_requests) == 1
    # the conversation still remembers the server that answered
    assert q("-c", "And then?", home=rill_home).returncode == 0
