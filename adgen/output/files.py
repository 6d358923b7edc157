"""The output folder: atomic writes, the content-addressed render cache and safe CSV export.

Layout under a campaign's output folder::

    assets/<variant_id>/<placement>-<hash8>.<ext>   one file per placement (ids and hashes only)
    manifest.parquet, manifest.csv                  one row per asset
    assignments.csv                                 customer -> variant, for the CRM
    run.json                                        summary of the last run
    .cache/renders/<k2>/<job_key>.png (+ .json)     rendered pictures by job key

The output may also be an object-store URL: see :mod:`adgen.storage`.

Every file is written to a temporary name in the same folder and renamed into place, so a killed
run never leaves a half-written file under a final name.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd
from PIL import Image

from adgen.errors import OutputError
from adgen.renderers.base import Box, Rendered

if TYPE_CHECKING:
    from adgen.storage import OutputStore


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


def encode_png(image: Image.Image) -> bytes:
    """Fast lossless PNG of an RGB picture (the cache format)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_render(result: Rendered) -> tuple[bytes, dict[str, Any]]:
    """A successful render as cache bytes and info: one PNG (a video's frames stacked top to
    bottom in one PNG) and what the renderer knew (subject box, composite, frames, fps)."""
    frames = result.frames or ([result.image] if result.image is not None else [])
    if not frames:
        raise ValueError(f"render {result.job_key} has no image to store")
    if len(frames) == 1:
        strip = frames[0]
    else:
        width, height = frames[0].size
        strip = Image.new("RGB", (width, height * len(frames)))
        for index, frame in enumerate(frames):
            strip.paste(frame.convert("RGB"), (0, index * height))
    info: dict[str, Any] = {
        "subject_box": list(result.subject_box) if result.subject_box else None,
        "composite": result.composite, "frames": len(frames) if result.frames else 0,
        "fps": result.fps}
    if result.quality is not None:
        info["quality"] = result.quality
    return encode_png(strip), info


def unguard(values: pd.Series) -> pd.Series:
    """Undo :func:`safe_csv`'s formula guard (the leading apostrophe) on text values."""
    return values.str.replace(f"^'(?={_FORMULA_START})", "", regex=True)


def read_safe_csv(path: Path) -> pd.DataFrame:
    """Read a CSV written with :func:`safe_csv`: every value as text, guards removed."""
    return pd.read_csv(path, dtype=str, keep_default_na=False).apply(unguard)


@dataclass(frozen=True)
class CachedRender:
    """A cached render: a still (``frames == 0``) or a clip of ``frames`` frames at ``fps``."""

    png: bytes
    subject_box: Box | None
    composite: bool
    frames: int = 0
    fps: float | None = None
    quality: dict[str, Any] | None = None

    def _strip(self) -> Image.Image:
        with Image.open(io.BytesIO(self.png)) as image:
            return image.convert("RGB")

    def load(self) -> Image.Image:
        """The still, or a clip's first frame."""
        rgb = self._strip()
        if self.frames > 1:
            return rgb.crop((0, 0, rgb.width, rgb.height // self.frames))
        return rgb

    def load_frames(self) -> list[Image.Image]:
        """A clip's frames (a still gives one)."""
        rgb = self._strip()
        count = max(1, self.frames)
        height = rgb.height // count
        return [rgb.crop((0, i * height, rgb.width, (i + 1) * height)) for i in range(count)]


class RenderCache:
    """Rendered pictures by job key (lossless PNG plus a small JSON of what the renderer knew),
    in a local folder or an object store (a path, URL or :class:`~adgen.storage.OutputStore`).
    Entries are content-addressed and written once: the PNG first, the JSON last (its presence
    marks a complete entry, so an interrupted write is redone). Picklable."""

    def __init__(self, root: str | Path | OutputStore) -> None:
        from adgen.storage import OutputStore

        self.store = root if isinstance(root, OutputStore) else OutputStore(root)

    def _names(self, key: str) -> tuple[str, str]:
        folder = f"renders/{key[:2]}"
        return f"{folder}/{key}.png", f"{folder}/{key}.json"

    def image_path(self, key: str) -> str:
        """Where the render of job ``key`` is (or will be) stored: a path, or a URL."""
        return self.store.url(self._names(key)[0])

    def has(self, key: str) -> bool:
        """Whether a complete, decodable entry exists; a truncated or garbled one is removed
        (so its job renders again)."""
        return self.get(key) is not None

    def get(self, key: str, info: dict[str, Any] | None = None) -> CachedRender | None:
        """The entry, or None when missing or unreadable (an unreadable one is removed).
        ``info``: its JSON, when the caller has read it already (see :meth:`info`)."""
        image, meta = self._names(key)
        try:
            if info is None:
                info = json.loads(self.store.read_bytes(meta))
            png = self.store.read_bytes(image)
        except FileNotFoundError:
            return None
        except ValueError:  # a garbled JSON: render it again
            self.discard(key)
            return None
        try:
            box = info.get("subject_box")
            entry = CachedRender(png, tuple(box) if box else None, bool(info.get("composite")),
                                 int(info.get("frames") or 0), info.get("fps"),
                                 info.get("quality"))
            with Image.open(io.BytesIO(png)) as picture:
                picture.verify()  # chunk CRCs and the end of the PNG: catches truncation
        except Exception:  # any decoding problem means: render it again
            self.discard(key)
            return None
        return entry

    def discard(self, key: str) -> None:
        """Remove an entry (its JSON first, so a half-removed entry reads as missing)."""
        for name in reversed(self._names(key)):
            self.store.delete(name)

    def info(self, key: str) -> dict[str, Any] | None:
        """What the renderer knew of a cached render (its JSON), or ``None`` when not cached."""
        try:
            value = json.loads(self.store.read_bytes(self._names(key)[1]))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def move(self, source: str, target: str, info: dict[str, Any]) -> None:
        """Store ``source``'s picture under ``target`` with ``info`` (replacing what ``target``
        held), then discard ``source``."""
        png = self.store.read_bytes(self._names(source)[0])
        self.discard(target)
        self.put_encoded(target, png, info)
        self.discard(source)

    def put(self, result: Rendered) -> None:
        """Store a successful render."""
        png, info = encode_render(result)
        self.put_encoded(result.job_key, png, info)

    def put_encoded(self, key: str, png: bytes, info: dict[str, Any]) -> None:
        """Store an encoded render (once: an entry already there is kept)."""
        image, meta = self._names(key)
        if self.store.exists(meta):
            return
        self.store.write_bytes(image, png)  # no JSON yet: any PNG there is a partial entry
        self.store.write_bytes(meta, json.dumps(info).encode("utf-8"))


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
