"""What a streaming reply leaves on screen: each frame repaints only what changed, and what
is on screen after it is what painting the view anew draws."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, QRect, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.simulator import SimulatorThread
from desktop_app.ui.main_window import MainWindow


def _on_screen_and_anew(window: MainWindow) -> tuple[QImage, QImage]:
    """The chat view's area as the window's backing store holds it, and as a fresh paint of
    the view draws it."""
    QApplication.sendPostedEvents(None, QEvent.Type.UpdateRequest)
    viewport = window.view.viewport()
    at = viewport.mapTo(window, QPoint(0, 0))
    handle = window.windowHandle()
    assert handle is not None
    screen = handle.screen().grabWindow(window.winId())
    shown = screen.copy(QRect(at, viewport.size())).toImage()
    fresh = viewport.grab().toImage()
    return (
        shown.convertToFormat(QImage.Format.Format_RGB32),
        fresh.convertToFormat(QImage.Format.Format_RGB32),
    )


@pytest.mark.usefixtures("themed")
def test_every_frame_of_a_long_reply_leaves_on_screen_what_a_fresh_paint_draws(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """A reply thousands of pixels tall, streamed fast: its document's layout sets a
    checkpoint every 2,000 px, the view's scroll bar appears, and each frame repaints only
    the lines that changed. After every frame the view on screen is compared with the same
    view painted anew: an area left unpainted (or painted from a stale layout) differs.
    The reply keeps its width from first frame to last, scroll bar or not."""
    window.resize(900, 640)
    sim.tokens_per_s = 2000
    sim.default_tokens = 4000
    checked: list[int] = []
    differing: list[int] = []
    widths: set[int] = set()

    def check() -> None:
        widget = window.view.stream_widget
        if widget is None:
            return
        shown, fresh = _on_screen_and_anew(window)
        checked.append(widget.height())
        widths.add(widget.body.width())
        if shown != fresh:
            differing.append(widget.height())

    window.view.frame_drawn.connect(lambda: QTimer.singleShot(0, check))
    window.composer.set_text("Tell me about rivers")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    with qtbot.waitSignal(window.controller.conversation_synced, timeout=20_000):
        pass
    assert len(checked) >= 20
    assert max(checked) > 4_500  # past two of the layout's checkpoints
    assert differing == []
    assert window.view.verticalScrollBar().isVisible()
    # the text kept its width when the scroll bar appeared: it was laid out once, not again
    assert len(widths) == 1
    shown, fresh = _on_screen_and_anew(window)
    assert shown == fresh
