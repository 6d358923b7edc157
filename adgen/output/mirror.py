"""Local mirrors of URL outputs: code that works on files (analysis, refresh, the review sheet)
works in a local folder whatever the output is.

:func:`open_output` gives the output's local folder for a block: the output itself, or for a
URL a mirror of its small files (everything but ``assets/`` and ``.cache/``), pulled first and
pushed back when the block succeeds: the experiment state and the manifest last (the commit),
and only then is anything deleted (:func:`after_commit`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from adgen.output.files import atomic_write_bytes
from adgen.output.lease import check_lease
from adgen.output.store import (
    ASSETS_DIR,
    CACHE_DIR,
    LEASE_DIR,
    LOCK_FILE,
    ObjectStore,
    is_url,
)

COMMIT_FILES = ("refresh.json", "manifest.csv", "manifest.parquet")
"""Pushed last, in this order: the experiment state after the ledger parts it counts, then the
manifest (a reader trusts only what the manifest lists)."""
BULK_FOLDERS = (ASSETS_DIR, CACHE_DIR)
"""Folders that stay in the store: never mirrored locally."""
NOT_MIRRORED = (*BULK_FOLDERS, LOCK_FILE, LEASE_DIR)
"""Top-level names a mirror neither pulls nor pushes. A mirror's own ``.cache`` holds this
machine's caches (catalog downloads and cut-outs) and survives pulls."""


@dataclass
class _Mirror:
    depth: int = 0
    after: list[Callable[[], object]] = field(default_factory=list)


_open_mirrors: dict[str, _Mirror] = {}
_mirror_urls: dict[Path, str] = {}
_mirror_lock = threading.Lock()


def mirror_folder(location: str) -> Path:
    """The local folder that mirrors a URL output's small files (``ADGEN_MIRROR_DIR``, else
    ``~/.cache/adgen/mirrors``), one per URL."""
    base = os.environ.get("ADGEN_MIRROR_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "adgen", "mirrors")
    url = location.rstrip("/")
    folder = Path(base) / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    with _mirror_lock:
        _mirror_urls[folder] = url
    return folder


def shown(folder: str | Path) -> str:
    """How to name a local folder to the user: a mirror's URL, else the folder itself."""
    with _mirror_lock:
        return _mirror_urls.get(Path(folder), str(folder))


def output_folder(location: str | Path) -> Path:
    """The local folder code works in: the output itself, or a URL's mirror."""
    return mirror_folder(str(location)) if is_url(location) else Path(location)


def lock_folder(location: str | Path) -> Path:
    """The local folder whose lock (:func:`adgen.output.lock.output_lock`) guards the output on
    this machine: the folder itself, or for a URL a folder beside its mirror (which pulls leave
    alone). Other machines writing a URL output are kept out by :mod:`adgen.output.lease`."""
    if not is_url(location):
        return Path(location)
    mirror = mirror_folder(str(location).rstrip("/"))
    return mirror.with_name(mirror.name + ".lock")


@contextlib.contextmanager
def open_output(location: str | Path, *, push: bool = True) -> Iterator[Path]:
    """The output's local folder for the block. For a URL: its small files are pulled into
    the mirror first; when the block succeeds, the files it changed are pushed back (the
    commit: :data:`COMMIT_FILES` last), then the files it deleted are deleted and the
    :func:`after_commit` actions run. A block that fails, or a push that fails, deletes
    nothing. Re-entrant: a nested block for the same URL shares the outer one's mirror and
    the outer one pushes."""
    if not is_url(location):
        yield Path(location)
        return
    url = str(location).rstrip("/")
    with _mirror_lock:
        mirror = _open_mirrors.setdefault(url, _Mirror())
        mirror.depth += 1
        nested = mirror.depth > 1
    try:
        folder = mirror_folder(url)
        if nested:
            yield folder
            return
        store = ObjectStore(url)
        pulled = _pull(store, folder)
        yield folder
        if push:
            _push(store, folder, pulled)
            for action in mirror.after:
                action()
    finally:
        with _mirror_lock:
            mirror.depth -= 1
            if not mirror.depth:
                del _open_mirrors[url]


def after_commit(location: str | Path, action: Callable[[], object]) -> None:
    """Run ``action`` (a deletion) once what the block wrote is committed: for a URL with an
    open mirror, after its outermost :func:`open_output` block has pushed (never, if that
    fails); otherwise at once."""
    url = str(location).rstrip("/")
    with _mirror_lock:
        mirror = _open_mirrors.get(url) if is_url(location) else None
        if mirror is not None:
            mirror.after.append(action)
            return
    action()


def _mirrored(folder: Path) -> dict[str, Path]:
    """The mirror's files a push considers (relative POSIX name → path)."""
    return {rel: path for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(".tmp")
            and (rel := path.relative_to(folder).as_posix()).split("/")[0] not in NOT_MIRRORED}


def _pull(store: ObjectStore, folder: Path) -> dict[str, str]:
    """Make ``folder`` equal to the store's small files (the :data:`NOT_MIRRORED` names in it
    are left alone); returns their sha256 by name."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.name in NOT_MIRRORED:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    hashes = {}
    for name in store.files(skip=NOT_MIRRORED):
        data = store.read_bytes(name)
        atomic_write_bytes(folder.joinpath(*PurePosixPath(name).parts), data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


def _push(store: ObjectStore, folder: Path, pulled: dict[str, str]) -> None:
    """Upload what changed since the pull (:data:`COMMIT_FILES` last), then delete what was
    removed. Refused (nothing written) when this command lost the output's lock."""
    check_lease(store.location)
    local = _mirrored(folder)
    changed = [name for name, path in sorted(local.items())
               if pulled.get(name) != hashlib.sha256(path.read_bytes()).hexdigest()]
    changed.sort(key=lambda name: COMMIT_FILES.index(name) + 1 if name in COMMIT_FILES else 0)
    for name in changed:
        store.write_bytes(name, local[name].read_bytes())
    for name in sorted(set(pulled) - set(local)):
        store.delete(name)
