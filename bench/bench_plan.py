"""Planning throughput: load + segment + render prompts for a generated 1,000,000-customer
audience over ~200 segments. Prints rows/s; asserts nothing about time.

    .venv/bin/python bench/bench_plan.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import adgen


def make_customers(customers: int) -> pd.DataFrame:
    """The benchmark's audience: text ids, 10 regions × 20 tiers (200 segments), a category
    and a spend (bench_sql.py reads the same from databases)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "customer_id": np.char.add("C", np.arange(customers).astype(str)),
        "region": rng.choice([f"region-{i}" for i in range(10)], customers),
        "tier": rng.choice([f"tier-{i}" for i in range(20)], customers),
        "category": rng.choice(["running", "outdoor", "coffee", "fitness"], customers),
        "spend": rng.gamma(2.0, 40.0, customers).round(2),
    })


def campaign_data(name: str, audience: dict[str, Any], out: Path) -> dict[str, Any]:
    """Two creatives × two variants per segment over ``audience`` (its source: ``path`` or
    ``sql``), segmented by region and tier, with two aggregates."""
    return {
        "name": name,
        "audience": {**audience, "segment_by": ["region", "tier"],
                     "aggregates": {"fav": "category:mode", "avg_spend": "spend:mean"}},
        "creatives": [
            {"id": "hero", "prompt": "{{ fav }} gear in {{ region | title }} for {{ tier }}",
             "captions": {"headline": "Hi {{ region }}", "cta": "{{ avg_spend | round }}"}},
            {"id": "alt", "prompt": "{{ tier }} {{ fav }} still life",
             "captions": {"headline": "{{ segment_size }} fans"}},
        ],
        "variants": 2,
        "output": str(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audience = Path(tmp) / "audience.csv"
        make_customers(args.customers).to_csv(audience, index=False)
        campaign = adgen.campaign_from_dict(
            campaign_data("bench-plan", {"path": str(audience)}, Path(tmp) / "out"))
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
