"""The Ray backend: a pool of render actors, one per GPU (or fractional GPU, or CPU worker).

This is the only module that imports :mod:`ray`. Each actor builds its renderer once (the model
loads once per GPU), renders batches and encodes each picture to PNG. At most ``in_flight``
batches wait per actor.

Where the pixels go: with a :class:`~adgen.assets.PostContext` (``backend.post: cluster``), a
batch's PNGs stay in the object store of the node that rendered them and a CPU task, which Ray
schedules next to its arguments, writes them to the render cache, makes their assets, writes
those to the output store and returns only manifest rows. At most ``post_queue`` such tasks wait
(backpressure: renders stop being handed out while post-processing is behind). Without one, the
PNGs stream to the driver, whose threads write them to the cache (each write fsynced, several
at once) while the loop hands out the next batches; a render is reported once it is cached.

Faults: when an actor dies (crashed process, CUDA error, lost node) its unfinished batches go back
to the queue and a replacement actor is started; a batch that kills ``max_attempts`` actors is
reported as failed. A post task whose worker dies is retried by Ray; if its renders were lost
with their node, the batch is rendered again. Every file is content-addressed and written once,
so a retry writes nothing twice. A job that fails on its own (NaN image) comes back as a failed
record and is reported, not retried. Ctrl-C kills the pool; finished renders are already in the
cache.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adgen.assets import JobResults, PostContext
from adgen.backends.base import (
    ClusterPost,
    OnRendered,
    Progress,
    Ready,
    RendererFactory,
)
from adgen.backends.local import batches
from adgen.errors import AdgenError, CampaignError
from adgen.jobs import Rendered, RenderJob
from adgen.output.cache import RenderCache, encode_render
from adgen.renderers import MODEL_RENDERERS, backend_batch_size
from adgen.spec import CampaignSpec

Status = tuple[str, str | None, dict[str, Any] | None]
"""What the driver hears of a rendered job: its key, error and quality record."""
Queued = tuple[list[RenderJob], int, "dict[str, list[dict[str, Any]]] | None"]
CACHE_WRITERS = 8
"""Threads writing renders to the cache on the driver (``backend.post: driver``)."""


@dataclass(frozen=True)
class PoolOptions:
    """How to build the pool. ``gpus`` caps the GPUs used (default: all in the cluster);
    ``gpus_per_worker`` < 1 packs several actors on one GPU; with no GPU in the cluster,
    ``cpu_workers`` CPU actors are used (default: one per two CPUs, at least one)."""

    address: str | None = None
    gpus: int | None = None
    gpus_per_worker: float = 1.0
    cpu_workers: int | None = None
    gpu_renderer: bool = False
    """The renderer needs GPUs (a diffusion model): ``gpus`` on a cluster without any is an
    error, not a pool of CPU workers with a warning."""
    in_flight: int = 2
    max_attempts: int = 3
    post_queue: int | None = None
    """Rendered batches that may wait for post-processing, beyond one per render slot
    (default: two per CPU of the cluster). Renders are handed out only while fewer than
    ``workers × in_flight + post_queue`` batches are rendering or waiting: memory stays
    bounded when post-processing falls behind."""


@dataclass
class WorkerStats:
    """What one actor did: its GPU ids, node, batches and images rendered."""

    gpu_ids: list[str]
    node: str
    batches: int = 0
    images: int = 0


@dataclass
class PoolReport:
    """What the pool did: per-worker stats, actors replaced, start-up and rendering seconds."""

    workers: dict[str, WorkerStats] = field(default_factory=dict)
    replaced: int = 0
    startup_seconds: float = 0.0
    seconds: float = 0.0
    post_nodes: dict[str, int] = field(default_factory=dict)
    """Assets made on the cluster, by node id (cluster post-processing only)."""
    peak_batches: int = 0
    """The most batches rendering or waiting for post-processing at once."""


def connect(address: str | None = None) -> None:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise CampaignError(
            f"cannot connect to the Ray cluster at {address!r}: {exc}; start one with "
            "`ray start --head` or leave --ray-address out to start a local one"
        ) from None


class _RenderWorker:
    """Runs inside an actor: builds the renderer once, renders batches into PNG records."""

    def __init__(self, make_renderer: RendererFactory) -> None:
        import ray

        self.init_error: AdgenError | None = None
        try:
            self.renderer = make_renderer()
        except AdgenError as exc:  # a user mistake (bad model path): report it, do not retry
            self.init_error = exc
        context = ray.get_runtime_context()
        self.identity = (
            [str(g) for g in ray.get_gpu_ids()],
            context.get_node_id(),
            context.get_actor_id() or "",
        )

    def who(self) -> tuple[list[str], str, str]:
        return self.identity

    def render(self, jobs: Sequence[RenderJob]
               ) -> tuple[list[Status], list[dict[str, Any]]]:
        """Each job's error and quality record (small, for the driver) and the records with
        their PNGs (which stay in the object store until the driver or a post task fetches
        them)."""
        if self.init_error is not None:
            raise self.init_error
        records: list[dict[str, Any]] = []
        for result in self.renderer(jobs):
            png, info = None, dict[str, Any]()
            if result.error is None and (result.image is not None or result.frames):
                png, info = encode_render(result)
            elif result.error is None:
                result.error = "renderer returned no image"
            records.append({"job_key": result.job_key, "png": png, "info": info,
                            "error": result.error, "quality": result.quality})
        return [(r["job_key"], r["error"], r["quality"]) for r in records], records


def _warm_up() -> None:
    """Start a CPU worker with post-processing's modules imported (Ray keeps it for tasks)."""
    import adgen.assets  # noqa: F401

    time.sleep(0.5)  # held long enough that each warm-up task gets its own worker


def _post_batch(
    ctx: PostContext, rows: dict[str, list[dict[str, Any]]], records: list[dict[str, Any]],
) -> tuple[str, list[tuple[str, JobResults]]]:
    """Runs on a CPU worker next to the renders: cache them, then make and write the assets
    of ``rows`` (by job key: renders of this batch, or ones already in the cache). Returns the
    node id and each job's manifest rows."""
    import ray

    for record in records:
        if record["png"] is not None:
            ctx.cache.put_encoded(record["job_key"], record["png"], record["info"])
    out = [(key, ctx.job_rows(units)) for key, units in rows.items()]
    return ray.get_runtime_context().get_node_id(), out


def _store(cache: RenderCache, record: dict[str, Any]) -> Rendered:
    """Write a record's PNG to the cache as it came (no decode, no re-encode); the returned
    result carries no image: the picture is in the cache."""
    if record["png"] is not None:
        cache.put_encoded(record["job_key"], record["png"], record["info"])
    return Rendered(record["job_key"], None, error=record["error"],
                    quality=record.get("quality"))


def render_ray(
    make_renderer: RendererFactory,
    jobs: Sequence[RenderJob],
    cache: RenderCache,
    *,
    batch_size: int = 4,
    on_rendered: OnRendered | None = None,
    options: PoolOptions = PoolOptions(),
    on_worker: Callable[[str, WorkerStats], None] | None = None,
    post: PostContext | None = None,
    post_rows: dict[str, list[dict[str, Any]]] | None = None,
    on_assets: Callable[[str, JobResults], None] | None = None,
    ready: Ready | None = None,
) -> PoolReport:
    """Render ``jobs`` on a Ray actor pool; results stream into the cache as they finish.
    With ``post``, assets are made on the cluster and ``on_assets`` gets each job's manifest
    rows (see the module docstring); ``ready`` (default: each successful render) says which
    jobs' assets may be made as each render arrives (the quality gate holds near-duplicates
    back until their group is complete)."""
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    report = PoolReport()
    if not jobs:
        return report
    connect(options.address)
    start = time.perf_counter()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if options.gpus is not None:
        gpus = min(gpus, options.gpus)
        if gpus == 0:
            _no_gpus(options)
    if gpus > 0:
        per = options.gpus_per_worker
        size = max(1, int(gpus / per))
        actor_options: dict[str, Any] = {"num_gpus": per, "num_cpus": 0}
    else:
        cpus = resources.get("CPU", 1)
        size = options.cpu_workers or max(1, int(cpus) // 2)
        actor_options = {"num_cpus": 1}
        if post is not None:  # leave CPUs to the post tasks
            size = max(1, min(size, int(cpus) - 1))
            if cpus < 2:
                actor_options = {"num_cpus": cpus / 2}
    post_cpus = min(1.0, resources.get("CPU", 1) / 2) if gpus == 0 else 1.0
    # a batch, how many actors it killed, and (after its post task was lost) the assets it
    # was posting, so a render again posts the same ones without reporting it twice
    queue: deque[Queued] = deque((batch, 0, None) for batch in batches(jobs, batch_size))
    size = min(size, len(queue))
    worker_cls = ray.remote(max_restarts=0, max_task_retries=0)(_RenderWorker)

    def new_actor() -> Any:
        return worker_cls.options(**actor_options).remote(make_renderer)

    actors = [new_actor() for _ in range(size)]
    warm = []
    if post is not None:  # start the CPU workers (and their imports) while models load
        warm_task = ray.remote(_warm_up).options(num_cpus=post_cpus)
        free_cpus = int(resources.get("CPU", 1)) - (0 if gpus else size)
        warm = [warm_task.remote() for _ in range(max(1, free_cpus))]
    ray.get([actor.who.remote() for actor in actors] + warm)  # until every model is loaded
    report.startup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pending: dict[Any, tuple[Any, Queued, Any]] = {}
    posting: dict[Any, tuple[Queued, dict[str, list[dict[str, Any]]]]] = {}
    load = {id(a): 0 for a in actors}
    post_queue = options.post_queue or max(2, 2 * int(resources.get("CPU", 1)))
    if post is not None:
        post_ctx = ray.put(post.portable())
        post_task = ray.remote(max_retries=3)(_post_batch)
        post_task = post_task.options(num_cpus=post_cpus)
    by_job = post_rows or {}
    job_of = {job.key: job for job in jobs}
    uncached = set(job_of)  # rendered here, not yet in the cache
    writer = ThreadPoolExecutor(CACHE_WRITERS, "adgen-cache") if post is None else None
    storing: deque[Future[Rendered]] = deque()  # cache writes on the driver, in arrival order
    waiting: dict[str, list[dict[str, Any]]] = {}  # released, until their render is cached

    def fill(actor: Any) -> None:
        limit = len(actors) * options.in_flight + post_queue
        while (queue and load[id(actor)] < options.in_flight
               and len(pending) + len(posting) < limit):
            item = queue.popleft()
            status, records = actor.render.options(num_returns=2).remote(item[0])
            pending[status] = (actor, item, records)
            load[id(actor)] += 1
            report.peak_batches = max(report.peak_batches, len(pending) + len(posting))

    def stats_of(actor: Any) -> WorkerStats:
        key = actor._actor_id.hex()[:8]
        if key not in report.workers:
            gpu_ids, node, _ = ray.get(actor.who.remote())
            report.workers[key] = WorkerStats(gpu_ids, node[:8])
        return report.workers[key]

    def replace_actor(actor: Any) -> None:
        for other in [r for r, v in pending.items() if v[0] is actor]:
            _, item, _ = pending.pop(other)
            queue.appendleft(item)
        ray.kill(actor, no_restart=True)
        actors.remove(actor)
        replacement = new_actor()
        actors.append(replacement)
        load[id(replacement)] = 0
        report.replaced += 1

    def released(statuses: list[Status]) -> dict[str, list[dict[str, Any]]]:
        """Report a batch's renders; the assets now ready to make with it."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for job_key, error, quality in statuses:
            result = Rendered(job_key, None, error=error, quality=quality)
            keys = ready(result) if ready is not None else [] if error else [job_key]
            if on_rendered is not None:
                on_rendered(result)
            if error is not None:
                uncached.discard(job_key)
            for key in keys:
                rows[key] = by_job.get(key, [])
        return rows

    def post_later(rows: dict[str, list[dict[str, Any]]], batch_keys: set[str]
                   ) -> dict[str, list[dict[str, Any]]]:
        """The rows a batch's post task makes now; the others wait for their render's batch
        to reach the cache."""
        now = {}
        for key, units in rows.items():
            if key in uncached and key not in batch_keys:
                waiting[key] = units
            else:
                now[key] = units
        return now

    def stored(wait: bool) -> None:
        """Report the renders whose cache writes finished (all of them with ``wait``), in the
        order they arrived."""
        while storing and (wait or storing[0].done()):
            result = storing.popleft().result()
            if on_rendered is not None:
                on_rendered(result)

    def posted(ref: Any) -> None:
        item, rows = posting.pop(ref)
        try:
            node, results = ray.get(ref)
        except RayTaskError as exc:
            if isinstance(exc.cause, AdgenError):
                raise exc.cause from None
            raise
        except RayError as exc:  # its worker or the renders' node was lost: render again
            if item[0]:
                _requeue(queue, (item[0], item[1], rows), options, on_rendered, exc)
            else:  # renders from the cache, retried by Ray already: their jobs fail
                _fail([job_of[key] for key in rows], options, on_rendered, exc)
            return
        uncached.difference_update(job.key for job in item[0])
        for job_key, assets in results:
            report.post_nodes[node] = report.post_nodes.get(node, 0) + len(assets)
            if on_assets is not None:
                on_assets(job_key, assets)
        now = {key: waiting.pop(key) for key in list(waiting) if key not in uncached}
        if now:  # renders of this batch another batch released: their assets, from the cache
            posting[post_task.remote(post_ctx, now, [])] = (([], 0, None), now)

    try:
        for actor in actors:
            fill(actor)
        while pending or posting:
            done, _ = ray.wait([*pending, *posting], num_returns=1,
                               timeout=0.01 if storing else None)
            stored(wait=False)
            if not done:
                continue
            ref = done[0]
            if ref in posting:
                posted(ref)
                for actor in list(actors):
                    fill(actor)
                continue
            actor, item, records_ref = pending.pop(ref)
            batch, _, reposting = item
            load[id(actor)] -= 1
            try:
                statuses = ray.get(ref)
            except (RayActorError, RayTaskError) as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, AdgenError):
                    raise cause from None
                _requeue(queue, item, options, on_rendered, exc)
                replace_actor(actor)
                fill(actors[-1])
                continue
            stats = stats_of(actor)
            stats.batches += 1
            stats.images += len(statuses)
            if post is not None:
                rows = reposting if reposting is not None else post_later(
                    released(statuses), {job.key for job in batch})
                posting[post_task.remote(post_ctx, rows, records_ref)] = (item, rows)
            else:
                assert writer is not None
                storing.extend(writer.submit(_store, cache, record)
                               for record in ray.get(records_ref))
            if on_worker is not None:
                on_worker(actor._actor_id.hex()[:8], stats)
            fill(actor)
        stored(wait=True)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if writer is not None:  # renders already handed to a thread are cached; none is lost
            writer.shutdown(wait=True)
        report.seconds = time.perf_counter() - start
    return report


@dataclass(frozen=True)
class RayBackend:
    """Renders on a Ray actor pool (:func:`render_ray`); with ``backend.post: cluster`` it also
    makes each render's assets on the cluster, next to the render. Reports each worker's
    progress as a stage of its own (``gpu 0``, ``gpu 1``… or ``cpu 1a2b3c4d``)."""

    options: PoolOptions
    batch_size: int = 4
    posts_where_it_renders: bool = True

    @classmethod
    def from_campaign(cls, campaign: CampaignSpec) -> RayBackend:
        spec = campaign.backend
        options = PoolOptions(address=spec.address, gpus=spec.gpus,
                              gpus_per_worker=spec.gpus_per_worker, cpu_workers=spec.cpu_workers,
                              gpu_renderer=campaign.renderer.name in MODEL_RENDERERS)
        return cls(options, backend_batch_size(campaign.renderer.options), spec.post == "cluster")

    def render(self, make_renderer: RendererFactory, jobs: Sequence[RenderJob],
               cache: RenderCache, on_rendered: OnRendered, *, progress: Progress | None = None,
               post: ClusterPost | None = None) -> None:
        if not jobs:
            return

        def label(worker: str, stats: WorkerStats) -> str:
            return f"gpu {','.join(stats.gpu_ids)}" if stats.gpu_ids else f"cpu {worker}"

        def on_worker(worker: str, stats: WorkerStats) -> None:
            if progress:
                progress(label(worker, stats), stats.images, len(jobs))

        report = render_ray(
            make_renderer, jobs, cache, batch_size=self.batch_size, on_rendered=on_rendered,
            options=self.options, on_worker=on_worker,
            post=post.context if post else None, post_rows=post.rows if post else None,
            on_assets=post.on_assets if post else None, ready=post.ready if post else None)
        if progress:  # each worker's bar ends at its share of the jobs, all done
            for worker, stats in report.workers.items():
                progress(label(worker, stats), stats.images, stats.images)


def _no_gpus(options: PoolOptions) -> None:
    """``gpus`` asked of a cluster without GPUs: an error for a GPU renderer, else a warning
    (once per run: Python's default filter) that CPU workers render instead."""
    where = f"the Ray cluster at {options.address}" if options.address else "the Ray cluster"
    asked = f"--gpus {options.gpus} (backend.gpus) asks for GPUs, but {where} has none"
    if options.gpu_renderer:
        raise CampaignError(f"{asked}: the diffusion model would run on CPU workers, many "
                            "times slower; add GPU nodes, or leave --gpus out to render on "
                            "CPU workers knowingly (backend.cpu_workers sets how many)")
    warnings.warn(f"{asked}: rendering on CPU workers instead (backend.cpu_workers sets how "
                  "many)", RuntimeWarning, stacklevel=3)


def _requeue(
    queue: deque[Queued], item: Queued, options: PoolOptions,
    on_rendered: OnRendered | None, exc: Exception,
) -> None:
    """Put a batch whose actor (or post task's node) died back in the queue, or fail its jobs
    after max_attempts."""
    batch, attempts, reposting = item
    if attempts + 1 < options.max_attempts:
        queue.appendleft((batch, attempts + 1, reposting))
    else:
        _fail(batch, options, on_rendered, exc)


def _fail(jobs: list[RenderJob], options: PoolOptions, on_rendered: OnRendered | None,
          exc: Exception) -> None:
    """Report ``jobs`` as failed: their workers died ``max_attempts`` times."""
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    for job in jobs:
        if on_rendered is not None:
            on_rendered(Rendered(job.key, None, error=f"render worker failed "
                                 f"{options.max_attempts} times: {reason}"))
