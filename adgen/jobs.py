"""Render jobs: frozen records of everything that changes a picture, keyed by a content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


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
    key) names that job, ``source_image`` is where its render is cached (not in the key).
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
    source_image: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Content hash of everything that changes the rendered picture."""
        fields = asdict(self)
        for name in ("product_image", "aspect", "source_image"):
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
