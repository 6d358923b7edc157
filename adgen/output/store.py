"""Where outputs live: a local folder or an object-store URL, behind one small interface.

:class:`OutputStore` reads and writes files relative to an output location. :func:`open_store`
gives the implementation for a location: :class:`LocalStore` for a local path,
:class:`ObjectStore` for any URL :mod:`pyarrow.fs` opens (``s3://``, ``gs://``, ``hdfs://``) or,
failing that, fsspec (``az://``, ``memory://``…). Credentials come from the usual environment
(``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for S3-compatible servers, instance roles…).

Write semantics: a local folder gets each file through a temporary name and an atomic rename;
an object store has no rename, so each object is written once, by one PUT that readers see
whole or not at all. Content-addressed files (assets, cached renders) are written with
:meth:`OutputStore.write_once`: a retried worker finds the object there and writes nothing.
The manifest is written last; a reader trusts only what the manifest lists.

Code that works on files (analysis, refresh, the review sheet) uses
:func:`adgen.output.mirror.open_output`: on a URL it gets a local mirror of the output's small
files.

A store that fails in the middle of a command raises :class:`~adgen.errors.StoreError` naming
the URL (exit code 1: what was written is kept, the same command again finishes);
:meth:`OutputStore.check_writable` finds a missing bucket, wrong credentials, a read-only
folder or a file in the way before anything is made.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from adgen.errors import CampaignError, OutputError, StoreError
from adgen.output.files import atomic_write_bytes, no_links, prune_owned

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
ASSETS_DIR = "assets"
"""Where a run's asset files go, under the output."""
CACHE_DIR = ".cache"
"""Where the render cache (``renders/``) and this machine's catalog downloads go."""
LOCK_FILE = ".adgen.lock"
"""A local folder's lock file (:mod:`adgen.output.lock`)."""
LEASE_DIR = ".adgen-lock"
"""Where a URL output's lock lives in the store (:mod:`adgen.output.lease`)."""


def is_url(location: str | Path) -> bool:
    """True for ``scheme://…`` locations other than ``file://``."""
    text = str(location)
    return bool(_URL.match(text)) and not text.startswith("file://")


def join(location: str | Path, *parts: str) -> str:
    """``location`` with ``parts`` appended (``/`` for URLs, the OS separator for paths)."""
    if is_url(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location).joinpath(*parts))


def open_store(location: str | Path) -> OutputStore:
    """The store of ``location``: a :class:`LocalStore` for a path, an :class:`ObjectStore` for
    a URL."""
    return ObjectStore(location) if is_url(location) else LocalStore(location)


class OutputStore(ABC):
    """Files under one location, named by relative POSIX paths (``assets/v1/story-1a2b.jpg``).
    Picklable: a worker reopens it with its own credentials."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (type(self), (self.location,))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    @abstractmethod
    def url(self, rel: str) -> str:
        """Where the file is, as the user would write it (a path or a URL)."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise :class:`OutputError` naming the output and what to fix unless files can be
        written here. Writes nothing that stays and creates no folder."""

    @abstractmethod
    def exists(self, rel: str) -> bool:
        """Whether the file is there."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes (:class:`FileNotFoundError` when it is not there)."""

    @abstractmethod
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace the file, so that readers see the old bytes or the new ones, whole."""

    def write_once(self, rel: str, data: bytes) -> bool:
        """Write a content-addressed file unless it is there already; True if written."""
        if self.exists(rel):
            return False
        self.write_bytes(rel, data)
        return True

    @abstractmethod
    def files(self, prefix: str = "", *, skip: tuple[str, ...] = ()) -> list[str]:
        """Every file under ``prefix`` (relative paths, sorted; temporary files left out),
        except under the top-level folders named in ``skip`` (which are not even listed)."""

    @abstractmethod
    def delete(self, rel: str) -> None:
        """Delete the file (nothing happens when it is not there)."""

    @abstractmethod
    def remove_empty_folders(self, prefix: str) -> None:
        """Delete empty folders under ``prefix``."""

    @abstractmethod
    def mtime(self, rel: str) -> float | None:
        """Modification time (seconds since the epoch), where the store keeps one."""

    @abstractmethod
    def local_copy(self, rel: str) -> contextlib.AbstractContextManager[Path]:
        """A local path holding the file for the block (for tools that read files): the file
        itself in a folder, a temporary copy of an object (a missing one: a path where no file
        is)."""

    @abstractmethod
    def check_inside(self, rel: str) -> None:
        """Raise :class:`OutputError` when writing ``rel`` would leave the output (through a
        symbolic link)."""

    @abstractmethod
    def prune_assets(self, keep: set[str]) -> list[str]:
        """Delete the asset files an earlier run wrote that ``keep`` (the committed manifest's
        paths) no longer lists; returns what was deleted. Call it once the manifest is
        committed (:func:`adgen.output.mirror.after_commit`)."""


class LocalStore(OutputStore):
    """A folder on this machine: each file written through a temporary name and an atomic
    rename; nothing is ever written or deleted through a symbolic link."""

    def __init__(self, location: str | Path) -> None:
        super().__init__(location)
        self.root = Path(self.location).expanduser().resolve()

    def local_path(self, rel: str) -> Path:
        """The file's path."""
        return self.root.joinpath(*PurePosixPath(_checked(rel)).parts)

    def url(self, rel: str) -> str:
        return str(self.local_path(rel))

    def check_writable(self) -> None:
        """That the folder is (or can be made) a writable folder."""
        check_folder(self.root)

    def exists(self, rel: str) -> bool:
        return self.local_path(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return self.local_path(rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        atomic_write_bytes(self.local_path(rel), data)

    def files(self, prefix: str = "", *, skip: tuple[str, ...] = ()) -> list[str]:
        base = self.local_path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found = [p.relative_to(self.root).as_posix() for p in base.rglob("*")
                 if p.is_file() and p.relative_to(self.root).parts[0] not in skip]
        return _visible(found)

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.local_path(rel).unlink()

    def remove_empty_folders(self, prefix: str) -> None:
        base = self.local_path(prefix)
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def mtime(self, rel: str) -> float | None:
        return self.local_path(rel).stat().st_mtime

    def check_inside(self, rel: str) -> None:
        no_links(self.root, rel)

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        yield self.local_path(rel)

    def prune_assets(self, keep: set[str]) -> list[str]:
        """Only files adgen wrote (its record, :data:`~adgen.output.files.OWNED_FILE`) are
        deleted: a folder may hold files of others."""
        return prune_owned(self.root, keep)


class ObjectStore(OutputStore):
    """A prefix in an object store: one whole-object PUT per write."""

    def __init__(self, location: str | Path) -> None:
        super().__init__(location)
        self._fs, self.root_key = _open_filesystem(self.location)

    def _key(self, rel: str) -> str:
        return f"{self.root_key.rstrip('/')}/{_checked(rel)}"

    def url(self, rel: str) -> str:
        return join(self.location, rel)

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
        """That a probe object can be written (and is deleted again)."""
        probe = self._key(f"{LEASE_DIR}/probe-{uuid.uuid4().hex}")
        try:
            with self._fs.open_output_stream(probe) as handle:
                handle.write(b"")
            self._fs.delete_file(probe)
        except OSError as exc:
            raise OutputError(f"{self.location}: cannot write here: {store_problem(exc)}"
                              ) from None

    def exists(self, rel: str) -> bool:
        from pyarrow.fs import FileType

        with self._calling(rel):
            return bool(self._fs.get_file_info(self._key(rel)).type == FileType.File)

    def read_bytes(self, rel: str) -> bytes:
        with self._calling(rel), self._fs.open_input_stream(self._key(rel)) as handle:
            return bytes(handle.read())

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self._calling(rel), self._fs.open_output_stream(self._key(rel)) as handle:
            handle.write(data)

    def files(self, prefix: str = "", *, skip: tuple[str, ...] = ()) -> list[str]:
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
        return _visible(found)

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._calling(rel):
            self._fs.delete_file(self._key(rel))

    def remove_empty_folders(self, prefix: str) -> None:
        """Delete the empty "folder" markers some clients leave behind after a delete."""
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

    def mtime(self, rel: str) -> float | None:
        with self._calling(rel):
            info = self._fs.get_file_info(self._key(rel))
        return info.mtime.timestamp() if info.mtime is not None else None

    def check_inside(self, rel: str) -> None:
        """Nothing to check: an object store has no links."""

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / PurePosixPath(rel).name
            with contextlib.suppress(FileNotFoundError):
                local.write_bytes(self.read_bytes(rel))
            yield local

    def prune_assets(self, keep: set[str]) -> list[str]:
        """Any file under ``assets/`` that ``keep`` does not list (e.g. after a caption change,
        or written by a run whose commit failed): that prefix is adgen's alone."""
        deleted = [name for name in self.files(ASSETS_DIR) if name not in keep]
        for name in deleted:
            self.delete(name)
        self.remove_empty_folders(ASSETS_DIR)
        return deleted


def _visible(found: list[str]) -> list[str]:
    """``found`` sorted, temporary files left out."""
    return sorted(f for f in found if not PurePosixPath(f).name.endswith(".tmp"))


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
