"""End to end at scale: renders on a simulated GPU pool, post-processing on the driver or on the
cluster; the engine (Ray Data) against the hand-made pool; threads against processes locally.

1. scale: a renderer that sleeps ``--ms`` per image (simulated GPU work) on 1, 2 and 4
   simulated nodes (each one GPU and ``--cpus-per-node`` logical CPUs), real post-processing
   (crops, logo, captions, encoding, provenance) of every render into the campaign's placements.
   Prints assets/s and efficiency = ideal / measured, ideal = renders × ms / nodes (the GPUs
   never wait), for ``post: driver`` (PNGs stream to the driver, threads post-process) and
   ``post: cluster`` (a CPU task next to each batch).
2. engine: the same sleeping renderer on G simulated GPUs through the hand-made actor pool
   (adgen.backends.ray) and through Ray Data (map_batches over an actor pool with num_gpus,
   then a CPU stage writing the cache, streaming): start-up, time, efficiency.
3. local: post-processing of the same cached renders on threads and on processes.

    .venv/bin/python bench/bench_scale.py [--quick] [--ms 20] [--variants 8]

Prints figures; asserts nothing about time. Every simulated node shares this machine's cores:
see the README's "Running at scale" for what that does and does not show.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import adgen  # noqa: E402
from adgen.assets import AssetMaker, asset_units, brand_style, post_context  # noqa: E402
from adgen.backends.local import render_local  # noqa: E402
from adgen.backends.ray import PoolOptions, render_ray  # noqa: E402
from adgen.jobs import RenderJob  # noqa: E402
from adgen.pipeline import render_cache  # noqa: E402
from adgen.store import RenderCache  # noqa: E402
from tests.conftest import base_campaign  # noqa: E402
from tests.fakes import SeedRenderer  # noqa: E402

PLACEMENTS = ["300x250", "320x50"]


def _campaign(root: Path, variants: int) -> adgen.CampaignSpec:
    data = base_campaign(root)
    data.update(variants=variants, placements=PLACEMENTS, report=False, output=str(root / "out"))
    data["renderer"].update(width=256, height=256)
    return adgen.campaign_from_dict(data, base_dir=root)


def _start(nodes: int, cpus_per_node: int) -> None:
    ray.init(num_cpus=nodes * cpus_per_node, num_gpus=nodes, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})


def scale_run(mode: str, variants: int, ms: float, nodes: int) -> tuple[float, int, float]:
    """One run on the current cluster: (seconds after pool start-up, assets, start-up s)."""
    with tempfile.TemporaryDirectory() as tmp:
        campaign = _campaign(Path(tmp), variants)
        plan = adgen.plan(campaign)
        ctx = post_context(plan, render_cache(campaign), brand_style(campaign))
        factory = functools.partial(SeedRenderer, sleep=ms / 1000)
        start = time.perf_counter()
        if mode == "cluster":
            rows: list[Any] = []
            report = render_ray(factory, plan.to_render, ctx.cache, batch_size=4, post=ctx,
                                post_rows=asset_units(plan),
                                on_assets=lambda _, results: rows.extend(results))
            assets = len(rows)
        else:
            with AssetMaker(plan, ctx, None, workers=os.cpu_count()) as maker:
                report = render_ray(factory, plan.to_render, ctx.cache, batch_size=4,
                                    on_rendered=lambda r: maker.submit(r.job_key))
                assets = len(maker.results())
        total = time.perf_counter() - start - report.startup_seconds
        return total, assets, report.startup_seconds


def scale(node_counts: list[int], variants: int, ms: float, cpus_per_node: int) -> None:
    renders = 5 * variants
    print(f"1. scale: {renders} renders x {ms:.0f} ms, {len(PLACEMENTS)} placements each, "
          f"{cpus_per_node} logical CPUs per simulated node, {os.cpu_count()} real cores")
    print("   nodes  post     assets/s  ideal s  measured s  efficiency  (pool start-up s)")
    for nodes in node_counts:
        _start(nodes, cpus_per_node)
        try:
            ideal = renders * ms / 1000 / nodes
            for mode in ("driver", "cluster"):
                seconds, assets, startup = scale_run(mode, variants, ms, nodes)
                print(f"   {nodes:>5}  {mode:<7}  {assets / seconds:>8.1f}  {ideal:>7.2f}  "
                      f"{seconds:>10.2f}  {ideal / seconds:>10.2f}  ({startup:.1f})")
        finally:
            ray.shutdown()


class _DataRenderer:
    """Ray Data's stateful UDF: builds the renderer once, maps a batch of jobs to PNG rows."""

    def __init__(self, ms: float) -> None:
        self.renderer = SeedRenderer(sleep=ms / 1000)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from adgen.store import encode_render

        jobs = [_job(int(i)) for i in batch["i"]]
        out: dict[str, list[Any]] = {"key": [], "png": [], "info": []}
        for result in self.renderer(jobs):
            png, info = encode_render(result)
            out["key"].append(result.job_key)
            out["png"].append(png)
            out["info"].append(repr(info))
        return out


def _write_cache(batch: dict[str, Any], root: str) -> dict[str, Any]:
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
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
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
                  .map_batches(_write_cache, fn_kwargs={"root": str(Path(tmp) / "b")},
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
        cache = render_cache(campaign)
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
    parser.add_argument("--only", choices=["scale", "engine", "local"], default=None)
    args = parser.parse_args()
    variants = 2 if args.quick else args.variants
    nodes = [1, 2] if args.quick else [1, 2, 4]
    if args.only in (None, "scale"):
        scale(nodes, variants, args.ms, args.cpus_per_node)
    if args.only in (None, "engine"):
        engine(40 if args.quick else 200, 2 if args.quick else 4, args.ms)
    if args.only in (None, "local"):
        local(variants)


if __name__ == "__main__":
    main()
