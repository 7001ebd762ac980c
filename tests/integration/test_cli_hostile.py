"""``q`` against a hostile server, a hostile terminal input and hostile numbers: a real
process, real sockets, the simulator's hostile mode."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread, hostile
from desktop_app.simulator.server import RecordedRequest
from tests.helpers import wait_until

KEY = "pRoXy0123456789abcdefghijKLMNOPQRSTUV"
"""An API key not shaped like any provider's, so only Rill's own masking can hide it."""


@pytest.fixture(scope="module")
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _fresh(simt: SimulatorThread) -> None:
    simt.clear()


def q(
    *args: str,
    home: Path,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, "RILL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "desktop_app.cli", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )


def q_on_a_terminal(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """Run q with stdout and stderr on a pseudo-terminal; its exit code and all it wrote."""
    full_env = {**os.environ, "RILL_HOME": str(home), "COLUMNS": "80", **(env or {})}
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=full_env,
    )
    os.close(slave)
    shown = _drain(master, proc, timeout)
    os.close(master)
    return proc.returncode, shown


def _drain(master: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=5)
    return b"".join(chunks)


def base(sim: SimulatorThread, provider: str = "openai") -> list[str]:
    return ["--provider", provider, "--base-url", sim.base_url(provider)]


def leaked(secret: str, text: str, window: int = 8) -> list[str]:
    """Every piece of ``secret`` at least ``window`` characters long found in ``text``."""
    return [
        secret[i : i + window]
        for i in range(len(secret) - window + 1)
        if secret[i : i + window] in text
    ]


def files_under(home: Path) -> Iterable[Path]:
    return (p for p in home.rglob("*") if p.is_file())


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [240, 250, 259, 262])
def test_an_echoed_key_cut_at_300_never_leaks(
    simt: SimulatorThread, rill_home: Path, pad: int
) -> None:
    simt.script(hostile.echo_key_error("openai", 401, pad=pad))
    env = {"OPENAI_API_KEY": KEY}
    result = q(*base(simt), "--debug", "--no-cache", "hi", home=rill_home, env=env)
    assert result.returncode == 1
    assert simt.sim.chat_requests[-1].headers["authorization"] == f"Bearer {KEY}"
    err = result.stderr.decode()
    assert "The API key was rejected (401)" in err
    assert "Incorrect API key provided" in err
    markdown = q("--export", "1", home=rill_home)
    exported = q("--export", "1", "--format", "json", home=rill_home)
    assert exported.returncode == 0, exported.stderr
    assert "rejected" in exported.stdout.decode()  # messages.error in history
    seen = {"stdout": result.stdout.decode(), "stderr": err}
    seen |= {"md": markdown.stdout.decode(), "json": exported.stdout.decode()}
    for path in files_under(rill_home):
        seen[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for where, text in seen.items():
        assert leaked(KEY, text) == [], where


@pytest.mark.parametrize("pad", [180, 188, 192])
def test_a_key_in_a_corrupt_chunk_cut_at_200_never_leaks_under_debug(
    simt: SimulatorThread, rill_home: Path, pad: int
) -> None:
    def body(record: RecordedRequest) -> Iterator[bytes]:
        key = record.headers.get("authorization", "").removeprefix("Bearer ")
        yield b"data: " + ("y" * pad + key + "}").encode() + b"\n\n"

    simt.script(hostile.pieces("openai", body, headers={"Content-Type": "text/event-stream"}))
    env = {"OPENAI_API_KEY": KEY}
    args = ("--debug", "--no-cache", "--set", "resilience.max_retries=0", "hi")
    result = q(*base(simt), *args, home=rill_home, env=env)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "CorruptStream: yyyy" in err
    assert leaked(KEY, err) == []
    log = (rill_home / "logs" / "rill.log").read_text(encoding="utf-8")
    assert leaked(KEY, log) == []


def test_a_password_in_the_base_url_is_never_printed_or_logged(
    simt: SimulatorThread, rill_home: Path
) -> None:
    url = simt.base_url("openai").replace("http://", "http://alice:Pa55w0rdPa55w0rd@")
    result = q("--base-url", url, "--debug", "--no-cache", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "attempt 1: POST http://•••@" in err
    seen = [result.stdout.decode(), err]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in files_under(rill_home)]
    for text in seen:
        assert "Pa55w0rd" not in text and "alice" not in text


# -- escape sequences -------------------------------------------------------------------------

ESCAPES = "title\x1b]0;pwned\x07 clear\x1b[2J clip\x1b]52;c;aGk=\x07 csi\x9b2J rtl\u202eabc end"
RAW_CONTROLS = (b"\x1b]", b"\x07", b"\x1b[2J", "\x9b".encode(), "\u202e".encode())


def assert_no_controls(shown: bytes) -> None:
    for sequence in RAW_CONTROLS:
        assert sequence not in shown, (sequence, shown[-400:])


def test_a_reply_with_escape_sequences_reaches_the_terminal_as_visible_text(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(hostile.reply("openai", [ESCAPES[:9], ESCAPES[9:15], ESCAPES[15:]]))
    code, shown = q_on_a_terminal(*base(simt), "--no-cache", "hi", home=rill_home)
    assert code == 0, shown
    assert_no_controls(shown)
    assert "title␛]0;pwned␇ clear␛[2J clip␛]52;c;aGk=␇" in shown.decode()


def test_an_error_a_model_name_and_a_title_reach_the_terminal_as_visible_text(
    simt: SimulatorThread, rill_home: Path
) -> None:
    simt.script(hostile.error("openai", 400, "bad\x1b]0;pwned\x07 request\x1b[2J"))
    code, shown = q_on_a_terminal(*base(simt), "--no-cache", ESCAPES, home=rill_home)
    assert code == 1
    assert "bad␛]0;pwned␇ request␛[2J" in shown.decode()
    assert_no_controls(shown)

    code, shown = q_on_a_terminal("--history", home=rill_home)
    assert code == 0 and "title␛]0;pwned␇" in shown.decode()
    assert_no_controls(shown)

    models = b'{"object":"list","data":[{"id":"evil\\u001b]0;pwned\\u0007\\u009b2J"}]}'
    simt.script(
        hostile.pieces(
            "models", lambda _r: iter([models]), headers={"Content-Type": "application/json"}
        )
    )
    code, shown = q_on_a_terminal(*base(simt), "--list-models", home=rill_home)
    assert code == 0 and "evil␛]0;pwned␇" in shown.decode()
    assert_no_controls(shown)


def test_export_is_visible_on_a_terminal_or_a_pipe_and_raw_in_a_file(
    simt: SimulatorThread, rill_home: Path, tmp_path: Path
) -> None:
    simt.script(hostile.reply("openai", ESCAPES))
    assert q(*base(simt), "--no-cache", "hi", home=rill_home).returncode == 0

    code, shown = q_on_a_terminal("--export", "1", home=rill_home)
    assert code == 0 and "clear␛[2J" in shown.decode()
    assert_no_controls(shown)

    piped = q("--export", "1", home=rill_home)
    assert piped.returncode == 0 and "clear␛[2J" in piped.stdout.decode()
    assert_no_controls(piped.stdout)

    target = tmp_path / "chat.md"
    with target.open("wb") as file:
        subprocess.run(
            [sys.executable, "-m", "desktop_app.cli", "--export", "1"],
            stdout=file,
            env={**os.environ, "RILL_HOME": str(rill_home)},
            timeout=30,
            check=True,
        )
    assert ESCAPES.encode() in target.read_bytes()


def test_json_output_keeps_the_text_and_no_raw_control(
    simt: SimulatorThread, rill_home: Path
) -> None:
    import json

    simt.script(hostile.reply("openai", ESCAPES))
    result = q(*base(simt), "--no-cache", "--json", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["content"] == ESCAPES
    assert_no_controls(result.stdout)
    exported = q("--export", "1", "--format", "json", home=rill_home)
    assert json.loads(exported.stdout)["messages"][-1]["content"] == ESCAPES
    assert_no_controls(exported.stdout)


# -- numbers and addresses at the edges ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--temperature", "nan"], "--temperature: must be a number from 0 to 2"),
        (["--temperature", "inf"], "--temperature: must be a number from 0 to 2"),
        (["--temperature", "-0.5"], "--temperature: must be a number from 0 to 2"),
        (["--max-tokens", "-1"], "--max-tokens: must be a whole number from 1"),
        (["--max-tokens", "0"], "--max-tokens: must be a whole number from 1"),
        (["--base-url", "http://[::1"], "is not a valid address"),
        (["--base-url", "http://127.0.0.1:99999/v1"], "a port is a number from 1 to 65535"),
        (["--base-url", "ftp://127.0.0.1/v1"], "is not an http:// or https:// address"),
        (["--set", "resilience.idle_timeout_s=nan"], "must be a finite number"),
        (["--set", "resilience.max_delay_s=inf"], "must be a finite number"),
        (["--set", "profiles.default.temperature=nan"], "must be a finite number"),
        (["--set", "profiles.default.base_url='http://h:0'"], "a port is a number from 1"),
    ],
)
def test_bad_numbers_and_addresses_are_one_sentence_before_any_request(
    simt: SimulatorThread, rill_home: Path, args: list[str], sentence: str
) -> None:
    result = q("--base-url", simt.base_url("openai"), *args, "hi", home=rill_home)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert sentence in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert simt.sim.chat_requests == []


def test_a_nan_in_the_config_file_keeps_the_default(simt: SimulatorThread, rill_home: Path) -> None:
    (rill_home / "config").mkdir(parents=True, exist_ok=True)
    (rill_home / "config" / "config.toml").write_text(
        "[resilience]\nidle_timeout_s = nan\nconnect_timeout_s = inf\n"
        "[profiles.default]\ntemperature = nan\nbase_url = 'http://[::1'\n",
        encoding="utf-8",
    )
    result = q(*base(simt), "--no-cache", "hi", home=rill_home)
    assert result.returncode == 0, result.stderr
    body = simt.sim.chat_requests[-1].json
    assert "temperature" not in body


# -- input and output that is not what q expects --------------------------------------------------


def test_an_argument_that_is_not_utf8_is_one_sentence(
    simt: SimulatorThread, rill_home: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"desktop_app.cli",
            b"--base-url",
            simt.base_url("openai").encode(),
            b"caf\xe9 \xff",
        ],
        capture_output=True,
        env={**os.environ, "RILL_HOME": str(rill_home)},
        timeout=30,
    )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "the prompt is not UTF-8 text" in err and "Traceback" not in err
    assert simt.sim.chat_requests == []


def test_binary_stdin_is_one_sentence(simt: SimulatorThread, rill_home: Path) -> None:
    result = q(*base(simt), stdin=b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", home=rill_home)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "standard input is not UTF-8 text" in err and "Traceback" not in err
    assert simt.sim.chat_requests == []


@pytest.mark.parametrize("command", [["--history"], ["--export", "1"], ["hi"]])
def test_a_reader_that_goes_away_ends_q_quietly(
    simt: SimulatorThread, rill_home: Path, command: list[str]
) -> None:
    assert q(*base(simt), "--no-cache", "first", home=rill_home).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *base(simt), "--no-cache", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "RILL_HOME": str(rill_home)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `q … | true`
    err = proc.stderr.read().decode()
    proc.wait(timeout=30)
    assert proc.returncode == 141, err
    assert err == ""


# -- Ctrl+C ---------------------------------------------------------------------------------------


def _interrupt(
    sim: SimulatorThread, home: Path, *, flowing: bytes | int, keep_reading: bool = True
) -> tuple[int | None, float]:
    """Run q on a terminal, press Ctrl+C once ``flowing`` (that many bytes, or that text) has
    been shown, then read on (or not: a paused terminal); (exit code, seconds to exit)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.cli", *base(sim), "--no-cache", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "RILL_HOME": str(home), "COLUMNS": "80"},
    )
    os.close(slave)
    os.set_blocking(master, False)
    try:
        shown = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(shown) >= flowing if isinstance(flowing, int) else flowing in shown:
                break
            select.select([master], [], [], 0.1)
            with contextlib.suppress(BlockingIOError):
                shown = (shown + os.read(master, 65536))[-65536:]
        else:
            raise AssertionError(f"nothing flowed: {shown[-300:]!r}")
        if not keep_reading:  # the terminal stops reading until q blocks in write(2)
            wait_until(lambda: _blocked_in_write(proc.pid), timeout=10)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        while proc.poll() is None and time.monotonic() - started < 5:
            select.select([master] if keep_reading else [], [], [], 0.02)
            if keep_reading:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)
        return proc.poll(), time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(timeout=5)
        os.close(master)


def _blocked_in_write(pid: int) -> bool:
    syscall = Path(f"/proc/{pid}/syscall").read_text().split()
    return bool(syscall) and syscall[0] == str(_WRITE)


_WRITE = {"x86_64": 1, "aarch64": 64}.get(os.uname().machine, 1)


@pytest.mark.parametrize("keep_reading", [True, False], ids=["terminal", "paused-terminal"])
def test_ctrl_c_ends_an_endless_stream(
    simt: SimulatorThread, rill_home: Path, keep_reading: bool
) -> None:
    simt.script(hostile.endless("openai", "spam "))
    code, seconds = _interrupt(simt, rill_home, flowing=65536, keep_reading=keep_reading)
    assert code == 130, seconds


def test_ctrl_c_ends_an_endless_line(simt: SimulatorThread, rill_home: Path) -> None:
    # hostile.endless_line at a pace that stays under Rill's event size limit for minutes
    def body(_: RecordedRequest) -> Iterator[bytes]:
        while True:
            yield b"data: x\n" * 8192

    headers = {"Content-Type": "text/event-stream"}
    simt.script(hostile.pieces("openai", body, headers=headers, piece_delay_s=0.05))
    code, seconds = _interrupt(simt, rill_home, flowing=b"first token")
    assert code == 130, seconds
