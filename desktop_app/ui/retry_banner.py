"""A non-modal banner above the composer while Rill waits to try a request again."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QWidget

from desktop_app.core.errors import human_seconds
from desktop_app.ui.labels import PlainLabel


class RetryBanner(QFrame):
    """Reason, live countdown, "Retry now" and "Cancel". Hidden when nothing is waiting."""

    retry_now = Signal()
    cancel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("retryBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        self.label = PlainLabel()
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.retry_button = QPushButton("Retry now")
        self.retry_button.clicked.connect(self.retry_now)
        layout.addWidget(self.retry_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.cancel_button)
        self._reason = ""
        self._what = ""
        self._deadline: float | None = None
        self._wall = False
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._tick)
        self.hide()

    @property
    def text(self) -> str:
        return self.label.text()

    def show_retry(self, attempt: int, max_attempts: int, delay: float, reason: str) -> None:
        self._reason = reason
        self._what = f"attempt {attempt} of {max_attempts}"
        self._deadline = time.monotonic() + delay
        self._wall = False
        self.retry_button.setVisible(True)
        self._start()

    def show_rate_limit(self, until: float, reason: str) -> None:
        self._reason = reason
        self._what = "waiting for the rate limit"
        self._deadline = until
        self._wall = True
        self.retry_button.setVisible(True)
        self._start()

    def clear(self) -> None:
        self._timer.stop()
        self._deadline = None
        self.hide()

    def _start(self) -> None:
        self._tick()
        self.show()
        self._timer.start()

    def _tick(self) -> None:
        if self._deadline is None:
            return
        now = time.time() if self._wall else time.monotonic()
        left = self._deadline - now
        when = f"Trying again in {human_seconds(left)}" if left > 0.05 else "Trying again now"
        self.label.setText(f"⟳ {self._reason}  {when} ({self._what}).")
