"""Scheduling efficiency of the Ray GPU pool, and what Ray costs when it is not needed.

1. A renderer that sleeps a fixed time per image (simulated GPU work) renders N jobs on G
   simulated GPUs: prints ideal time (N × t / G) / measured time, and the overhead per job.
2. Scaling: images/s on 1, 2, 4, 8 simulated GPUs against N × images/s on one (target: >= 0.9),
   renders only (the driver writes the cache). With post-processing on the cluster:
   ``bench_scale.py --only scale --post-ms X --nodes 1 2 4 8`` (its "of N x 1" column).
3. The same small campaign on the local backend and on the Ray backend with one worker.

    .venv/bin/python bench/bench_pool.py [--jobs 1000] [--gpus 8] [--ms 50] [--batch 4]
                                         [--scale 2 4 8] [--per-gpu 200]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import adgen  # noqa: E402
from adgen.backends.ray import PoolOptions, PoolReport, render_ray  # noqa: E402
from adgen.jobs import RenderJob  # noqa: E402
from adgen.output.cache import RenderCache  # noqa: E402
from tests.conftest import base_campaign  # noqa: E402
from tests.fakes import SeedRenderer  # noqa: E402


def pool_run(jobs: int, ms: float, batch: int, gpus: int | None = None) -> PoolReport:
    work = [RenderJob("seed", None, f"p{i}", "", i, 64, 64, 1, 0.0) for i in range(jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        factory = functools.partial(SeedRenderer, sleep=ms / 1000)
        return render_ray(factory, work, RenderCache(Path(tmp) / "c"), batch_size=batch,
                          options=PoolOptions(gpus=gpus, in_flight=2))


def scaling(per_gpu: int, counts: list[int], ms: float, batch: int) -> None:
    """images/s on each number of simulated GPUs against that many times one GPU's."""
    print(f"scaling, {per_gpu} jobs x {ms:.0f} ms per simulated GPU, batch {batch} "
          "(target >= 0.9 of N x one):")
    print("  GPUs  images/s  of N x one  of ideal")
    rate_one = 0.0
    for gpus in sorted(set([1, *counts])):
        report = pool_run(per_gpu * gpus, ms, batch, gpus=gpus)
        rate = per_gpu * gpus / report.seconds
        rate_one = rate_one or rate
        print(f"  {gpus:>4}  {rate:>8.1f}  {rate / (gpus * rate_one):>10.3f}  "
              f"{rate / (gpus * 1000 / ms):>8.3f}")


def pool_efficiency(jobs: int, gpus: int, ms: float, batch: int) -> None:
    report = pool_run(jobs, ms, batch)
    measured = report.seconds  # from the moment every actor has loaded its renderer
    ideal = jobs * ms / 1000 / gpus
    print(f"pool: {jobs} jobs x {ms:.0f} ms on {gpus} simulated GPUs, batch {batch}")
    print(f"  pool start-up (actors + renderer load, once per run): {report.startup_seconds:.2f} s")
    print(f"  ideal {ideal:.2f} s, measured {measured:.2f} s, efficiency {ideal / measured:.3f}")
    print(f"  overhead per job {(measured - ideal) / jobs * 1000:.2f} ms")
    print(f"  throughput {jobs / measured:.1f} images/s")


def local_vs_ray() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = base_campaign(root)
        data["placements"] = ["feed_square"]
        data["variants"] = 4
        campaign = adgen.campaign_from_dict(data, base_dir=root)
        timings = {}
        for backend in ("local", "ray"):
            spec = campaign.model_copy(update={"output": root / backend})
            start = time.perf_counter()
            adgen.run(spec, backend=backend)
            timings[backend] = time.perf_counter() - start
    print("same campaign (20 renders, 20 assets), offline renderer:")
    print(f"  local backend {timings['local']:.2f} s, ray backend with 1 CPU worker "
          f"{timings['ray']:.2f} s, ratio ray/local {timings['ray'] / timings['local']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8, help="simulated GPUs in the cluster")
    parser.add_argument("--scale", type=int, nargs="*", default=[2, 4, 8],
                        help="numbers of GPUs the scaling table compares with one")
    parser.add_argument("--per-gpu", type=int, default=200, help="jobs per GPU when scaling")
    parser.add_argument("--ms", type=float, default=50.0)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    # address="local": a cluster of its own, not one another process left running here
    ray.init(address="local", num_cpus=2, num_gpus=args.gpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        pool_efficiency(args.jobs, args.gpus, args.ms, args.batch)
        scaling(args.per_gpu, [g for g in args.scale if g <= args.gpus], args.ms, args.batch)
        ray.shutdown()
        ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False,
                 log_to_driver=False)
        local_vs_ray()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
