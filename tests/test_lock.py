"""The output folder lock: one command at a time, a clear message naming the holder, stale
locks taken over, re-entrant for refresh -> run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adgen.errors import OutputError
from adgen.output.lock import LOCK_FILE, output_lock, read_holder
from tests.conftest import REPO

HOLD = """
import sys, time
from pathlib import Path
from adgen.output.lock import output_lock
with output_lock(Path(sys.argv[1]), "run"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_command_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        with pytest.raises(OutputError) as info, output_lock(out, "refresh", wait=0):
            pass
        message = str(info.value)
        assert f"PID {proc.pid}" in message and socket.gethostname() in message
        assert "adgen run" in message and "since 20" in message and "--wait" in message
        # waiting: still refused after the timeout, having waited
        with pytest.raises(OutputError, match=r"waited 0\.3 s"), output_lock(out, "run",
                                                                          wait=0.3):
            pass
    finally:
        proc.kill()
        proc.wait()
    # the holder was killed (SIGKILL: no clean-up): its lock file is still there, naming a
    # dead process, and is taken over
    assert read_holder(out)["pid"] == proc.pid
    with output_lock(out, "run"):
        assert read_holder(out)["pid"] == os.getpid()
    assert (out / LOCK_FILE).exists() and read_holder(out) == {}


def test_waiting_command_gets_the_folder_when_the_holder_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    threading.Timer(0.3, lambda: proc.send_signal(signal.SIGTERM)).start()
    try:
        with output_lock(out, "run", wait=30):
            assert read_holder(out)["command"] == "run"
    finally:
        proc.wait()


def test_reentrant_in_a_thread_but_not_across_threads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    errors: list[Exception] = []

    def other() -> None:
        try:
            with output_lock(out, "report"):
                pass
        except OutputError as exc:
            errors.append(exc)

    with output_lock(out, "refresh"), output_lock(out, "run"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "in use" in str(errors[0])
    with output_lock(out, "run"):  # released after the outer block
        pass


def test_output_path_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("not a folder")
    with pytest.raises(OutputError, match="is a file, not a folder"), output_lock(target, "run"):
        pass
    assert target.read_text() == "not a folder"


def test_read_only_commands_do_not_create_missing_folders(tmp_path: Path) -> None:
    with output_lock(tmp_path / "missing", "report", create=False):
        pass
    assert not (tmp_path / "missing").exists()


def test_concurrent_cli_runs_one_refused(tmp_path: Path, campaign_file: Path) -> None:
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "adgen", "run", str(campaign_file)],
                              capture_output=True, text=True, env=env, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and f"PID {proc.pid}" in done.stderr
    assert not (out / "manifest.csv").exists()
