"""The window against the simulator over real sockets: streaming, cancel, retry, cache,
versions, continue, closing mid-stream, and reopening."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSizeF, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from desktop_app.core.history import StoredMessage
from desktop_app.simulator import Fault, SimulatorThread
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, anchor_point, run, sim_config


def stored(qtbot: QtBot, window: MainWindow) -> list[StoredMessage]:
    services = window.services
    assert services.history is not None
    cid = window.controller.conversation_id
    assert cid is not None
    return run(qtbot, services.run_io(services.history.messages, cid))


def expected_reply(sim: SimulatorThread) -> str:
    request = sim.chat_requests[-1]
    return sim.reply_text(request.json, "openai", headers=request.headers)


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def test_reply_streams_into_the_view_and_lands_in_history(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 150
    sim.default_tokens = 45
    seen_partial: list[int] = []

    def partial_shown() -> None:
        w = window.view.stream_widget
        assert w is not None and w.streaming
        assert w.body.document().toPlainText()
        seen_partial.append(len(w.text()))

    send(qtbot, window, "Tell me about rivers")
    assert window.composer.stop_button.isVisible()
    assert not window.composer.send_button.isVisible()
    qtbot.waitUntil(partial_shown, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        pass
    reply = window.view.widgets[-1]
    assert reply.state == "complete"
    assert seen_partial[0] < len(reply.text())
    assert reply.text() == expected_reply(sim)
    assert "Rivers" in reply.body.document().toPlainText() or reply.body.document().toPlainText()
    assert window.composer.send_button.isVisible()
    assert window.status.text.startswith("Done in")
    assert "sim-small" in reply.details.text() and "tokens" in reply.details.text()

    messages = stored(qtbot, window)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[0].content == "Tell me about rivers"
    assert messages[1].content == reply.text()
    assert window.sidebar.ids() == [window.controller.conversation_id]


def test_the_speed_counts_every_token_however_many_one_read_brings(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 500  # a frame's read brings about 20 of them, as one delta
    sim.default_tokens = 100
    texts: list[str] = []
    window.controller.text_appended.connect(texts.append)
    send(qtbot, window, "Tell me about rivers")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        pass
    assert window.view.widgets[-1].text() == expected_reply(sim)
    assert len(texts) < 50  # the reads were joined...
    assert window.controller.stats.deltas == 100  # ...and each of their tokens counted


def test_escape_stops_the_reply_and_keeps_the_partial_text(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 25
    sim.default_tokens = 400
    send(qtbot, window, "Tell me a long story")

    def some_text() -> None:
        w = window.view.stream_widget
        assert w is not None and len(w.text()) > 20

    qtbot.waitUntil(some_text, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    sim.wait_for_disconnect(timeout=5)
    reply = window.view.widgets[-1]
    assert reply.state == "cancelled"
    assert reply.badge.text() == "cancelled"
    messages = stored(qtbot, window)
    assert messages[-1].status == "cancelled"
    assert messages[-1].content and messages[-1].content == reply.text()
    assert expected_reply(sim).startswith(messages[-1].content)
    assert "Stopped" in window.status.text
    assert reply.continue_button.isVisible()
    # a compact button under the text, not a bar across the conversation
    assert reply.continue_button.width() < reply.width() // 3


def test_continue_finishes_a_cancelled_reply(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 40
    sim.default_tokens = 80
    send(qtbot, window, "Tell me about bridges")
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 30, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        window.controller.stop()
    full = expected_reply(sim)
    sim.tokens_per_s = 0
    reply = window.view.widgets[-1]
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(reply.continue_button, Qt.MouseButton.LeftButton)
    assert window.view.widgets[-1] is reply
    assert reply.state == "complete"
    assert reply.text() == full
    assert stored(qtbot, window)[-1].content == full


def test_a_503_shows_the_retry_banner_until_the_retry_succeeds(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=503))
    shown: list[str] = []

    def banner_counts_down() -> None:
        assert window.banner.isVisible()
        assert "503" in window.banner.text and "attempt 2 of 4" in window.banner.text
        shown.append(window.banner.text)

    send(qtbot, window, "Is the server there?")
    qtbot.waitUntil(banner_counts_down, timeout=5000)
    assert "Retrying in" in window.status.text
    with qtbot.waitSignal(window.controller.finished, timeout=10_000):
        pass
    assert not window.banner.isVisible()
    assert window.view.widgets[-1].state == "complete"
    assert window.status.text.startswith("Done")
    assert len(sim.chat_requests) == 2


def test_retry_now_skips_the_wait(qtbot: QtBot, window: MainWindow, sim: SimulatorThread) -> None:
    sim.script(Fault(status=429, retry_after=30))
    send(qtbot, window, "Rate limited question")
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
    assert "30 s" in window.banner.text or "Trying again in" in window.banner.text
    with qtbot.waitSignal(window.controller.finished, timeout=10_000):
        qtbot.mouseClick(window.banner.retry_button, Qt.MouseButton.LeftButton)
    assert not window.banner.isVisible()
    qtbot.waitUntil(lambda: not window.controller.busy)
    reply = window.view.widgets[-1]
    assert reply.state == "complete"
    assert reply.message is not None or reply.text() == expected_reply(sim)


def test_a_fatal_error_shows_the_reason_and_a_retry_button(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=400, message="This model does not take that parameter."))
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Bad request please")
    reply = window.view.widgets[-1]
    assert reply.state == "failed"
    assert "400" in reply.error_label.text()
    assert reply.retry_button.isVisible()
    assert "400" in window.status.text
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(reply.retry_button, Qt.MouseButton.LeftButton)
    reply = window.view.widgets[-1]
    assert reply.state == "complete"
    assert reply.version_label.text() == "2/2"


def test_a_repeated_question_is_served_from_the_cache(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "What is a river?")
    first = window.view.widgets[-1].text()
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.view.widgets)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "What is a river?")
    reply = window.view.widgets[-1]
    assert reply.text() == first
    assert reply.badge.text() == "from cache"
    assert window.status.text.startswith("Served from cache")
    assert len(sim.chat_requests) == 1


def test_regenerate_adds_a_version_and_versions_can_be_switched(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Name a river")
    first = window.view.widgets[-1].text()
    sim.script(Fault(tokens=7))
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    reply = window.view.widgets[-1]
    second = reply.text()
    assert second != first and second == expected_reply(sim)  # new words, 7 of them
    assert len(second.split()) == 7
    assert reply.version_label.isVisible() and reply.version_label.text() == "2/2"
    assert len(window.view.widgets) == 2
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.mouseClick(reply.prev_button, Qt.MouseButton.LeftButton)
    reply = window.view.widgets[-1]
    assert reply.version_label.text() == "1/2"
    assert reply.text() == first
    assert [m.content for m in stored(qtbot, window)][-1] == first


def test_edit_and_resend_replaces_the_last_prompt(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about lakes")
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.editing
    assert window.composer.text() == "Tell me about lakes"
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about mountains")
    assert not window.composer.editing
    user, reply = window.view.widgets
    assert user.text() == "Tell me about mountains"
    assert reply.text() == expected_reply(sim)
    contents = [m.content for m in stored(qtbot, window)]
    assert contents == ["Tell me about mountains", reply.text()]
    assert sim.chat_requests[-1].json["messages"][-1]["content"] == "Tell me about mountains"


def test_closing_the_window_mid_stream_saves_the_partial_reply(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    sim.tokens_per_s = 25
    sim.default_tokens = 400
    send(qtbot, window, "Tell me everything")
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 20, timeout=5000)
    shown = window.view.widgets[-1].text()
    services = window.services
    history = services.history
    assert history is not None
    cid = window.controller.conversation_id
    assert cid is not None
    window.close()
    qtbot.waitUntil(lambda: window.shutdown_task is not None and window.shutdown_task.done())
    sim.wait_for_disconnect(timeout=5)
    messages = run(qtbot, services.run_io(history.messages, cid))
    assert messages[-1].status == "cancelled"
    assert messages[-1].content.startswith(shown)
    windows.close(window)


def test_reopening_restores_the_conversation_and_the_window(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    window.resize(720, 530)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Remember this conversation")
    cid = window.controller.conversation_id
    reply = window.view.widgets[-1].text()
    sizes = window.splitter.sizes()
    windows.close(window)

    again = windows.make(sim_config(sim, rill_home))
    qtbot.waitUntil(lambda: len(again.view.widgets) == 2, timeout=5000)
    assert again.controller.conversation_id == cid
    assert again.view.widgets[0].text() == "Remember this conversation"
    assert again.view.widgets[1].text() == reply
    assert again.size().width() == 720 and again.size().height() == 530
    assert again.splitter.sizes() == sizes
    assert again.sidebar.ids() == [cid]


def test_copy_buttons_copy_the_message_and_the_code(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    text = "/echo Here:\n\n```python\nprint('hi')\n```\n\nDone."
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, text)
    reply = window.view.widgets[-1]
    assert reply.text() == text[len("/echo ") :]
    qtbot.mouseClick(reply.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == reply.text()
    assert reply.code_block(0) == "print('hi')"
    QGuiApplication.clipboard().clear()
    point = anchor_point(reply.body, "rill:copy-code/0")
    qtbot.mouseClick(reply.body.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert QGuiApplication.clipboard().text() == "print('hi')"


def test_a_prompt_sent_right_after_a_reply_keeps_every_message(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sent: list[bool] = []

    def send_again() -> None:
        if not sent and not window.controller.busy:
            sent.append(True)
            window.composer.set_text("And another thing")
            window.composer.submit()

    # history_changed comes after the finished turn queued its read of the conversation
    window.controller.history_changed.connect(send_again)
    sim.script(Fault(), Fault(tokens=40, tokens_per_s=60))
    send(qtbot, window, "First thing")

    def second_reply_streaming() -> None:
        w = window.view.stream_widget
        assert sent and w is not None and len(w.text()) > 40

    qtbot.waitUntil(second_reply_streaming, timeout=10_000)
    assert [(w.role, w.text()[:17]) for w in window.view.widgets[2:]] == [
        ("user", "And another thing"),
        ("assistant", window.view.widgets[3].text()[:17]),
    ]

    def both_exchanges_shown() -> None:
        assert not window.controller.busy
        roles = [(w.role, w.state) for w in window.view.widgets]
        assert roles == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        assert all(w.message is not None for w in window.view.widgets)

    qtbot.waitUntil(both_exchanges_shown, timeout=10_000)
    assert window.view.widgets[2].text() == "And another thing"
    assert [m.content for m in stored(qtbot, window)] == [w.text() for w in window.view.widgets]


def test_a_new_chat_during_a_reply_stops_it_and_keeps_it_in_its_conversation(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 30
    sim.default_tokens = 300
    send(qtbot, window, "Story about lighthouses")
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 20, timeout=5000)
    first = window.controller.conversation_id
    assert first is not None
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=5000)
    sim.wait_for_disconnect(timeout=5)
    assert window.controller.conversation_id is None
    assert window.view.widgets == []
    history = window.services.history
    assert history is not None
    messages = run(qtbot, window.services.run_io(history.messages, first))
    assert [m.status for m in messages] == ["complete", "cancelled"]
    sim.tokens_per_s = 0
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "A fresh question")
    assert window.controller.conversation_id not in (None, first)
    assert window.view.widgets[0].text() == "A fresh question"


def test_the_prompt_is_a_bubble_at_the_right_and_the_reply_spans_the_column(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    window.resize(1200, 800)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about rivers")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "A longer question that goes on and on " * 12)
    short, reply, long = window.view.widgets[0], window.view.widgets[1], window.view.widgets[2]

    def laid_out() -> None:
        assert short.bubble is not None and long.bubble is not None
        right = short.mapTo(window, short.rect().topRight()).x()
        for prompt in (short, long):
            assert prompt.bubble is not None
            edge = prompt.bubble.mapTo(window, prompt.bubble.rect().topRight()).x()
            assert right - 2 <= edge <= right
        assert short.bubble.width() < short.width() * 0.4
        assert short.width() * 0.6 < long.bubble.width() <= short.width() * 0.75 + 1
        assert reply.body.width() > reply.width() - 4

    qtbot.waitUntil(laid_out, timeout=5000)
    # no card, no "You" or "Assistant" label: the shape says who speaks
    for widget in window.view.widgets:
        labels = [label.text() for label in widget.findChildren(PlainLabel)]
        assert "You" not in labels and "Assistant" not in labels
    # the prompt's text is whole and fits its bubble (no line cut off)
    doc = long.body.document()
    assert doc.toPlainText() == "A longer question that goes on and on " * 12
    assert long.body.height() >= doc.size().height()
    # narrow: the bubble and the actions at its left still share the row without overlap
    window.resize(600, 700)

    def narrow() -> None:
        assert long.bubble is not None and long.edit_button.isVisibleTo(long)
        assert long.edit_button.geometry().right() < long.bubble.geometry().left()
        assert long.bubble.geometry().right() <= long.width()
        assert long.body.height() >= long.body.document().size().height()

    qtbot.waitUntil(narrow, timeout=5000)


def test_message_actions_show_on_hover_and_on_keyboard_focus(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Tell me about rivers")
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "And lakes?")
    first, last = window.view.widgets[1], window.view.widgets[3]
    window.view.verticalScrollBar().setValue(0)
    # the last reply keeps its actions shown; an earlier one shows them on hover
    assert last.actions_shown() and not first.actions_shown()

    def painted(button: QWidget) -> bool:
        image = button.grab().toImage()
        colours = {image.pixel(x, y) for x in range(image.width()) for y in range(image.height())}
        return len(colours) > 1

    assert first.copy_button.isVisible() and not painted(first.copy_button)
    qtbot.mouseMove(first.body, first.body.rect().center())
    qtbot.waitUntil(first.actions_shown, timeout=2000)
    assert painted(first.copy_button)
    qtbot.mouseMove(window.composer.edit, window.composer.edit.rect().center())
    qtbot.waitUntil(lambda: not first.actions_shown(), timeout=2000)
    # Tab reaches the buttons, and a focused button shows the message's actions
    assert first.copy_button.focusPolicy() & Qt.FocusPolicy.TabFocus
    first.copy_button.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(first.copy_button.hasFocus, timeout=2000)
    assert first.actions_shown() and painted(first.copy_button)
    with qtbot.waitSignal(window.view.copied, timeout=2000):
        qtbot.keyClick(first.copy_button, Qt.Key.Key_Space)
    assert QGuiApplication.clipboard().text() == first.text()


def test_the_streaming_badge_is_as_wide_as_its_words(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 25
    sim.default_tokens = 400
    send(qtbot, window, "Tell me a long story")

    def streaming() -> None:
        w = window.view.stream_widget
        assert w is not None and len(w.text()) > 20 and w.badge.isVisible()

    qtbot.waitUntil(streaming, timeout=5000)
    reply = window.view.stream_widget
    assert reply is not None
    assert reply.badge.text() == "● streaming"
    assert reply.badge.width() < reply.width() / 3
    assert reply.badge.mapTo(reply, reply.badge.rect().topLeft()).x() < reply.width() / 4
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)


def test_a_long_prompt_keeps_its_layout_while_the_reply_grows_below_it(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """The bubble is fitted to the row's width, and the column is laid out once it holds
    its messages: a reply growing below a long prompt neither squeezes the prompt (moving
    it and all below) nor lays its text out again."""
    window.resize(1100, 760)
    prompt = "".join(
        f"Step {i}: take x_{{{i}}}^2 + \\frac{{{i}}}{{\\sqrt{{{i}}}}}, then \\alpha_{{{i}}} "
        f"\\leq e^{{-{i} t}} so that\n\n\\sum_{{k=1}}^{{{i}}} k^2 = {i * (i + 1) * (2 * i + 1) // 6}\n\n"
        for i in range(2, 60)
    )
    sim.tokens_per_s = 400
    sim.default_tokens = 400
    send(qtbot, window, prompt)
    qtbot.waitUntil(lambda: window.view.stream_widget is not None, timeout=5000)
    shown = window.view.widgets[0]
    assert shown.bubble is not None and shown.text() == prompt
    stream = window.view.stream_widget
    assert stream is not None
    qtbot.waitUntil(lambda: len(stream.text()) > 200, timeout=5000)
    heights: list[int] = []
    layouts: list[float] = []
    doc = shown.body.document()

    def laid_out(size: QSizeF) -> None:
        if stream.streaming:
            layouts.append(size.height())

    doc.documentLayout().documentSizeChanged.connect(laid_out)

    class Heights(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Resize and stream.streaming:
                heights.append(shown.height())
            return False

    watcher = Heights()
    shown.installEventFilter(watcher)
    before = shown.height()
    grown = stream.height()
    qtbot.waitUntil(lambda: not stream.streaming, timeout=20_000)
    shown.removeEventFilter(watcher)
    doc.documentLayout().documentSizeChanged.disconnect(laid_out)
    assert len(stream.text()) > 1000 and stream.height() > grown + 100
    assert heights == []
    assert layouts == []
    assert shown.height() == before
    assert shown.body.height() >= doc.size().height()


def test_details_wrap_in_a_narrow_window_without_height_for_width_in_the_column(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """A reply's details wrap when the row is narrow, yet the column of messages does not
    ask every message its height for a width each time a reply grows."""
    window.resize(1100, 760)
    for prompt in ("Tell me about rivers", "And lakes?"):
        with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
            send(qtbot, window, prompt)
    reply = window.view.widgets[1]
    details = reply.details
    assert details.isVisible() and details.text()
    assert not window.view.layout_.hasHeightForWidth()
    assert not reply.hasHeightForWidth()
    line = details.fontMetrics().lineSpacing()
    qtbot.waitUntil(lambda: details.height() < 2 * line, timeout=5000)
    details.setText(details.text() + " · " + "a long note about this reply " * 6)
    window.resize(420, 700)

    def wrapped() -> None:
        assert details.height() >= 2 * line
        assert details.height() >= details.heightForWidth(details.width())
        assert reply.height() >= details.geometry().bottom()

    qtbot.waitUntil(wrapped, timeout=5000)
    window.resize(1100, 760)
    qtbot.waitUntil(
        lambda: details.height() == details.heightForWidth(details.width()), timeout=5000
    )
    assert not window.view.layout_.hasHeightForWidth()
