"""The local backend: renders jobs in this process, batch by batch, into the render cache; and
the pool that makes assets on this machine (:class:`AssetMaker`), whichever backend rendered."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from adgen.assets import JobResults, PostContext, asset_units
from adgen.backends.base import ClusterPost, OnRendered, Progress, RendererFactory
from adgen.jobs import Rendered, RenderJob
from adgen.manifest import failed_row, quality_json
from adgen.output.cache import RenderCache
from adgen.planning import Plan
from adgen.renderers import backend_batch_size
from adgen.spec import CampaignSpec

QualityOf = Callable[[str], "dict[str, Any] | None"]
"""The quality gate's record of a job's render, by job key (:mod:`adgen.quality`)."""


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


@dataclass(frozen=True)
class LocalBackend:
    """Renders in this process (:func:`render_local`); assets are made by the pipeline's
    :class:`AssetMaker`."""

    batch_size: int = 4
    posts_where_it_renders = False

    @classmethod
    def from_campaign(cls, campaign: CampaignSpec) -> LocalBackend:
        return cls(backend_batch_size(campaign.renderer.options))

    def render(self, make_renderer: RendererFactory, jobs: Sequence[RenderJob],
               cache: RenderCache, on_rendered: OnRendered, *, progress: Progress | None = None,
               post: ClusterPost | None = None) -> None:
        render_local(make_renderer, jobs, cache, batch_size=self.batch_size,
                     on_rendered=on_rendered)


_WORKER_CONTEXT: PostContext | None = None


def _init_process(ctx: PostContext) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = ctx


def _in_process(rows: list[dict[str, Any]]) -> JobResults:
    assert _WORKER_CONTEXT is not None
    return _WORKER_CONTEXT.job_rows(rows)


class AssetMaker:
    """Makes a render's assets on this machine as soon as it is cached, in parallel: a thread
    pool (Pillow and ffmpeg release the GIL) or, with ``processes``, one process per core
    (caption layout, crops and PNG handling hold it); or takes the rows a cluster made
    (:meth:`add`). Collects every asset's manifest row, in plan order, whichever backend
    rendered."""

    def __init__(self, plan: Plan, ctx: PostContext, progress: Progress | None, *,
                 failing: Mapping[tuple[str, int], str] | None = None,
                 workers: int | None = None, processes: bool = False,
                 quality: QualityOf | None = None) -> None:
        self.plan, self.ctx, self.progress = plan, ctx, progress
        self.quality: QualityOf = quality or (lambda key: None)
        self.by_job = asset_units(plan, failing)
        self.total = sum(map(len, self.by_job.values()))  # blocked variants have none
        self.futures: dict[str, Future[JobResults]] = {}
        self.made: dict[str, JobResults] = {}
        workers = workers or os.cpu_count() or 1
        self.pool: Executor
        if processes:
            context = multiprocessing.get_context("forkserver")  # forks of one clean process
            context.set_forkserver_preload(["adgen.backends.local"])  # that imported adgen once
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                            initializer=_init_process, initargs=(ctx,))
        else:
            self.pool = ThreadPoolExecutor(max_workers=workers)
        self.processes = processes
        self.fresh: dict[str, Rendered] = {}  # renders held for the device path (keep)
        self.done = 0
        self.written = 0
        self.lock = threading.Lock()

    def __enter__(self) -> AssetMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def keep(self, result: Rendered) -> None:
        """Hold a still that just rendered in this process until its assets are made from it,
        when they are made on a device (``backend.post: gpu``): the renderer's pixels are there
        already, and no PNG is read back and sent again."""
        if (self.ctx.device is not None and not self.processes and result.error is None
                and result.image is not None and not result.frames
                and result.job_key in self.by_job):
            self.fresh[result.job_key] = result

    def forget(self, job_key: str) -> None:
        """Drop what :meth:`keep` held for ``job_key``: it was rendered again (the quality
        gate's retake), so its assets come from the cache, which holds the new take."""
        self.fresh.pop(job_key, None)

    def submit(self, job_key: str, *, render_error: str | None = None) -> None:
        """Make the assets that use render ``job_key`` (it is cached; or held by
        :meth:`keep`), or, with ``render_error``, record them all as failed."""
        fresh = self.fresh.pop(job_key, None)
        rows = self.by_job.get(job_key, [])
        if not rows:
            return
        if render_error is not None:
            self.add(job_key, self.render_failed(job_key, render_error))
            return
        future = (self.pool.submit(_in_process, rows) if self.processes
                  else self.pool.submit(self.ctx.job_rows, rows, fresh))
        future.add_done_callback(self._tick)
        self.futures[job_key] = future

    def needs_render(self, job_key: str) -> bool:
        """Whether any asset of the job can still be made (preflight failed none or some)."""
        return any(row["failing"] is None for row in self.by_job.get(job_key, []))

    def render_failed(self, job_key: str, error: str) -> JobResults:
        """The failed rows of the assets of a render that failed."""
        placements = self.plan.campaign.placements
        quality = quality_json(self.quality(job_key) or {})
        return [({**failed_row(row, self.plan.campaign, placements[row["placement_index"]],
                               f"render failed: {error}"), "quality": quality}, False)
                for row in self.by_job.get(job_key, [])]

    def add(self, job_key: str, results: JobResults) -> None:
        """Take the assets of a render made elsewhere (a cluster worker)."""
        self.made[job_key] = results
        self._count(results)

    def _tick(self, future: Future[JobResults]) -> None:
        if not future.cancelled() and not future.exception():
            self._count(future.result())

    def _count(self, results: JobResults) -> None:
        with self.lock:
            self.done += len(results)
            self.written += sum(1 for row, reused in results
                                if row["status"] == "ok" and not reused)
            if self.progress:
                self.progress("post", self.done, self.total)

    def results(self) -> list[dict[str, Any]]:
        """Manifest rows in plan order (variants × placements); raises the first error."""
        made = dict(self.made)
        for key, future in self.futures.items():
            made[key] = future.result()
        order = {vid: i for i, vid in enumerate(self.plan.variants["variant_id"])}
        placements = {p.resolve().name: i for i, p in enumerate(self.plan.campaign.placements)}
        rows = [row for results in made.values() for row, _ in results]
        return sorted(rows, key=lambda r: (order[r["variant_id"]], placements[r["placement"]]))
