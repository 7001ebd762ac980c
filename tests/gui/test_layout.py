"""The window's frame: the chat list grouped by date, hidden and shown (by hand, with
Ctrl+B, and by itself when the window is narrow), the window title, and the shortcuts
dialog showing every row."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.core.history import Conversation
from desktop_app.simulator import SimulatorThread
from desktop_app.ui.main_window import NARROW_WIDTH, TITLE_CHARS, MainWindow, window_title
from desktop_app.ui.shortcuts import SHORTCUTS
from desktop_app.ui.sidebar import GROUPS, SECTION_ROLE, date_group
from desktop_app.ui.status_bar import LINE_CHARS_DRAWN, StatusText
from desktop_app.ui.theme import current
from tests.gui.util import EventCounter, Windows, sim_config, wait_reply

DAY = 86400.0


def chat(cid: int, title: str, age_days: float) -> Conversation:
    when = time.time() - age_days * DAY
    return Conversation(cid, title, when, when, "Simulator", "openai", "sim-small", None)


def test_date_groups_follow_calendar_days() -> None:
    noon = time.mktime((2024, 5, 10, 12, 0, 0, 0, 0, -1))
    assert date_group(noon - 11 * 3600, noon) == "Today"  # 01:00 the same day
    assert date_group(noon - 13 * 3600, noon) == "Yesterday"  # 23:00 the day before
    assert date_group(noon - 3 * DAY, noon) == "Previous 7 days"
    assert date_group(noon - 7 * DAY, noon) == "Previous 7 days"
    assert date_group(noon - 8 * DAY, noon) == "Older"
    assert date_group(noon + 60, noon) == "Today"  # a clock a little ahead


def test_the_chat_list_is_grouped_by_date_with_rows_that_cannot_be_selected(
    qtbot: QtBot, window: MainWindow
) -> None:
    sidebar = window.sidebar
    sidebar.set_conversations(
        [
            chat(1, "fresh", 0),
            chat(2, "also fresh", 0),
            chat(3, "yesterday's", 1),
            chat(4, "last week", 4),
            chat(5, "ancient " + "w" * 1_000_000, 40),
        ]
    )
    assert sidebar.sections() == list(GROUPS)
    assert sidebar.ids() == [1, 2, 3, 4, 5]
    headers = [
        sidebar.list.item(i)
        for i in range(sidebar.list.count())
        if sidebar.list.item(i).data(SECTION_ROLE)
    ]
    for header in headers:
        assert not header.flags() & Qt.ItemFlag.ItemIsSelectable
        assert not header.flags() & Qt.ItemFlag.ItemIsEnabled
    # the keyboard walks the chats and steps over the group rows
    sidebar.list.setFocus()
    first = sidebar.item_for(1)
    assert first is not None
    sidebar.list.setCurrentItem(first)
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Down)
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Down)
    assert sidebar.list.currentItem() is sidebar.item_for(3)
    # a title a megabyte long is elided: no horizontal scrollbar, one row's height
    qtbot.waitUntil(lambda: sidebar.list.viewport().width() > 0)
    assert not sidebar.list.horizontalScrollBar().isVisible()
    assert sidebar.list.horizontalScrollBar().maximum() == 0
    assert not sidebar.list.viewport().grab().isNull()


def test_ctrl_b_and_the_buttons_hide_and_show_the_chat_list(
    qtbot: QtBot, window: MainWindow
) -> None:
    window.resize(1000, 600)
    assert window.sidebar.isVisible() and not window.rail.isVisible()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert not window.sidebar.isVisible() and window.rail.isVisible()
    assert QApplication.focusWidget() is window.composer.edit
    qtbot.mouseClick(window.expand_button, Qt.MouseButton.LeftButton)
    assert window.sidebar.isVisible() and not window.rail.isVisible()
    qtbot.waitUntil(lambda: not window.sidebar.collapse_button.rect().isEmpty())
    qtbot.mouseClick(window.sidebar.collapse_button, Qt.MouseButton.LeftButton)
    assert not window.sidebar.isVisible()
    assert not window.actions_["toggle_sidebar"].isChecked()
    # a hidden list stays hidden when the window is wide again
    window.resize(600, 600)
    window.resize(1100, 600)
    assert not window.sidebar.isVisible()
    window.actions_["toggle_sidebar"].trigger()
    assert window.sidebar.isVisible()


def test_the_chat_list_hides_itself_while_the_window_is_narrow(
    qtbot: QtBot, window: MainWindow
) -> None:
    window.resize(1000, 600)
    assert window.sidebar.isVisible()
    window.resize(NARROW_WIDTH - 100, 500)
    qtbot.waitUntil(lambda: window.width() == NARROW_WIDTH - 100)
    assert not window.sidebar.isVisible() and window.rail.isVisible()
    window.resize(500, 400)
    qtbot.waitUntil(lambda: window.width() == 500)  # the window can be that small
    assert window.height() == 400
    window.resize(NARROW_WIDTH + 100, 500)
    qtbot.waitUntil(lambda: window.sidebar.isVisible())
    assert not window.rail.isVisible()


def test_a_hidden_chat_list_stays_hidden_after_a_restart(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = windows.make(sim_config(sim, rill_home))
    window.resize(1000, 600)
    window.toggle_sidebar()
    windows.close(window)
    again = windows.make(sim_config(sim, rill_home))
    assert not again.sidebar.isVisible() and again.rail.isVisible()


def test_the_window_title_names_the_chat(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    assert window.windowTitle() == "Rill"
    wait_reply(
        qtbot,
        window,
        lambda: (
            window.composer.set_text("Tell me about harbours")
            or qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        ),
    )
    cid = window.controller.conversation_id
    assert cid is not None
    qtbot.waitUntil(lambda: window.windowTitle() == f"{window.sidebar.title_of(cid)} — Rill")
    assert "harbours" in window.windowTitle()
    window.controller.rename_conversation(cid, "Ports <b>of</b> call [*]")
    qtbot.waitUntil(
        lambda: window.windowTitle() == "Ports <b>of</b> call [*][*] — Rill", timeout=3000
    )
    handle = window.windowHandle()
    assert handle is not None and handle.title() == "Ports <b>of</b> call [*] — Rill"
    window.new_chat()
    qtbot.waitUntil(lambda: window.windowTitle() == "Rill", timeout=3000)
    with qtbot.waitSignal(window.controller.conversation_loaded, timeout=3000):
        window.sidebar.open_requested.emit(cid)
    assert window.windowTitle() == "Ports <b>of</b> call [*][*] — Rill"


def test_a_hostile_chat_name_makes_a_plain_short_title() -> None:
    assert window_title("") == "Rill" and window_title(None) == "Rill"
    assert window_title("\x1b]0;owned\x07") == "]0;owned — Rill"
    assert window_title("a\nb\r\tc\u202eevil\u200b") == "a b cevil — Rill"
    assert window_title("half \ud800 pair") == "half \ufffd pair — Rill"
    long = window_title("w" * 1_000_000)
    assert long.endswith("… — Rill") and len(long) == TITLE_CHARS + len(" — Rill")
    assert window_title("\x00\x01 \u2028") == "Rill"


def test_the_shortcuts_dialog_shows_every_row(qtbot: QtBot, window: MainWindow) -> None:
    window.show_shortcuts()
    dialog = window.shortcuts_dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    table = dialog.table
    assert table.rowCount() == len(SHORTCUTS)
    viewport = table.viewport().rect()
    last = table.visualRect(table.model().index(table.rowCount() - 1, 1))
    assert viewport.contains(last), (viewport, last)
    assert not table.verticalScrollBar().isVisible()
    assert ("Ctrl+B", "Show or hide the chat list") in dialog.rows()


def test_a_reply_changes_neither_the_composers_size_nor_the_chats(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread
) -> None:
    """Send turning into Stop and back is a swap in place: the chat above is not shortened
    for a moment (each change lays out every message of the chat again)."""
    from PySide6.QtCore import QEvent, QObject

    class Sizes(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, int]] = []

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Resize:
                self.seen.append((watched.objectName(), watched.height()))
            return False

    qtbot.waitUntil(lambda: window.view.height() > 0, timeout=5000)
    sizes = Sizes()
    for widget in (window.composer.box, window.view):
        widget.installEventFilter(sizes)
    box, view = window.composer.box.height(), window.view.height()
    wait_reply(qtbot, window, lambda: window.send("hello"))
    assert window.composer.send_button.isVisible()
    assert not window.composer.stop_button.isVisible()
    assert sizes.seen == []
    assert (window.composer.box.height(), window.view.height()) == (box, view)


def test_the_status_bar_marks_an_error_until_the_next_message(window: MainWindow) -> None:
    window.status.show_error("The server said <b>no</b>")
    assert window.status.state == "error"
    assert window.status.text == "⚠ The server said <b>no</b>"
    window.status.show_message("Ready")
    assert window.status.state == ""


def test_the_spinner_and_the_status_line_change_without_repainting_the_bar(
    qtbot: QtBot, window: MainWindow, themed: None
) -> None:
    """While a reply streams the spinner turns and the line says the speed several times a
    second: each change paints the line again, not the status bar or the window under it."""
    status = window.status
    qtbot.waitUntil(lambda: status.label.width() > 100, timeout=5_000)
    bar, line = EventCounter(QEvent.Type.Paint), EventCounter(QEvent.Type.Paint)
    # The window itself is painted wherever a widget without a background changes (the
    # composer's cursor blinking, say); only a paint under the status bar is the bar's.
    under = EventCounter(QEvent.Type.Paint, within=window.statusBar().geometry())
    status.label.installEventFilter(line)
    status.show_message("Connecting…")  # the window, themed, is painted first
    qtbot.waitUntil(lambda: line.count > 0, timeout=2_000)
    line.count = 0
    window.statusBar().installEventFilter(bar)
    window.installEventFilter(under)
    try:
        for step in range(1, 6):
            status._spin()
            status.show_message(f"Streaming at {step * 111} tok/s · {step * 1_000:,} tokens")
            qtbot.waitUntil(lambda step=step: line.count >= step, timeout=2_000)  # type: ignore[misc]
    finally:
        for widget, counter in ((window.statusBar(), bar), (window, under), (status.label, line)):
            widget.removeEventFilter(counter)
    assert (bar.count, under.rects) == (0, [])


def test_the_status_line_is_one_line_of_plain_text_in_the_theme_colours(
    window: MainWindow, themed: None
) -> None:
    line = window.status.label
    assert isinstance(line, StatusText)
    hostile = "<img src='file:///etc/passwd'>\n\x1b[31m" + "x" * 5_000_000
    window.status.show_error(hostile)
    assert line.text() == "⚠ " + hostile
    assert line.accessibleName() == line.text()[:LINE_CHARS_DRAWN]
    assert line.palette().color(QPalette.ColorRole.WindowText) == QColor(current().error)
    image = line.grab().toImage()  # drawn in one line, cut to its width, at once
    assert image.height() == line.height() < 40
    window.status.show_message("Ready")
    assert line.palette().color(QPalette.ColorRole.WindowText) == QColor(current().muted)
