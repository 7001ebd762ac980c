"""``q`` on folders it may not write and on a full disk: real processes, real permissions.

Tests run as root here and in CI, and root ignores permission bits, so the permission
tests run ``q`` as the unprivileged user 65534 (``nobody``). The disk-full test puts
``RILL_HOME`` on a small tmpfs mounted for the test (root only).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop_app.simulator import SimulatorThread, hostile

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
as_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="needs root to act as another user"
)


@pytest.fixture
def simt() -> Iterator[SimulatorThread]:
    with SimulatorThread(tokens_per_s=0) as sim:
        yield sim


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join([sysconfig.get_paths()["purelib"], str(REPO)])
    return {**os.environ, "RILL_HOME": str(home), "PYTHONPATH": path, "HOME": str(home.parent)}


def _interpreter_for_nobody(cwd: Path) -> str | None:
    """A Python that user 65534 can run with Rill importable (the venv's own may live in
    a folder only root can enter; the system Python of the same version then stands in)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version) or "", f"/usr/bin/{version}"):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import desktop_app.cli, httpx, diskcache"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                env=_env(cwd / "probe"),
                cwd=cwd,
                capture_output=True,
                timeout=60,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def nobody(tmp_path: Path) -> Path:
    """A folder user 65534 may enter (its parents too), for that user's RILL_HOME."""
    place = tmp_path / "nobody"
    place.mkdir()
    for folder in (place, *place.parents):
        if folder == Path("/"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o011)
    return place


def q(
    *args: str, home: Path, python: str | None = None, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    extra: dict[str, object] = {}
    if user is not None:
        extra = {"user": user, "group": user, "extra_groups": []}
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [python or sys.executable, "-m", "desktop_app.cli", *args],
        input="",
        capture_output=True,
        text=True,
        env=_env(home),
        cwd=home.parent,
        timeout=60,
        **extra,  # type: ignore[call-overload]
    )
    return result


def base(sim: SimulatorThread) -> list[str]:
    return ["--provider", "openai", "--base-url", sim.base_url("openai"), "--model", "m"]


def _one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr and "Error:" not in stderr.replace("q: ", ""), stderr
    assert "unexpected error" not in stderr, stderr


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")} if folder.exists() else set()


# -- 10: folders Rill may not write --------------------------------------------------------


@as_root
def test_read_only_home_answers_without_saving_and_says_so(
    simt: SimulatorThread, nobody: Path
) -> None:
    python = _interpreter_for_nobody(nobody)
    if python is None:
        pytest.skip("no Python that user 65534 can run with Rill importable")
    home = nobody / "home"
    home.mkdir()
    os.chmod(home, 0o755)  # root's: user 65534 may read it, not write it

    asked = q(*base(simt), "/echo still here", home=home, python=python, user=NOBODY)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "still here\n"
    _one_sentence(asked.stderr)
    assert "permission denied" in asked.stderr
    assert str(home / "data") in asked.stderr
    assert "not saved" in asked.stderr

    listed = q("--history", home=home, python=python, user=NOBODY)
    assert listed.returncode == 1
    _one_sentence(listed.stderr)
    assert "permission denied" in listed.stderr and str(home / "data") in listed.stderr
    assert os.listdir(home) == []


@as_root
@pytest.mark.parametrize("blocked", ["logs", "data"])
def test_a_file_where_a_folder_belongs_is_one_sentence(
    simt: SimulatorThread, rill_home: Path, blocked: str
) -> None:
    rill_home.mkdir(parents=True)
    (rill_home / blocked).write_text("not a folder")
    asked = q(*base(simt), "/echo fine", home=rill_home)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "fine\n"
    _one_sentence(asked.stderr)
    listed = q("--history", home=rill_home)
    _one_sentence(listed.stderr)
    if blocked == "data":
        assert listed.returncode == 1
        assert "it is a file" in listed.stderr and str(rill_home / "data") in listed.stderr
    else:
        assert listed.returncode == 0, listed.stderr
    assert (rill_home / blocked).read_text() == "not a folder"


@as_root
@pytest.mark.parametrize("how", ["root-owned history", "read-only data folder"])
def test_a_permission_problem_never_moves_the_history_aside(
    simt: SimulatorThread, nobody: Path, how: str
) -> None:
    python = _interpreter_for_nobody(nobody)
    if python is None:
        pytest.skip("no Python that user 65534 can run with Rill importable")
    home = nobody / "home"
    first = q(*base(simt), "/echo remember me", home=home)  # what `sudo q` leaves
    assert first.returncode == 0, first.stderr
    for path in [home, *home.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    data = home / "data"
    history = data / "history.sqlite3"
    if how == "root-owned history":
        os.chown(history, 0, 0)
        assert history.stat().st_mode & 0o777 == 0o600
    else:
        for path in [data, *data.rglob("*")]:
            os.chown(path, 0, 0)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    before = _files(data)
    content = history.read_bytes()

    listed = q("--history", home=home, python=python, user=NOBODY)
    assert listed.returncode == 1
    _one_sentence(listed.stderr)
    assert "permission denied" in listed.stderr
    assert str(history) in listed.stderr
    assert "unusable" not in listed.stderr and "move" not in listed.stderr.replace("remove", "")

    asked = q(*base(simt), "/echo answer anyway", home=home, python=python, user=NOBODY)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "answer anyway\n"
    assert "permission denied" in asked.stderr and "not saved" in asked.stderr

    assert _files(data) == before  # nothing moved aside, nothing added
    assert not [name for name in _files(data) if "corrupt" in name]
    assert history.read_bytes() == content
    mine = q("--history", home=home)  # the owner still has everything
    assert mine.returncode == 0 and "remember me" in mine.stdout


# -- 11: a full disk during a reply -------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs, unmounted afterwards."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "disk"
    point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until only about ``leave`` bytes are free."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
    stats = os.statvfs(disk)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave + stats.f_bavail * stats.f_frsize))
    return filler


def test_full_disk_during_a_reply_says_what_was_saved(
    simt: SimulatorThread, small_disk: Path
) -> None:
    home = small_disk / "home"
    warm = q(*base(simt), "/echo first", home=home)
    assert warm.returncode == 0, warm.stderr
    reply = "flowing water " * 80_000  # about 1.1 MB: more than the disk has left
    simt.script(hostile.reply("openai", [reply[i : i + 4096] for i in range(0, len(reply), 4096)]))
    filler = _fill(small_disk, leave=400 * 1024)  # room to open every store, not for the reply

    asked = q(*base(simt), "tell me about rivers", home=home)
    assert asked.stdout == reply + "\n"  # the answer arrived
    assert asked.returncode == 1
    assert "Logging error" not in asked.stderr and "Traceback" not in asked.stderr
    lines = [line for line in asked.stderr.splitlines() if line]
    assert len(lines) == 1, asked.stderr
    assert "The disk is full; the reply was shown but only 0 of" in lines[0]
    assert f"{len(reply):,} characters were saved" in lines[0]

    filler.unlink()  # space is back: everything works again
    listed = q("--history", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "tell me about rivers" in listed.stdout
    exported = q("--export", "2", home=home)
    assert exported.returncode == 0, exported.stderr
    assert "tell me about rivers" in exported.stdout  # the prompt saved before was kept
    for extra in (["--no-log"], []):
        again = q(*base(simt), *extra, "/echo back", home=home)
        assert again.returncode == 0 and again.stdout == "back\n", again.stderr
    with sqlite3.connect(home / "data" / "history.sqlite3") as conn:
        statuses = conn.execute("SELECT status FROM messages ORDER BY id").fetchall()
    assert ("interrupted",) in statuses  # the lost reply is marked, not passed off as whole


# -- 8, 9, 12, 14: stored and imported data ---------------------------------------------------


def test_one_bad_byte_never_blocks_its_conversation(simt: SimulatorThread, rill_home: Path) -> None:
    first = q(*base(simt), "/echo a good answer", home=rill_home)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(rill_home / "data" / "history.sqlite3") as conn:
        conn.execute("UPDATE messages SET content = CAST(X'6f6bff21' AS TEXT) WHERE role = 'user'")
    exported = q("--export", "1", home=rill_home)
    assert exported.returncode == 0, exported.stderr
    assert "ok\ufffd!" in exported.stdout
    as_json = q("--export", "1", "--format", "json", home=rill_home)
    assert as_json.returncode == 0, as_json.stderr
    continued = q(*base(simt), "-c", "/echo and more", home=rill_home)
    assert continued.returncode == 0, continued.stderr
    assert continued.stdout == "and more\n"
    sent = simt.sim.chat_requests[-1].json["messages"]
    assert sent[0]["content"] == "ok\ufffd!"


def test_import_problems_are_one_sentence_naming_the_file(rill_home: Path, tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    result = q("--import", str(nested), home=rill_home)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and str(nested) in result.stderr
    assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr
    far = tmp_path / "far.json"
    far.write_text(
        '{"format": "rill.conversation", "version": 1, "messages": '
        '[{"role": "user", "content": "hi", "created_at": -1e18}]}'
    )
    result = q("--import", str(far), home=rill_home)
    assert result.returncode == 1 and "messages[0].created_at" in result.stderr
    assert q("--history", home=rill_home).stdout == ""  # nothing partial was imported


def test_a_huge_search_uses_the_first_words_and_says_so(rill_home: Path) -> None:
    words = " ".join(f"w{i}" for i in range(15_000))  # about 90 KB, under one argument's limit
    result = q("--search", words, home=rill_home)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "q: the search is long; only its first 32 words are used.\n"
