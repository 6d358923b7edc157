"""The renderer protocol: a callable class that loads once and maps a batch of jobs to images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from adgen.jobs import RenderJob

Box = tuple[int, int, int, int]
"""A pixel box ``(left, top, right, bottom)``."""


@dataclass
class Rendered:
    """What a renderer returns for one job.

    ``image`` is an RGB picture of the job's size, or ``None`` with ``error`` saying why this job
    failed (a NaN or all-black output, say); one job's failure never fails the batch.
    ``subject_box`` is where the subject (e.g. a placed product) lies, when the renderer knows;
    crops keep it in frame. ``composite`` is True when real pixels (a product photo) were
    composed into the generated scene (provenance: a composite source type).
    Video renderers also return ``frames`` (``image`` is then the first one) and their ``fps``.
    ``quality`` is the quality gate's record of the render (:mod:`adgen.quality`), if gated.
    """

    job_key: str
    image: Image.Image | None
    subject_box: Box | None = None
    composite: bool = False
    error: str | None = None
    frames: list[Image.Image] | None = None
    fps: float | None = None
    quality: dict[str, Any] | None = None


@runtime_checkable
class Renderer(Protocol):
    """A renderer loads what it needs once in ``__init__`` and is then called on batches.

    The same object runs in-process (local backend) and inside a Ray actor, so it must be
    picklable before its first call and hold no state between calls that changes results:
    each image depends only on its own job.
    """

    name: str

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        """Render ``jobs`` (which share a ``batch_key``) and return one result per job, in order."""
        ...


def load_source(path: str) -> tuple[Image.Image, Box | None]:
    """An extend job's source: the cached render at ``path`` (a path or an object-store URL;
    RGB) and its subject box, read from the JSON the render cache keeps beside it."""
    import io
    import json

    from adgen.storage import OutputStore

    folder, _, name = path.rpartition("/")
    store = OutputStore(folder or ".")
    with Image.open(io.BytesIO(store.read_bytes(name))) as opened:
        image = opened.convert("RGB")
    meta = name.rsplit(".", 1)[0] + ".json"
    box = json.loads(store.read_bytes(meta)).get("subject_box") if store.exists(meta) else None
    return image, (box[0], box[1], box[2], box[3]) if box else None


def source_offset(job_size: tuple[int, int], source_size: tuple[int, int]) -> tuple[int, int]:
    """Where an extend job keeps its source render: centred (rounded down)."""
    return (job_size[0] - source_size[0]) // 2, (job_size[1] - source_size[1]) // 2
