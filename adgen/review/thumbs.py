"""Thumbnails of a run's assets (and posters of its videos) for the review pages.

A thumbnail is a small WebP named by its asset's hash (``thumbs/<hash>-<size>.webp``), so it is
made once per picture: :func:`make_thumbs` reuses those it finds in any folder it is given and
makes the missing ones in the first. The static sheet keeps them in the output's ``thumbs/``
(and prunes those of assets no longer listed); ``adgen review`` makes missing ones in a folder
of its own, so serving a review never writes into the output.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageOps

from adgen.output.files import atomic_write_bytes
from adgen.output.store import OutputStore

THUMBS_DIR = "thumbs"
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm", "m4v"})
THUMB_NAME = re.compile(r"^[0-9a-f]{20}-\d+(?:-poster)?\.webp$")
"""The name of every thumbnail adgen makes (and the only names it prunes or serves)."""
_HEX = re.compile(r"^[0-9a-f]{20,}$")


@dataclass(frozen=True)
class Thumb:
    """A thumbnail (or a video's poster) relative to the output folder, or why there is none."""

    src: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


def is_video(row: dict[str, Any]) -> bool:
    fmt = str(row.get("format", "")).lower() or PurePosixPath(str(row["path"])).suffix[1:].lower()
    return fmt in VIDEO_FORMATS


def asset_path(out_dir: Path, rel: str) -> Path | None:
    """The asset's file, or ``None`` when the manifest path leaves the output folder."""
    posix = PurePosixPath(rel)
    if not rel or posix.is_absolute() or ".." in posix.parts or "\\" in rel or ":" in rel:
        return None
    return out_dir.joinpath(*posix.parts)


def make_thumbs(out_dir: Path, rows: list[dict[str, Any]], size: int, store: OutputStore,
                folders: Sequence[Path], *, prune: bool = False) -> list[Thumb]:
    """One thumbnail per manifest row of ``out_dir`` (or why there is none): found in one of
    ``folders``, else made from the asset (read through ``store``) in the first of them.
    ``prune``: then delete the thumbnails in that folder that no row needs."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        thumbs = list(pool.map(lambda row: _thumb(out_dir, row, size, store, folders), rows))
    if prune:
        _prune(folders[0], {t.src.rsplit("/", 1)[1] for t in thumbs if t.src})
    return thumbs


def _thumb(out_dir: Path, row: dict[str, Any], size: int, store: OutputStore,
           folders: Sequence[Path]) -> Thumb:
    status = str(row.get("status") or "ok")
    if status != "ok":  # failed or blocked: no file, the card says why
        return Thumb(problem=status)
    if asset_path(out_dir, str(row["path"])) is None:
        return Thumb(problem="invalid path in the manifest")
    name = _name(row, size)
    for folder in folders:
        existing = _existing(folder / name)
        if existing is not None:
            return existing
    with store.local_copy(str(row["path"])) as local:  # an object is fetched to a temp file
        return _make(local, folders[0] / name, size, video=is_video(row))


def _name(row: dict[str, Any], size: int) -> str:
    """A filename-safe id of the asset (its sha256, else asset key, else a hash of its path),
    the size, and whether it is a video's poster."""
    ident = hashlib.sha256(str(row["path"]).encode()).hexdigest()[:20]
    for column in ("sha256", "asset_key"):
        value = str(row.get(column, "")).lower()
        if _HEX.match(value):
            ident = value[:20]
            break
    return f"{ident}-{size}{'-poster' if is_video(row) else ''}.webp"


def _existing(path: Path) -> Thumb | None:
    if path.exists():
        try:
            with Image.open(path) as image:
                return Thumb(f"{THUMBS_DIR}/{path.name}", *image.size)
        except (OSError, SyntaxError):
            pass  # a damaged thumbnail is made again
    return None


def _make(source: Path, target: Path, size: int, *, video: bool) -> Thumb:
    if not source.is_file():
        return Thumb(problem="file missing: run `adgen run` again")
    try:
        picture = _video_frame(source) if video else _open_image(source)
    except Exception as exc:  # a corrupt file must not stop the review of the others
        # a video the browser may still play is shown without a poster
        return Thumb() if video else Thumb(problem=f"cannot read: {type(exc).__name__}")
    picture = _fit(picture, size)
    buffer = io.BytesIO()
    picture.save(buffer, "WEBP", quality=80, method=4)
    atomic_write_bytes(target, buffer.getvalue())
    return Thumb(f"{THUMBS_DIR}/{target.name}", *picture.size)


def _open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale
        return ImageOps.exif_transpose(image).copy()


def _video_frame(path: Path) -> Image.Image:
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(frames)
        frame = next(frames)
    finally:
        frames.close()
    return Image.frombytes("RGB", meta["size"], frame)


def _fit(picture: Image.Image, size: int) -> Image.Image:
    """The picture scaled down so that its longest side is at most ``size``."""
    has_alpha = picture.mode in ("RGBA", "LA") or "transparency" in picture.info
    picture = picture.convert("RGBA" if has_alpha else "RGB")
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return picture


def _prune(folder: Path, keep: set[str]) -> None:
    """Delete thumbnails of assets the manifest no longer lists (only files adgen names)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and THUMB_NAME.match(path.name) and path.name not in keep:
            path.unlink()
