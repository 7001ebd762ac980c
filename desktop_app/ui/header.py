"""The header above the chat: one compact model picker (profile and model, e.g.
"Simulator · sim-small") and a chat-settings popover (temperature, system prompt) for the
next reply.

The picker and the settings button each open a small popup frame. The combo boxes, the
temperature field and the system prompt field live in those popups; they stay attributes
of the header (``profile``, ``model``, ``temperature``, ``system``) so the window fills and
reads them as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import QEvent, QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QHideEvent, QKeyEvent, QPainterPath, QRegion, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.text import valid_text
from desktop_app.core.types import provider_title
from desktop_app.ui import icons
from desktop_app.ui.labels import PlainLabel, plain_tooltip

TEMPERATURE_DEFAULT = -0.1
PICKER_TEXT_WIDTH = 300
"""The widest the picker's text is drawn, in pixels; longer names end in "…"."""
NAME_LIMIT = 200
"""Characters of a profile or model name the picker measures (names come from servers)."""
POPOVER_RADIUS = 8


def _clean(text: str) -> str:
    """``text`` cut to :data:`NAME_LIMIT` characters, with no control characters or halves
    of surrogate pairs (a name from a server is shown, never interpreted)."""
    text = valid_text(text[:NAME_LIMIT])
    return "".join(" " if ord(ch) < 32 or ch == "\x7f" else ch for ch in text)


class Popover(QFrame):
    """A small popup frame under a button; a click outside, Esc or Enter closes it."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setObjectName("popover")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(16, 16, 16, 16)
        self.body.setSpacing(8)

    def open_under(self, anchor: QWidget, *, align_right: bool = False) -> None:
        """Show the popover just below ``anchor``, kept on the anchor's screen."""
        self.adjustSize()
        size = self.sizeHint().expandedTo(self.minimumSizeHint())
        below = anchor.mapToGlobal(QPoint(0, anchor.height() + 4))
        x = below.x() + anchor.width() - size.width() if align_right else below.x()
        y = below.y()
        screen = anchor.screen()
        if screen is not None:
            area = screen.availableGeometry()
            x = max(area.left(), min(x, area.right() - size.width()))
            if y + size.height() > area.bottom():
                y = max(area.top(), anchor.mapToGlobal(QPoint(0, 0)).y() - size.height() - 4)
        self.move(x, y)
        self.show()
        self.raise_()
        self.activateWindow()
        first = self.focusWidget() or self.nextInLine()
        if first is not None:
            first.setFocus(Qt.FocusReason.PopupFocusReason)

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.closed.emit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Round the window's corners (a popup has no transparent background to do it)."""
        super().resizeEvent(event)
        path = QPainterPath()
        path.addRoundedRect(QRectF(self.rect()), POPOVER_RADIUS, POPOVER_RADIUS)
        self.setMask(QRegion(path.toFillPolygon().toPolygon()))

    def nextInLine(self) -> QWidget | None:
        widget = self.nextInFocusChain()
        return widget if widget is not None and self.isAncestorOf(widget) else None

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.close()
            event.accept()
            return
        super().keyPressEvent(event)


class PickerButton(QToolButton):
    """A button whose text is elided in the middle to the width it is given."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._shown = ""

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()
        self.updateGeometry()

    def full_text(self) -> str:
        return self._full

    def _chrome(self) -> int:
        """The width the button takes besides its text (icon, padding, frame)."""
        return super().sizeHint().width() - self.fontMetrics().horizontalAdvance(self._shown)

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        text = min(self.fontMetrics().horizontalAdvance(self._full), PICKER_TEXT_WIDTH)
        return QSize(self._chrome() + text, hint.height())

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(self._chrome() + self.fontMetrics().horizontalAdvance("Mod…el"), hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._elide()
            self.updateGeometry()

    def _elide(self) -> None:
        room = min(PICKER_TEXT_WIDTH, max(0, self.width() - self._chrome()))
        metrics = self.fontMetrics()
        if metrics.horizontalAdvance(self._full) <= room:
            shown = self._full
        else:
            shown = metrics.elidedText(self._full, Qt.TextElideMode.ElideMiddle, room)
        if shown != self._shown:
            self._shown = shown
            # "&" would mark a keyboard mnemonic in a button's text.
            self.setText(shown.replace("&", "&&"))

    def shown_text(self) -> str:
        """The text as the button shows it (perhaps cut with "…")."""
        return self._shown


class ChatHeader(QWidget):
    """Pickers for the next turn. Signals carry what changed."""

    profile_changed = Signal(str)
    model_changed = Signal(str)
    system_changed = Signal(str)
    temperature_changed = Signal(object)
    refresh_models = Signal()
    popover_closed = Signal()
    """A popover closed: the keyboard can go back to the prompt."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatHeader")
        self._quiet = False
        self._providers: dict[str, str] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(16, 8, 16, 8)
        outer.setSpacing(4)
        row = QHBoxLayout()
        row.setSpacing(8)

        self.leading = QHBoxLayout()
        """Room at the start of the row (the sidebar's toggle goes here)."""
        self.leading.setSpacing(4)
        row.addLayout(self.leading)

        self.picker = PickerButton()
        self.picker.setObjectName("modelPicker")
        self.picker.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.picker.setLayoutDirection(Qt.LayoutDirection.RightToLeft)
        self.picker.setIconSize(QSize(16, 16))
        icons.set_icon(self.picker, "chevron-down")
        self.picker.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.picker.setAccessibleName("Model")
        self.picker.clicked.connect(self.open_picker)
        row.addWidget(self.picker)
        row.addStretch(1)

        self.settings_button = QToolButton()
        self.settings_button.setObjectName("headerTool")
        self.settings_button.setAutoRaise(True)
        self.settings_button.setIconSize(QSize(20, 20))
        icons.set_icon(self.settings_button, "settings")
        self.settings_button.setToolTip("Chat settings: temperature and system prompt")
        self.settings_button.setAccessibleName("Chat settings")
        self.settings_button.clicked.connect(self.open_settings)
        row.addWidget(self.settings_button)

        self.trailing = QHBoxLayout()
        """Room at the end of the row."""
        self.trailing.setSpacing(4)
        row.addLayout(self.trailing)
        outer.addLayout(row)

        # The model picker's popover: profile, model and a refresh button.
        self.picker_popup = Popover(self)
        self.picker_popup.closed.connect(self.popover_closed)
        form = self._picker_form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)
        self.profile = QComboBox()
        self.profile.setMinimumWidth(220)
        self.profile.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.profile.setMinimumContentsLength(16)
        self.profile.setToolTip("Which server and key to use (Settings → Profiles)")
        self.profile.currentTextChanged.connect(self._profile)
        form.addRow(PlainLabel("Profile"), self.profile)
        self.provider_note = PlainLabel()
        self.provider_note.setObjectName("muted")
        form.addRow(PlainLabel(""), self.provider_note)

        model_row = QHBoxLayout()
        model_row.setSpacing(4)
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setMinimumWidth(220)
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(16)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.setToolTip("Models the server lists; you can also type a name")
        self.model.currentTextChanged.connect(self._model)
        model_row.addWidget(self.model, 1)
        self.refresh = QToolButton()
        self.refresh.setObjectName("headerTool")
        self.refresh.setAutoRaise(True)
        icons.set_icon(self.refresh, "refresh")
        self.refresh.setToolTip("List the server's models again")
        self.refresh.setAccessibleName("List models again")
        self.refresh.clicked.connect(self.refresh_models)
        model_row.addWidget(self.refresh)
        form.addRow(PlainLabel("Model"), model_row)
        self.picker_popup.body.addLayout(form)

        # The chat-settings popover: temperature and system prompt.
        self.settings_popup = Popover(self)
        self.settings_popup.closed.connect(self.popover_closed)
        self.settings_popup.setMinimumWidth(400)
        title = PlainLabel("Chat settings")
        title.setObjectName("popoverTitle")
        self.settings_popup.body.addWidget(title)
        settings_form = QFormLayout()
        settings_form.setContentsMargins(0, 0, 0, 0)
        settings_form.setHorizontalSpacing(12)
        settings_form.setVerticalSpacing(8)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(TEMPERATURE_DEFAULT, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(1)
        self.temperature.setSpecialValueText("Default")
        self.temperature.setValue(TEMPERATURE_DEFAULT)
        self.temperature.setToolTip("Sampling temperature; Default leaves it to the server")
        self.temperature.valueChanged.connect(self._temperature)
        settings_form.addRow(PlainLabel("Temperature"), self.temperature)
        self.system = QLineEdit()
        self.system.setPlaceholderText("System prompt for this chat (optional)")
        self.system.setMinimumWidth(280)
        self.system.editingFinished.connect(self._system)
        settings_form.addRow(PlainLabel("System prompt"), self.system)
        self.settings_popup.body.addLayout(settings_form)
        note = PlainLabel("Used for the next replies in this chat.")
        note.setObjectName("muted")
        self.settings_popup.body.addWidget(note)

        self.models_error = PlainLabel()
        self.models_error.setObjectName("errorText")
        self.models_error.setWordWrap(True)
        self.models_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.models_error.hide()
        outer.addWidget(self.models_error)
        self._update_picker()
        self._update_settings_button()

    # -- popovers ----------------------------------------------------------------------------

    def open_picker(self) -> None:
        """Show the profile and model choice under the picker."""
        self.picker_popup.open_under(self.picker)
        self.profile.setFocus(Qt.FocusReason.PopupFocusReason)

    def open_settings(self) -> None:
        """Show temperature and system prompt under the settings button."""
        self.settings_popup.open_under(self.settings_button, align_right=True)
        self.temperature.setFocus(Qt.FocusReason.PopupFocusReason)

    # -- filling -----------------------------------------------------------------------------

    def set_profiles(
        self, names: list[str], current: str, providers: Mapping[str, str] | None = None
    ) -> None:
        """List ``names``; ``providers`` maps a name to its wire protocol (``openai``…)."""
        self._quiet = True
        try:
            if providers is not None:
                self._providers = dict(providers)
            self.profile.clear()
            self.profile.addItems(names)
            for i, name in enumerate(names):
                provider = self._providers.get(name)
                if provider:
                    self.profile.setItemData(
                        i, plain_tooltip(provider_title(provider)), Qt.ItemDataRole.ToolTipRole
                    )
            index = self.profile.findText(current)
            self.profile.setCurrentIndex(max(0, index))
        finally:
            self._quiet = False
        self._update_picker()

    def set_profile(self, name: str) -> None:
        self._quiet = True
        try:
            index = self.profile.findText(name)
            if index >= 0:
                self.profile.setCurrentIndex(index)
        finally:
            self._quiet = False
        self._update_picker()

    def set_models(self, models: list[str], current: str) -> None:
        self._quiet = True
        try:
            self.model.clear()
            self.model.addItems(models)
            if current and current not in models:
                self.model.insertItem(0, current)
            self.model.setCurrentText(current)
        finally:
            self._quiet = False
        self.models_error.hide()
        self._update_picker()

    def set_models_error(self, text: str) -> None:
        self.models_error.setText(f"Could not list models: {text}")
        self.models_error.setVisible(bool(text))

    def set_system(self, text: str) -> None:
        self.system.setText(text)
        self._update_settings_button()

    def set_temperature(self, value: float | None) -> None:
        self._quiet = True
        try:
            self.temperature.setValue(TEMPERATURE_DEFAULT if value is None else value)
        finally:
            self._quiet = False
        self._update_settings_button()

    def picker_text(self) -> str:
        """What the picker says in full: "profile · model"."""
        profile = _clean(self.profile.currentText())
        model = _clean(self.model.currentText().strip())
        return f"{profile} · {model}" if model else profile or "Choose a model"

    # -- signals -----------------------------------------------------------------------------

    def _profile(self, name: str) -> None:
        self._update_picker()
        if not self._quiet and name:
            self.profile_changed.emit(name)

    def _model(self, name: str) -> None:
        self._update_picker()
        if not self._quiet:
            self.model_changed.emit(name.strip())

    def _temperature(self, value: float) -> None:
        self._update_settings_button()
        if not self._quiet:
            self.temperature_changed.emit(None if value <= TEMPERATURE_DEFAULT + 1e-9 else value)

    def _system(self) -> None:
        self._update_settings_button()
        self.system_changed.emit(self.system.text())

    # -- internals ---------------------------------------------------------------------------

    def _update_picker(self) -> None:
        self.picker.set_full_text(self.picker_text())
        profile = self.profile.currentText()
        provider = self._providers.get(profile)
        note = f"{provider_title(provider)} API" if provider else ""
        self.provider_note.setText(note)
        self._picker_form.setRowVisible(self.provider_note, bool(note))
        lines = [f"Profile: {_clean(profile)}" + (f" ({note})" if note else "")]
        lines.append(f"Model: {_clean(self.model.currentText().strip()) or 'the profile default'}")
        self.picker.setToolTip(plain_tooltip("\n".join(lines)))

    def _update_settings_button(self) -> None:
        changed = self.temperature.value() > TEMPERATURE_DEFAULT + 1e-9 or bool(
            self.system.text().strip()
        )
        if bool(self.settings_button.property("active")) != changed:
            self.settings_button.setProperty("active", changed)
            icons.set_icon(self.settings_button, "settings", "accent" if changed else None)
