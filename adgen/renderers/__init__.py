"""Renderers by name. Each is a callable class (see :mod:`adgen.renderers.base`)."""

from __future__ import annotations

from typing import Any

from adgen.errors import CampaignError
from adgen.renderers.base import Rendered, Renderer

RENDERERS = ("offline", "diffusers", "diffusers-video")
VIDEO_RENDERERS = frozenset({"diffusers-video"})
"""Renderers that make clips (frames) for ``kind: video`` creatives, not stills."""

MODEL_RENDERERS = frozenset({"diffusers", "diffusers-video"})
"""Renderers that run a diffusion model: on a Ray cluster they want GPUs."""

STAGED_RENDERERS = frozenset({"offline"})
"""Renderers that take a ``stage`` option: where the product goes in the frame, which the
planner sets per aspect class so that captions have room around it."""

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


def create_renderer(name: str, model: str | None = None, **options: Any) -> Renderer:
    """Build a renderer by name; it loads its model here, once."""
    if name == "offline":
        from adgen.renderers.offline import OfflineRenderer

        options.pop("batch_size", None)  # batching is the backend's; each job is drawn alone
        return OfflineRenderer(model, **options)
    if name == "diffusers":
        from adgen.renderers.diffusers_renderer import DiffusersRenderer

        return DiffusersRenderer(model, **options)
    if name == "diffusers-video":
        from adgen.renderers.diffusers_video import DiffusersVideoRenderer

        return DiffusersVideoRenderer(model, **options)
    raise CampaignError(f"unknown renderer {name!r}: use one of {', '.join(RENDERERS)}")


__all__ = ["AUTO_BACKEND_BATCH", "MODEL_RENDERERS", "RENDERERS", "RUNTIME_OPTIONS",
           "STAGED_RENDERERS", "VIDEO_RENDERERS", "Rendered", "Renderer", "backend_batch_size",
           "create_renderer"]
