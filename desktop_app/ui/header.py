"""The header above the chat: profile, model (listed from the server), system prompt and
temperature for the next reply."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.ui.labels import PlainLabel

TEMPERATURE_DEFAULT = -0.1


class ChatHeader(QWidget):
    """Pickers for the next turn. Signals carry what changed."""

    profile_changed = Signal(str)
    model_changed = Signal(str)
    system_changed = Signal(str)
    temperature_changed = Signal(object)
    refresh_models = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._quiet = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 8, 12, 4)
        outer.setSpacing(4)
        row = QHBoxLayout()
        row.setSpacing(6)

        row.addWidget(PlainLabel("Profile"))
        self.profile = QComboBox()
        self.profile.setMinimumWidth(130)
        self.profile.setToolTip("Which server and key to use (Settings → Profiles)")
        self.profile.currentTextChanged.connect(self._profile)
        row.addWidget(self.profile)

        row.addWidget(PlainLabel("Model"))
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setMinimumWidth(180)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.setToolTip("Models the server lists; you can also type a name")
        self.model.currentTextChanged.connect(self._model)
        row.addWidget(self.model)
        self.refresh = QToolButton()
        self.refresh.setText("⟳")
        self.refresh.setToolTip("List the server's models again")
        self.refresh.clicked.connect(self.refresh_models)
        row.addWidget(self.refresh)

        row.addWidget(PlainLabel("Temperature"))
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(TEMPERATURE_DEFAULT, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(1)
        self.temperature.setSpecialValueText("default")
        self.temperature.setValue(TEMPERATURE_DEFAULT)
        self.temperature.setToolTip("Sampling temperature; 'default' leaves it to the server")
        self.temperature.valueChanged.connect(self._temperature)
        row.addWidget(self.temperature)
        row.addStretch(1)
        outer.addLayout(row)

        self.system = QLineEdit()
        self.system.setPlaceholderText("System prompt for this chat (optional)")
        self.system.editingFinished.connect(lambda: self.system_changed.emit(self.system.text()))
        outer.addWidget(self.system)

        self.models_error = PlainLabel()
        self.models_error.setObjectName("errorText")
        self.models_error.setWordWrap(True)
        self.models_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.models_error.hide()
        outer.addWidget(self.models_error)

    # -- filling -----------------------------------------------------------------------------

    def set_profiles(self, names: list[str], current: str) -> None:
        self._quiet = True
        try:
            self.profile.clear()
            self.profile.addItems(names)
            index = self.profile.findText(current)
            self.profile.setCurrentIndex(max(0, index))
        finally:
            self._quiet = False

    def set_profile(self, name: str) -> None:
        self._quiet = True
        try:
            index = self.profile.findText(name)
            if index >= 0:
                self.profile.setCurrentIndex(index)
        finally:
            self._quiet = False

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

    def set_models_error(self, text: str) -> None:
        self.models_error.setText(f"Could not list models: {text}")
        self.models_error.setVisible(bool(text))

    def set_system(self, text: str) -> None:
        self.system.setText(text)

    def set_temperature(self, value: float | None) -> None:
        self._quiet = True
        try:
            self.temperature.setValue(TEMPERATURE_DEFAULT if value is None else value)
        finally:
            self._quiet = False

    # -- signals -----------------------------------------------------------------------------

    def _profile(self, name: str) -> None:
        if not self._quiet and name:
            self.profile_changed.emit(name)

    def _model(self, name: str) -> None:
        if not self._quiet:
            self.model_changed.emit(name.strip())

    def _temperature(self, value: float) -> None:
        if not self._quiet:
            self.temperature_changed.emit(None if value <= TEMPERATURE_DEFAULT + 1e-9 else value)
