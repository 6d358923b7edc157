"""The local backend: renders jobs in this process, batch by batch, into the render cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import groupby

from adgen.jobs import RenderJob
from adgen.renderers.base import Rendered, Renderer
from adgen.store import RenderCache

RendererFactory = Callable[[], Renderer]
OnRendered = Callable[[Rendered], None]


def batches(jobs: Sequence[RenderJob], batch_size: int) -> Iterator[list[RenderJob]]:
    """Split jobs into batches that share a batch key, at most ``batch_size`` each."""
    ordered = sorted(jobs, key=lambda job: (repr(job.batch_key), job.key))
    for _, group in groupby(ordered, key=lambda job: repr(job.batch_key)):
        items = list(group)
        for start in range(0, len(items), batch_size):
            yield items[start : start + batch_size]


def store_result(cache: RenderCache, result: Rendered) -> Rendered:
    """Put a successful render in the cache (failed ones are not cached, so a rerun retries).
    A result with neither image nor error is turned into an error."""
    if result.error is None and result.image is None:
        return Rendered(result.job_key, None, error="renderer returned no image")
    if result.error is None:
        cache.put(result)
    return result


def render_local(
    make_renderer: RendererFactory,
    jobs: Sequence[RenderJob],
    cache: RenderCache,
    *,
    batch_size: int = 4,
    on_rendered: OnRendered | None = None,
) -> None:
    """Render ``jobs`` in-process. The renderer is built (its model loaded) only if there is
    work, once. Each result is cached as soon as its batch finishes, so an interrupted run
    resumes where it stopped."""
    if not jobs:
        return
    renderer = make_renderer()
    for batch in batches(jobs, batch_size):
        for result in renderer(batch):
            result = store_result(cache, result)
            if on_rendered is not None:
                on_rendered(result)
