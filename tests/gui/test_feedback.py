"""What the window says while a reply waits, ends or is stopped: one countdown for the
banner and the status bar, a "waiting to retry" badge, sentences without stray marks,
durations in one format, and the details of cancelled and estimated replies."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.core.errors import human_seconds, sentences
from desktop_app.simulator import Fault, SimulatorThread, hostile
from desktop_app.ui.main_window import MainWindow
from tests.integration.test_real_servers import NO_USAGE_STREAM


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def _left(text: str, before: str) -> str:
    match = re.search(before + r" ([0-9.]+ (?:ms|s|min))", text)
    assert match is not None, text
    return match.group(1)


def test_durations_read_in_ms_under_a_second_then_seconds_with_one_decimal() -> None:
    assert human_seconds(0.0) == "0 ms"
    assert human_seconds(0.012) == "12 ms"
    assert human_seconds(0.9996) == "1.0 s"
    assert human_seconds(4.24) == "4.2 s"
    assert human_seconds(75) == "1 min 15 s"
    values = [0.0, 0.004, 0.01, 0.04, 0.5, 0.9994, 0.9996, 1.04, 1.06, 9.95, 59.9, 61.0]

    def key(text: str) -> float:
        number, unit = text.split()[0], text.split()[1]
        return float(number) / 1000 if unit == "ms" else float(number)

    shown = [human_seconds(v) for v in values]
    assert [key(t) for t in shown[:-1]] == sorted(key(t) for t in shown[:-1])


def test_sentences_have_one_space_and_one_full_stop() -> None:
    text = sentences("The server is busy (503).  ", "Trying again in 2 s (attempt 2 of 3.)")
    assert text == "The server is busy (503). Trying again in 2 s (attempt 2 of 3)."
    assert sentences('It said "wait."', "Then") == 'It said "wait." Then.'


def test_banner_and_status_bar_show_the_same_countdown_and_the_badge_says_waiting(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=503, retry_after=3))
    send(qtbot, window, "Is the server there?")
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
    seen: list[tuple[str, str]] = []

    def agree(left: str) -> None:
        if left and window.banner.isVisible():
            seen.append(
                (_left(window.banner.text, "again in"), _left(window.status.text, "Retrying in"))
            )

    window.countdown.changed.connect(agree)
    badge = window.view.stream_widget.badge if window.view.stream_widget else None
    assert badge is not None and badge.text() == "waiting to retry"
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=5000)
    assert all(banner == status for banner, status in seen), seen
    text = window.banner.text
    assert "  " not in text and ".)." not in text and ".." not in text, text
    window.countdown.changed.disconnect(agree)
    with qtbot.waitSignal(window.controller.finished, timeout=10_000):
        qtbot.mouseClick(window.banner.retry_button, Qt.MouseButton.LeftButton)
    assert window.view.widgets[-1].state == "complete"


def test_cancelling_a_rate_limit_wait_does_not_speak_of_a_partial_reply(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(Fault(status=429, retry_after=30))
    send(qtbot, window, "Rate limited question")
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=5000)
    stream = window.view.stream_widget
    assert stream is not None and stream.badge.text() == "waiting to retry"
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        qtbot.mouseClick(window.banner.cancel_button, Qt.MouseButton.LeftButton)
    assert "partial" not in window.status.text
    assert window.status.text == "Stopped before any reply arrived."
    assert window.view.widgets[-1].state == "cancelled"


def test_a_cancelled_reply_shows_its_tokens_so_far_and_time(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.tokens_per_s = 40
    sim.default_tokens = 400
    send(qtbot, window, "Tell me a long story")
    qtbot.waitUntil(lambda: len(window.view.widgets[-1].text()) > 30, timeout=5000)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=5000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    details = window.view.widgets[-1].details
    assert details.isVisible()
    text = details.text()
    assert re.search(r"≈?\d+ tokens", text), text
    assert "first token" in text and "total" in text, text
    assert window.status.text == "Stopped. The partial reply is kept."


def test_estimated_usage_is_marked_with_an_approximately_sign(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    sim.script(
        hostile.pieces(
            "openai", lambda _r: [NO_USAGE_STREAM], headers={"Content-Type": "text/event-stream"}
        )
    )
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Where do rivers go?")
    details = window.view.widgets[-1].details.text()
    assert re.search(r"≈\d+ tokens", details), details
    assert "≈" in window.status.text and "0 tokens" not in details


def test_total_time_is_never_shown_shorter_than_the_first_token(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=10_000):
        send(qtbot, window, "Quick one")
    details = window.view.widgets[-1].details.text()
    first = _left(details, "first token")
    total = _left(details, "total")

    def seconds(text: str) -> float:
        number, unit = text.split()
        return float(number) / 1000 if unit == "ms" else float(number)

    assert seconds(total) >= seconds(first), details
    assert "0.0 s" not in details and "in 0.0 s" not in window.status.text
