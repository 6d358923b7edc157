"""The render cost of pictures at each placement's shape (``renderer.aspect``).

Plans each example campaign three ways (``crop``: one render per variant; ``native``: one
render per aspect class its placements use; ``extend``: the square render plus one outpainted
render per other class), renders every job of one variant per creative and segment with the
offline renderer, and prints jobs, megapixels and seconds for each mode and their ratio to
``crop``, in the same process. With a diffusers model the cost scales with the jobs and pixels
printed (each job is one pipeline call). It asserts nothing about time.

    .venv/bin/python bench/bench_aspect.py [campaigns/*.yaml] [--variants 1]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import adgen
from adgen.backends.local import render_local
from adgen.output.cache import RenderCache
from adgen.renderers.offline import OfflineRenderer

REPO = Path(__file__).resolve().parents[1]


def measure(path: Path, mode: str, variants: int) -> tuple[int, float, float]:
    """Jobs, megapixels and seconds to render them all (extend jobs after their sources)."""
    with tempfile.TemporaryDirectory() as out:
        campaign = adgen.load_campaign(path, overrides=[
            f"variants={variants}", "experiment.weights=null", f"renderer.aspect={mode}",
            f"output={out}"])
        plan = adgen.plan(campaign)
        jobs = plan.to_render
        cache = RenderCache.of(out)
        make = functools.partial(OfflineRenderer, sources=cache.source)  # extend jobs read it
        start = time.perf_counter()
        first = [j for j in jobs if j.source_key is None]
        render_local(make, first, cache)
        render_local(make, [j for j in jobs if j.source_key is not None], cache)
        seconds = time.perf_counter() - start
    return len(jobs), sum(j.width * j.height for j in jobs) / 1e6, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="*", type=Path)
    parser.add_argument("--variants", type=int, default=1)
    args = parser.parse_args()
    paths = args.campaigns or sorted((REPO / "campaigns").glob("*.yaml"))
    print(f"{'campaign':22} {'mode':7} {'jobs':>5} {'Mpx':>7} {'seconds':>8} {'x crop':>7}")
    for path in paths:
        base = None
        for mode in ("crop", "native", "extend"):
            jobs, mpx, seconds = measure(path, mode, args.variants)
            base = base or seconds
            print(f"{path.stem:22} {mode:7} {jobs:5d} {mpx:7.1f} {seconds:8.2f} "
                  f"{seconds / base:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
