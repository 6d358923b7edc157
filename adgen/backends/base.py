"""The backend seam: where render jobs run, behind one small interface.

A :class:`Backend` renders jobs into the render cache and reports each result as it arrives. A
backend that :attr:`~Backend.posts_where_it_renders` (Ray with ``backend.post: cluster``) also
makes each render's assets where it rendered, when the pipeline hands it the post step
(:class:`ClusterPost`); otherwise the pipeline makes them on this machine
(:class:`~adgen.backends.local.AssetMaker`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adgen.assets import JobResults, PostContext
from adgen.jobs import Rendered, RenderJob
from adgen.output.cache import RenderCache
from adgen.renderers.base import Renderer

RendererFactory = Callable[[], Renderer]
"""Builds the renderer where it runs (it loads its model there, once); picklable for Ray."""
OnRendered = Callable[[Rendered], None]
"""Hears of each render (cached, or failed with its error) as it arrives."""
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``render``, ``post``, or a Ray worker's name."""
Ready = Callable[[Rendered], list[str]]
"""``ready(result)``: the job keys whose assets may be made now that ``result`` arrived."""


@dataclass(frozen=True)
class ClusterPost:
    """The post step, handed to a backend that makes assets where it renders: the context
    to make them with, the assets of each render (by job key), who gets their manifest rows,
    and which renders' assets may be made as each render arrives (the quality gate holds
    near-duplicates back until their group is complete)."""

    context: PostContext
    rows: dict[str, list[dict[str, Any]]]
    on_assets: Callable[[str, JobResults], None]
    ready: Ready


class Backend(Protocol):
    """Where render jobs run."""

    @property
    def posts_where_it_renders(self) -> bool:
        """Whether it takes the post step (:class:`ClusterPost`) and makes assets next to the
        renders."""
        ...

    def render(self, make_renderer: RendererFactory, jobs: Sequence[RenderJob],
               cache: RenderCache, on_rendered: OnRendered, *, progress: Progress | None = None,
               post: ClusterPost | None = None) -> None:
        """Render ``jobs`` into ``cache``, calling ``on_rendered`` for each; with ``post``, make
        their assets too."""
        ...
