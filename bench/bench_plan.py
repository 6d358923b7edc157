"""Planning throughput: load + segment + render prompts for a generated 1,000,000-customer
audience over ~200 segments. Prints rows/s; asserts nothing about time.

    .venv/bin/python bench/bench_plan.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import adgen


def make_audience(path: Path, customers: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "customer_id": np.char.add("C", np.arange(customers).astype(str)),
        "region": rng.choice([f"region-{i}" for i in range(10)], customers),
        "tier": rng.choice([f"tier-{i}" for i in range(20)], customers),
        "category": rng.choice(["running", "outdoor", "coffee", "fitness"], customers),
        "spend": rng.gamma(2.0, 40.0, customers).round(2),
    })
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audience = Path(tmp) / "audience.csv"
        make_audience(audience, args.customers)
        campaign = adgen.campaign_from_dict({
            "name": "bench-plan",
            "audience": {"path": str(audience), "segment_by": ["region", "tier"],
                         "aggregates": {"fav": "category:mode", "avg_spend": "spend:mean"}},
            "creatives": [
                {"id": "hero", "prompt": "{{ fav }} gear in {{ region | title }} for {{ tier }}",
                 "captions": {"headline": "Hi {{ region }}", "cta": "{{ avg_spend | round }}"}},
                {"id": "alt", "prompt": "{{ tier }} {{ fav }} still life",
                 "captions": {"headline": "{{ segment_size }} fans"}},
            ],
            "variants": 2,
            "output": str(Path(tmp) / "out"),
        })
        start = time.perf_counter()
        plan = adgen.plan(campaign)
        seconds = time.perf_counter() - start
    summary = plan.summary()
    print(f"customers        {summary['customers']:>12,}")
    print(f"segments         {summary['segments']:>12,}")
    print(f"variants / jobs  {summary['variants']:>6,} / {summary['jobs']:,}")
    print(f"plan time        {seconds:>12.2f} s   (load CSV + validate + segment + templates)")
    print(f"throughput       {summary['customers'] / seconds:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
