"""``q`` on a real terminal (a pty): what ends up on screen after a mid-stream restart.

The output is read from the pty's master side and replayed on a small screen model that
does what a terminal does with it (autowrap at the width, wide characters, tabs, carriage
return, backspace and the cursor and erase sequences), so the test sees the screen a user
sees, scrollback included.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.core.terminal import for_terminal
from desktop_app.simulator import Fault, SimulatorThread

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")

_CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def cell_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


class Screen:
    """A terminal screen with scrollback: enough of a VT100 for what q writes."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.lines: list[list[str]] = [[] for _ in range(rows)]
        self.wrapped: list[bool] = [False] * rows
        """Whether a row went on into the next one by autowrap (not by a newline)."""
        self.scrollback: list[tuple[str, bool]] = []
        self.row = self.col = 0
        self.pending_wrap = False

    # -- cells -----------------------------------------------------------------------

    def _line(self, row: int) -> list[str]:
        line = self.lines[row]
        while len(line) < self.cols:
            line.append("")
        return line

    def _line_feed(self) -> None:
        if self.row == self.rows - 1:
            top = self.lines.pop(0)
            self.scrollback.append(("".join(top), self.wrapped.pop(0)))
            self.lines.append([])
            self.wrapped.append(False)
        else:
            self.row += 1

    def _put(self, char: str) -> None:
        width = cell_width(char)
        if width == 0:
            line = self._line(self.row)
            line[max(0, self.col - (0 if self.pending_wrap else 1))] += char
            return
        if self.pending_wrap or self.col + width > self.cols:
            self.wrapped[self.row] = True
            self._line_feed()
            self.col = 0
            self.pending_wrap = False
        line = self._line(self.row)
        line[self.col] = char
        if width == 2:
            line[self.col + 1] = ""
        self.col += width
        if self.col >= self.cols:
            self.col = self.cols - 1
            self.pending_wrap = True

    def _erase_line(self, row: int, start: int, end: int) -> None:
        line = self._line(row)
        for i in range(start, min(end, self.cols)):
            line[i] = ""
        if end >= self.cols:
            self.wrapped[row] = False

    # -- input -----------------------------------------------------------------------

    def feed(self, data: str) -> None:
        pos = 0
        while pos < len(data):
            char = data[pos]
            if char == "\x1b":
                csi = _CSI.match(data, pos)
                if csi:
                    self._csi(csi.group(1), csi.group(2), csi.group(3))
                    pos = csi.end()
                    continue
                osc = _OSC.match(data, pos)
                pos = osc.end() if osc else pos + 2
                continue
            pos += 1
            if char == "\r":
                self.col, self.pending_wrap = 0, False
            elif char == "\n":
                self._line_feed()
                self.pending_wrap = False
            elif char == "\b":
                self.col, self.pending_wrap = max(0, self.col - 1), False
            elif char == "\t":
                self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
                self.pending_wrap = False
            elif char == "\x07" or ord(char) < 0x20:
                continue
            else:
                self._put(char)

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            return  # cursor visibility and other modes
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, numbers[0]) if numbers else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            self.row = min(self.rows - 1, n - 1)
            self.col = min(self.cols - 1, (max(1, numbers[1]) if len(numbers) > 1 else 1) - 1)
        elif final == "K":
            mode = numbers[0] if numbers else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
            self._erase_line(self.row, start, end)
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self._erase_line(self.row, self.col, self.cols)
                for row in range(self.row + 1, self.rows):
                    self._erase_line(row, 0, self.cols)
            elif mode in (2, 3):
                for row in range(self.rows):
                    self._erase_line(row, 0, self.cols)
        else:
            return
        if final != "m":
            self.pending_wrap = False

    def text(self) -> str:
        """Everything on screen and in the scrollback, soft-wrapped rows joined again."""
        rows = [
            *self.scrollback,
            *(("".join(line), w) for line, w in zip(self.lines, self.wrapped, strict=True)),
        ]
        out: list[str] = []
        for content, wrapped in rows:
            out.append(content if wrapped else content.rstrip(" ") + "\n")
        return "".join(out).rstrip("\n") + "\n"


def test_the_screen_model_wraps_and_erases_as_a_terminal_does() -> None:
    screen = Screen(cols=4, rows=5)
    screen.feed("abcdefg\r\n川川川")  # 川 needs two cells: the third starts a new row
    assert screen.text() == "abcdefg\n川川川\n"
    assert screen.row == 3
    screen.feed("\r\x1b[1A" + "\x1b[J")
    assert screen.text() == "abcdefg\n"
    screen.feed("\x1b[1A\rx\ty\bz")
    assert screen.text() == "abcdxfzy\n"  # the tab stops at the last column


# -- q under a pty ---------------------------------------------------------------------


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def q_on_terminal(
    args: list[str], *, home: Path, cols: int, rows: int = 200, timeout: float = 60
) -> tuple[int, str]:
    """Run q with stdin, stdout and stderr on one pty of ``cols`` × ``rows``; its output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(RILL_HOME=str(home), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    data = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the slave side
                break
            if not chunk:
                break
            data += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, data.decode("utf-8", "replace")


HOSTILE_ECHO = (
    "Rivers 川の流れ and 🌊 waves\tcarry \x1b[31mred\x1b[0m words, naïve café e\u0301 "
    + "x" * 95
    + " — 長い漢字の行が続きます。 "
)


@pytest.mark.parametrize("cols", [200, 40])
@pytest.mark.parametrize("prompt", ["Tell me about rivers", "/echo Begin. " + HOSTILE_ECHO * 3])
def test_a_restarted_answer_is_on_screen_once(
    simt: SimulatorThread, rill_home: Path, cols: int, prompt: str
) -> None:
    simt.script(Fault(drop_after=60))
    code, output = q_on_terminal(
        [
            "--base-url",
            simt.base_url("openai"),
            "--set",
            "resilience.base_delay_s=0.05",
            "--max-tokens",
            "120",
            prompt,
        ],
        home=rill_home,
        cols=cols,
    )
    assert code == 0, output
    assert len(simt.chat_requests) == 2
    reply = for_terminal(simt.sim.reply_text(simt.chat_requests[-1].json, "openai"))
    screen = Screen(cols=cols, rows=200)
    screen.feed(output)
    shown = screen.text()
    retry_notes = [line for line in shown.splitlines() if line.startswith("q: retrying")]
    restart_notes = [line for line in shown.splitlines() if "starting it again" in line]
    assert len(retry_notes) == 1, shown
    assert len(restart_notes) == 1, shown
    # Compared without whitespace: a tab on screen is the cells it skipped.
    flat, flat_reply = _no_space(shown), _no_space(reply)
    assert flat.count(flat_reply[:40]) == 1, shown
    assert flat.endswith(flat_reply), shown


def _no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_an_answer_taller_than_the_screen_is_not_erased_but_marked(
    simt: SimulatorThread, rill_home: Path
) -> None:
    """Rows that scrolled off cannot be taken back: the partial stays, the notes come
    once, and after them the new answer is whole."""
    simt.script(Fault(drop_after=60))
    code, output = q_on_terminal(
        [
            "--base-url",
            simt.base_url("openai"),
            "--set",
            "resilience.base_delay_s=0.05",
            "--max-tokens",
            "80",
            "Tell me about rivers",
        ],
        home=rill_home,
        cols=40,
        rows=8,
    )
    assert code == 0, output
    reply = simt.sim.reply_text(simt.chat_requests[-1].json, "openai")
    screen = Screen(cols=40, rows=8)
    screen.feed(output)
    lines = screen.text().splitlines()
    assert sum(line.startswith("q: retrying") for line in lines) == 1, lines
    restart = [i for i, line in enumerate(lines) if "starting it again" in line]
    assert len(restart) == 1, lines
    after = "".join(lines[restart[0] + 1 :])
    assert _no_space(after) == _no_space(reply), lines
