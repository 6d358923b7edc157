"""The render cache: rendered pictures by job key, under ``.cache/renders/`` of the output.

Layout: ``renders/<k2>/<job_key>.png`` (a still, or a clip's frames stacked in one PNG) and
``<job_key>.json`` beside it (what the renderer knew: subject box, composite, frames, fps, the
quality gate's record). It sits on an :class:`~adgen.output.store.OutputStore`, so it works the
same in a local folder and in an object store.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from adgen.jobs import Box, Rendered
from adgen.output.store import CACHE_DIR, OutputStore, join, open_store


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


@dataclass(frozen=True)
class CachedRender:
    """A cached render: a still (``frames == 0``) or a clip of ``frames`` frames at ``fps``."""

    png: bytes
    subject_box: Box | None
    composite: bool
    frames: int = 0
    fps: float | None = None
    quality: dict[str, Any] | None = None
    picture: Image.Image | None = None
    """The still itself when it came straight from the renderer in this process (``png`` is
    then empty: nothing to read back or decode)."""
    pixels: Any = None
    """That still on the renderer's device (:attr:`adgen.jobs.Rendered.pixels`), if there."""

    @classmethod
    def of(cls, result: Rendered) -> CachedRender:
        """A still that just rendered in this process (and was cached), as read back."""
        assert result.image is not None and not result.frames
        return cls(b"", result.subject_box, result.composite, quality=result.quality,
                   picture=result.image, pixels=result.pixels)

    @functools.cached_property
    def _decoded(self) -> Image.Image:
        """The picture (a clip's frames stacked), RGB, decoded once: each asset of the render
        starts from a copy of it."""
        if self.picture is not None:
            return self.picture.convert("RGB") if self.picture.mode != "RGB" else self.picture
        with Image.open(io.BytesIO(self.png)) as image:
            return image.convert("RGB")

    def load(self) -> Image.Image:
        """The still, or a clip's first frame (a copy: post-processing may draw on it)."""
        rgb = self._decoded
        if self.frames > 1:
            return rgb.crop((0, 0, rgb.width, rgb.height // self.frames))
        return rgb.copy()

    def load_frames(self) -> list[Image.Image]:
        """A clip's frames (a still gives one)."""
        rgb = self._decoded
        count = max(1, self.frames)
        height = rgb.height // count
        return [rgb.crop((0, i * height, rgb.width, (i + 1) * height)) for i in range(count)]


class RenderCache:
    """Rendered pictures by job key (lossless PNG plus a small JSON of what the renderer knew),
    in a local folder or an object store (a path, URL or :class:`~adgen.output.store.OutputStore`).
    Entries are content-addressed and written once: the PNG first, the JSON last (its presence
    marks a complete entry, so an interrupted write is redone). Picklable."""

    def __init__(self, root: str | Path | OutputStore) -> None:
        self.store = root if isinstance(root, OutputStore) else open_store(root)

    @classmethod
    def of(cls, location: str | Path) -> RenderCache:
        """The render cache of the output at ``location`` (a folder or a URL)."""
        return cls(join(location, CACHE_DIR))

    def _names(self, key: str) -> tuple[str, str]:
        folder = f"renders/{key[:2]}"
        return f"{folder}/{key}.png", f"{folder}/{key}.json"

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

    def source(self, key: str) -> tuple[Image.Image, Box | None]:
        """The render of job ``key`` (RGB) and its subject box: what an extend job keeps
        (a :data:`~adgen.renderers.base.SourceReader`). :class:`FileNotFoundError` when it is
        not cached."""
        image, meta = self._names(key)
        with Image.open(io.BytesIO(self.store.read_bytes(image))) as opened:
            picture = opened.convert("RGB")
        box = (json.loads(self.store.read_bytes(meta)).get("subject_box")
               if self.store.exists(meta) else None)
        return picture, (box[0], box[1], box[2], box[3]) if box else None

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
