"""Renderers by name. Each is a callable class (see :mod:`adgen.renderers.base`), listed in
:data:`REGISTRY` with what the rest of adgen needs to know of it without importing it (the
diffusion renderers import torch): whether it makes clips, runs a model, takes a ``stage``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, cast

from adgen.errors import CampaignError
from adgen.renderers.base import Renderer, RendererClass, SourceReader


@dataclass(frozen=True)
class RendererEntry:
    """A renderer in the registry: its class (``module:Class``, imported on first use) and
    facts about it."""

    path: str
    video: bool = False
    """It makes clips (frames) for ``kind: video`` creatives, not stills."""
    model: bool = False
    """It runs a diffusion model: on a Ray cluster it wants GPUs."""
    staged: bool = False
    """It takes a ``stage`` option: where the product goes in the frame, which the planner
    sets per aspect class so that captions have room around it."""


REGISTRY = {
    "offline": RendererEntry("adgen.renderers.offline:OfflineRenderer", staged=True),
    "diffusers": RendererEntry("adgen.renderers.diffusers_renderer:DiffusersRenderer",
                               model=True),
    "diffusers-video": RendererEntry("adgen.renderers.diffusers_video:DiffusersVideoRenderer",
                                     video=True, model=True),
}
RENDERERS = tuple(REGISTRY)
VIDEO_RENDERERS = frozenset(name for name, entry in REGISTRY.items() if entry.video)
MODEL_RENDERERS = frozenset(name for name, entry in REGISTRY.items() if entry.model)
STAGED_RENDERERS = frozenset(name for name, entry in REGISTRY.items() if entry.staged)

RUNTIME_OPTIONS = frozenset({
    "batch_size", "batch_invariant", "compile", "cpu_offload", "vae_slicing", "vae_tiling",
    "attention", "channels_last", "retry_blank", "fuse_qkv", "cuda_graphs", "overlap",
})
"""Renderer options that change speed or memory, not the picture: left out of job keys."""

AUTO_BACKEND_BATCH = 128
"""Jobs handed to a renderer per call when its ``batch_size`` is ``"auto"`` (it cuts them into
chunks that fit in memory)."""


def backend_batch_size(options: dict[str, Any]) -> int:
    """How many jobs the backends hand a renderer per call, from its ``batch_size`` option."""
    value = options.get("batch_size", 4)
    return AUTO_BACKEND_BATCH if value == "auto" else int(value)


def renderer_class(name: str) -> RendererClass:
    """The class of the renderer ``name`` (imported now)."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise CampaignError(f"unknown renderer {name!r}: use one of {', '.join(RENDERERS)}")
    module, _, cls = entry.path.partition(":")
    return cast(RendererClass, getattr(importlib.import_module(module), cls))


def create_renderer(name: str, model: str | None = None, *, sources: SourceReader | None = None,
                    **options: Any) -> Renderer:
    """Build a renderer by name; it loads its model here, once. ``sources`` reads the renders
    that extend jobs outpaint (:meth:`adgen.output.cache.RenderCache.source`)."""
    return renderer_class(name)(model, sources=sources, **options)


__all__ = ["AUTO_BACKEND_BATCH", "MODEL_RENDERERS", "REGISTRY", "RENDERERS", "RUNTIME_OPTIONS",
           "STAGED_RENDERERS", "VIDEO_RENDERERS", "RendererEntry", "backend_batch_size",
           "create_renderer", "renderer_class"]
