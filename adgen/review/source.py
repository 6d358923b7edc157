"""What a review reads of an output: its manifest and the other small files its page shows.

A folder is read in place; a URL output's files are read straight from the store into a folder
of the caller's (never the shared mirror, which a run on this machine may be using), so looking
at a review never waits for a run. Every file is written atomically, so each read sees a whole
file, and the manifest is the commit point of a run: the page trusts only what it lists.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pandas as pd

from adgen.errors import AssetError, OutputError
from adgen.manifest import MANIFEST_CSV, MANIFEST_PARQUET, read_manifest
from adgen.output.files import atomic_write_bytes
from adgen.output.store import is_url, open_store

PAGE_FILES = (MANIFEST_PARQUET, MANIFEST_CSV, "run.json", "assignments.csv", "analysis.csv",
              "analysis.json", "analysis.png")
"""The small files the review page reads (besides the decisions, read from the store)."""


def check_output(location: str | Path) -> None:
    """:class:`OutputError` unless ``location`` is a URL or an existing folder."""
    if is_url(location):
        return
    path = Path(location)
    if path.suffix.lower() in {".yaml", ".yml"} and path.is_file():
        raise OutputError(f"{path} is a campaign file; give its output folder (the campaign's "
                          "output:, by default out/<name>)")
    if not path.is_dir():
        raise OutputError(f"{path}: no such folder; give the output folder or URL of a run")


def snapshot(location: str | Path, into: Path) -> Path:
    """The folder to read the output's small files from: the output folder itself, or for a
    URL ``into``, filled with the store's current :data:`PAGE_FILES` (those it lacks are
    removed)."""
    if not is_url(location):
        return Path(location)
    store = open_store(location)
    into.mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        try:
            atomic_write_bytes(into / name, store.read_bytes(name))
        except FileNotFoundError:
            (into / name).unlink(missing_ok=True)
    return into


def current_manifest(location: str | Path) -> pd.DataFrame:
    """The output's manifest as it is now (:func:`adgen.manifest.read_manifest`)."""
    if not is_url(location):
        return read_manifest(Path(location))
    store = open_store(location)
    with tempfile.TemporaryDirectory(prefix="adgen-review-") as tmp:
        for name in (MANIFEST_PARQUET, MANIFEST_CSV):
            with contextlib.suppress(FileNotFoundError):
                atomic_write_bytes(Path(tmp) / name, store.read_bytes(name))
                return read_manifest(Path(tmp))
    raise AssetError(f"{location}: no {MANIFEST_PARQUET} or {MANIFEST_CSV}, so there is "
                     f"nothing to review; run `adgen run CAMPAIGN --out {location}` first")
