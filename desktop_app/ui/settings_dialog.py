"""The settings dialog: profiles (with keychain keys and "Test connection"; Auto profiles
with their targets), resilience, cache, budget, Auto's route cache and appearance.
Non-modal; its form is built from the config schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.cache import AsyncResponseCache
from desktop_app.core.chat import Services
from desktop_app.core.config import (
    DEFAULT_BASE_URLS,
    DEFAULT_MODELS,
    PROFILE_SCHEMA_BY_NAME,
    SCHEMA,
    Config,
    Key,
    Profile,
)
from desktop_app.core.engine import Engine, KeyLookup
from desktop_app.core.errors import RillError
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.routing.profile import AutoSettings, AutoTarget, renamed
from desktop_app.core.terminal import for_terminal
from desktop_app.core.tools.mcp import McpHost
from desktop_app.ui.auto_settings import AutoEditor, RouteCachePanel
from desktop_app.ui.icons import set_icon
from desktop_app.ui.keys import KeyStore
from desktop_app.ui.labels import PlainLabel
from desktop_app.ui.tools_settings import ToolsPage

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]

_LABELS = {
    "resilience.max_retries": "Retries",
    "resilience.base_delay_s": "First backoff",
    "resilience.max_delay_s": "Longest backoff",
    "resilience.wait_on_rate_limit": "Wait out long rate limits",
    "resilience.max_rate_limit_wait_s": "Longest wait without asking",
    "resilience.connect_timeout_s": "Connect timeout",
    "resilience.first_token_timeout_s": "First-token timeout",
    "resilience.idle_timeout_s": "Stall timeout",
    "resilience.mid_stream": "When a stream breaks mid-answer",
    "resilience.circuit_breaker.failure_threshold": "Failures that open the circuit",
    "resilience.circuit_breaker.recovery_timeout_s": "Circuit stays open for",
    "resilience.max_reply_mb": "Longest reply",
    "cache.enabled": "Answer repeated questions from the cache",
    "cache.ttl_s": "Keep answers for",
    "cache.size_limit_mb": "Largest size",
    "history.enabled": "Record conversations",
    "budget.monthly_usd": "Monthly limit",
    "auto.route_cache_ttl_s": "Remember a route for",
    "auto.route_cache_entries": "Routes remembered",
    "ui.theme": "Colour scheme",
    "ui.send_with": "Send with",
    "tools.max_rounds": "Most tool rounds in one reply",
}

SPACING = 8
"""The dialog's grid: every margin and gap is a multiple of it."""


@dataclass(frozen=True, slots=True)
class Unit:
    """How a number is shown: its unit, its decimals, and the scale from the stored value
    (``cache.ttl_s`` is stored in seconds and shown in hours)."""

    suffix: str = ""
    decimals: int = 0
    scale: float = 1.0
    prefix: str = ""
    none: str = ""
    """Shown for 0 where 0 means none."""


_UNITS: dict[str, Unit] = {
    "resilience.base_delay_s": Unit(" s", 1),
    "resilience.max_delay_s": Unit(" s"),
    "resilience.max_rate_limit_wait_s": Unit(" s"),
    "resilience.connect_timeout_s": Unit(" s", 1),
    "resilience.first_token_timeout_s": Unit(" s"),
    "resilience.idle_timeout_s": Unit(" s"),
    "resilience.circuit_breaker.recovery_timeout_s": Unit(" s"),
    "resilience.max_reply_mb": Unit(" MB", 1),
    "cache.ttl_s": Unit(" h", 0, 3600.0),
    "cache.size_limit_mb": Unit(" MB"),
    "budget.monthly_usd": Unit(decimals=2, prefix="$", none="None"),
    "auto.route_cache_ttl_s": Unit(" min", 0, 60.0),
    "auto.route_cache_entries": Unit(" routes"),
}

_TEST_RESULT_LIMIT = 2000
"""The most characters of a server's answer that Test connection shows."""


def _widget_for(key: Key, value: Any) -> QWidget:
    if key.type is bool:
        box = QCheckBox()
        box.setChecked(bool(value))
        return box
    if key.choices:
        return _choice_combo(key, str(value))
    unit = _UNITS.get(key.path, Unit())
    spin: QSpinBox | QDoubleSpinBox
    if key.type is int:
        spin = QSpinBox()
        spin.setRange(int(key.minimum or 0), 1_000_000_000)
        spin.setValue(int(value))
    elif key.type is float:
        spin = QDoubleSpinBox()
        spin.setDecimals(unit.decimals)
        step = 10.0**-unit.decimals
        lowest = float(key.minimum or 0.0) / unit.scale
        if lowest > 0:
            lowest = max(lowest, step)
        spin.setRange(lowest, 1e9 / unit.scale)
        spin.setValue(float(value) / unit.scale)
        spin.setProperty("scale", unit.scale)
    else:
        return QLineEdit(str(value))
    spin.setSuffix(unit.suffix)
    spin.setPrefix(unit.prefix)
    if unit.none:
        spin.setSpecialValueText(unit.none)
    return spin


def _choice_combo(key: Key, value: str) -> QComboBox:
    """A combo box showing the human name of each choice, holding the value as its data."""
    combo = QComboBox()
    for choice in key.choices:
        combo.addItem(key.label(choice), choice)
    combo.setCurrentIndex(max(0, combo.findData(value)))
    return combo


def _value_of(widget: QWidget) -> Any:
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QSpinBox):
        return widget.value()
    if isinstance(widget, QDoubleSpinBox):
        scale = widget.property("scale")
        return widget.value() * (float(scale) if scale else 1.0)
    if isinstance(widget, QLineEdit):
        return widget.text()
    raise TypeError(type(widget))


def _shown(text: str) -> str:
    """A server's words for a label: controls made visible, at most a screenful."""
    if len(text) > _TEST_RESULT_LIMIT:
        text = text[: _TEST_RESULT_LIMIT - 1] + "…"
    return for_terminal(text)


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setContentsMargins(0, 0, 0, 0)
    form.setHorizontalSpacing(2 * SPACING)
    form.setVerticalSpacing(SPACING)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return form


def _scrolling(content: QWidget) -> QScrollArea:
    """``content`` in a frameless scroll area: a small dialog scrolls, it never squeezes."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    return area


def _note(text: str = "", name: str = "muted") -> PlainLabel:
    label = PlainLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


class SettingsDialog(QDialog):
    """Edits a copy of the config; ``saved`` carries the new config and any new keys."""

    saved = Signal(object, object, object)

    def __init__(
        self,
        config: Config,
        *,
        keys: KeyStore,
        services: Services,
        spawn: Spawn,
        ephemeral: set[str] | None = None,
        tool_host: McpHost | None = None,
        tools_config: Callable[[], Config] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Rill Settings")
        self.setModal(False)
        self.resize(760, 640)
        self.setMinimumSize(70 * SPACING, 50 * SPACING)
        self.config = config
        self.keys = keys
        self.services = services
        self.engine = services.engine
        self.cache: AsyncResponseCache | None = services.cache
        self.spawn = spawn
        self.ephemeral = set(ephemeral or ())
        self.keep: set[str] = set()
        self.profiles: dict[str, Profile] = dict(config.profiles)
        if not self.profiles:
            self.profiles["default"] = config.profile("default")
        self.new_keys: dict[str, str] = {}
        self.fields: dict[str, QWidget] = {}
        self._shown_values: dict[str, Any] = {}
        self._current: str | None = None
        self._loading = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2 * SPACING, 2 * SPACING, 2 * SPACING, 2 * SPACING)
        layout.setSpacing(2 * SPACING)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        layout.addWidget(self.tabs, 1)
        self.tabs.addTab(self._profiles_tab(), "Profiles")
        self.tabs.addTab(_scrolling(self._schema_tab("resilience.")), "Resilience")
        self.tabs.addTab(_scrolling(self._cache_tab()), "Cache")
        self.tabs.addTab(_scrolling(self._budget_tab()), "Budget && history")
        self.tabs.addTab(_scrolling(self._auto_tab()), "Auto")
        self.tabs.addTab(_scrolling(self._schema_tab("ui.")), "Appearance")
        self.tools_page = ToolsPage(
            services, spawn, tool_host, tools_config, extra=self._schema_tab("tools.")
        )
        self.tabs.addTab(self.tools_page, "Tools")
        self.finished.connect(lambda _r: self.tools_page.detach())

        self.error = _note(name="errorText")
        self.error.hide()
        layout.addWidget(self.error)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._select_first()

    # -- tabs --------------------------------------------------------------------------------

    def keychain_missing(self) -> None:
        """No keychain can store keys: the key field is off, and the note says what to do."""
        self.p_key.setEnabled(False)
        self.p_key.setPlaceholderText("not available")
        self.key_note.setText(
            f"{self.keys.reason} Set the provider's environment variable "
            "(OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY) instead, then restart Rill."
        )
        self.key_note.show()

    def _schema_tab(self, *prefixes: str) -> QWidget:
        page = QWidget()
        form = _form()
        form.setContentsMargins(2 * SPACING, 2 * SPACING, 2 * SPACING, 2 * SPACING)
        page.setLayout(form)
        for key in SCHEMA:
            if key.path.startswith(prefixes):
                widget = _widget_for(key, self.config[key.path])
                widget.setToolTip(key.description)
                self.fields[key.path] = widget
                self._shown_values[key.path] = _value_of(widget)
                if isinstance(widget, QComboBox | QSpinBox | QDoubleSpinBox):
                    widget.setMinimumWidth(24 * SPACING)
                    widget.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
                if isinstance(widget, QCheckBox):
                    widget.setText(_LABELS.get(key.path, key.path))
                    form.addRow("", widget)
                else:
                    form.addRow(_LABELS.get(key.path, key.path), widget)
        if "resilience." in prefixes:
            form.addRow(_note("The connect timeout applies when Rill starts again."))
        return page

    def _cache_tab(self) -> QWidget:
        page = self._schema_tab("cache.")
        form = page.layout()
        assert isinstance(form, QFormLayout)
        form.addRow(
            _note("Turning the cache on or off and its limits apply when Rill starts again.")
        )
        self.cache_stats = _note("…", "")
        form.addRow("Now", self.cache_stats)
        row = QHBoxLayout()
        row.setSpacing(SPACING)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_cache_stats)
        self.clear_button = QPushButton("Clear the cache")
        self.clear_button.clicked.connect(self._confirm_clear)
        row.addWidget(refresh)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        form.addRow("", row)
        self.refresh_cache_stats()
        return page

    def _budget_tab(self) -> QWidget:
        page = self._schema_tab("budget.", "history.")
        form = page.layout()
        assert isinstance(form, QFormLayout)
        self.spend = _note("…", "")
        form.addRow("This month", self.spend)
        self.spawn(self._month_spend())
        return page

    def _auto_tab(self) -> QWidget:
        page = self._schema_tab("auto.")
        form = page.layout()
        assert isinstance(form, QFormLayout)
        form.addRow(
            _note(
                "Auto remembers where it sent a question, so a similar one skips routing. "
                "Add an Auto profile in Profiles → Add → Auto profile."
            )
        )
        self.route_cache = RouteCachePanel(self.services, self.spawn)
        form.addRow("Route cache", self.route_cache)
        return page

    async def _month_spend(self) -> None:
        ledger = self.services.ledger
        if ledger is None:
            text = "Spending is not recorded."
        else:
            try:
                spent = await self.services.run_io(ledger.month_spend)
            except Exception as exc:
                text = f"Could not read the usage ledger ({type(exc).__name__})."
            else:
                budget = float(self.config["budget.monthly_usd"])
                text = f"${spent:.2f} spent"
                text += f" of ${budget:.2f}." if budget > 0 else " (no limit set)."
        with contextlib.suppress(RuntimeError):
            self.spend.setText(text)

    def _profiles_tab(self) -> QWidget:
        page = QWidget()
        outer = QHBoxLayout(page)
        outer.setContentsMargins(0, 2 * SPACING, 0, 0)
        outer.setSpacing(2 * SPACING)

        left = QVBoxLayout()
        left.setSpacing(SPACING)
        self.profile_list = QListWidget()
        self.profile_list.setObjectName("profileList")
        self.profile_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.profile_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.profile_list.addItems(list(self.profiles))
        self.profile_list.currentTextChanged.connect(self._select_profile)
        left.addWidget(self.profile_list, 1)
        add_remove = QHBoxLayout()
        add_remove.setSpacing(SPACING)
        add = QPushButton("Add")
        set_icon(add, "plus")
        add.setToolTip("Add a profile: a server, or Auto (which chooses among profiles)")
        add_menu = QMenu(add)
        add_menu.addAction("Server profile", self.add_profile)
        add_menu.addAction("Auto profile", self.add_auto_profile)
        add.setMenu(add_menu)
        self.add_menu = add_menu
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected profile")
        remove.clicked.connect(self.remove_profile)
        add_remove.addWidget(add)
        add_remove.addWidget(remove)
        left.addLayout(add_remove)
        left.addSpacing(SPACING)
        left.addWidget(_note("New chats and q use", ""))
        self.default_profile = QComboBox()
        self.default_profile.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.default_profile.setMinimumContentsLength(8)
        self.default_profile.addItems(list(self.profiles))
        self.default_profile.setCurrentText(str(self.config["default_profile"]))
        left.addWidget(self.default_profile)
        side = QWidget()
        side.setLayout(left)
        side.setFixedWidth(20 * SPACING)
        left.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(side)

        content = QWidget()
        right = QVBoxLayout(content)
        right.setContentsMargins(0, 0, SPACING, 0)
        right.setSpacing(2 * SPACING)
        form = _form()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.p_name = QLineEdit()
        self.p_name.textEdited.connect(self._name_edited)
        self.name_note = _note(name="errorText")
        self.name_note.hide()
        name_box = QVBoxLayout()
        name_box.setContentsMargins(0, 0, 0, 0)
        name_box.setSpacing(SPACING // 2)
        name_box.addWidget(self.p_name)
        name_box.addWidget(self.name_note)
        self.p_provider = _choice_combo(PROFILE_SCHEMA_BY_NAME["provider"], "openai")
        self.p_base_url = QLineEdit()
        self.p_model = QComboBox()
        self.p_model.setEditable(True)
        for combo in (self.p_provider, self.p_model):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)
        self.p_system = QPlainTextEdit()
        self.p_system.setFixedHeight(8 * SPACING)
        self.p_system.setPlaceholderText("Instructions sent before every chat of this profile")
        self.p_temperature = QDoubleSpinBox()
        self.p_temperature.setRange(-0.1, 2.0)
        self.p_temperature.setSingleStep(0.1)
        self.p_temperature.setDecimals(1)
        self.p_temperature.setSpecialValueText("Server default")
        self.p_max_tokens = QSpinBox()
        self.p_max_tokens.setRange(0, 10_000_000)
        self.p_max_tokens.setSpecialValueText("Server default")
        self.p_max_tokens.setGroupSeparatorShown(True)
        self.p_fallbacks = QLineEdit()
        self.p_fallbacks.setPlaceholderText("other profiles or models, comma-separated")
        self.p_key = QLineEdit()
        self.p_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_note = _note()
        key_box = QVBoxLayout()
        key_box.setContentsMargins(0, 0, 0, 0)
        key_box.setSpacing(SPACING // 2)
        key_box.addWidget(self.p_key)
        key_box.addWidget(self.key_note)
        self.p_key.setPlaceholderText("stored in the system keychain; empty keeps the key")
        self.key_note.hide()
        if not self.keys.supported:
            self.keychain_missing()
        form.addRow("Name", name_box)
        form.addRow("Provider", self.p_provider)
        form.addRow("Base URL", self.p_base_url)
        form.addRow("Model", self.p_model)
        form.addRow("System prompt", self.p_system)
        form.addRow("Temperature", self.p_temperature)
        form.addRow("Max tokens", self.p_max_tokens)
        form.addRow("Fallbacks", self.p_fallbacks)
        form.addRow("API key", key_box)
        self.server_form = form
        right.addLayout(form)
        self.keep_box = QCheckBox("Save this profile in the config file")
        self.keep_box.toggled.connect(self._keep_toggled)
        self.keep_box.hide()
        right.addWidget(self.keep_box)
        test_row = QHBoxLayout()
        test_row.setSpacing(SPACING)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        right.addLayout(test_row)
        self.test_result = _note(name="")
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        right.addWidget(self.test_result)
        self.auto_editor = AutoEditor()
        self.auto_editor.hide()
        right.addWidget(self.auto_editor)
        right.addStretch(1)
        outer.addWidget(_scrolling(content), 1)
        self.p_provider.currentIndexChanged.connect(self._provider_changed)
        return page

    # -- profiles ----------------------------------------------------------------------------

    def _select_first(self) -> None:
        if self.profile_list.count():
            wanted = str(self.config["default_profile"])
            items = self.profile_list.findItems(wanted, Qt.MatchFlag.MatchExactly)
            self.profile_list.setCurrentItem(items[0] if items else self.profile_list.item(0))

    def _select_profile(self, name: str) -> None:
        if self._loading:
            return
        self._commit_form()
        self._current = name or None
        profile = self.profiles.get(name)
        if profile is None:
            return
        self._loading = True
        try:
            self.p_name.setText(profile.name)
            self.name_note.hide()
            self._show_kind(auto=profile.auto is not None)
            if profile.auto is not None:
                self.auto_editor.load(profile.auto, self._server_profiles())
                return
            self.p_provider.setCurrentIndex(max(0, self.p_provider.findData(profile.provider)))
            self.p_base_url.setText(profile.base_url)
            self.p_base_url.setPlaceholderText(DEFAULT_BASE_URLS[profile.provider])
            self.p_model.clear()
            self.p_model.setCurrentText(profile.model)
            self._model_placeholder(DEFAULT_MODELS[profile.provider])
            self.p_system.setPlainText(profile.system_prompt)
            self.p_temperature.setValue(
                -0.1 if profile.temperature is None else profile.temperature
            )
            self.p_max_tokens.setValue(profile.max_tokens or 0)
            self.p_fallbacks.setText(", ".join(profile.fallbacks))
            self.p_key.setText(self.new_keys.get(profile.name, ""))
            self.keep_box.setVisible(name in self.ephemeral)
            self.keep_box.setChecked(name in self.keep)
            if name in self.ephemeral:
                self.keep_box.setToolTip(
                    "This profile was made for this session (a local server or the built-in "
                    "simulator) and is not written to the config file unless you tick this."
                )
            self.test_result.setText("")
        finally:
            self._loading = False

    def _provider_changed(self, _index: int) -> None:
        provider = self.p_provider.currentData()
        if provider in DEFAULT_BASE_URLS:
            self.p_base_url.setPlaceholderText(DEFAULT_BASE_URLS[provider])
            self._model_placeholder(DEFAULT_MODELS[provider])

    def _model_placeholder(self, text: str) -> None:
        line = self.p_model.lineEdit()
        if line is not None:
            line.setPlaceholderText(text)

    def _keep_toggled(self, on: bool) -> None:
        if self._current is None:
            return
        if on:
            self.keep.add(self._current)
        else:
            self.keep.discard(self._current)

    def _form_profile(self) -> Profile | None:
        if self._current is None or self._current not in self.profiles:
            return None
        current = self.profiles[self._current]
        name = self.p_name.text().strip() or self._current
        if current.auto is not None:
            return replace(current, name=name, auto=self.auto_editor.settings())
        temperature = self.p_temperature.value()
        fallbacks = tuple(f.strip() for f in self.p_fallbacks.text().split(",") if f.strip())
        # what the form does not show (stream, prices, prefill) stays as it was
        return replace(
            self.profiles[self._current],
            name=self.p_name.text().strip() or self._current,
            provider=self.p_provider.currentData(),
            base_url=self.p_base_url.text().strip(),
            model=self.p_model.currentText().strip(),
            system_prompt=self.p_system.toPlainText(),
            temperature=None if temperature < 0 else temperature,
            max_tokens=self.p_max_tokens.value() or None,
            fallbacks=fallbacks,
        )

    def _commit_form(self) -> None:
        old = self._current
        profile = self._form_profile()
        if old is None or profile is None:
            return
        key = self.p_key.text().strip()
        if profile.name != old:
            if profile.name in self.profiles:
                profile = replace(profile, name=old)
            else:
                del self.profiles[old]
                if old in self.ephemeral:
                    self.ephemeral.discard(old)
                    self.keep.discard(old)
                self.new_keys.pop(old, None)
                self._rename_in_lists(old, profile.name)
                for name, other in self.profiles.items():  # Auto profiles that use it
                    if other.auto is not None:
                        self.profiles[name] = replace(
                            other, auto=renamed(other.auto, old, profile.name)
                        )
        self.profiles[profile.name] = profile
        if key:
            self.new_keys[profile.name] = key
        self._current = profile.name

    def _name_edited(self, text: str) -> None:
        """Rename the profile as its name is typed, so the list shows the new name at once;
        a name that is empty or another profile's is refused, saying so."""
        if self._current is None or self._loading:
            return
        name = text.strip()
        if not name:
            self.name_note.setText(_shown(f"A profile needs a name; it stays “{self._current}”."))
        elif name != self._current and name in self.profiles:
            self.name_note.setText(
                _shown(f"Another profile is called “{name}”; this one stays “{self._current}”.")
            )
        else:
            self.name_note.hide()
            self._commit_form()
            return
        self.name_note.show()

    def _rename_in_lists(self, old: str, new: str) -> None:
        self._loading = True
        try:
            for item in self.profile_list.findItems(old, Qt.MatchFlag.MatchExactly):
                item.setText(new)
            index = self.default_profile.findText(old)
            if index >= 0:
                self.default_profile.setItemText(index, new)
        finally:
            self._loading = False

    def add_profile(self) -> None:
        self._commit_form()
        n = 1
        name = "new profile"
        while name in self.profiles:
            n += 1
            name = f"new profile {n}"
        self.profiles[name] = Profile(name=name)
        self.profile_list.addItem(name)
        self.default_profile.addItem(name)
        self.profile_list.setCurrentRow(self.profile_list.count() - 1)

    def add_auto_profile(self) -> None:
        """An Auto profile choosing among the server profiles (the first one to start)."""
        self._commit_form()
        n = 1
        name = "Auto"
        while name in self.profiles:
            n += 1
            name = f"Auto {n}"
        servers = self._server_profiles()
        targets = (AutoTarget(servers[0], 1),) if servers else ()
        self.profiles[name] = Profile(name=name, auto=AutoSettings(targets=targets))
        self.profile_list.addItem(name)
        self.default_profile.addItem(name)
        self.profile_list.setCurrentRow(self.profile_list.count() - 1)

    def _show_kind(self, *, auto: bool) -> None:
        """Show the server's rows, or the Auto editor of an Auto profile (the name stays)."""
        for row in range(1, self.server_form.rowCount()):
            self.server_form.setRowVisible(row, not auto)
        self.test_button.setVisible(not auto)
        self.test_result.setVisible(not auto)
        if auto:
            self.keep_box.hide()
        self.auto_editor.setVisible(auto)

    def _server_profiles(self) -> list[str]:
        return [n for n, p in self.profiles.items() if p.auto is None]

    def remove_profile(self) -> None:
        name = self._current
        if name is None or len(self.profiles) <= 1:
            return
        self._current = None
        self.profiles.pop(name, None)
        self.new_keys.pop(name, None)
        self.ephemeral.discard(name)
        self.keep.discard(name)
        for item in self.profile_list.findItems(name, Qt.MatchFlag.MatchExactly):
            self.profile_list.takeItem(self.profile_list.row(item))
        index = self.default_profile.findText(name)
        if index >= 0:
            self.default_profile.removeItem(index)

    # -- test connection ---------------------------------------------------------------------

    def test_connection(self) -> None:
        profile = self._form_profile()
        if profile is None:
            return
        typed = self.p_key.text().strip()
        self.test_button.setEnabled(False)
        self.test_result.setText("Connecting…")
        self.spawn(self._test(profile, typed))

    async def _test(self, profile: Profile, typed_key: str) -> None:
        engine = self.engine
        own: Engine | None = None
        if typed_key:
            lookup: KeyLookup = lambda _r: typed_key  # noqa: E731
            own = engine = Engine(
                resilience=ResilienceSettings(connect_timeout_s=10.0), api_key=lookup
            )
        try:
            models = await asyncio.wait_for(
                engine.list_models(profile.provider, profile.resolved_base_url, profile.name),
                30.0,
            )
        except RillError as exc:
            self._test_done(f"✗ {exc}", [])
        except TimeoutError:
            self._test_done("✗ The server did not answer within 30 s.", [])
        except Exception as exc:
            self._test_done(f"✗ {type(exc).__name__}: {exc}", [])
        else:
            shown = ", ".join(models[:8]) + (" …" if len(models) > 8 else "")
            about = await engine.server_info(
                profile.provider, profile.resolved_base_url, profile.name, model=profile.model
            )
            self._test_done(
                f"✓ Connected. {len(models)} model{'s' if len(models) != 1 else ''}: {shown}"
                + (f" · {about.summary()}" if about.summary() else ""),
                models,
            )
        finally:
            if own is not None:
                with contextlib.suppress(Exception):
                    await own.aclose()

    def _test_done(self, text: str, models: list[str]) -> None:
        with contextlib.suppress(RuntimeError):
            self.test_button.setEnabled(True)
            self.test_result.setText(_shown(text))
            if models:
                current = self.p_model.currentText()
                self.p_model.clear()
                self.p_model.addItems(models)
                self.p_model.setCurrentText(current)

    # -- cache -------------------------------------------------------------------------------

    def refresh_cache_stats(self) -> None:
        if self.cache is None:
            self.cache_stats.setText("The cache is off.")
            self.clear_button.setEnabled(False)
            return
        self.cache_stats.setText("Reading…")
        self.spawn(self._stats())

    async def _stats(self) -> None:
        assert self.cache is not None
        stats = await self.cache.stats()
        size = stats.bytes / (1024 * 1024)
        text = (
            f"{stats.entries:,} answers, {size:.1f} MB. {stats.hits:,} hits and "
            f"{stats.misses:,} misses ({stats.hit_rate:.0%} hit rate)."
        )
        if stats.cost_saved:
            text += f" Saved about ${stats.cost_saved:.2f}."
        with contextlib.suppress(RuntimeError):
            self.cache_stats.setText(text)

    def _confirm_clear(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Clear the cache",
            "Remove every cached answer? Conversations are not affected.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.accepted.connect(self.clear_cache)
        box.open()

    def clear_cache(self) -> None:
        if self.cache is None:
            return
        self.cache_stats.setText("Clearing…")
        self.spawn(self._clear())

    async def _clear(self) -> None:
        assert self.cache is not None
        removed = await self.cache.clear()
        with contextlib.suppress(RuntimeError):
            self.cache_stats.setText(f"Removed {removed:,} answers.")
        await self._stats()

    # -- saving ------------------------------------------------------------------------------

    def build_config(self) -> Config:
        """The edited config (raises ValueError naming the first invalid value)."""
        self._commit_form()
        config = Config(
            values=dict(self.config.values),
            profiles=dict(self.profiles),
            path=self.config.path,
            mcp=self.services.config.mcp,
        )
        for path, widget in self.fields.items():
            value = _value_of(widget)
            if value != self._shown_values[path]:  # a value finer than its field stays
                config.set(path, value)
        default = self.default_profile.currentText()
        if default:
            config.set("default_profile", default)
        return config

    def save(self) -> None:
        try:
            config = self.build_config()
        except ValueError as exc:
            self.error.setText(f"Not saved: {exc}")
            self.error.show()
            return
        self.error.hide()
        self.saved.emit(config, dict(self.new_keys), self.ephemeral - self.keep)
        self.accept()
