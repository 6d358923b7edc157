"""Assignment ledger at scale: assign 1,000,000 new customers against a ledger that already
holds 10,000,000 (``adgen.assign`` end to end: plan, ledger lookup, hashing, new ledger part),
against the same assignment into an empty ledger (the baseline: no lookup), in one process.
Also times the same million returning (nothing to write) and reading every customer's current
row (what per-customer analysis does). Prints figures and ratios; asserts nothing about time.

    .venv/bin/python bench/bench_ledger.py            # 10M ledger, 1M new customers
    .venv/bin/python bench/bench_ledger.py --quick    # 1M ledger, 100k new (a few seconds)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import adgen
from adgen.experiments.assignment import RefreshState
from adgen.experiments.ledger import _META_KEY, SCHEMA, Ledger, new_part_info

REGIONS = [f"region-{i}" for i in range(10)]
TIERS = [f"tier-{i}" for i in range(20)]


def make_audience(first: int, count: int) -> pd.DataFrame:
    rng = np.random.default_rng(first)
    return pd.DataFrame({
        "customer_id": np.char.add("C", np.arange(first, first + count).astype(str)),
        "region": rng.choice(REGIONS, count), "tier": rng.choice(TIERS, count),
    })


def make_campaign(out: Path) -> adgen.CampaignSpec:
    return adgen.campaign_from_dict({
        "name": "bench-ledger",
        "audience": {"path": "unused.csv", "segment_by": ["region", "tier"]},
        "creatives": [{"id": "hero", "prompt": "{{ tier }} in {{ region }}"},
                      {"id": "alt", "prompt": "{{ region }} still life"}],
        "variants": 2,
        "output": str(out),
        "experiment": {"seed": "bench", "holdout": 0.05},
    }, base_dir=out.parent)


def seed_ledger(out: Path, customers: int) -> None:
    """A committed ledger of ``customers`` rows (one part), written directly with pyarrow."""
    rng = np.random.default_rng(1)
    creative = pa.array(rng.choice(["hero", "alt"], customers))
    index = rng.integers(0, 2, customers, dtype=np.int32)
    segment = pc.binary_join_element_wise(
        "s", pc.cast(pa.array(rng.integers(10**9, 10**10, customers)), pa.string()), "")
    ids = pc.binary_join_element_wise("C", pc.cast(pa.array(np.arange(customers)), pa.string()),
                                      "")
    table = pa.table({
        "customer_id": ids, "segment_id": segment,
        "segment": pa.array(np.full(customers, '{"region": "region-0", "tier": "tier-0"}')),
        "creative_id": creative,
        "variant_index": index, "generation": np.zeros(customers, dtype=np.int32),
        "variant_id": pc.binary_join_element_wise(creative, segment, "-"),
        "holdout": np.zeros(customers, dtype=bool), "reason": np.full(customers, "new"),
        "at": pa.array(np.full(customers, pd.Timestamp.now(tz="UTC").value // 10**6),
                       type=pa.timestamp("ms", tz="UTC")),
    }, schema=SCHEMA)
    info = new_part_info(1, command="run", refresh=0, seed="bench", weights=[0.25] * 4,
                         holdout=0.05, arms=[("hero", 0), ("hero", 1), ("alt", 0), ("alt", 1)])
    ledger = Ledger(out, 0)
    ledger.root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({_META_KEY: info.to_json().encode()}),
                   ledger.root / "part-000001.parquet", compression="zstd")
    state = RefreshState(out, ledger_seq=1)
    state.commit()


def timed(label: str, action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"{label:<46} {seconds:8.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledger", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="1M ledger, 100k new customers")
    args = parser.parse_args()
    if args.quick:
        args.ledger, args.new = 1_000_000, 100_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        new = make_audience(args.ledger, args.new)
        empty = make_campaign(root / "empty" / "out")
        full = make_campaign(root / "full" / "out")
        timed(f"seed a ledger of {args.ledger:,}", lambda: seed_ledger(full.output_dir,
                                                                       args.ledger))
        base = timed(f"assign {args.new:,} new, empty ledger (baseline)",
                     lambda: adgen.assign(empty, audience=new))
        incremental = timed(f"assign {args.new:,} new, {args.ledger:,} ledger",
                            lambda: adgen.assign(full, audience=new))
        again = timed(f"assign the same {args.new:,} again (no change)",
                      lambda: adgen.assign(full, audience=new))
        ledger = RefreshState.load(full.output_dir).ledger
        read = timed(f"current row of all {args.ledger + args.new:,}", ledger.current)
        parts = sorted(ledger.root.glob("part-*.parquet"))
        size = sum(p.stat().st_size for p in parts)
    print(f"ledger on disk   {size / 2**20:,.1f} MiB in {len(parts)} parts "
          f"({size / (args.ledger + args.new):.1f} bytes per customer)")
    print(f"throughput       {args.new / incremental:,.0f} new customers/s against the ledger")
    print(f"ratio            {incremental / base:.2f}x the empty-ledger baseline; "
          f"returning customers {again / base:.2f}x; full read {read:.1f} s")


if __name__ == "__main__":
    main()
