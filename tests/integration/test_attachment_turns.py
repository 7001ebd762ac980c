"""Turns with attached files over real sockets: a prompt's files are stored once and sent
again with every turn that sends the conversation (a follow-up, a regeneration, an edit, a
continued reply, ``q -c``, an Auto turn), survive export, deletion and import, and make
part of the cache key; a file whose stored copy is gone is a sentence, never a crash."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.attachments import attachment_from_bytes
from desktop_app.core.chat import MISSING_ATTACHMENT, ChatService, Services, Turn
from desktop_app.core.events import CacheHit, Failed, Finished, StreamEvent, TextDelta
from desktop_app.core.paths import app_paths
from desktop_app.core.types import PROVIDERS, Attachment, Message, ProviderName, TokenUsage
from desktop_app.simulator import Fault, Simulator, SimulatorThread
from tests.attachment_files import pdf_bytes, png_bytes
from tests.integration.test_auto import auto_config, judged, open_services
from tests.integration.test_cli import q

__all__ = ["judged"]  # the simulator that judges Auto's answers, used as a fixture here


@pytest.fixture
async def services(rill_home: Path) -> AsyncIterator[Services]:
    opened = Services.open(paths=app_paths(rill_home), api_key=lambda _r: "k")
    opened.tools = None
    try:
        yield opened
    finally:
        await opened.aclose()


def image(width: int = 40, height: int = 30, name: str = "shot.png") -> Attachment:
    return attachment_from_bytes(png_bytes(width, height), name)


def seen(att: Attachment) -> str:
    """The simulator's answer line for an image it received."""
    return f"I see an image of {att.width}×{att.height} pixels ({att.size} bytes)"


def sent(att: Attachment, body: dict[str, Any]) -> bool:
    """Whether the bytes of ``att`` are in a request body (base64, as every protocol
    carries them)."""
    return base64.b64encode(att.data).decode() in json.dumps(body)


def where(sim: Simulator | SimulatorThread, provider: ProviderName = "openai") -> dict[str, Any]:
    return {"provider": provider, "base_url": sim.base_url(provider), "model": "sim-small"}


async def run(turn: Turn) -> list[StreamEvent]:
    events = [event async for event in turn]
    assert await turn.wait_saved() is None
    return events


def reply(events: list[StreamEvent]) -> str:
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].response.content


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_prompts_files_are_stored_and_sent_again_with_the_conversation(
    sim: Simulator, services: Services, provider: ProviderName
) -> None:
    chat = ChatService(services)
    shot = image()
    first = chat.send("Describe this", attachments=[shot], **where(sim, provider))
    assert seen(shot) in reply(await run(first))
    history = services.history
    assert history is not None and first.conversation_id is not None

    prompt = history.messages(first.conversation_id)[0]
    assert prompt.attachments == (shot,) and prompt.attachments[0].data == b""
    assert services.blobs.read(shot.sha256) == shot.data
    assert services.blobs is history.blobs

    follow = chat.send(
        "And the colours?", conversation_id=first.conversation_id, **where(sim, provider)
    )
    await run(follow)
    assert sent(shot, sim.chat_requests[-1].json)  # the earlier image is context

    again = chat.regenerate(
        first.conversation_id,
        history.messages(first.conversation_id)[1].reply_group,
        **where(sim, provider),
    )
    assert seen(shot) in reply(await run(again))


async def test_editing_a_prompt_keeps_or_replaces_its_files(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    a, b = image(40, 30, "a.png"), image(64, 48, "b.png")
    first = chat.send("Describe this", attachments=[a], **where(sim))
    await run(first)
    history = services.history
    assert history is not None and first.conversation_id is not None
    prompt_id = history.messages(first.conversation_id)[0].id

    kept = chat.edit(first.conversation_id, prompt_id, "Describe this, briefly", **where(sim))
    assert seen(a) in reply(await run(kept))
    assert history.messages(first.conversation_id)[0].attachments == (a,)

    current = history.messages(first.conversation_id)[0].id
    replaced = chat.edit(
        first.conversation_id, current, "And this one?", attachments=[b], **where(sim)
    )
    text = reply(await run(replaced))
    assert seen(b) in text and seen(a) not in text
    assert history.messages(first.conversation_id)[0].attachments == (b,)

    current = history.messages(first.conversation_id)[0].id
    none = chat.edit(first.conversation_id, current, "Just text now", attachments=[], **where(sim))
    assert "I see an image" not in reply(await run(none))
    assert history.messages(first.conversation_id)[0].attachments == ()
    # every version keeps its own files
    group = history.messages(first.conversation_id)[0].reply_group
    assert [v.attachments for v in history.versions(group)] == [(a,), (a,), (b,), ()]


async def test_continuing_a_reply_sends_the_prompts_files(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    shot = image()
    sim.script(Fault(tokens=200, tokens_per_s=400))
    turn = chat.send("Describe this at length", attachments=[shot], **where(sim))
    shown = ""
    async for event in turn:
        if isinstance(event, TextDelta):
            shown += event.text
            if len(shown) > 20:
                turn.cancel()
    await turn.wait_saved()
    assert turn.conversation_id is not None and turn.assistant_message_id is not None
    more = chat.continue_reply(turn.conversation_id, turn.assistant_message_id, **where(sim))
    await run(more)
    assert sent(shot, sim.chat_requests[-1].json)


async def test_text_and_pdf_files_are_sent_again_too(sim: Simulator, services: Services) -> None:
    chat = ChatService(services)
    notes = attachment_from_bytes(b"one\ntwo\nthree\n", "notes.txt")
    paper = attachment_from_bytes(pdf_bytes(["First", "Second", "Third"]), "paper.pdf")
    first = chat.send("Read these", attachments=[notes, paper], **where(sim))
    text = reply(await run(first))
    assert "I read notes.txt (3 lines)" in text and "I read a PDF of 3 pages" in text
    assert first.conversation_id is not None and services.history is not None
    group = services.history.messages(first.conversation_id)[1].reply_group
    again = reply(await run(chat.regenerate(first.conversation_id, group, **where(sim))))
    assert "I read notes.txt (3 lines)" in again and "I read a PDF of 3 pages" in again


async def test_a_cached_answer_about_one_image_is_not_served_for_another(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    a, b = image(40, 30, "a.png"), image(50, 20, "b.png")
    assert seen(a) in reply(await run(chat.send("Describe this", attachments=[a], **where(sim))))
    other = await run(chat.send("Describe this", attachments=[b], **where(sim)))
    assert not any(isinstance(e, CacheHit) for e in other)
    assert seen(b) in reply(other)
    # the same image again is answered from the cache
    same = await run(chat.send("Describe this", attachments=[a], **where(sim)))
    assert any(isinstance(e, CacheHit) for e in same)
    assert seen(a) in reply(same)
    assert len(sim.chat_requests) == 2


async def test_a_file_whose_copy_is_gone_is_a_line_in_the_context(
    sim: Simulator, services: Services
) -> None:
    """An earlier message's lost file does not stop the conversation: the model is told in
    a line that it is gone, and the turn goes on."""
    chat = ChatService(services)
    shot = image(name="lost.png")
    first = chat.send("Describe this", attachments=[shot], **where(sim))
    await run(first)
    assert first.conversation_id is not None
    services.blobs.path(shot.sha256).unlink()

    follow = chat.send("What was it?", conversation_id=first.conversation_id, **where(sim))
    assert isinstance((await run(follow))[-1], Finished)
    body = sim.chat_requests[-1].json
    assert not sent(shot, body)
    assert body["messages"][0]["content"] == (
        "Describe this\n\n" + MISSING_ATTACHMENT.format(name="lost.png")
    )


async def test_resending_a_prompt_whose_file_is_gone_fails_with_a_sentence(
    sim: Simulator, services: Services
) -> None:
    """Editing a prompt keeps its files; when one of them is gone the new version is not
    sent, and the sentence names the file (the user can attach it again)."""
    chat = ChatService(services)
    shot = image(name="lost.png")
    first = chat.send("Describe this", attachments=[shot], **where(sim))
    await run(first)
    history = services.history
    assert history is not None and first.conversation_id is not None
    services.blobs.path(shot.sha256).write_bytes(b"damaged")
    requests = len(sim.chat_requests)
    prompt = history.messages(first.conversation_id)[0]
    events = await run(chat.edit(first.conversation_id, prompt.id, "Again", **where(sim)))
    assert isinstance(events[-1], Failed)
    assert "lost.png" in str(events[-1].error)
    assert len(sim.chat_requests) == requests  # nothing was sent
    assert len(history.versions(prompt.reply_group)) == 1  # nor recorded


async def test_export_delete_import_then_regenerate_sends_the_image_again(
    sim: Simulator, services: Services
) -> None:
    chat = ChatService(services)
    shot = image(48, 36)
    first = chat.send("Describe this", attachments=[shot], **where(sim))
    await run(first)
    history = services.history
    assert history is not None and first.conversation_id is not None

    markdown = await services.run_io(history.export_markdown, first.conversation_id)
    assert "- Attached image: shot.png (48×36 pixels" in markdown
    exported = json.dumps(await services.run_io(history.export_json, first.conversation_id))
    await services.run_io(history.delete_conversation, first.conversation_id)
    assert not services.blobs.has(shot.sha256)

    report = await services.run_io(history.import_conversation, exported)
    assert report.problems == ()
    messages = history.messages(report.conversation_id)
    assert messages[0].attachments == (shot,)
    assert services.blobs.read(shot.sha256) == shot.data

    again = chat.regenerate(report.conversation_id, messages[1].reply_group, **where(sim))
    assert seen(shot) in reply(await run(again))


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as running:
        yield running


async def test_q_continue_sends_the_stored_files(
    simt: SimulatorThread, services: Services, rill_home: Path
) -> None:
    chat = ChatService(services)
    shot = image()
    await run(chat.send("Describe this", attachments=[shot], **where(simt)))
    result = q("-c", "And the colours?", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert sent(shot, simt.sim.chat_requests[-1].json)


def test_an_estimate_counts_the_attached_files() -> None:
    from desktop_app.core.attachments import estimate_tokens
    from desktop_app.core.types import ChatRequest

    shot = image(800, 600)
    plain = ChatRequest("openai", "http://x", "m", (Message("user", "Describe this"),))
    with_image = ChatRequest(
        "openai", "http://x", "m", (Message("user", "Describe this", attachments=(shot,)),)
    )
    extra = (
        TokenUsage.estimate(with_image, "").input_tokens
        - TokenUsage.estimate(plain, "").input_tokens
    )
    assert extra == estimate_tokens(shot) > 100


async def test_a_file_that_cannot_be_stored_is_answered_and_said_to_be_unsaved(
    sim: Simulator, services: Services
) -> None:
    """Like a history that cannot be written: the reply is shown, and the turn says the
    exchange was not saved and why."""
    services.blobs.folder.write_text("a file where the folder should be")
    chat = ChatService(services)
    shot = image()
    turn = chat.send("Describe this", attachments=[shot], **where(sim))
    events = [event async for event in turn]
    assert seen(shot) in reply(events)
    problem = await turn.wait_saved()
    assert problem is not None
    assert "not saved" in str(problem) and str(services.blobs.folder) in str(problem)
    assert services.history is not None and services.history.list_conversations() == []


async def test_every_answer_of_an_auto_turn_sends_the_prompts_files(
    judged: Simulator, rill_home: Path
) -> None:
    """The first answer sends the files given; an escalation, a new version of the reply,
    reads them back from the store."""
    config = auto_config(rill_home, judged, 'validate = true\njudge = "fast"')
    services = open_services(rill_home, config)
    try:
        shot = image()
        turn = ChatService(services).send("Describe this", profile="auto", attachments=[shot])
        events = [event async for event in turn]
        assert isinstance(events[-1], Finished) and events[-1].response.model == "sim-large"
        answers = [r.json["model"] for r in judged.chat_requests if sent(shot, r.json)]
        assert answers == ["sim-small", "sim-large"]
        assert seen(shot) in events[-1].response.content
    finally:
        await services.aclose()


async def test_a_sent_file_opens_from_a_named_copy_in_the_cache_folder(
    sim: Simulator, services: Services
) -> None:
    paper = attachment_from_bytes(pdf_bytes(["Only page"]), "paper.pdf")
    turn = ChatService(services).send("Read this", attachments=[paper], **where(sim))
    await run(turn)
    assert services.history is not None and turn.conversation_id is not None
    stored = services.history.messages(turn.conversation_id)[0].attachments[0]
    copy = await services.run_io(services.viewable_copy, stored)
    assert copy.name == "paper.pdf" and copy.is_relative_to(services.paths.cache_dir)
    assert copy.read_bytes() == paper.data
    # deleting the chat frees the file, and the copy made to open it goes with it
    await services.run_io(services.history.delete_conversation, turn.conversation_id)
    assert await services.run_io(services.prune_viewer_copies) == 1
    assert not copy.exists()
