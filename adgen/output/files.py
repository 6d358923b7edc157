"""Files in a local folder: atomic writes, safe CSV, and the record of what adgen wrote.

Every file is written to a temporary name in the same folder and renamed into place, so a killed
run never leaves a half-written file under a final name. CSV written for people is safe to open
in a spreadsheet (:func:`safe_csv`). Under an output folder, adgen deletes only files it wrote
(:func:`prune_owned`) and never writes or deletes through a symbolic link (:func:`no_links`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from adgen.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    with _atomic(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


@contextlib.contextmanager
def _atomic(path: Path, mode: str, **kwargs: Any) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


_FORMULA_START = r"[=+\-@\t\r]"
"""What a spreadsheet may read as the start of a formula."""


def safe_csv(frame: pd.DataFrame) -> str:
    """CSV text that is safe to open in a spreadsheet: text cells starting with ``=``, ``+``,
    ``-``, ``@``, tab or CR get a leading apostrophe so they are not run as formulas."""
    safe = frame.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(
            safe[column]
        ):
            text = safe[column].astype("string")
            risky = text.str.contains(f"^{_FORMULA_START}", regex=True).fillna(False).astype(bool)
            safe[column] = text.mask(risky, "'" + text)
    return safe.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def unguard(values: pd.Series) -> pd.Series:
    """Undo :func:`safe_csv`'s formula guard (the leading apostrophe) on text values."""
    return values.str.replace(f"^'(?={_FORMULA_START})", "", regex=True)


def read_safe_csv(path: Path) -> pd.DataFrame:
    """Read a CSV written with :func:`safe_csv`: every value as text, guards removed."""
    return pd.read_csv(path, dtype=str, keep_default_na=False).apply(unguard)


# -- the output folder is adgen's own: what it wrote, links, leftovers ---------------------

OWNED_FILE = ".adgen-files.json"
"""The record of files adgen wrote under an output folder (relative paths): only these are
ever pruned."""
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what ``_atomic`` names its temp files


def no_links(out: Path, rel: str | Path) -> Path:
    """``out / rel``, after checking that no folder or file between ``out`` and it is a
    symbolic link, so a write or delete there stays inside the output folder; raises
    :class:`OutputError` naming the link."""
    path = Path(out)
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            raise OutputError(
                f"{path} is a symbolic link; adgen never writes or deletes through links out of "
                "its output folder: remove the link (or choose another output folder)")
    return path


def read_owned(out: Path) -> set[str]:
    """The paths (relative, POSIX) of files adgen wrote under ``out``."""
    try:
        data = json.loads((Path(out) / OWNED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(p) for p in data} if isinstance(data, list) else set()


def write_owned(out: Path, paths: set[str]) -> None:
    atomic_write_text(Path(out) / OWNED_FILE, json.dumps(sorted(paths), indent=0))


def prune_owned(out: Path, keep: set[str]) -> list[str]:
    """Delete the files adgen wrote earlier (its record) that ``keep`` no longer lists, then
    folders they leave empty; foreign files and anything behind a link are never touched.
    Returns the paths deleted."""
    out = Path(out)
    owned = read_owned(out)
    write_owned(out, owned | keep)  # a crash below leaves a record that still covers both
    deleted = []
    for rel in sorted(owned - keep):
        try:
            path = no_links(out, rel)
        except OutputError:
            continue
        if path.is_file():
            path.unlink()
            deleted.append(rel)
        folder = path.parent
        while folder != out and not folder.is_symlink() and folder.is_dir() and not any(
                folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    write_owned(out, keep)
    return deleted


def remove_orphaned_temps(out: Path) -> int:
    """Delete temporary files a killed run left (``.<name>.<random>.tmp``) under ``out``,
    without following links; returns how many."""
    removed = 0
    for folder, _dirs, files in os.walk(out):  # os.walk does not follow links by default
        for name in files:
            path = Path(folder) / name
            if _TEMP_NAME.match(name) and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


def scratch_dir() -> Path:
    """A node-local folder for temporary files (``TMPDIR`` of the process)."""
    path = Path(tempfile.gettempdir()) / "adgen"
    path.mkdir(parents=True, exist_ok=True)
    return path
