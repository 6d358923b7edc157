"""End to end at scale: renders on a simulated GPU pool, post-processing on the driver or on the
cluster; the engine (Ray Data) against the hand-made pool; threads against processes locally.

1. scale: a renderer that sleeps ``--ms`` per image (simulated GPU work) on 1, 2 and 4
   simulated nodes (each one GPU and ``--cpus-per-node`` logical CPUs), real post-processing
   (crops, logo, captions, encoding, provenance) of every render into the campaign's placements.
   Prints assets/s and efficiency = ideal / measured, ideal = renders × ms / nodes (the GPUs
   never wait), for ``post: driver`` (PNGs stream to the driver, threads post-process) and
   ``post: cluster`` (a CPU task next to each batch).
   With ``--post-ms X``, post-processing is simulated too: each asset sleeps X ms (no CPU), so
   the scheduling architecture is measured, not this machine's two cores. Post capacity is
   then ``--cpus-per-node`` per node on the cluster and ``--driver-threads`` on the driver;
   ``--post-ms`` = cpus-per-node × ms / placements matches it to the render capacity of a node.
   Each run renders ``--renders-per-node`` × nodes images (the same ideal time at every scale).
2. engine: the same sleeping renderer on G simulated GPUs through the hand-made actor pool
   (adgen.backends.ray) and through Ray Data (map_batches over an actor pool with num_gpus,
   then a CPU stage writing the cache, streaming): start-up, time, efficiency.
3. local: post-processing of the same cached renders on threads and on processes.

    .venv/bin/python bench/bench_scale.py [--quick] [--ms 20] [--variants 8]
    .venv/bin/python bench/bench_scale.py --only scale --post-ms 20 --cpus-per-node 2 \
        --nodes 1 2 4 8

Prints figures; asserts nothing about time. Every simulated node shares this machine's cores:
see the README's "Running at scale" for what that does and does not show.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import ray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import adgen  # noqa: E402
from adgen.assets import (  # noqa: E402
    JobResults,
    PostContext,
    asset_units,
    brand_style,
    post_context,
)
from adgen.backends.local import AssetMaker, render_local  # noqa: E402
from adgen.backends.ray import PoolOptions, render_ray  # noqa: E402
from adgen.jobs import Rendered, RenderJob  # noqa: E402
from adgen.manifest import failed_row  # noqa: E402
from adgen.output.cache import RenderCache  # noqa: E402
from tests.conftest import base_campaign  # noqa: E402
from tests.fakes import SeedRenderer  # noqa: E402

PLACEMENTS = ["300x250", "320x50"]
BATCH = 4


def _campaign(root: Path, variants: int, size: int = 256) -> adgen.CampaignSpec:
    """5 segments x ``variants`` renders (more than 100 variants: as several creatives)."""
    data = base_campaign(root)
    creatives = math.ceil(variants / 100)
    hero = data["creatives"][0]
    data["creatives"] = [{**hero, "id": f"hero{i}", "prompt": f"{hero['prompt']} {i}"}
                         for i in range(creatives)] if creatives > 1 else [hero]
    data.update(variants=math.ceil(variants / creatives), placements=PLACEMENTS, report=False,
                output=str(root / "out"))
    data["renderer"].update(width=size, height=size)
    return adgen.campaign_from_dict(data, base_dir=root)


@dataclass(frozen=True)
class SleepingPost(PostContext):
    """Post-processing that sleeps ``post_ms`` per asset (simulated work that takes no CPU)
    and returns manifest-shaped rows without writing a file. Module-level: Ray pickles it."""

    post_ms: float = 0.0

    def job_rows(self, rows: list[dict[str, Any]], fresh: Rendered | None = None
                 ) -> JobResults:
        time.sleep(self.post_ms / 1000 * len(rows))
        placements = self.campaign.placements
        return [({**failed_row(row, self.campaign, placements[row["placement_index"]], ""),
                  "status": "ok", "aspect": row["aspect"], "render": row["render"]}, False)
                for row in rows]


def _start(nodes: int, cpus_per_node: int) -> None:
    ray.init(address="local", num_cpus=nodes * cpus_per_node, num_gpus=nodes,
             include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})


@dataclass(frozen=True)
class Setting:
    """One scale run's workload: ms per render, simulated ms per asset (0: real
    post-processing), the driver's post threads, renders per run (None: 5 × ``variants``)."""

    ms: float
    post_ms: float = 0.0
    driver_threads: int | None = None
    variants: int = 8
    renders_per_node: int | None = None

    def variants_for(self, nodes: int) -> int:
        if self.renders_per_node is None:
            return self.variants
        return math.ceil(self.renders_per_node * nodes / 5)


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (all its threads: the driver's loop, Ray's
    core worker, the driver's post threads) and by its descendants (the local Ray cluster:
    GCS, raylet, actors, workers; exited ones once reaped), from /proc (0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        parents[int(name)] = int(stat[1])  # utime, stime, cutime, cstime follow at 11-14
        used[int(name)] = sum(int(v) for v in stat[11:15]) / tick
    me = os.getpid()

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 1)
            if pid == me:
                return True
        return False

    return time.process_time(), sum(t for pid, t in used.items() if descends(pid))


class CpuMeter:
    """CPU per render after the pool's start-up: CPU at the first finished render and at every
    25th after it (not at the end: the pool's actors exit, and their CPU with them)."""

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None
        self.last: tuple[int, tuple[float, float]] | None = None
        self.count = 0

    def tick(self) -> None:
        if self.first is None:
            self.first = cpu_seconds()
            return
        self.count += 1
        if self.count % 25 == 0:
            self.last = (self.count, cpu_seconds())

    def per_render(self) -> tuple[float, float] | None:
        """CPU seconds of the driver and of the cluster per render, between the snapshots
        (None: too few renders)."""
        if self.first is None or self.last is None:
            return None
        count, now = self.last
        return ((now[0] - self.first[0]) / count, (now[1] - self.first[1]) / count)


def scale_run(mode: str, setting: Setting, nodes: int
              ) -> tuple[float, int, float, int, tuple[float, float] | None]:
    """One run on the current cluster: (seconds after pool start-up, assets, start-up s,
    renders, CPU seconds per render of the driver and of the cluster after start-up)."""
    with tempfile.TemporaryDirectory() as tmp:
        simulated = setting.post_ms > 0
        campaign = _campaign(Path(tmp), setting.variants_for(nodes), 64 if simulated else 256)
        plan = adgen.plan(campaign)
        ctx = post_context(plan, RenderCache.of(campaign.output_location), brand_style(campaign))
        if simulated:
            ctx = SleepingPost(**{f.name: getattr(ctx, f.name) for f in fields(PostContext)},
                               post_ms=setting.post_ms)
        factory = functools.partial(SeedRenderer, sleep=setting.ms / 1000)
        meter = CpuMeter()
        start = time.perf_counter()
        if mode == "cluster":
            rows: list[Any] = []

            def on_assets(_: str, results: JobResults) -> None:
                meter.tick()
                rows.extend(results)

            report = render_ray(factory, plan.to_render, ctx.cache, batch_size=BATCH, post=ctx,
                                post_rows=asset_units(plan), on_assets=on_assets)
            assets = len(rows)
        else:
            threads = setting.driver_threads or os.cpu_count()
            with AssetMaker(plan, ctx, None, workers=threads) as maker:

                def on_rendered(result: Rendered) -> None:
                    meter.tick()
                    maker.submit(result.job_key)

                report = render_ray(factory, plan.to_render, ctx.cache, batch_size=BATCH,
                                    on_rendered=on_rendered)
                assets = len(maker.results())
        total = time.perf_counter() - start - report.startup_seconds
        return total, assets, report.startup_seconds, len(plan.to_render), meter.per_render()


def scale(node_counts: list[int], setting: Setting, cpus_per_node: int) -> None:
    ms, post_ms = setting.ms, setting.post_ms
    if post_ms:
        threads = setting.driver_threads or os.cpu_count() or 1
        print(f"1. scale, simulated post-processing: renders x {ms:.0f} ms, "
              f"{len(PLACEMENTS)} placements x {post_ms:.0f} ms each; post capacity "
              f"{cpus_per_node} CPUs per simulated node (cluster) or {threads} driver threads; "
              f"{os.cpu_count()} real cores")
        print(f"   render capacity per node {1000 / ms:.0f} renders/s, post capacity per node "
              f"{cpus_per_node * 1000 / (post_ms * len(PLACEMENTS)):.0f} renders/s")
    else:
        print(f"1. scale: renders x {ms:.0f} ms, {len(PLACEMENTS)} placements each (real "
              f"post-processing), {cpus_per_node} logical CPUs per simulated node, "
              f"{os.cpu_count()} real cores")
    # a pipeline's shortest time: the GPUs never wait, plus the first batch's render and the
    # last batch's post-processing (one CPU: batch x placements x post ms), which nothing hides
    latency = BATCH * ms / 1000 + BATCH * len(PLACEMENTS) * post_ms / 1000
    print("   efficiency = ideal / measured, ideal = renders x ms / nodes (the GPUs never wait)"
          + (f"; pipeline efficiency adds the fill and drain latency ({latency:.2f} s)"
             if post_ms else ""))
    print("   nodes  post     renders  images/s  of N x 1  assets/s  ideal s  measured s  "
          "efficiency  " + ("pipeline eff.  " if post_ms else "")
          + "CPU ms/render: driver, cluster  (start-up s)")
    print("   (CPU after the first render: the driver process; the cluster = every Ray process "
          "of this machine's local cluster)")
    one: dict[str, float] = {}  # images/s on the first node count, per mode
    for nodes in node_counts:
        _start(nodes, cpus_per_node)
        try:
            for mode in ("driver", "cluster"):
                seconds, assets, startup, renders, cpu = scale_run(mode, setting, nodes)
                ideal = renders * ms / 1000 / nodes
                rate = renders / seconds
                base = one.setdefault(mode, rate / nodes)
                pipeline = f"{(ideal + latency) / seconds:>13.2f}  " if post_ms else ""
                print(f"   {nodes:>5}  {mode:<7}  {renders:>7}  {rate:>8.1f}  "
                      f"{rate / (nodes * base):>8.2f}  {assets / seconds:>8.1f}  "
                      f"{ideal:>7.2f}  {seconds:>10.2f}  {ideal / seconds:>10.2f}  {pipeline}"
                      + (f"{cpu[0] * 1000:>20.2f}  {cpu[1] * 1000:>7.1f}  " if cpu
                         else f"{'n/a (few renders)':>29}  ")
                      + f"({startup:.1f})", flush=True)
        finally:
            ray.shutdown()


class _DataRenderer:
    """Ray Data's stateful UDF: builds the renderer once, maps a batch of jobs to PNG rows."""

    def __init__(self, ms: float) -> None:
        self.renderer = SeedRenderer(sleep=ms / 1000)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from adgen.output.cache import encode_render

        jobs = [_job(int(i)) for i in batch["i"]]
        out: dict[str, list[Any]] = {"key": [], "png": [], "info": []}
        for result in self.renderer(jobs):
            png, info = encode_render(result)
            out["key"].append(result.job_key)
            out["png"].append(png)
            out["info"].append(repr(info))
        return out


def _write_cache(batch: Any, root: str) -> dict[str, Any]:  # Ray Data's batch: a dict of columns
    import ast

    cache = RenderCache(root)
    for key, png, info in zip(batch["key"], batch["png"], batch["info"], strict=True):
        cache.put_encoded(str(key), bytes(png), ast.literal_eval(str(info)))
    return {"key": batch["key"]}


def _job(i: int) -> RenderJob:
    return RenderJob("seed", None, f"p{i}", "", i, 64, 64, 1, 0.0)


def engine(jobs: int, gpus: int, ms: float) -> None:
    print(f"2. engine: {jobs} renders x {ms:.0f} ms on {gpus} simulated GPUs, batch 4, "
          "cache written by a CPU stage")
    ideal = jobs * ms / 1000 / gpus
    ray.init(address="local", num_cpus=2, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            report = render_ray(functools.partial(SeedRenderer, sleep=ms / 1000),
                                [_job(i) for i in range(jobs)], RenderCache(Path(tmp) / "a"),
                                batch_size=4, options=PoolOptions())
            total = time.perf_counter() - start
            print(f"   hand-made pool: start-up {report.startup_seconds:.2f} s, total "
                  f"{total:.2f} s, efficiency after start-up {ideal / report.seconds:.2f}, "
                  f"overall {ideal / total:.2f}")
            from ray.data import ActorPoolStrategy

            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            start = time.perf_counter()
            first = None
            ds = (ray.data.from_items([{"i": i} for i in range(jobs)])
                  .map_batches(_DataRenderer, fn_constructor_kwargs={"ms": ms}, batch_size=4,
                               compute=ActorPoolStrategy(size=gpus), num_gpus=1)
                  .map_batches(functools.partial(_write_cache, root=str(Path(tmp) / "b")),
                               batch_size=4, num_cpus=1))
            done = 0
            for batch in ds.iter_batches(batch_size=None):
                if first is None:
                    first = time.perf_counter() - start
                done += len(batch["key"])
            total = time.perf_counter() - start
            assert done == jobs
            print(f"   Ray Data:       first result after {first:.2f} s, total {total:.2f} s, "
                  f"overall efficiency {ideal / total:.2f}")
    finally:
        ray.shutdown()


def local(variants: int) -> None:
    print(f"3. local post-processing, {5 * variants} cached renders x {len(PLACEMENTS)} "
          f"placements, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        campaign = _campaign(Path(tmp), variants)
        plan = adgen.plan(campaign)
        cache = RenderCache.of(campaign.output_location)
        render_local(SeedRenderer, plan.to_render, cache)
        timings = {}
        for processes in (False, True):
            for asset in Path(tmp, "out", "assets").rglob("*"):
                if asset.is_file():
                    asset.unlink()
            ctx = post_context(plan, cache, brand_style(campaign))
            start = time.perf_counter()
            with AssetMaker(plan, ctx, None, processes=processes) as maker:
                for key in asset_units(plan):
                    maker.submit(key)
                assets = len(maker.results())
            timings[processes] = time.perf_counter() - start
            label = "processes" if processes else "threads  "
            print(f"   {label}: {assets / timings[processes]:.1f} assets/s "
                  f"({timings[processes]:.2f} s, process start-up included)")
        print(f"   processes/threads speed-up: {timings[False] / timings[True]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="nodes 1 and 2, fewer renders")
    parser.add_argument("--ms", type=float, default=20.0)
    parser.add_argument("--variants", type=int, default=8, help="renders = 5 x variants")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--nodes", type=int, nargs="+", default=None,
                        help="simulated node counts (default 1 2 4; --quick: 1 2)")
    parser.add_argument("--post-ms", type=float, default=0.0,
                        help="simulate post-processing: ms per asset (0: real post-processing)")
    parser.add_argument("--driver-threads", type=int, default=None,
                        help="the driver's post threads (default: this machine's cores; "
                        "with --post-ms: --cpus-per-node, the driver being one such node)")
    parser.add_argument("--renders-per-node", type=int, default=None,
                        help="with --post-ms: renders per run = this x nodes (default 200)")
    parser.add_argument("--only", choices=["scale", "engine", "local"], default=None)
    args = parser.parse_args()
    variants = 2 if args.quick else args.variants
    nodes = args.nodes or ([1, 2] if args.quick else [1, 2, 4])
    if args.only in (None, "scale"):
        simulated = args.post_ms > 0
        setting = Setting(
            args.ms, args.post_ms,
            args.driver_threads or (args.cpus_per_node if simulated else None), variants,
            args.renders_per_node or (200 if simulated else None))
        scale(nodes, setting, args.cpus_per_node)
    if args.only in (None, "engine"):
        engine(40 if args.quick else 200, 2 if args.quick else 4, args.ms)
    if args.only in (None, "local"):
        local(variants)


if __name__ == "__main__":
    main()
