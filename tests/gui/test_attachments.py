"""Attachments in the window, against the simulator: chips (add, remove by button and by
key), the "+" button and Ctrl+O through the real file dialog, drop and paste, refusals in a
sentence, decompression bombs never decoded, sending (the simulator says what it saw),
reopening, regenerating and editing, the context and no-vision warnings, opening what was
sent."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QObject, QPoint, QPointF, QSize, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot

from desktop_app.core.config import Profile
from desktop_app.simulator import SimulatorThread
from desktop_app.simulator.protocols import CONTEXT_LENGTH
from desktop_app.ui.attachment_chips import AttachmentChip, ImageViewer, decode_image
from desktop_app.ui.main_window import MainWindow
from tests.gui.util import Windows, sim_config, wait_reply

WAIT = 10_000


def _png(path: Path, size: tuple[int, int] = (64, 48), colour: str = "#3366cc") -> Path:
    Image.new("RGB", size, colour).save(path, "PNG")
    return path


def _text(path: Path, lines: int = 3) -> Path:
    path.write_text("".join(f"line {i}\n" for i in range(lines)), encoding="utf-8")
    return path


def _chips(window: MainWindow) -> list[AttachmentChip]:
    return list(window.composer.tray.chips.values())


def _read(qtbot: QtBot, window: MainWindow, count: int) -> list[AttachmentChip]:
    """Wait until ``count`` chips show what was read."""

    def filled() -> None:
        chips = _chips(window)
        assert len(chips) == count
        assert all(c.attachment is not None for c in chips)

    qtbot.waitUntil(filled, timeout=WAIT)
    return _chips(window)


def _drop(window: MainWindow, mime: QMimeData) -> None:
    """A real drag entering the window and dropping ``mime`` on it."""
    target = window.centralWidget()
    pos = QPointF(target.width() / 2, target.height() / 2)
    enter = QDragEnterEvent(
        pos.toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    assert window.composer.box.property("dropping") is True  # the prompt box is outlined
    drop = QDropEvent(
        pos,
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, drop)
    assert not window.composer.box.property("dropping")


def _urls(*urls: QUrl) -> QMimeData:
    mime = QMimeData()
    mime.setUrls(list(urls))
    return mime


# -- chips -----------------------------------------------------------------------------------


def test_chips_show_name_size_tokens_and_go_by_button_and_by_key(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    image = _png(tmp_path / "photo.png")
    notes = _text(tmp_path / "notes.txt")
    window.attach_files([str(image), str(notes)])
    photo, text = _read(qtbot, window, 2)
    assert photo.name_label.text() == "photo.png"
    assert photo.has_thumbnail
    assert "64×48" in photo.details.text() and "tokens" in photo.details.text()
    assert not text.has_thumbnail and text.thumb.text() == "TXT"
    assert "bytes" in text.details.text()
    assert window.composer.tray.total.isVisible()
    assert "tokens" in window.composer.tray.total.text()
    assert window.composer.send_button.isEnabled()

    assert photo.remove_button is not None
    qtbot.mouseClick(photo.remove_button, Qt.MouseButton.LeftButton)
    assert [c.name for c in _chips(window)] == ["notes.txt"]
    text.setFocus()
    qtbot.waitUntil(text.hasFocus, timeout=WAIT)
    qtbot.keyClick(text, Qt.Key.Key_Delete)
    assert _chips(window) == []
    assert not window.composer.tray.isVisible()
    assert window.composer.edit.hasFocus()


def test_the_keyboard_reaches_each_chip_and_its_remove_button(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    window.attach_files([str(_text(tmp_path / "a.txt")), str(_text(tmp_path / "b.txt"))])
    first, second = _read(qtbot, window, 2)
    assert first.focusPolicy() & Qt.FocusPolicy.TabFocus
    assert first.remove_button is not None
    assert first.remove_button.focusPolicy() & Qt.FocusPolicy.TabFocus
    assert first.remove_button.accessibleName() == "Remove a.txt"
    first.setFocus()
    qtbot.waitUntil(first.hasFocus, timeout=WAIT)
    qtbot.keyClick(first, Qt.Key.Key_Backspace)
    assert [c.name for c in _chips(window)] == ["b.txt"]
    assert second.hasFocus()  # the keyboard moves on to the next chip


def test_a_long_name_is_cut_in_the_middle_with_the_whole_name_as_tooltip(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    name = "a-very-long-file-name-" * 6 + "end.txt"
    window.attach_files([str(_text(tmp_path / name))])
    (chip,) = _read(qtbot, window, 1)
    assert "…" in chip.name_label.text() and chip.name_label.text().endswith("end.txt")
    assert name in chip.name_label.toolTip()


def test_ctrl_o_opens_the_file_dialog_and_attaches_the_files_chosen(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    first = _png(tmp_path / "one.png")
    second = _text(tmp_path / "two.txt")
    window.composer.edit.setFocus()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.findChild(QFileDialog) is not None, timeout=WAIT)
    dialog = window.findChild(QFileDialog)
    assert isinstance(dialog, QFileDialog)
    assert dialog.fileMode() == QFileDialog.FileMode.ExistingFiles
    assert not window.composer.edit.isReadOnly()  # the window is not blocked meanwhile
    # what a person does in the dialog: pick both files and press Open
    dialog.filesSelected.emit([str(first), str(second)])
    dialog.accept()
    chips = _read(qtbot, window, 2)
    assert [c.name for c in chips] == ["one.png", "two.txt"]


def test_the_plus_button_asks_for_files(qtbot: QtBot, window: MainWindow) -> None:
    button = window.composer.attach_button
    assert button.toolTip() == "Attach files (Ctrl+O)"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.findChild(QFileDialog) is not None, timeout=WAIT)
    dialog = window.findChild(QFileDialog)
    assert isinstance(dialog, QFileDialog)
    dialog.reject()


# -- drop and paste --------------------------------------------------------------------------


def test_dropping_files_on_the_window_attaches_them_and_a_web_address_is_refused(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    image = _png(tmp_path / "dropped.png")
    _drop(window, _urls(QUrl.fromLocalFile(str(image))))
    (chip,) = _read(qtbot, window, 1)
    assert chip.name == "dropped.png"
    _drop(window, _urls(QUrl("https://example.com/cat.png")))
    assert len(_chips(window)) == 1
    warning = window.composer.warning
    assert warning.isVisible()
    assert "https://example.com/cat.png" in warning.text()
    assert "from this computer only" in warning.text()


def test_pasting_an_image_attaches_it_as_a_png(qtbot: QtBot, window: MainWindow) -> None:
    image = QImage(120, 80, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkGreen)
    QGuiApplication.clipboard().setImage(image)
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    (chip,) = _read(qtbot, window, 1)
    assert chip.name == "Pasted image 1.png"
    assert chip.attachment is not None
    assert chip.attachment.mime == "image/png"
    assert (chip.attachment.width, chip.attachment.height) == (120, 80)
    assert chip.has_thumbnail
    assert window.composer.text() == ""
    window.composer.edit.paste()
    _read(qtbot, window, 2)
    assert _chips(window)[1].name == "Pasted image 2.png"


def test_pasting_files_copied_in_a_file_manager_attaches_them(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    notes = _text(tmp_path / "copied.txt")
    mime = _urls(QUrl.fromLocalFile(str(notes)))
    mime.setText(str(notes))  # file managers put the path as text too
    QGuiApplication.clipboard().setMimeData(mime)
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    (chip,) = _read(qtbot, window, 1)
    assert chip.name == "copied.txt"
    assert window.composer.text() == ""


def test_text_still_pastes_as_text(qtbot: QtBot, window: MainWindow) -> None:
    QGuiApplication.clipboard().setText("just words, https://example.com")
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    assert window.composer.text() == "just words, https://example.com"
    assert _chips(window) == []


# -- refusals and bombs ----------------------------------------------------------------------


def test_a_kind_rill_does_not_take_is_refused_with_a_sentence_naming_it(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    archive = tmp_path / "backup.zip"
    archive.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    window.composer.set_text("keep this text")
    window.attach_files([str(archive)])
    qtbot.waitUntil(lambda: window.composer.warning.isVisible(), timeout=WAIT)
    assert "backup.zip" in window.composer.warning.text()
    assert _chips(window) == []
    assert window.composer.text() == "keep this text"


def _bomb(path: Path) -> Path:
    """A PNG of 10,000 × 6,000 pixels (60 megapixels) in a few kilobytes."""
    Image.new("1", (10_000, 6_000)).save(path, "PNG")
    return path


def test_a_decompression_bomb_is_never_decoded(tmp_path: Path) -> None:
    data = _bomb(tmp_path / "bomb.png").read_bytes()
    assert len(data) < 100_000
    started = time.perf_counter()
    assert decode_image(data) is None
    assert decode_image(data, None) is None
    assert time.perf_counter() - started < 0.5  # the header was read, no pixel decoded
    # a real photo-sized image decodes straight to its thumbnail size
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), "#884422").save(buf, "JPEG")
    thumb = decode_image(buf.getvalue())
    assert thumb is not None and (thumb.width(), thumb.height()) == (192, 144)


def test_a_decompression_bomb_gets_no_chip_but_a_sentence(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    window.attach_files([str(_bomb(tmp_path / "bomb.png"))])
    qtbot.waitUntil(lambda: window.composer.warning.isVisible(), timeout=WAIT)
    assert "bomb.png" in window.composer.warning.text()
    assert _chips(window) == []


# -- sending, reopening, regenerating, editing ------------------------------------------------


def _send_image(qtbot: QtBot, window: MainWindow, path: Path, prompt: str) -> Any:
    window.attach_files([str(path)])
    _read(qtbot, window, 1)
    window.composer.set_text(prompt)
    return wait_reply(
        qtbot, window, lambda: qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    )


def _user_chip(window: MainWindow) -> AttachmentChip:
    user = window.view.last_user()
    assert user is not None and user.strip is not None
    (chip,) = user.strip.chips
    return chip


def test_sending_an_image_the_model_sees_it_and_the_prompt_shows_it(
    qtbot: QtBot,
    windows: Windows,
    window: MainWindow,
    sim: SimulatorThread,
    tmp_path: Path,
    rill_home: Path,
) -> None:
    image = _png(tmp_path / "chart.png", (320, 200))
    _send_image(qtbot, window, image, "What is in this picture?")
    reply = window.view.last_assistant()
    assert reply is not None
    size = image.stat().st_size
    assert f"I see an image of 320×200 pixels ({size} bytes)" in reply.text()
    assert _chips(window) == []  # stored, so the chips went
    chip = _user_chip(window)
    assert chip.name == "chart.png" and chip.has_thumbnail
    user = window.view.last_user()
    assert user is not None and user.text() == "What is in this picture?"

    # opened again in a new window, the prompt shows the image (decoded from the store)
    cid = window.controller.conversation_id
    assert cid is not None
    again = windows.make(sim_config(sim, rill_home))
    with qtbot.waitSignal(again.controller.conversation_loaded, timeout=WAIT):
        again.controller.open_conversation(cid)
    qtbot.waitUntil(lambda: _user_chip(again).has_thumbnail, timeout=WAIT)
    assert _user_chip(again).name == "chart.png"

    # regenerating sends the image again from the store; the prompt keeps showing it
    wait_reply(qtbot, again, again.regenerate)
    reply = again.view.last_assistant()
    assert reply is not None
    assert f"I see an image of 320×200 pixels ({size} bytes)" in reply.text()
    assert _user_chip(again).name == "chart.png"
    images = [r for r in sim.chat_requests if "image_url" in str(r.json)]
    assert len(images) == 2


def test_an_image_can_be_sent_without_words(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, tmp_path: Path
) -> None:
    window.attach_files([str(_png(tmp_path / "alone.png", (30, 20)))])
    _read(qtbot, window, 1)
    assert window.composer.text() == ""
    wait_reply(qtbot, window, lambda: qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return))
    reply = window.view.last_assistant()
    assert reply is not None and "I see an image of 30×20 pixels" in reply.text()
    user = window.view.last_user()
    assert user is not None and user.bubble is not None
    assert not user.bubble.isVisible()
    assert _user_chip(window).name == "alone.png"


def test_an_image_dragged_from_a_web_page_attaches_its_pixels(
    qtbot: QtBot, window: MainWindow
) -> None:
    mime = _urls(QUrl("https://example.com/photo.png"))
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.red)
    mime.setImageData(image)
    _drop(window, mime)
    (chip,) = _read(qtbot, window, 1)
    assert chip.name == "Dropped image 1.png"
    assert not window.composer.warning.isVisible()


def test_editing_puts_the_attachments_back_as_chips(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, tmp_path: Path
) -> None:
    notes = _text(tmp_path / "log.txt", lines=5)
    window.attach_files([str(notes)])
    _read(qtbot, window, 1)
    window.composer.set_text("Summarise")
    wait_reply(qtbot, window, lambda: qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return))
    reply = window.view.last_assistant()
    assert reply is not None and "I read log.txt (5 lines)" in reply.text()
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.editing
    assert [c.name for c in _chips(window)] == ["log.txt"]
    total = window.composer.tray.total.text()
    assert total.startswith("~") and "for the chat so far" in total
    window.composer.set_text("Summarise in one line")
    wait_reply(qtbot, window, lambda: qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return))
    reply = window.view.last_assistant()
    assert reply is not None and "I read log.txt (5 lines)" in reply.text()
    assert _user_chip(window).name == "log.txt"


def test_a_send_that_fails_before_storing_keeps_the_chips(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, tmp_path: Path
) -> None:
    config = sim_config(sim, rill_home)
    config.profiles["Keyless"] = Profile(
        name="Keyless", provider="anthropic", base_url=sim.base_url("anthropic"), model="m"
    )
    config.values["default_profile"] = "Keyless"
    window = windows.make(config)
    window.attach_files([str(_png(tmp_path / "kept.png"))])
    _read(qtbot, window, 1)
    window.composer.set_text("hello")
    with qtbot.waitSignal(window.controller.turn_ended, timeout=WAIT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert [c.name for c in _chips(window)] == ["kept.png"]
    assert window.composer.tray.isEnabled()
    assert sim.chat_requests == []


# -- warnings before sending -----------------------------------------------------------------


def _ollama_window(windows: Windows, sim: SimulatorThread, home: Path) -> MainWindow:
    config = sim_config(sim, home)
    config.profiles["Local"] = Profile(
        name="Local", provider="ollama", base_url=sim.base_url("ollama"), model="sim-small"
    )
    config.values["default_profile"] = "Local"
    window = windows.make(config)
    return window


def _limits(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.controller.known_limits() is not None, timeout=WAIT)


def test_a_prompt_over_the_context_asks_before_sending(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path
) -> None:
    window = _ollama_window(windows, sim, rill_home)
    _limits(qtbot, window)
    assert window.composer.context_length == CONTEXT_LENGTH
    window.composer.set_text("word " * (CONTEXT_LENGTH + 1000))
    total = window.composer.tray.total
    assert total.isVisible() and f"of {CONTEXT_LENGTH:,} tokens" in total.text()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    bar = window.composer.confirm_bar
    assert bar.isVisible()
    assert (
        f"more than the {CONTEXT_LENGTH:,} sim-small reads" in window.composer.confirm_label.text()
    )
    assert not window.controller.busy and sim.chat_requests == []
    qtbot.mouseClick(window.composer.cancel_send, Qt.MouseButton.LeftButton)
    assert not bar.isVisible() and window.composer.text()
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert bar.isVisible()
    with qtbot.waitSignal(window.controller.turn_started, timeout=WAIT):
        qtbot.mouseClick(window.composer.send_anyway, Qt.MouseButton.LeftButton)
    assert not bar.isVisible()


def test_images_to_a_model_without_vision_ask_before_sending(
    qtbot: QtBot, windows: Windows, sim: SimulatorThread, rill_home: Path, tmp_path: Path
) -> None:
    window = _ollama_window(windows, sim, rill_home)
    _limits(qtbot, window)
    window.attach_files([str(_png(tmp_path / "screen.png"))])
    _read(qtbot, window, 1)
    window.composer.set_text("What does it show?")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert window.composer.confirm_bar.isVisible()
    text = window.composer.confirm_label.text()
    assert "sim-small does not take images" in text and "Ollama /api/show" in text
    assert sim.chat_requests == []
    wait_reply(
        qtbot,
        window,
        lambda: qtbot.mouseClick(window.composer.send_anyway, Qt.MouseButton.LeftButton),
    )
    assert len(sim.chat_requests) == 1


# -- opening what was sent -------------------------------------------------------------------


class _Opened(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def take(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def opened() -> Any:
    handler = _Opened()
    QDesktopServices.setUrlHandler("file", handler, "take")
    yield handler
    QDesktopServices.unsetUrlHandler("file")


def test_a_sent_file_opens_from_rills_copy_under_its_own_name(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, tmp_path: Path, opened: Any
) -> None:
    notes = _text(tmp_path / "report.md", lines=4)
    window.attach_files([str(notes)])
    _read(qtbot, window, 1)
    window.composer.set_text("Read this")
    wait_reply(qtbot, window, lambda: qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return))
    chip = _user_chip(window)
    qtbot.mouseClick(chip, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    qtbot.waitUntil(lambda: len(opened.urls) == 1, timeout=WAIT)
    path = Path(opened.urls[0].toLocalFile())
    assert path.name == "report.md"
    assert path.read_bytes() == notes.read_bytes()
    assert path.stat().st_mode & 0o077 == 0


def test_a_sent_image_opens_full_size_and_esc_closes_it(
    qtbot: QtBot, window: MainWindow, sim: SimulatorThread, tmp_path: Path
) -> None:
    _send_image(qtbot, window, _png(tmp_path / "big.png", (900, 600)), "Look")
    chip = _user_chip(window)
    chip.setFocus()
    qtbot.waitUntil(chip.hasFocus, timeout=WAIT)
    qtbot.keyClick(chip, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(window.viewers), timeout=WAIT)
    viewer = window.viewers[0]
    assert isinstance(viewer, ImageViewer)
    screen = window.screen().availableGeometry().size()
    full = QSize(900, 600)
    if full.width() > screen.width() or full.height() > screen.height():
        full = full.scaled(screen, Qt.AspectRatioMode.KeepAspectRatio)
    assert viewer.image.size() == full  # full size, or as large as the screen holds
    assert viewer.windowTitle().startswith("big.png")
    qtbot.waitExposed(viewer)
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.viewers, timeout=WAIT)
