"""A non-modal banner above the composer while Rill waits to try a request again, and the
one countdown that the banner and the status bar both show."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QWidget

from desktop_app.core.errors import human_seconds, sentences
from desktop_app.ui.labels import PlainLabel


class Countdown(QObject):
    """Time left until a retry, read once per tick and handed to every display.

    ``changed`` carries the time left as text ("2.4 s", "800 ms"), or "" once it is over,
    so two displays of the same wait always say the same thing.
    """

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._deadline: float | None = None
        self._wall = False
        self.left_text = ""
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._tick)

    @property
    def running(self) -> bool:
        return self._deadline is not None

    def start_monotonic(self, delay_s: float) -> None:
        """Count down ``delay_s`` seconds from now."""
        self._start(time.monotonic() + max(0.0, delay_s), wall=False)

    def start_wall(self, until: float) -> None:
        """Count down to ``until``, a ``time.time()`` timestamp."""
        self._start(until, wall=True)

    def stop(self) -> None:
        self._timer.stop()
        self._deadline = None
        self.left_text = ""

    def left(self) -> float:
        if self._deadline is None:
            return 0.0
        now = time.time() if self._wall else time.monotonic()
        return max(0.0, self._deadline - now)

    def _start(self, deadline: float, *, wall: bool) -> None:
        self._deadline = deadline
        self._wall = wall
        self.left_text = ""
        self._timer.start()
        self._tick()

    def _tick(self) -> None:
        if self._deadline is None:
            return
        left = self.left()
        # tenths of a second are what the displays show; an update for less is noise
        text = human_seconds(left) if left >= 0.05 else ""
        if text != self.left_text or left < 0.05:
            self.left_text = text
            self.changed.emit(text)
        if left < 0.05:
            self._timer.stop()


class RetryBanner(QFrame):
    """Reason, live countdown, "Retry now" and "Cancel". Hidden when nothing is waiting."""

    retry_now = Signal()
    cancel = Signal()

    def __init__(self, countdown: Countdown | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("retryBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(8)
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
        self.countdown = countdown if countdown is not None else Countdown(self)
        self.countdown.changed.connect(self._show)
        self.hide()

    @property
    def text(self) -> str:
        return self.label.text()

    @property
    def waiting(self) -> bool:
        return self.countdown.running

    def show_retry(self, attempt: int, max_attempts: int, delay: float, reason: str) -> None:
        self._reason = reason
        self._what = f"attempt {attempt} of {max_attempts}"
        self.retry_button.setVisible(True)
        self.countdown.start_monotonic(delay)
        self.show()

    def show_rate_limit(self, until: float, reason: str) -> None:
        self._reason = reason
        self._what = "waiting for the rate limit"
        self.retry_button.setVisible(True)
        self.countdown.start_wall(until)
        self.show()

    def clear(self) -> None:
        self.countdown.stop()
        self.hide()

    def _show(self, left: str) -> None:
        when = f"Trying again in {left}" if left else "Trying again now"
        self.label.setText("⟳ " + sentences(self._reason, f"{when} ({self._what})"))
