"""One command at a time per output: ``with output_lock(out, "run"): ...``.

The lock is an advisory ``flock`` on ``<out>/.adgen.lock``, which also records the holder
(host, PID, command, since when) for the error message a second command gets. The kernel
releases the lock when its holder exits, however it exits, so a lock left by a killed run is
taken over by the next command without any clean-up; a lock file whose recorded holder is a dead
process on this host is simply reused. A command waits up to ``wait`` seconds (default: the
``ADGEN_LOCK_WAIT`` environment variable, else 0 = fail at once) for a busy folder.

The lock is re-entrant within a thread (``refresh`` holds it and calls ``run``); another thread
of the same process is refused like another process.

A URL output is locked on this machine by a lock folder beside its mirror, and against other
machines by a lease in the store (:mod:`adgen.output.lease`), which commands that only read it
(``writes=False``) do not take.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adgen.errors import OutputError
from adgen.output.lease import describe_holder, hold_lease, holder_record
from adgen.output.mirror import lock_folder
from adgen.output.store import LOCK_FILE, check_folder, is_url

WAIT_ENV = "ADGEN_LOCK_WAIT"
_POLL_S = 0.1

_held: dict[Path, tuple[int, int, int]] = {}  # folder -> (fd, owning thread id, depth)
_registry = threading.Lock()


def prepare_output(out: Path) -> Path:
    """Create the output folder if needed; :class:`OutputError` if ``out`` is a file (or a
    symlink to one), is not writable, or cannot be created."""
    out = Path(out)
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror}); give "
                          "another folder") from None
    return out


def read_holder(out: Path) -> dict[str, Any]:
    """What the lock file says about its (last) holder; empty when unreadable."""
    try:
        data = json.loads((Path(out) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _wait_seconds(wait: float | None) -> float:
    if wait is not None:
        return max(0.0, float(wait))
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        raise OutputError(f"{WAIT_ENV}={raw!r} is not a number of seconds") from None


@contextlib.contextmanager
def output_lock(out: str | Path, command: str, *, wait: float | None = None,
                create: bool = True, writes: bool = True) -> Iterator[Path]:
    """Hold the output ``out`` (a folder or a URL) for ``command`` until the block ends.
    Raises :class:`OutputError` naming the holder when another command holds it for longer
    than ``wait`` seconds. ``create=False`` (commands that work on an existing run's folder): a
    folder that does not exist is not created, and the block runs unlocked. ``writes=False``
    (commands that only read): a URL output's lease is not taken, and a read-only folder is
    read unlocked."""
    seconds = _wait_seconds(wait)
    if not is_url(out):
        if not writes and Path(out).is_dir() and not os.access(out, os.W_OK | os.X_OK):
            yield Path(out)  # a read-only folder (an archive): nothing to lock against
            return
        with _folder_lock(Path(out), command, seconds, create) as (folder, _):
            yield folder
        return
    with _folder_lock(lock_folder(out), command, seconds, True) as (folder, outer):
        if outer and writes:
            with hold_lease(str(out), command, seconds):
                yield folder
        else:
            yield folder


@contextlib.contextmanager
def _folder_lock(out: Path, command: str, wait: float,
                 create: bool) -> Iterator[tuple[Path, bool]]:
    """The local lock of ``out``; yields the folder and whether this is the outermost hold."""
    if not create and not out.is_dir():
        yield out, False
        return
    folder = prepare_output(out).resolve()
    me = threading.get_ident()
    with _registry:
        held = _held.get(folder)
        if held is not None and held[1] == me:
            _held[folder] = (held[0], me, held[2] + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield folder, False
        finally:
            with _registry:
                fd, owner, depth = _held[folder]
                _held[folder] = (fd, owner, depth - 1)
        return
    fd = _acquire(folder, command, wait)
    with _registry:
        _held[folder] = (fd, me, 1)
    try:
        yield folder, True
    finally:
        with _registry:
            del _held[folder]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no holder recorded once released
        os.close(fd)  # closing releases the flock


def _acquire(folder: Path, command: str, wait: float) -> int:
    path = folder / LOCK_FILE
    if path.is_symlink():
        path.unlink()  # never follow a link planted where the lock goes
    deadline = time.monotonic() + wait
    while True:
        with _registry:
            busy_here = folder in _held  # another thread of this process
        if not busy_here:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
            except OSError as exc:
                os.close(fd)
                raise OutputError(f"{folder}: cannot lock the output folder ({exc}); use a "
                                  "local folder that supports file locks") from None
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder_record(command)).encode(), 0)
                return fd
        if time.monotonic() >= deadline:
            hint = (f"waited {wait:g} s; " if wait else "") + (
                f"wait for it to finish, or retry with --wait SECONDS (or {WAIT_ENV})")
            raise OutputError(f"{folder}: the output folder is in use by "
                              f"{describe_holder(read_holder(folder))}; {hint}")
        time.sleep(_POLL_S)
