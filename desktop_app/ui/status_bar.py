"""The status bar: a spinner while a request is in flight, what is happening in words, a
thin bar of output tokens against max_tokens, and the conversation's cost."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QSizePolicy, QWidget

from desktop_app.core.errors import human_seconds
from desktop_app.core.types import GenerationResponse
from desktop_app.ui.controller import StreamStats
from desktop_app.ui.labels import PlainLabel, plain_tooltip
from desktop_app.ui.retry_banner import Countdown
from desktop_app.ui.tool_card import shown_name

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPIN_MS = 90
"""The spinner's next frame comes this often."""
TICK_MS = 250
"""What is happening (speed, tokens, a countdown) is written again this often."""
TOOL_NAME_SHOWN = 60
LINE_CHARS_DRAWN = 1_000
"""The most characters of a status line drawn or given to assistive technology (it is
elided to its width anyway)."""


def tool_status(stats: StreamStats, now: float | None = None) -> str:
    """What the tools of the reply in flight are doing, or "" when none is busy:
    "Waiting for your approval", "Running read_file (2 s)…"."""
    if stats.approvals_waiting:
        return "Waiting for your approval"
    running = stats.tools_running
    if not running:
        return ""
    now = time.monotonic() if now is None else now
    name, started = min(running.values(), key=lambda item: item[1])
    name = shown_name(name, TOOL_NAME_SHOWN)
    more = f" and {len(running) - 1} more" if len(running) > 1 else ""
    return f"Running {name}{more} ({int(now - started)} s)…"


class StatusText(QWidget):
    """One line of plain text in the status bar whose size does not follow its text.

    A ``QLabel`` asks its parent to lay out again whenever its text changes, and a
    ``QStatusBar`` answers that by building its layout anew and painting all of itself (and
    the window under it): several times a second while a reply streams, for the spinner and
    the speed. This line keeps its size; a new text only paints the line again, elided to
    its width. The text is drawn literally, on one line, never read as markup.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(text[:LINE_CHARS_DRAWN])

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.setAccessibleName(text[:LINE_CHARS_DRAWN])
            self.update()

    def setToolTip(self, text: str) -> None:
        super().setToolTip(plain_tooltip(text))

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().averageCharWidth() * 8, self.fontMetrics().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(0, self.fontMetrics().height())

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self.updateGeometry()  # a new font (a theme) is a new height

    def paintEvent(self, event: QPaintEvent) -> None:
        one_line = Qt.TextFlag.TextSingleLine
        shown = self.fontMetrics().elidedText(
            self._text[:LINE_CHARS_DRAWN], Qt.TextElideMode.ElideRight, self.width(), one_line
        )
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter = QPainter(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawText(self.rect(), int(align) | int(one_line), shown)
        painter.end()


class StatusPanel(QWidget):
    """What the request in flight is doing, updated a few times a second."""

    def __init__(
        self,
        stats: Callable[[], StreamStats],
        countdown: Countdown | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._stats = stats
        self._frame = 0
        self._busy = False
        self._stage = ""
        self._attempt = 1
        self._counting = False
        self._template = ""
        self.countdown = countdown if countdown is not None else Countdown(self)
        self.countdown.changed.connect(lambda _left: self._tick())

        # The panel paints its own background, so that the spinner and the line, which
        # change while a reply streams, are painted over it alone, not over the bar and
        # the window too.
        self.setBackgroundRole(QPalette.ColorRole.Window)
        self.setAutoFillBackground(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        layout.setSpacing(8)
        self.spinner = StatusText(" ")
        self.spinner.setFixedWidth(16)
        layout.addWidget(self.spinner)
        self.label = StatusText("Ready")
        layout.addWidget(self.label, 1)
        self.progress = QProgressBar()
        self.progress.setObjectName("tokenBar")
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(140)
        self.progress.setFixedHeight(4)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.auto = QProgressBar()
        self.auto.setObjectName("autoBar")
        self.auto.setTextVisible(False)
        self.auto.setRange(0, 100)
        self.auto.setFixedWidth(80)
        self.auto.setFixedHeight(4)
        self.auto.hide()
        layout.addWidget(self.auto)
        self.cost = PlainLabel("")
        self.cost.setObjectName("muted")
        layout.addWidget(self.cost)

        self._spin_timer = QTimer(self)
        self._spin_timer.setInterval(SPIN_MS)
        self._spin_timer.timeout.connect(self._spin)
        self._tick_timer = QTimer(self)
        self._tick_timer.setInterval(TICK_MS)
        self._tick_timer.timeout.connect(self._tick)
        self._spun_at = 0.0
        self._ticked_at = 0.0

    @property
    def text(self) -> str:
        return self.label.text()

    @property
    def state(self) -> str:
        """ "error" while an error is shown (the theme colours it), else ""."""
        return str(self.label.property("state") or "")

    def _set_state(self, state: str) -> None:
        if self.state != state:
            self.label.setProperty("state", state)
            self.label.style().unpolish(self.label)
            self.label.style().polish(self.label)

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        if busy:
            self._spin_timer.start()
            self._tick_timer.start()
            self.progress.setValue(0)
        else:
            self._spin_timer.stop()
            self._tick_timer.stop()
            self.spinner.setText(" ")
            self.progress.hide()
            self.auto.hide()
            self._counting = False

    def show_stage(self, stage: str, attempt: int) -> None:
        self._set_state("")
        self._stage = stage
        self._attempt = attempt
        self._counting = False
        self._tick()

    def show_auto_stage(self, stage: str, progress: float, message: str) -> None:
        """An Auto stage: the Auto bar at ``progress`` and its message; while the answer is
        generated the stream's own words (speed, tokens) take the line again."""
        self.auto.setValue(round(progress * 100))
        self.auto.setToolTip(f"Auto: {message}")
        self.auto.setVisible(self._busy)
        if stage == "generating":
            self.show_stage("starting", 1)
            return
        self._set_state("")
        self._stage = "auto"
        self._counting = False
        text = f"Auto · {message}"
        self.label.setText(text)
        self.label.setToolTip(text)

    def show_retry(self, attempt: int, max_attempts: int, delay: float, reason: str) -> None:
        """Retrying after the banner's countdown (the one ``countdown`` both show)."""
        self._set_state("")
        self._stage = "retry"
        self._counting = True
        self._template = f"Retrying in {{}} (attempt {attempt} of {max_attempts})"
        self._tick()

    def show_rate_limit(self, until: float) -> None:
        self._set_state("")
        self._stage = "ratelimit"
        self._counting = True
        self._template = "Waiting for the rate limit: {} left"
        self._tick()

    def show_message(self, text: str) -> None:
        """A one-off line (falling back, circuit open, cache hit, a notice)."""
        self._set_state("")
        self._stage = "message"
        self._counting = False
        self.label.setText(text)
        self.label.setToolTip(text)

    def show_finished(self, response: GenerationResponse) -> None:
        total = response.timing.total_s
        took = f" in {human_seconds(total)}" if total is not None else ""
        if response.cached:
            text = f"Served from cache{took}"
        else:
            text = f"Done{took}"
            usage = response.usage
            if usage is not None and usage.output_tokens:
                about = "≈" if usage.estimated else ""
                text += f" · {about}{usage.output_tokens:,} tokens"
        self._set_state("")
        self._stage = "done"
        self.label.setText(text)
        self.label.setToolTip(text)

    def show_error(self, text: str) -> None:
        self._stage = "error"
        self._set_state("error")
        self.label.setText(f"⚠ {text}")
        self.label.setToolTip(text)

    def set_cost(self, cost: float | None) -> None:
        if cost is None:
            self.cost.setText("")
            self.cost.setToolTip("")
        else:
            self.cost.setText("Conversation: free" if cost == 0 else f"Conversation: ${cost:.4f}")
            self.cost.setToolTip("What this conversation's replies cost, as far as it is known")

    def refresh(self) -> None:
        """Show what is happening now (a tool started, a call waits for approval)."""
        self._tick()

    def on_frame(self) -> None:
        """A frame of the streaming reply was drawn: move the spinner and the line now if
        they are due, and start their timers again. While frames come, the status bar
        changes in the frames' wake-ups and paints, and its timers never wake the window."""
        if not self._busy:
            return
        now = time.monotonic()
        if now - self._spun_at >= SPIN_MS / 1000:
            self._spin()
        self._spin_timer.start()
        if now - self._ticked_at >= TICK_MS / 1000:
            self._tick()
        self._tick_timer.start()

    def _spin(self) -> None:
        self._spun_at = time.monotonic()
        self._frame = (self._frame + 1) % len(SPINNER)
        self.spinner.setText(SPINNER[self._frame])

    def _tick(self) -> None:
        if not self._busy:
            return
        self._ticked_at = time.monotonic()
        stats = self._stats()
        suffix = f" (attempt {self._attempt})" if self._attempt > 1 else ""
        tools = tool_status(stats)
        if tools:
            self.label.setText(tools)
            self.label.setToolTip(tools)
            self._set_state("")
            return
        if self._counting:
            left = self.countdown.left_text
            text = self._template.format(left) if left else "Trying again now"
        elif self._stage == "connecting":
            text = "Connecting…" + suffix
        elif self._stage.startswith("waiting"):
            text = "Waiting for the first token…" + suffix
        elif self._stage == "streaming":
            rate = stats.rate()
            text = f"Streaming at {rate:.0f} tok/s" if rate else "Streaming…"
            text += f" · {stats.tokens:,} tokens"
        elif self._stage in ("message", "done", "error", "auto"):
            return
        else:
            text = "Starting…"
        self.label.setText(text)
        if stats.max_tokens:
            self.progress.show()
            self.progress.setMaximum(stats.max_tokens)
            self.progress.setValue(min(stats.tokens, stats.max_tokens))
