"""Audiences from SQL: plan 1,000,000 customers read from PostgreSQL and from DuckDB against the
same customers read from Parquet, in the same run; then upsert their assignments into each
database's assignments table. Prints rows/s and peak memory; asserts nothing about time.

    .venv/bin/python bench/bench_sql.py [--customers 1000000]

Each source is read, and planned, in a fresh subprocess, ``--repeat`` times (the fastest is
shown: the machine may be shared); its memory is the process's resident size sampled every
2 ms while it reads (or plans), less its size before ("grew"). PostgreSQL is
the server that ``ADGEN_TEST_POSTGRES`` names (``.ci/run`` starts one), else a throwaway one
(tests/postgres.py); without PostgreSQL installed its rows are skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_plan import campaign_data, make_customers  # noqa: E402  (the same audience)

from tests import postgres  # noqa: E402  (the repository's own test server helper)

PASSWORD_ENV = "ADGEN_BENCH_PGPASSWORD"


def resident() -> int:
    """This process's resident memory in bytes (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


class PeakMemory(threading.Thread):
    """The largest resident size seen while it runs, sampled every 2 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = resident()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, resident())


def child(mode: str, data: dict[str, Any]) -> None:
    """In a fresh process: read the audience (``read``) or plan the campaign (``plan``), and
    print the seconds, rows and memory as JSON."""
    import adgen
    from adgen.audience.read import read_audience
    from adgen.sources import sql  # noqa: F401  (its drivers are imported before measuring)

    campaign = adgen.campaign_from_dict(data)
    base = resident()
    sampler = PeakMemory()
    sampler.start()
    start = time.perf_counter()
    if mode == "read":
        rows = len(read_audience(campaign.audience).frame)
    else:
        rows = adgen.plan(campaign).summary()["customers"]
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    print(json.dumps({"rows": rows, "seconds": seconds, "peak": max(sampler.peak, resident()),
                      "base": base}))


def measure(mode: str, data: dict[str, Any], env: dict[str, str], repeat: int) -> dict[str, Any]:
    """The fastest of ``repeat`` fresh processes."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(data)],
                              capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise RuntimeError(done.stderr.strip()[-2000:])
        runs.append(dict(json.loads(done.stdout.strip().splitlines()[-1])))
    return min(runs, key=lambda run: float(run["seconds"]))


def load_postgres(server: postgres.Server, frame: pd.DataFrame) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user,
                         password=server.password, dbname="postgres") as connection:
        connection.execute("DROP TABLE IF EXISTS bench_customers")
        connection.execute("CREATE TABLE bench_customers (customer_id text, region text, "
                           "tier text, category text, spend numeric(12, 2))")
        text = io.StringIO()
        frame.to_csv(text, index=False, header=False)
        with connection.cursor() as cursor, cursor.copy(
                "COPY bench_customers FROM STDIN (FORMAT csv)") as copy:
            copy.write(text.getvalue())
        connection.execute("ANALYZE bench_customers")


def assignments(frame: pd.DataFrame) -> pa.Table:
    """A million rows of the assignments table (its schema), as a run would upsert them."""
    from adgen.experiments.table import SCHEMA

    now = pd.Timestamp.now(tz="UTC").floor("ms")
    count = len(frame)
    held = np.arange(count) % 10 == 0
    table = pd.DataFrame({
        "experiment": "bench-sql/default", "customer_id": frame["customer_id"],
        "segment_id": "s" + frame["region"] + frame["tier"],
        "variant_id": pd.Series(np.char.add("hero-s-v", (np.arange(count) % 2).astype(str))
                                ).mask(held),
        "creative_id": pd.Series("hero", index=range(count)).mask(held),
        "variant_index": pd.array(np.where(held, 0, np.arange(count) % 2), dtype="Int32"),
        "generation": pd.array(np.zeros(count, dtype=np.int32), dtype="Int32"),
        "holdout": held, "ledger_part": np.int32(1), "assigned_at": now, "updated_at": now})
    return pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False)


def time_upsert(url: str, rows: pa.Table) -> tuple[float, float]:
    """Seconds to upsert ``rows`` into a new table, then again (every row a conflict)."""
    from adgen.sources.sql import open_database

    times = []
    for _ in range(2):
        start = time.perf_counter()
        with open_database(url, write=True) as database:
            database.upsert("bench_assignments", rows, ["experiment", "customer_id"])
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CAMPAIGN_JSON"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    frame = make_customers(args.customers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame.to_parquet(folder / "customers.parquet")
        import duckdb

        with duckdb.connect(str(folder / "crm.duckdb")) as connection:
            connection.execute("CREATE TABLE customers AS SELECT * FROM "
                               f"read_parquet('{folder / 'customers.parquet'}')")
        sources: dict[str, dict[str, Any]] = {
            "Parquet": {"path": str(folder / "customers.parquet")},
            "DuckDB": {"sql": {"url": f"duckdb:///{folder / 'crm.duckdb'}",
                               "table": "customers"}},
            "DuckDB over Parquet": {"sql": {"url": "duckdb://", "query": "SELECT * FROM "
                                            f"'{folder / 'customers.parquet'}'"}},
        }
        env = dict(os.environ)
        server, started = _postgres()
        if server is not None:
            load_postgres(server, frame)
            env[PASSWORD_ENV] = server.password
            sources["PostgreSQL"] = {"sql": {"url": server.url(password=f"${{{PASSWORD_ENV}}}"),
                                             "table": "bench_customers"}}
        try:
            report(sources, folder, env, args.customers, args.repeat)
            os.environ[PASSWORD_ENV] = env.get(PASSWORD_ENV, "")
            sinks = {"DuckDB": f"duckdb:///{folder / 'crm.duckdb'}"}
            if server is not None:
                sinks["PostgreSQL"] = server.url(password=f"${{{PASSWORD_ENV}}}")
            rows = assignments(frame)
            print(f"\nassignments table: upsert of {rows.num_rows:,} rows, one transaction")
            for name, url in sinks.items():
                fresh, again = time_upsert(url, rows)
                print(f"{name:<20} new table {fresh:6.2f} s ({rows.num_rows / fresh:>9,.0f} "
                      f"rows/s)   all rows again {again:6.2f} s "
                      f"({rows.num_rows / again:>9,.0f} rows/s)")
        finally:
            if started and server is not None:
                postgres.stop(server.folder)


def _postgres() -> tuple[postgres.Server | None, bool]:
    """The server to use, and whether this run started it."""
    shared = os.environ.get(postgres.SERVER_ENV)
    if shared:
        return postgres.running(Path(shared)), False
    try:
        return postgres.start(), True
    except FileNotFoundError as exc:
        print(f"PostgreSQL skipped: {exc}")
        return None, False


def report(sources: dict[str, dict[str, Any]], folder: Path, env: dict[str, str],
           customers: int, repeat: int) -> None:
    print(f"{customers:,} customers, 200 segments; each figure the fastest of {repeat} fresh "
          "processes")
    print(f"{'source':<20} {'read':>8} {'rows/s':>11} {'grew':>8}   {'plan':>8} {'rows/s':>11} "
          f"{'grew':>8}   plan time")
    baseline: float | None = None
    for name, audience in sources.items():
        data = campaign_data("bench-sql", audience, folder / "out")
        read = measure("read", data, env, repeat)
        plan = measure("plan", data, env, repeat)
        baseline = baseline or plan["seconds"]
        grew = [(m["peak"] - m["base"]) / 2**20 for m in (read, plan)]
        print(f"{name:<20} {read['seconds']:>7.2f}s {read['rows'] / read['seconds']:>11,.0f} "
              f"{grew[0]:>6.0f}MB   {plan['seconds']:>7.2f}s "
              f"{plan['rows'] / plan['seconds']:>11,.0f} {grew[1]:>6.0f}MB"
              f"   {plan['seconds'] / baseline:.2f}× Parquet's")


if __name__ == "__main__":
    main()
