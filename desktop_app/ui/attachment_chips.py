"""Attachments in the window: a chip per file (thumbnail or kind, name, size, token
estimate, remove), the tray of chips above the prompt, the chips under a sent prompt, image
decoding that never decodes a decompression bomb, and a window showing an image full size.

Images are decoded with ``QImageReader`` from their header first: one whose decoded size
would pass :data:`MAX_DECODE_PIXELS` is not decoded at all, the reader's allocation limit
holds where a header lies, and thumbnails are decoded straight at their small size (JPEG
scales while decoding). Decoding runs off the UI thread (``QImage`` may be made in any
thread); only the finished small image reaches a widget.
"""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt, Signal
from PySide6.QtGui import (
    QFontMetrics,
    QImage,
    QImageReader,
    QKeyEvent,
    QMouseEvent,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.attachments import human_size
from desktop_app.core.types import Attachment
from desktop_app.ui.labels import PlainLabel

__all__ = [
    "AttachmentChip",
    "AttachmentStrip",
    "AttachmentTray",
    "ImageViewer",
    "decode_image",
]

MAX_DECODE_PIXELS = 50_000_000
"""The most pixels an image may have decoded (what Rill takes at most)."""
ALLOCATION_LIMIT_MB = MAX_DECODE_PIXELS * 4 // (1024 * 1024) + 1
"""What ``QImageReader`` may allocate for one image, in MB (32-bit pixels)."""
THUMB_DECODE = QSize(192, 192)
"""Thumbnails are decoded to fit this box (sharp at twice the size they are shown)."""
CHIP_THUMB = 40
"""Thumbnail size in a chip above the prompt."""
MESSAGE_THUMB = 96
"""Thumbnail size of an image under a sent prompt."""
NAME_WIDTH = 150
"""A chip's name is cut in the middle to this width (the full name is its tooltip)."""
STRIP_COLUMNS = 3
KIND_LABELS = {"image": "IMG", "text": "TXT", "pdf": "PDF"}


def decode_image(data: bytes, fit: QSize | None = THUMB_DECODE) -> QImage | None:
    """``data`` decoded as an image, scaled down to fit ``fit`` (None: full size), or None
    when it is no image Qt reads or would have more than :data:`MAX_DECODE_PIXELS`.

    The size is read from the header before any pixel is decoded, so a decompression bomb
    is never decoded; the allocation limit stops a header that lies."""
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    if not buffer.open(QIODevice.OpenModeFlag.ReadOnly):
        return None
    reader = QImageReader(buffer)
    reader.setAllocationLimit(ALLOCATION_LIMIT_MB)
    reader.setAutoTransform(True)
    size = reader.size()
    if not size.isValid() or size.width() * size.height() > MAX_DECODE_PIXELS:
        return None
    if fit is not None and (size.width() > fit.width() or size.height() > fit.height()):
        scaled = size.scaled(fit, Qt.AspectRatioMode.KeepAspectRatio)
        reader.setScaledSize(QSize(max(1, scaled.width()), max(1, scaled.height())))
    image = reader.read()
    buffer.close()
    return None if image.isNull() else image


def _thumbnail(image: QImage, box: int) -> QPixmap:
    """``image`` as a pixmap drawn within ``box`` logical pixels (sharp on a HiDPI screen)."""
    pixmap = QPixmap.fromImage(image)
    longest = max(image.width(), image.height(), 1)
    pixmap.setDevicePixelRatio(max(1.0, longest / box))
    return pixmap


class AttachmentChip(QFrame):
    """One attachment: its thumbnail (or kind), name, size and token estimate.

    Above the prompt it has a remove button, and Backspace or Delete on the focused chip
    removes it; under a sent prompt, a click or Enter opens it."""

    remove_requested = Signal()
    activated = Signal()

    def __init__(
        self, name: str, *, removable: bool, thumb: int = CHIP_THUMB, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentChip")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.removable = removable
        self.attachment: Attachment | None = None
        self.name = name
        self.image: QImage | None = None
        self.thumb_size = thumb
        if not removable:
            self.setCursor(Qt.CursorShape.PointingHandCursor)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 4, 6 if removable else 10, 4)
        row.setSpacing(8)
        self.thumb = PlainLabel()
        self.thumb.setObjectName("attachmentThumb")
        self.thumb.setFixedSize(thumb, thumb)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        row.addWidget(self.thumb)
        words = QVBoxLayout()
        words.setContentsMargins(0, 0, 0, 0)
        words.setSpacing(0)
        self.name_label = PlainLabel()
        self.name_label.setObjectName("attachmentName")
        self.details = PlainLabel("Reading…")
        self.details.setObjectName("muted")
        words.addStretch(1)
        words.addWidget(self.name_label)
        words.addWidget(self.details)
        words.addStretch(1)
        row.addLayout(words)
        self.remove_button: QToolButton | None = None
        if removable:
            self.remove_button = QToolButton()
            self.remove_button.setObjectName("attachmentRemove")
            self.remove_button.setText("✕")
            self.remove_button.setAutoRaise(True)
            self.remove_button.setCursor(Qt.CursorShape.PointingHandCursor)
            self.remove_button.clicked.connect(self.remove_requested)
            row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        self._show_name()

    def _show_name(self) -> None:
        metrics = QFontMetrics(self.name_label.font())
        self.name_label.setText(
            metrics.elidedText(self.name, Qt.TextElideMode.ElideMiddle, NAME_WIDTH)
        )
        self.name_label.setToolTip(self.name)
        self.setAccessibleName(f"Attachment {self.name}")
        if self.remove_button is not None:
            self.remove_button.setToolTip(f"Remove {self.name} (Delete)")
            self.remove_button.setAccessibleName(f"Remove {self.name}")
        elif self.attachment is not None:
            what = "Open the image" if self.attachment.kind == "image" else "Open the file"
            self.setToolTip(f"{what} {self.name}")

    def set_attachment(self, att: Attachment, tokens: int | None = None) -> None:
        """Show what was read: kind or thumbnail, size and (when given) its tokens."""
        self.attachment = att
        self.name = att.name
        self._show_name()
        parts = [human_size(att.size)]
        if att.kind == "image" and att.width and att.height:
            parts.append(f"{att.width}×{att.height}")
        if att.kind == "pdf" and att.pages:
            parts.append(f"{att.pages} page" + ("" if att.pages == 1 else "s"))
        if tokens is not None:
            parts.append(f"~{tokens:,} tokens")
        self.details.setText(" · ".join(parts))
        if self.image is None:
            self.thumb.setText(KIND_LABELS.get(att.kind, "FILE"))

    def set_image(self, image: QImage | None) -> None:
        """Show the decoded thumbnail (None: the kind instead)."""
        self.image = image
        if image is None:
            kind = self.attachment.kind if self.attachment is not None else ""
            self.thumb.setText(KIND_LABELS.get(kind, "FILE"))
            return
        self.thumb.setPixmap(_thumbnail(image, self.thumb_size))

    @property
    def has_thumbnail(self) -> bool:
        pixmap = self.thumb.pixmap()
        return pixmap is not None and not pixmap.isNull()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if self.removable and key in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            event.accept()
            self.remove_requested.emit()
            return
        if not self.removable and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            event.accept()
            self.activated.emit()
            return
        super().keyPressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if (
            not self.removable
            and event.button() == Qt.MouseButton.LeftButton
            and self.rect().contains(event.position().toPoint())
        ):
            event.accept()
            self.activated.emit()
            return
        super().mouseReleaseEvent(event)


class AttachmentTray(QWidget):
    """The chips above the prompt, in the order they were attached, and the total.

    A chip appears at once with its name (``add_pending``) and is filled in when the file
    has been read (``fill``), or goes when it is refused (``discard``)."""

    changed = Signal()
    """A chip was added, filled or removed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentTray")
        self.chips: dict[int, AttachmentChip] = {}
        self.focus_target: QWidget | None = None
        """Where the keyboard goes when the last chip is removed."""
        self._next = 0
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        self.scroller = QScrollArea()
        self.scroller.setObjectName("attachmentScroll")
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setWidgetResizable(True)
        self.scroller.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        inner = QWidget()
        inner.setObjectName("attachmentRow")
        self.row = QHBoxLayout(inner)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.setSpacing(6)
        self.row.addStretch(1)
        self.scroller.setWidget(inner)
        column.addWidget(self.scroller)
        self.total = PlainLabel()
        self.total.setObjectName("muted")
        column.addWidget(self.total)
        self.hide()

    def add_pending(self, name: str) -> int:
        """A chip for a file being read; returns its key."""
        self._next += 1
        key = self._next
        chip = AttachmentChip(name, removable=True)
        chip.remove_requested.connect(lambda k=key: self.remove(k))
        self.chips[key] = chip
        self.row.insertWidget(self.row.count() - 1, chip)
        self._changed()
        return key

    def fill(self, key: int, att: Attachment, image: QImage | None, tokens: int | None) -> bool:
        """Show what was read for the chip ``key`` (False when it was removed meanwhile)."""
        chip = self.chips.get(key)
        if chip is None:
            return False
        chip.set_attachment(att, tokens)
        chip.set_image(image)
        self._changed()
        return True

    def discard(self, key: int) -> None:
        """Take away a chip whose file could not be attached."""
        chip = self.chips.pop(key, None)
        if chip is not None:
            chip.hide()
            chip.deleteLater()
            self._changed()

    def remove(self, key: int) -> None:
        """The user removed a chip: the keyboard goes to the next chip, else the prompt."""
        keys = list(self.chips)
        chip = self.chips.get(key)
        if chip is None:
            return
        had_focus = chip.hasFocus() or (
            chip.remove_button is not None and chip.remove_button.hasFocus()
        )
        at = keys.index(key)
        self.discard(key)
        rest = [self.chips[k] for k in keys if k in self.chips]
        if had_focus:
            if rest:
                rest[min(at, len(rest) - 1)].setFocus(Qt.FocusReason.OtherFocusReason)
            else:
                self.focus_after_last()

    def focus_after_last(self) -> None:
        """Give the keyboard to what follows the tray (the prompt)."""
        target = self.focus_target or self.parentWidget()
        if target is not None:
            target.setFocus(Qt.FocusReason.OtherFocusReason)

    def clear(self) -> None:
        for key in list(self.chips):
            self.discard(key)

    @property
    def pending(self) -> int:
        """Chips whose file is still being read."""
        return sum(1 for c in self.chips.values() if c.attachment is None)

    def attachments(self) -> tuple[Attachment, ...]:
        """What was read, in the order attached."""
        return tuple(c.attachment for c in self.chips.values() if c.attachment is not None)

    def images(self) -> dict[str, QImage]:
        """The thumbnails decoded, by hash."""
        return {
            c.attachment.sha256: c.image
            for c in self.chips.values()
            if c.attachment is not None and c.image is not None
        }

    def set_image(self, sha256: str, image: QImage) -> None:
        """A thumbnail decoded later (a stored image put back while editing)."""
        for chip in self.chips.values():
            if chip.attachment is not None and chip.attachment.sha256 == sha256:
                chip.set_image(image)

    def set_total(self, text: str, *, over: bool = False) -> None:
        """The estimate against the context (in the warning colour when it is over)."""
        if self.total.text() != text:
            self.total.setText(text)
        name = "composerWarning" if over else "muted"
        if self.total.objectName() != name:
            self.total.setObjectName(name)
            self.total.style().unpolish(self.total)
            self.total.style().polish(self.total)
        self.total.setVisible(bool(text))

    def _changed(self) -> None:
        self.setVisible(bool(self.chips))
        self._fit_height()
        self.changed.emit()

    def _fit_height(self) -> None:
        """As tall as the chips, plus the scroll bar when they are wider than the tray."""
        if not self.chips:
            return
        height = max(c.sizeHint().height() for c in self.chips.values())
        inner = self.scroller.widget()
        wide = inner is not None and inner.sizeHint().width() > self.width()
        bar = self.scroller.horizontalScrollBar().sizeHint().height() + 2 if wide else 0
        if self.scroller.height() != height + bar:
            self.scroller.setFixedHeight(height + bar)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()


class AttachmentStrip(QWidget):
    """The attachments of a sent prompt, above its bubble: chips that open on a click or
    Enter (thumbnails for images)."""

    opened = Signal(object)
    """The :class:`Attachment` whose chip was activated."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentStrip")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.chips: list[AttachmentChip] = []
        self.attachments: tuple[Attachment, ...] = ()
        self.hide()

    def set_attachments(
        self, attachments: tuple[Attachment, ...], images: dict[str, QImage]
    ) -> list[str]:
        """Show ``attachments``; returns the hashes of images whose thumbnail is missing."""
        if attachments == self.attachments and len(self.chips) == len(attachments):
            missing = [c.attachment for c in self.chips if c.image is None]
            return [a.sha256 for a in missing if a is not None and a.kind == "image"]
        for chip in self.chips:
            chip.hide()
            chip.deleteLater()
        self.chips = []
        self.attachments = attachments
        wanted: list[str] = []
        for i, att in enumerate(attachments):
            thumb = MESSAGE_THUMB if att.kind == "image" else CHIP_THUMB
            chip = AttachmentChip(att.name, removable=False, thumb=thumb)
            chip.set_attachment(att)
            image = images.get(att.sha256)
            if image is not None:
                chip.set_image(image)
            elif att.kind == "image":
                wanted.append(att.sha256)
            chip.activated.connect(lambda a=att: self.opened.emit(a))
            # aligned, each chip keeps its own height (an image's is taller than a file's)
            self.grid.addWidget(
                chip, i // STRIP_COLUMNS, i % STRIP_COLUMNS, Qt.AlignmentFlag.AlignBottom
            )
            self.chips.append(chip)
        self.setVisible(bool(attachments))
        return wanted

    def set_image(self, sha256: str, image: QImage) -> None:
        for chip in self.chips:
            if chip.attachment is not None and chip.attachment.sha256 == sha256:
                chip.set_image(image)


class ImageViewer(QWidget):
    """An image at full size in a window of its own, scaled to fit; Esc closes it."""

    def __init__(self, name: str, image: QImage, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("imageViewer")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle(f"{name} — Rill")
        self.image = image
        self.pixmap = QPixmap.fromImage(image)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = PlainLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setMinimumSize(1, 1)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.label.setAccessibleName(name)
        layout.addWidget(self.label)
        screen = self.screen().availableGeometry().size() * 0.85
        size = image.size()
        if size.width() > screen.width() or size.height() > screen.height():
            size = size.scaled(screen, Qt.AspectRatioMode.KeepAspectRatio)
        self.resize(max(200, size.width()), max(150, size.height()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        area = self.label.size()
        if self.pixmap.width() <= area.width() and self.pixmap.height() <= area.height():
            self.label.setPixmap(self.pixmap)
            return
        self.label.setPixmap(
            self.pixmap.scaled(
                area, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            event.accept()
            self.close()
            return
        super().keyPressEvent(event)
