"""Customers per second: vectorised ``assign_arms`` vs the reference SDK's per-id Python loop.

    .venv/bin/python bench/bench_assign.py [--customers 10000000] [--sample 200000]

The loop uses the ``growthbook`` package's ``gbhash`` + ``chooseVariation`` when it is installed,
else adgen's scalar ``gb_hash``; it runs on a sample and is extrapolated. Prints figures only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from adgen.experiments.hashing import assign_arms, bucket_ranges, choose_variation, gb_hash

SEED = "bench-exp"
WEIGHTS = [0.5, 0.3, 0.2]


def reference_loop() -> tuple[str, Callable[[Sequence[str]], list[int]]]:
    """The per-id loop a GrowthBook SDK user would write, and where it comes from."""
    try:
        from growthbook.core import chooseVariation, gbhash, getBucketRanges
    except ImportError:
        ranges = bucket_ranges(len(WEIGHTS), 1.0, WEIGHTS)

        def own(ids: Sequence[str]) -> list[int]:
            return [choose_variation(gb_hash(SEED, i) or 0.0, ranges) for i in ids]

        return "adgen.experiments.hashing.gb_hash loop", own
    gb_ranges = getBucketRanges(len(WEIGHTS), 1, WEIGHTS)

    def sdk(ids: Sequence[str]) -> list[int]:
        return [chooseVariation(gbhash(SEED, i, 2) or 0.0, gb_ranges) for i in ids]

    return "growthbook.core gbhash + chooseVariation loop", sdk


def make_ids(count: int) -> pd.Series:
    """CRM-like ids: a prefix and a zero-padded number, plus a few non-ASCII ones."""
    ids = pd.Series(np.char.add("cust-", np.arange(count).astype("U9")), dtype=object)
    ids.iloc[::1000] = ids.iloc[::1000] + "-ü😀"
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=200_000)
    args = parser.parse_args()

    ids = make_ids(args.customers)
    start = time.perf_counter()
    assign_arms(ids, seed=SEED, weights=WEIGHTS)
    vector_s = time.perf_counter() - start
    vector_rate = args.customers / vector_s
    start = time.perf_counter()
    arms = assign_arms(ids, seed=SEED, weights=WEIGHTS, holdout=0.05)
    holdout_s = time.perf_counter() - start

    name, loop = reference_loop()
    sample = ids.iloc[: args.sample].tolist()
    start = time.perf_counter()
    loop_arms = loop(sample)
    loop_s = time.perf_counter() - start
    loop_rate = args.sample / loop_s

    # Sanity (not timing): without holdout the vectorised arms equal the loop's arms.
    check = assign_arms(ids.iloc[: args.sample], seed=SEED, weights=WEIGHTS)
    agree = bool(np.array_equal(check, np.asarray(loop_arms)))
    shares = np.bincount(arms + 1, minlength=len(WEIGHTS) + 1) / args.customers

    print(f"vectorised assign_arms: {args.customers:,} customers in {vector_s:.2f} s"
          f" = {vector_rate:,.0f} customers/s")
    print(f"  with a 5% holdout (a second hash): {holdout_s:.2f} s"
          f" = {args.customers / holdout_s:,.0f} customers/s")
    print(f"reference ({name}): {args.sample:,} in {loop_s:.2f} s = {loop_rate:,.0f} customers/s"
          f" -> {args.customers / loop_rate:.1f} s for {args.customers:,} (extrapolated)")
    print(f"speed-up: {vector_rate / loop_rate:.1f}x; arms agree with the loop: {agree}")
    print("shares (holdout, arms...):", " ".join(f"{s:.4f}" for s in shares))


if __name__ == "__main__":
    main()
