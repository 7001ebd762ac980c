"""The settings dialog: profiles (with keychain keys and "Test connection"), resilience,
cache, budget and appearance. Non-modal; its form is built from the config schema."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import replace
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
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
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
    SCHEMA,
    Config,
    Key,
    Profile,
)
from desktop_app.core.engine import Engine, KeyLookup
from desktop_app.core.errors import RillError
from desktop_app.core.resilience import ResilienceSettings
from desktop_app.core.types import PROVIDERS
from desktop_app.ui.keys import KeyStore
from desktop_app.ui.labels import PlainLabel

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]

_LABELS = {
    "resilience.max_retries": "Retries",
    "resilience.base_delay_s": "First backoff (s)",
    "resilience.max_delay_s": "Longest backoff (s)",
    "resilience.wait_on_rate_limit": "Wait out long rate limits",
    "resilience.max_rate_limit_wait_s": "Longest wait without asking (s)",
    "resilience.connect_timeout_s": "Connect timeout (s)",
    "resilience.first_token_timeout_s": "First-token timeout (s)",
    "resilience.idle_timeout_s": "Stall timeout (s)",
    "resilience.mid_stream": "When a stream breaks mid-answer",
    "resilience.circuit_breaker.failure_threshold": "Failures that open the circuit",
    "resilience.circuit_breaker.recovery_timeout_s": "Circuit stays open for (s)",
    "cache.enabled": "Answer repeated questions from the cache",
    "cache.ttl_s": "Keep answers for (s)",
    "cache.size_limit_mb": "Largest size (MB)",
    "history.enabled": "Record conversations",
    "budget.monthly_usd": "Monthly limit (USD, 0 = none)",
    "ui.theme": "Colour scheme",
    "ui.send_with": "Send with",
}


def _widget_for(key: Key, value: Any) -> QWidget:
    if key.type is bool:
        box = QCheckBox()
        box.setChecked(bool(value))
        return box
    if key.choices:
        combo = QComboBox()
        combo.addItems(list(key.choices))
        combo.setCurrentText(str(value))
        return combo
    if key.type is int:
        spin = QSpinBox()
        spin.setRange(int(key.minimum or 0), 1_000_000_000)
        spin.setValue(int(value))
        return spin
    if key.type is float:
        dspin = QDoubleSpinBox()
        dspin.setDecimals(3)
        dspin.setRange(float(key.minimum or 0.0), 1e9)
        dspin.setValue(float(value))
        return dspin
    line = QLineEdit(str(value))
    return line


def _value_of(widget: QWidget) -> Any:
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QSpinBox):
        return widget.value()
    if isinstance(widget, QDoubleSpinBox):
        return widget.value()
    if isinstance(widget, QLineEdit):
        return widget.text()
    raise TypeError(type(widget))


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
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Rill Settings")
        self.setModal(False)
        self.resize(640, 520)
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
        self._current: str | None = None
        self._loading = False

        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)
        self.tabs.addTab(self._profiles_tab(), "Profiles")
        self.tabs.addTab(self._schema_tab("resilience."), "Resilience")
        self.tabs.addTab(self._cache_tab(), "Cache")
        self.tabs.addTab(self._budget_tab(), "Budget && history")
        self.tabs.addTab(self._schema_tab("ui."), "Appearance")

        self.error = PlainLabel()
        self.error.setObjectName("errorText")
        self.error.setWordWrap(True)
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

    def _schema_tab(self, *prefixes: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        for key in SCHEMA:
            if key.path.startswith(prefixes):
                widget = _widget_for(key, self.config[key.path])
                widget.setToolTip(key.description)
                self.fields[key.path] = widget
                form.addRow(_LABELS.get(key.path, key.path), widget)
        if "resilience." in prefixes:
            note = PlainLabel("The connect timeout applies when Rill starts again.")
            note.setObjectName("muted")
            form.addRow(note)
        return page

    def _cache_tab(self) -> QWidget:
        page = self._schema_tab("cache.")
        form = page.layout()
        assert isinstance(form, QFormLayout)
        note = PlainLabel(
            "Turning the cache on or off and its limits apply when Rill starts again."
        )
        note.setObjectName("muted")
        note.setWordWrap(True)
        form.addRow(note)
        self.cache_stats = PlainLabel("…")
        self.cache_stats.setWordWrap(True)
        form.addRow("Now", self.cache_stats)
        row = QHBoxLayout()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_cache_stats)
        self.clear_button = QPushButton("Clear the cache")
        self.clear_button.clicked.connect(self._confirm_clear)
        row.addWidget(refresh)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        form.addRow(row)
        self.refresh_cache_stats()
        return page

    def _budget_tab(self) -> QWidget:
        page = self._schema_tab("budget.", "history.")
        form = page.layout()
        assert isinstance(form, QFormLayout)
        self.spend = PlainLabel("…")
        self.spend.setWordWrap(True)
        form.addRow("This month", self.spend)
        self.spawn(self._month_spend())
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
        left = QVBoxLayout()
        self.profile_list = QListWidget()
        self.profile_list.addItems(list(self.profiles))
        self.profile_list.currentTextChanged.connect(self._select_profile)
        left.addWidget(self.profile_list, 1)
        add_remove = QHBoxLayout()
        add = QPushButton("Add")
        add.clicked.connect(self.add_profile)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_profile)
        add_remove.addWidget(add)
        add_remove.addWidget(remove)
        left.addLayout(add_remove)
        default_row = QHBoxLayout()
        default_row.addWidget(PlainLabel("Default"))
        self.default_profile = QComboBox()
        self.default_profile.addItems(list(self.profiles))
        self.default_profile.setCurrentText(str(self.config["default_profile"]))
        default_row.addWidget(self.default_profile, 1)
        left.addLayout(default_row)
        outer.addLayout(left, 1)

        right = QVBoxLayout()
        form = QFormLayout()
        self.p_name = QLineEdit()
        self.p_provider = QComboBox()
        self.p_provider.addItems(list(PROVIDERS))
        self.p_base_url = QLineEdit()
        self.p_model = QComboBox()
        self.p_model.setEditable(True)
        self.p_system = QPlainTextEdit()
        self.p_system.setFixedHeight(60)
        self.p_temperature = QDoubleSpinBox()
        self.p_temperature.setRange(-0.1, 2.0)
        self.p_temperature.setSingleStep(0.1)
        self.p_temperature.setDecimals(1)
        self.p_temperature.setSpecialValueText("server default")
        self.p_max_tokens = QSpinBox()
        self.p_max_tokens.setRange(0, 10_000_000)
        self.p_max_tokens.setSpecialValueText("server default")
        self.p_fallbacks = QLineEdit()
        self.p_fallbacks.setPlaceholderText("other profiles or models, comma-separated")
        self.p_key = QLineEdit()
        self.p_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_note = PlainLabel()
        self.key_note.setObjectName("muted")
        self.key_note.setWordWrap(True)
        if not self.keys.supported:
            self.p_key.setEnabled(False)
            self.p_key.setPlaceholderText("not available")
            self.key_note.setText(
                f"{self.keys.reason} Set the provider's environment variable "
                "(OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY) instead, then restart Rill."
            )
        else:
            self.p_key.setPlaceholderText("stored in the system keychain; empty keeps the key")
        form.addRow("Name", self.p_name)
        form.addRow("Provider", self.p_provider)
        form.addRow("Base URL", self.p_base_url)
        form.addRow("Model", self.p_model)
        form.addRow("System prompt", self.p_system)
        form.addRow("Temperature", self.p_temperature)
        form.addRow("Max tokens", self.p_max_tokens)
        form.addRow("Fallbacks", self.p_fallbacks)
        form.addRow("API key", self.p_key)
        form.addRow("", self.key_note)
        right.addLayout(form)
        self.keep_box = QCheckBox("Save this profile in the config file")
        self.keep_box.toggled.connect(self._keep_toggled)
        self.keep_box.hide()
        right.addWidget(self.keep_box)
        test_row = QHBoxLayout()
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        right.addLayout(test_row)
        self.test_result = PlainLabel()
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        right.addWidget(self.test_result)
        right.addStretch(1)
        outer.addLayout(right, 2)
        self.p_provider.currentTextChanged.connect(self._provider_changed)
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
            self.p_provider.setCurrentText(profile.provider)
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

    def _provider_changed(self, provider: str) -> None:
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
        temperature = self.p_temperature.value()
        fallbacks = tuple(f.strip() for f in self.p_fallbacks.text().split(",") if f.strip())
        return Profile(
            name=self.p_name.text().strip() or self._current,
            provider=self.p_provider.currentText(),  # type: ignore[arg-type]
            base_url=self.p_base_url.text().strip(),
            model=self.p_model.currentText().strip(),
            system_prompt=self.p_system.toPlainText(),
            temperature=None if temperature < 0 else temperature,
            max_tokens=self.p_max_tokens.value() or None,
            fallbacks=fallbacks,
            accepts_prefill=self.profiles[self._current].accepts_prefill,
            price_input_per_mtok=self.profiles[self._current].price_input_per_mtok,
            price_output_per_mtok=self.profiles[self._current].price_output_per_mtok,
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
        self.profiles[profile.name] = profile
        if key:
            self.new_keys[profile.name] = key
        self._current = profile.name

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
            self.test_result.setText(text)
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
        )
        for path, widget in self.fields.items():
            config.set(path, _value_of(widget))
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
