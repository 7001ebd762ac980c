"""A tool card on its own: the approval row by keyboard, results collapsed and expandable,
errors, images decoded within bounds, and hostile names and output shown as text."""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.core.tools.loop import NEVER
from desktop_app.ui.controller import StreamStats
from desktop_app.ui.status_bar import tool_status
from desktop_app.ui.tool_card import (
    IMAGE_PIXELS,
    THUMBNAIL,
    ToolCard,
    ToolSteps,
    one_line,
    pretty_arguments,
    thumbnail,
)


def png(width: int, height: int) -> bytes:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("#2563eb"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, "PNG")
    return bytes(data.data())


def shown_card(qtbot: QtBot) -> ToolCard:
    card = ToolCard("read_file")
    card.call_id = "c1"
    qtbot.addWidget(card)
    card.resize(600, 200)
    card.show()
    qtbot.waitExposed(card)
    return card


def test_arguments_fill_in_as_they_stream(qtbot: QtBot) -> None:
    card = shown_card(qtbot)
    assert card.name_label.text() == "read_file"
    assert card.status_text() == "preparing…"
    card.append_arguments('{"path": ')
    card.append_arguments('"notes.txt"}')
    assert card.preview.text() == '{"path": "notes.txt"}'
    card.set_expanded(True)
    assert card.arguments_view.toPlainText() == '{\n  "path": "notes.txt"\n}'


def test_approval_row_answers_by_keys(qtbot: QtBot) -> None:
    for key, decision in ((Qt.Key.Key_Y, "once"), (Qt.Key.Key_A, "always"), (Qt.Key.Key_N, "deny")):
        card = shown_card(qtbot)
        row = card.ask("files", '{"path": "a"}')
        card.activateWindow()
        qtbot.waitUntil(lambda r=row: r.once.hasFocus(), timeout=2000)
        assert card.status_text() == "waiting for your approval"
        with qtbot.waitSignal(card.decided, timeout=2000) as blocker:
            qtbot.keyClick(QApplication.focusWidget(), key)
        assert blocker.args == ["c1", decision]
        assert not row.isEnabled()  # answered once; a second key does nothing


def test_approval_row_by_tab_and_enter(qtbot: QtBot) -> None:
    card = shown_card(qtbot)
    row = card.ask("files", "{}")
    card.activateWindow()
    qtbot.waitUntil(row.once.hasFocus, timeout=2000)
    qtbot.keyClick(row.once, Qt.Key.Key_Tab)
    assert row.always.hasFocus()
    qtbot.keyClick(row.always, Qt.Key.Key_Tab)
    assert row.deny.hasFocus()
    with qtbot.waitSignal(card.decided, timeout=2000) as blocker:
        qtbot.keyClick(row.deny, Qt.Key.Key_Return)
    assert blocker.args == ["c1", "deny"]


def test_result_is_collapsed_and_expands(qtbot: QtBot) -> None:
    card = shown_card(qtbot)
    card.start("files", '{"path": "a"}')
    assert card.status_text().endswith("running 0 s")
    card.set_progress(3, 10, None)
    assert "3 of 10" in card.status_text()
    card.set_progress(4, 10, "4 of 10 files")
    assert card.status_text().endswith("4 of 10 files")
    card.finish("line one\nline two\n" + "x" * 500, is_error=False, duration_s=0.25)
    assert card.state == "done"
    assert card.status_text() == "done · 250 ms"
    assert card.preview.text().startswith("line one line two x")
    assert len(card.preview.text()) <= 160
    assert not card.details.isVisible()
    qtbot.mouseClick(card.toggle, Qt.MouseButton.LeftButton)
    assert card.details.isVisible() and not card.preview.isVisible()
    assert card.result_view.toPlainText().startswith("line one\nline two\n")
    qtbot.mouseClick(card.toggle, Qt.MouseButton.LeftButton)
    assert not card.details.isVisible()


def test_errors_and_denials_read_as_such(qtbot: QtBot) -> None:
    card = shown_card(qtbot)
    card.start("files", "{}")
    card.finish("No such file: a", is_error=True, duration_s=1.5)
    assert card.state == "error" and card.status_text() == "error · 1.5 s"
    assert card.property("state") == "error"
    other = shown_card(qtbot)
    other.fail("The user declined to run this tool.", denied=True)
    assert other.state == "denied" and other.status_text() == "denied"
    assert other.preview.text() == "The user declined to run this tool."
    never = shown_card(qtbot)
    never.fail(NEVER)
    assert never.state == "denied" and never.status_text() == "not allowed (policy: never)"
    assert never.result_title.text() == "Not run"


def test_images_become_bounded_thumbnails(qtbot: QtBot) -> None:
    small = thumbnail(png(640, 320))
    assert small is not None and small.width() == THUMBNAIL and small.height() == THUMBNAIL // 2
    assert thumbnail(png(IMAGE_PIXELS + 1, 4)) is None  # never decoded at that size
    assert thumbnail(b"not a picture at all") is None
    assert thumbnail(b"") is None
    card = shown_card(qtbot)
    card.finish("", is_error=False, duration_s=0.1, images=(("image/png", png(64, 64)),))
    assert len(card.images) == 1
    assert card.preview.text() == "1 image"
    card.finish("", is_error=False, duration_s=0.1, images=(("image/png", b"\x89PNG broken"),))
    assert card.images == []


def test_hostile_names_and_output_stay_text(qtbot: QtBot) -> None:
    card = ToolCard("<b>bold</b>\x1b[31m" + "n" * 500)
    qtbot.addWidget(card)
    assert card.name_label.textFormat() == Qt.TextFormat.PlainText
    assert "\x1b" not in card.name_label.text() and len(card.name_label.text()) <= 120
    card.finish('<img src="file:///etc/passwd">\ud800', is_error=False, duration_s=0.0)
    assert card.result_view.toPlainText().startswith('<img src="file:///etc/passwd">')
    assert one_line("a\n\n b\tc") == "a b c"
    assert pretty_arguments("{not json") == "{not json"


def test_steps_match_events_to_streamed_cards(qtbot: QtBot) -> None:
    steps = ToolSteps()
    qtbot.addWidget(steps)
    steps.add_text("Let me look.")
    first = steps.delta(0, None, "get_time", '{"tz":')
    second = steps.delta(1, None, "read_file", "{}")
    steps.delta(0, None, None, '"UTC"}')
    assert first.arguments == '{"tz":"UTC"}'
    # the calls' ids come with the approval and start events (Ollama and Gemini stream none)
    assert steps.card_for("id-b", "read_file") is second
    assert steps.card_for("id-a", "get_time") is first
    assert steps.card_with("id-a") is first
    steps.new_round()
    third = steps.card_for("id-c", "get_time")
    assert third not in (first, second) and len(steps.cards) == 3
    assert steps.texts == ["Let me look."]


def test_status_names_the_running_tool() -> None:
    stats = StreamStats()
    assert tool_status(stats) == ""
    stats.tools_running["a"] = ("read_file", 100.0)
    assert tool_status(stats, now=102.4) == "Running read_file (2 s)…"
    stats.tools_running["b"] = ("get_time", 101.0)
    assert tool_status(stats, now=102.4) == "Running read_file and 1 more (2 s)…"
    stats.approvals_waiting = 1
    assert tool_status(stats) == "Waiting for your approval"


def test_expanding_turns_the_arrow_and_earlier_text_follows_the_theme(qtbot: QtBot) -> None:
    from desktop_app.ui import theme
    from desktop_app.ui.icons import PROPERTY

    card = shown_card(qtbot)
    assert card.toggle.property(PROPERTY) == "chevron-down"
    card.set_expanded(True)
    assert card.toggle.property(PROPERTY) == "chevron-up"
    steps = ToolSteps()
    qtbot.addWidget(steps)
    steps.add_text("Before the call:\n\n```python\nx = 1\n```\n")
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    try:
        theme.apply(app, "dark")
        steps.refresh_theme()
    finally:
        theme.apply(app, "light")
    [view] = [w for w in steps.findChildren(QWidget) if w.property("markdown")]
    text = view.document().toPlainText()  # type: ignore[attr-defined]
    assert text.count("x = 1") == 1 and "Before the call:" in text


def test_server_states_from_another_thread_arrive_on_the_qt_thread(qtbot: QtBot) -> None:
    import threading

    from desktop_app.core.tools.mcp import ServerState
    from desktop_app.ui.tool_picker import StateRelay

    relay = StateRelay()
    got: list[tuple[str, bool]] = []
    relay.changed.connect(
        lambda state: got.append(
            (state.name, threading.current_thread() is threading.main_thread())
        )
    )
    thread = threading.Thread(target=relay, args=(ServerState("time", "ready"),))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: got == [("time", True)], timeout=2000)


def test_the_tools_button_counts_what_this_chat_offers(qtbot: QtBot) -> None:
    from desktop_app.ui.tool_picker import ServerChoice, ToolPicker

    picker = ToolPicker()
    qtbot.addWidget(picker)
    picker.set_servers([])
    assert picker.isHidden()  # no server: no button
    picker.set_servers(
        [ServerChoice("time", 2, "ready"), ServerChoice("broken", 0, "failed")], set()
    )
    assert not picker.isHidden() and picker.text() == "Tools: 2"
    assert picker.boxes["broken"].text() == "broken (failed to start)"
    picker.set_servers([ServerChoice("time", 2, "ready"), ServerChoice("files", None, "off")])
    assert picker.text() == "Tools: 2+"
    assert picker.boxes["files"].text() == "files (starts when used)"
    with qtbot.waitSignal(picker.changed) as blocker:
        picker.boxes["time"].setChecked(False)
    assert blocker.args == [{"time"}]
    assert picker.text() == "Tools: on"  # files: not started, so not counted yet
    picker.boxes["files"].setChecked(False)
    assert picker.text() == "Tools: off"
