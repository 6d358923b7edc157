"""The renderer protocol: a callable class that loads once and maps a batch of jobs to images."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from PIL import Image

from adgen.errors import RenderError
from adgen.jobs import Box, Rendered, RenderJob

SourceReader = Callable[[str], tuple[Image.Image, Box | None]]
"""``sources(job_key)``: the render of job ``job_key`` (RGB) and its subject box. Renderers that
take extend jobs are given one (the render cache's :meth:`~adgen.output.cache.RenderCache.source`)
and read each extend job's ``source_key`` through it; a renderer never opens the output."""


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


class RendererClass(Protocol):
    """A renderer class as the registry (:mod:`adgen.renderers`) builds it:
    ``cls(model, sources=reader, **options)``. ``options`` names the ``renderer.options`` of a
    campaign it accepts (checked before anything renders)."""

    options: ClassVar[frozenset[str]]

    def __call__(self, model: str | None = None, *, sources: SourceReader | None = None,
                 **options: object) -> Renderer: ...


def keyword_options(init: Callable[..., object]) -> frozenset[str]:
    """The ``renderer.options`` a renderer's ``__init__`` takes: its keyword-only parameters
    (``sources`` is not an option: adgen passes it)."""
    return frozenset(p.name for p in inspect.signature(init).parameters.values()
                     if p.kind is p.KEYWORD_ONLY and p.name != "sources")


def source_offset(job_size: tuple[int, int], source_size: tuple[int, int]) -> tuple[int, int]:
    """Where an extend job keeps its source render: centred (rounded down)."""
    return (job_size[0] - source_size[0]) // 2, (job_size[1] - source_size[1]) // 2


def read_source(sources: SourceReader | None, job: RenderJob) -> tuple[Image.Image, Box | None]:
    """An extend job's source render and its subject box, through the renderer's ``sources``."""
    if job.source_key is None or sources is None:
        raise RenderError(f"extend job {job.key[:8]} has no source render to extend")
    return sources(job.source_key)
