"""Where outputs live: a local folder or an object-store URL, behind one small interface.

:class:`OutputStore` reads and writes files relative to an output location: a local path, or
any URL :mod:`pyarrow.fs` opens (``s3://``, ``gs://``, ``hdfs://``, ``file://``) or, failing
that, fsspec (``az://``, ``memory://``…). Credentials come from the usual environment
(``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for S3-compatible servers, instance roles…).

Write semantics: a local folder gets each file through a temporary name and an atomic rename;
an object store has no rename, so each object is written once, by one PUT that readers see
whole or not at all. Content-addressed files (assets, cached renders) are written with
:meth:`OutputStore.write_once`: a retried worker finds the object there and writes nothing.
The manifest is written last; a reader trusts only what the manifest lists.

Code that works on files (analysis, refresh, the review sheet) uses :func:`open_output`: on a
URL it gets a local mirror of the output's small files (everything but ``assets/`` and
``.cache/``), pulled first and pushed back when the block succeeds: the experiment state and the
manifest last (the commit), and only then is anything deleted (:func:`after_commit`).

A store that fails in the middle of a command raises :class:`~adgen.errors.StoreError` naming
the URL (exit code 1: what was written is kept, the same command again finishes);
:meth:`OutputStore.check_writable` finds a missing bucket, wrong credentials, a read-only
folder or a file in the way before anything is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from adgen.errors import CampaignError, OutputError, StoreError
from adgen.store import atomic_write_bytes

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
COMMIT_FILES = ("refresh.json", "manifest.csv", "manifest.parquet")
"""Pushed last, in this order: the experiment state after the ledger parts it counts, then the
manifest (a reader trusts only what the manifest lists)."""
BULK_FOLDERS = ("assets", ".cache")
"""Folders that stay in the store: never mirrored locally."""
LOCK_FILE = ".adgen.lock"
"""A local folder's lock file (:mod:`adgen.lock`)."""
LEASE_DIR = ".adgen-lock"
"""Where a URL output's lock lives in the store (:mod:`adgen.lease`)."""
NOT_MIRRORED = (*BULK_FOLDERS, LOCK_FILE, LEASE_DIR)
"""Top-level names a mirror neither pulls nor pushes. A mirror's own ``.cache`` holds this
machine's caches (catalog downloads and cut-outs) and survives pulls."""


def is_url(location: str | Path) -> bool:
    """True for ``scheme://…`` locations other than ``file://``."""
    text = str(location)
    return bool(_URL.match(text)) and not text.startswith("file://")


def join(location: str | Path, *parts: str) -> str:
    """``location`` with ``parts`` appended (``/`` for URLs, the OS separator for paths)."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location).joinpath(*parts))


class OutputStore:
    """Files under one location. Picklable: a worker reopens it with its own credentials."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self.local = not is_url(location)
        if self.local:
            self.root = Path(self.location).expanduser().resolve()
            self._fs: Any = None
        else:
            self._fs, self.root_key = _open_filesystem(self.location)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (OutputStore, (self.location,))

    def __repr__(self) -> str:
        return f"OutputStore({self.location!r})"

    def _key(self, rel: str) -> str:
        return f"{self.root_key.rstrip('/')}/{_checked(rel)}"

    def local_path(self, rel: str) -> Path:
        """The file's path, for a local store only."""
        return self.root.joinpath(*PurePosixPath(_checked(rel)).parts)

    def url(self, rel: str) -> str:
        """Where the file is, as the user would write it (a path or a URL)."""
        return str(self.local_path(rel)) if self.local else join(self.location, rel)

    @contextlib.contextmanager
    def _calling(self, rel: str = "") -> Iterator[None]:
        """The store's errors as :class:`StoreError` naming the URL (a missing file stays a
        :class:`FileNotFoundError`)."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            text = str(exc).lower()
            if ("not found" in text or "does not exist" in text) and "bucket" not in text:
                raise FileNotFoundError(self.url(rel) if rel else self.location) from None
            raise StoreError(self.url(rel) if rel else self.location,
                             store_problem(exc)) from None

    def check_writable(self) -> None:
        """Raise :class:`OutputError` naming the output and what to fix unless files can be
        written here: for a folder, that it is (or can be made) a writable folder; for a
        store, that a probe object can be written (and is deleted again). Writes nothing
        else and creates no folder."""
        if self.local:
            check_folder(self.root)
            return
        probe = self._key(f"{LEASE_DIR}/probe-{uuid.uuid4().hex}")
        try:
            with self._fs.open_output_stream(probe) as handle:
                handle.write(b"")
            self._fs.delete_file(probe)
        except OSError as exc:
            raise OutputError(f"{self.location}: cannot write here: {store_problem(exc)}"
                              ) from None

    def exists(self, rel: str) -> bool:
        if self.local:
            return self.local_path(rel).is_file()
        from pyarrow.fs import FileType

        with self._calling(rel):
            return bool(self._fs.get_file_info(self._key(rel)).type == FileType.File)

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes (:class:`FileNotFoundError` when it is not there)."""
        if self.local:
            return self.local_path(rel).read_bytes()
        with self._calling(rel), self._fs.open_input_stream(self._key(rel)) as handle:
            return bytes(handle.read())

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace the file: atomic rename locally, one whole-object PUT on a store."""
        if self.local:
            atomic_write_bytes(self.local_path(rel), data)
            return
        with self._calling(rel), self._fs.open_output_stream(self._key(rel)) as handle:
            handle.write(data)

    def write_once(self, rel: str, data: bytes) -> bool:
        """Write a content-addressed file unless it is there already; True if written."""
        if self.exists(rel):
            return False
        self.write_bytes(rel, data)
        return True

    def files(self, prefix: str = "", *, skip: tuple[str, ...] = ()) -> list[str]:
        """Every file under ``prefix`` (relative paths, sorted; temporary files left out),
        except under the top-level folders named in ``skip`` (which are not even listed)."""
        if self.local:
            base = self.local_path(prefix) if prefix else self.root
            if not base.is_dir():
                return []
            found = [p.relative_to(self.root).as_posix() for p in base.rglob("*")
                     if p.is_file() and p.relative_to(self.root).parts[0] not in skip]
        else:
            from pyarrow.fs import FileSelector, FileType

            base_key = self._key(prefix) if prefix else self.root_key.rstrip("/")
            start = len(self.root_key.rstrip("/")) + 1
            found, folders = [], [base_key]
            while folders:  # folder by folder when skipping, so skipped ones are not listed
                selector = FileSelector(folders.pop(), recursive=not skip, allow_not_found=True)
                with self._calling(prefix):
                    infos = self._fs.get_file_info(selector)
                for info in infos:
                    rel = info.path[start:]
                    if rel.split("/")[0] in skip:
                        continue
                    if info.type == FileType.File:
                        found.append(rel)
                    elif skip and info.type == FileType.Directory:
                        folders.append(info.path)
        return sorted(f for f in found if not PurePosixPath(f).name.endswith(".tmp"))

    def delete(self, rel: str) -> None:
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                self.local_path(rel).unlink()
            return
        with contextlib.suppress(FileNotFoundError), self._calling(rel):
            self._fs.delete_file(self._key(rel))

    def remove_empty_folders(self, prefix: str) -> None:
        """Delete empty folders under ``prefix`` (on a store: the empty "folder" markers some
        clients leave behind after a delete)."""
        if not self.local:
            from pyarrow.fs import FileSelector, FileType

            selector = FileSelector(self._key(prefix), recursive=True, allow_not_found=True)
            with self._calling(prefix):
                infos = self._fs.get_file_info(selector)
            files = [i.path for i in infos if i.type == FileType.File]
            for info in infos:
                if info.type == FileType.Directory and not any(
                        f.startswith(info.path.rstrip("/") + "/") for f in files):
                    with contextlib.suppress(FileNotFoundError, OSError):
                        self._fs.delete_dir(info.path)
            return
        base = self.local_path(prefix)
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def mtime(self, rel: str) -> float | None:
        """Modification time (seconds since the epoch), where the store keeps one."""
        if self.local:
            return self.local_path(rel).stat().st_mtime
        with self._calling(rel):
            info = self._fs.get_file_info(self._key(rel))
        return info.mtime.timestamp() if info.mtime is not None else None


def _checked(rel: str) -> str:
    """``rel`` if it is a relative path inside the output, else :class:`ValueError`."""
    posix = PurePosixPath(rel)
    if not rel or posix.is_absolute() or ".." in posix.parts or "\\" in rel:
        raise ValueError(f"{rel!r} is not a relative path inside the output")
    return posix.as_posix()


def _open_filesystem(location: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the root key for ``location``; fsspec for other schemes."""
    from pyarrow import fs

    try:
        filesystem, key = fs.FileSystem.from_uri(location)
        return filesystem, key
    except (ValueError, OSError, ImportError) as arrow_error:
        try:
            import fsspec
            from fsspec.core import url_to_fs
        except ImportError:  # pragma: no cover - fsspec ships with the dependencies
            raise CampaignError(f"output {location!r}: {arrow_error}") from None
        try:
            spec_fs, key = url_to_fs(location)
        except (ValueError, ImportError) as exc:
            raise CampaignError(
                f"output {location!r}: cannot open this location ({exc}); use a local path or "
                "a URL pyarrow or fsspec supports (s3://, gs://, az:// with its package)"
            ) from None
        del fsspec
        return fs.PyFileSystem(fs.FSSpecHandler(spec_fs)), str(key)


# --- what goes wrong: one line naming the output and what to fix ---------------------------

_PROBLEMS = (
    (("NO_SUCH_BUCKET", "NoSuchBucket"), "the bucket does not exist: create it, or fix the URL"),
    (("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId",
      "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "EXPIRED_TOKEN", "ExpiredToken",
      "InvalidToken", "Forbidden"),
     "access denied: check the credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
     "AWS_SECRET_ACCESS_KEY) and the bucket's permissions"),
    (("NETWORK_CONNECTION", "Could not connect", "EndpointConnectionError",
      "Connection refused", "ConnectTimeout", "timed out"),
     "cannot reach the store (check AWS_ENDPOINT_URL and the network)"),
)


def store_problem(exc: BaseException) -> str:
    """What a store's error means, in a few words (known codes get their fix), one line."""
    if isinstance(exc, StoreError):
        return exc.reason
    text = f"{type(exc).__name__}: {exc}"
    for needles, advice in _PROBLEMS:
        if any(needle in text for needle in needles):
            return advice
    line = " ".join(str(exc).split())
    return f"the store failed ({line[:200]}{'…' if len(line) > 200 else ''})"


def check_folder(root: Path) -> None:
    """:class:`OutputError` unless ``root`` is a writable folder, or can be created as one (its
    nearest existing parent is a writable folder). Creates nothing that stays."""
    existing = root
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        if existing == root:
            raise OutputError(f"{root}: the output path is a file, not a folder; give a folder "
                              "(--out DIR or output: in the campaign)")
        raise OutputError(f"{root}: cannot create the output folder, {existing} is a file; "
                          "give another folder")
    if existing != root:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{root}: cannot create the output folder, {existing} is not "
                              "writable; give a writable folder, or fix its permissions")
        return
    try:
        fd, probe = tempfile.mkstemp(dir=root, prefix=".adgen-probe-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{root}: the output folder is not writable ({exc.strerror}); give "
                          "a writable folder, or fix its permissions") from None
    os.close(fd)
    os.unlink(probe)


# --- local mirrors of remote outputs -------------------------------------------------------


@dataclass
class _Mirror:
    depth: int = 0
    after: list[Callable[[], None]] = field(default_factory=list)


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
    """The local folder whose lock (:func:`adgen.lock.output_lock`) guards the output on this
    machine: the folder itself, or for a URL a folder beside its mirror (which pulls leave
    alone). Other machines writing a URL output are kept out by :mod:`adgen.lease`."""
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
        store = OutputStore(url)
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


def after_commit(location: str | Path, action: Callable[[], None]) -> None:
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


def _pull(store: OutputStore, folder: Path) -> dict[str, str]:
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


def _push(store: OutputStore, folder: Path, pulled: dict[str, str]) -> None:
    """Upload what changed since the pull (:data:`COMMIT_FILES` last), then delete what was
    removed. Refused (nothing written) when this command lost the output's lock."""
    from adgen.lease import check_lease

    check_lease(store.location)
    local = _mirrored(folder)
    changed = [name for name, path in sorted(local.items())
               if pulled.get(name) != hashlib.sha256(path.read_bytes()).hexdigest()]
    changed.sort(key=lambda name: COMMIT_FILES.index(name) + 1 if name in COMMIT_FILES else 0)
    for name in changed:
        store.write_bytes(name, local[name].read_bytes())
    for name in sorted(set(pulled) - set(local)):
        store.delete(name)


def scratch_dir() -> Path:
    """A node-local folder for temporary files (``TMPDIR`` of the process)."""
    path = Path(tempfile.gettempdir()) / "adgen"
    path.mkdir(parents=True, exist_ok=True)
    return path
