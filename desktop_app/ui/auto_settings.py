"""Settings for Auto: the editor of an Auto profile (its targets, tiers, strengths and
checks) and the route cache's statistics with "Clear route cache"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.chat import Services
from desktop_app.core.routing.profile import (
    STRENGTHS,
    AutoSettings,
    AutoTarget,
    tier_name,
)
from desktop_app.ui.labels import PlainLabel

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]

TIERS: tuple[int, ...] = tuple(range(1, 11))
CHEAPEST = "(the cheapest target)"


class AutoEditor(QWidget):
    """Edits one Auto profile: a row per target (profile, model, tier, strengths) and the
    check (validate, judge, threshold, escalations)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        intro = PlainLabel(
            "Auto sends each question to the cheapest target whose tier covers its "
            "complexity (fast: 1–3, balanced: 1–6, strong: 1–10) and whose strengths include "
            "its category (no strengths: any category)."
        )
        intro.setWordWrap(True)
        intro.setObjectName("muted")
        layout.addWidget(intro)
        self.table = QTableWidget(0, 5)
        self.table.setObjectName("autoTargets")
        self.table.setHorizontalHeaderLabels(
            ["Profile", "Model (optional)", "Tier", "Strengths", ""]
        )
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(160)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add target")
        self.add_button.clicked.connect(lambda: self.add_target())
        row.addWidget(self.add_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.validate = QCheckBox("Check every answer")
        self.validate.setToolTip("A judge scores each answer; a low score escalates")
        layout.addWidget(self.validate)
        form = QFormLayout()
        self.judge = QComboBox()
        self.threshold = QSpinBox()
        self.threshold.setRange(1, 10)
        self.threshold.setToolTip("Answers the judge scores below this are tried again")
        self.escalations = QSpinBox()
        self.escalations.setRange(0, 10)
        self.escalations.setToolTip("How many times a stronger target may try again")
        self.judge.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.judge.setMinimumContentsLength(8)
        form.addRow("Judge", self.judge)
        form.addRow("Escalate below", self.threshold)
        form.addRow("Escalations at most", self.escalations)
        layout.addLayout(form)
        self.note = PlainLabel("")
        self.note.setObjectName("errorText")
        self.note.setWordWrap(True)
        self.note.hide()
        layout.addWidget(self.note)
        self._rest = AutoSettings()

    def load(self, settings: AutoSettings, names: list[str]) -> None:
        """Show ``settings``; ``names`` are the profiles a target or the judge may be."""
        self._names = list(names)
        self._rest = settings
        self.table.setRowCount(0)
        for target in settings.targets:
            self.add_target(target)
        self.validate.setChecked(settings.validate)
        self.judge.clear()
        self.judge.addItems([CHEAPEST, *self._names])
        self.judge.setCurrentText(settings.judge or CHEAPEST)
        self.threshold.setValue(settings.threshold)
        self.escalations.setValue(settings.max_escalations)
        self._check()

    def add_target(self, target: AutoTarget | None = None) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        profile = QComboBox()
        profile.addItems(self._names)
        if target is not None:
            if target.profile not in self._names:
                profile.addItem(target.profile)
            profile.setCurrentText(target.profile)
        model = QLineEdit(target.model if target else "")
        model.setPlaceholderText("the profile's")
        tier = QComboBox()
        for number in TIERS:
            tier.addItem(tier_name(number), number)
        tier.setCurrentIndex(TIERS.index(target.tier) if target else 0)
        strengths = QLineEdit(", ".join(target.strengths) if target else "")
        strengths.setPlaceholderText("any")
        strengths.setToolTip("Comma-separated: " + ", ".join(STRENGTHS))
        strengths.textEdited.connect(lambda _t: self._check())
        self.table.setCellWidget(row, 0, profile)
        self.table.setCellWidget(row, 1, model)
        self.table.setCellWidget(row, 2, tier)
        self.table.setCellWidget(row, 3, strengths)
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this target")
        remove.setAccessibleName("Remove this target")
        remove.clicked.connect(lambda: self.remove_target(remove))
        self.table.setCellWidget(row, 4, remove)
        self._check()

    def remove_target(self, button: QWidget) -> None:
        """Remove the row whose remove button is ``button``."""
        for row in range(self.table.rowCount()):
            if self.table.cellWidget(row, 4) is button:
                self.table.removeRow(row)
                break
        self._check()

    def _row(self, row: int) -> tuple[AutoTarget | None, list[str]]:
        profile = self.table.cellWidget(row, 0)
        model = self.table.cellWidget(row, 1)
        tier = self.table.cellWidget(row, 2)
        strengths = self.table.cellWidget(row, 3)
        assert isinstance(profile, QComboBox) and isinstance(tier, QComboBox)
        assert isinstance(model, QLineEdit) and isinstance(strengths, QLineEdit)
        wanted = [s.strip().lower() for s in strengths.text().split(",") if s.strip()]
        unknown = [s for s in wanted if s not in STRENGTHS]
        name = profile.currentText().strip()
        if not name:
            return None, unknown
        known = tuple(s for s in wanted if s in STRENGTHS)
        return AutoTarget(name, int(tier.currentData()), model.text().strip(), known), unknown

    def _check(self) -> None:
        problems: list[str] = []
        if self.table.rowCount() == 0:
            problems.append("An Auto profile needs at least one target.")
        for row in range(self.table.rowCount()):
            _, unknown = self._row(row)
            if unknown:
                problems.append(
                    f"Target {row + 1}: {', '.join(unknown)} is not a strength "
                    f"(one of {', '.join(STRENGTHS)}); it is left out."
                )
        self.note.setText(" ".join(problems))
        self.note.setVisible(bool(problems))

    def settings(self) -> AutoSettings:
        targets = tuple(t for t, _ in map(self._row, range(self.table.rowCount())) if t)
        judge = self.judge.currentText()
        return AutoSettings(
            targets=targets,
            validate=self.validate.isChecked(),
            judge="" if judge == CHEAPEST else judge,
            threshold=self.threshold.value(),
            max_escalations=self.escalations.value(),
            classifier=self._rest.classifier,
            classifier_timeout_s=self._rest.classifier_timeout_s,
            rules=self._rest.rules,
        )


class RouteCachePanel(QWidget):
    """The route cache's size, hits and misses (per model), and "Clear route cache"."""

    def __init__(self, services: Services, spawn: Spawn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.spawn = spawn
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.stats = PlainLabel("…")
        self.stats.setWordWrap(True)
        layout.addWidget(self.stats)
        row = QHBoxLayout()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.clear_button = QPushButton("Clear route cache")
        self.clear_button.clicked.connect(self.clear)
        row.addWidget(refresh)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.refresh()

    def refresh(self) -> None:
        self.stats.setText("Reading…")
        self.spawn(self._show())

    def clear(self) -> None:
        self.stats.setText("Clearing…")
        self.spawn(self._clear())

    async def _show(self, prefix: str = "") -> None:
        cache = self.services.route_cache()
        stats = await self.services.run_io(cache.stats)
        text = (
            f"{stats.size:,} routes. {stats.hits:,} hits and {stats.misses:,} misses "
            f"({stats.hit_rate:.0%} hit rate)."
        )
        if stats.hits_by_model:
            ranked = sorted(stats.hits_by_model.items(), key=lambda kv: -kv[1])
            text += " Hits by model: " + ", ".join(f"{m} {n:,}" for m, n in ranked) + "."
        if cache.problem:
            text = cache.problem
        with contextlib.suppress(RuntimeError):
            self.stats.setText(prefix + text)

    async def _clear(self) -> None:
        removed = await self.services.run_io(self.services.route_cache().clear)
        await self._show(f"Removed {removed:,} routes. ")
