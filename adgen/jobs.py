"""Render jobs: frozen records of everything that changes a picture, keyed by a content hash,
and what a renderer returns for each (:class:`Rendered`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

Box = tuple[int, int, int, int]
"""A pixel box ``(left, top, right, bottom)``."""


def stable_hash(*parts: object) -> str:
    """SHA-256 (hex) of the canonical JSON of ``parts``: equal on every machine and Python."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def derive_seed(*parts: object) -> int:
    """A deterministic 31-bit seed from the given identity (fits every RNG torch and numpy take)."""
    return int(stable_hash("seed", *parts)[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class RenderJob:
    """One picture to render. ``key`` hashes every field, so equal jobs render once.

    ``product_image`` is a path to a PNG with alpha composed into the scene;
    ``product_sha256`` (its content hash) is what enters the key, not the path.
    ``options`` holds renderer options that change the picture (JSON-serialisable).
    ``aspect`` names the aspect class the picture is for (see :mod:`adgen.placements`).
    An *extend* job outpaints another job's render to its own size: ``source_key`` (in the
    key) names that job; the renderer reads that render through the source reader it was
    given (:data:`adgen.renderers.base.SourceReader`).
    """

    renderer: str
    model: str | None
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    kind: str = "image"
    product_image: str | None = field(default=None, compare=False)
    product_sha256: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    aspect: str = field(default="", compare=False)
    source_key: str | None = None

    @property
    def key(self) -> str:
        """Content hash of everything that changes the rendered picture."""
        fields = asdict(self)
        for name in ("product_image", "aspect"):
            fields.pop(name)
        if fields["source_key"] is None:  # keys of plain jobs stay what they were
            fields.pop("source_key")
        return stable_hash("render-job/v1", fields)

    @property
    def batch_key(self) -> tuple[object, ...]:
        """Jobs with the same batch key can be rendered in one pipeline call."""
        return (self.renderer, self.model, self.kind, self.width, self.height, self.steps,
                self.guidance, self.options, self.product_image is not None,
                self.source_key is not None)

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


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
    ``pixels`` is ``image`` as a 3xHxW uint8 torch tensor on the renderer's device, when the
    renderer has it there (diffusers, for a still without a pasted product): post-processing
    on that device (``backend.post: gpu``) starts from it rather than from the cached PNG.
    """

    job_key: str
    image: Image.Image | None
    subject_box: Box | None = None
    composite: bool = False
    error: str | None = None
    frames: list[Image.Image] | None = None
    fps: float | None = None
    quality: dict[str, Any] | None = None
    pixels: Any = None
