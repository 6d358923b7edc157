"""Renderers by name. Each is a callable class (see :mod:`adgen.renderers.base`)."""

from __future__ import annotations

from typing import Any

from adgen.errors import CampaignError
from adgen.renderers.base import Rendered, Renderer

RENDERERS = ("offline", "diffusers", "diffusers-video")
VIDEO_RENDERERS = frozenset({"diffusers-video"})
"""Renderers that make clips (frames) for ``kind: video`` creatives, not stills."""

STAGED_RENDERERS = frozenset({"offline"})
"""Renderers that take a ``stage`` option: where the product goes in the frame, which the
planner sets per aspect class so that captions have room around it."""

RUNTIME_OPTIONS = frozenset({
    "batch_size", "batch_invariant", "compile", "cpu_offload", "vae_slicing", "vae_tiling",
    "attention", "channels_last", "retry_blank",
})
"""Renderer options that change speed or memory, not the picture: left out of job keys."""


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


__all__ = ["RENDERERS", "RUNTIME_OPTIONS", "STAGED_RENDERERS", "VIDEO_RENDERERS", "Rendered",
           "Renderer", "create_renderer"]
