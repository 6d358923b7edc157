"""The assignments table (``assignments_table``): the ledger mirrored into DuckDB and a real
PostgreSQL after each run, subset run, refresh and assign; a database that is down fails the
command with exit code 1 after its files are written, and the next command fills the table."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import adgen
from adgen.experiments.assignment import RefreshState
from tests.conftest import AUDIENCE_CSV, REPO, base_campaign, write_campaign
from tests.databases import Database
from tests.postgres import Server

CUSTOMERS = pd.read_csv(io.StringIO(AUDIENCE_CSV), dtype={"customer_id": str})
VARIANT = ["segment_id", "variant_id", "creative_id", "variant_index", "generation"]
EXPERIMENT = "test-campaign/default"


def campaign_with_table(root: Path, url: str) -> adgen.CampaignSpec:
    data = base_campaign(root)
    data["placements"] = ["300x250"]
    data["experiment"]["holdout"] = 0.5  # c1 (and c7) held out: NULL variants in the table
    data["assignments_table"] = {"url": url}
    return adgen.load_campaign(write_campaign(root, data))


def table(database: Database) -> pd.DataFrame:
    """The table's rows as assignments.csv writes them (NULL as empty), by customer."""
    frame = database.frame(f"SELECT * FROM adgen_assignments WHERE experiment = '{EXPERIMENT}' "
                           "ORDER BY customer_id")
    for column in ("variant_index", "generation"):
        frame[column] = frame[column].astype("Int64")
    return frame.astype(object).where(frame.notna(), "").astype(str)


def csv(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "assignments.csv", dtype=str, keep_default_na=False)
    return frame.sort_values("customer_id").reset_index(drop=True)


def ledger(campaign: adgen.CampaignSpec) -> pd.DataFrame:
    """The ledger's current rows in the table's form (held-out customers: empty variant)."""
    current = RefreshState.load(campaign.output_dir).ledger.current()
    current = current.sort_values("customer_id").reset_index(drop=True)
    frame = current[["customer_id", *VARIANT]].astype(str)
    frame.loc[current["holdout"].to_numpy(), VARIANT[1:]] = ""
    return frame


def rows_of(frame: pd.DataFrame, customers: pd.Series) -> pd.DataFrame:
    return frame[frame["customer_id"].isin(customers)].reset_index(drop=True)


def test_the_table_equals_assignments_after_a_run_a_subset_run_and_a_refresh(
        tmp_path: Path, database: Database) -> None:
    campaign = campaign_with_table(tmp_path, database.url)
    first = adgen.run(campaign)
    # 1. a run: one row per customer, as assignments.csv, held-out customers without variant
    mirrored = table(database)
    assert mirrored[["customer_id", *VARIANT, "holdout"]].to_dict("records") == [
        {**row, "holdout": str(row["holdout"] == "True")} for row in
        csv(first.out)[["customer_id", *VARIANT, "holdout"]].to_dict("records")]
    held = mirrored[mirrored["holdout"] == "True"]
    assert len(held) > 0 and set(held["variant_id"]) == {""}
    nulls = database.frame("SELECT count(*) AS n FROM adgen_assignments WHERE holdout AND "
                           "variant_id IS NULL AND variant_index IS NULL")
    assert int(nulls["n"].iloc[0]) == len(held)  # NULL, not an empty text
    assert (mirrored["ledger_part"] == "1").all()
    # 2. a subset run with a new customer: those rows change, the others stay (c7 is in c4's
    #    segment, so the refresh below judges c4's variant, though c4 is not in the subset)
    subset = pd.concat([CUSTOMERS.iloc[:3], CUSTOMERS.iloc[[3]].assign(customer_id="c7")])
    second = adgen.run(campaign, audience=subset)
    mirrored = table(database)
    assert mirrored["customer_id"].tolist() == [*sorted(CUSTOMERS["customer_id"]), "c7"]
    assert rows_of(mirrored, subset["customer_id"])[["customer_id", *VARIANT]].equals(
        csv(second.out)[["customer_id", *VARIANT]])
    assert mirrored[["customer_id", *VARIANT]].equals(ledger(campaign))
    # 3. a refresh of the subset retires v1 everywhere: customers outside it move too
    manifest = second.manifest.drop_duplicates("variant_id")
    results = pd.DataFrame({"variant_id": manifest["variant_id"], "users": 5000,
                            "conversions": [400 if i == 0 else 200
                                            for i in manifest["variant_index"]]})
    outcome = adgen.refresh(campaign, results, audience=subset)
    assert outcome.retired
    mirrored = table(database)
    assert rows_of(mirrored, subset["customer_id"])[["customer_id", *VARIANT]].equals(
        csv(outcome.run.out)[["customer_id", *VARIANT]])
    assert mirrored[["customer_id", *VARIANT]].equals(ledger(campaign))
    moved = mirrored[mirrored["variant_id"].str.endswith("-g1")]
    assert "c4" in set(moved["customer_id"])  # moved by the refresh, outside its audience
    # 4. assign writes it too
    assigned = adgen.assign(campaign)
    assert rows_of(table(database), assigned["customer_id"])["variant_id"].tolist() == \
        assigned.sort_values("customer_id")["variant_id"].tolist()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def adgen_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_database_that_is_down_fails_the_run_after_its_files_and_a_rerun_fills_it(
        tmp_path: Path, postgres: Server) -> None:
    with Database.postgres_schema(postgres) as database:
        campaign = campaign_with_table(tmp_path, database.url)
        adgen.run(campaign)
        before = table(database)
        # a refresh while the database is down: its files and state are committed, exit 1
        down = database.url.replace(f":{postgres.port}/", f":{_closed_port()}/")
        results = tmp_path / "results.csv"
        manifest = pd.read_parquet(campaign.output_dir / "manifest.parquet").drop_duplicates(
            "variant_id")
        pd.DataFrame({"variant_id": manifest["variant_id"], "users": 5000,
                      "conversions": [400 if i == 0 else 200 for i in manifest["variant_index"]]
                      }).to_csv(results, index=False)
        out = adgen_cli("refresh", campaign.source, "--results", results,
                        "--set", f"assignments_table.url={down}")
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "Connection refused" in lines[0]
        assert lines[0].startswith(f"error: assignments_table {down.partition('?')[0]} table "
                                   "adgen_assignments: connection failed")
        assert lines[0].endswith("(the output's files are written; the table is not); what "
                                 "was written is kept: run the same command again to finish")
        assert RefreshState.load(campaign.output_dir).refreshes == 1  # committed
        assert csv(campaign.output_dir)["variant_id"].str.endswith("-g1").any()
        assert table(database).equals(before)  # untouched
        # the database is back: a plain run (of part of the audience) fills the table in
        out = adgen_cli("run", campaign.source, "--audience", _subset(tmp_path))
        assert out.returncode == 0, out.stderr
        mirrored = table(database)
        assert mirrored[["customer_id", *VARIANT]].equals(ledger(campaign))
        assert mirrored["variant_id"].str.endswith("-g1").any()


def _subset(root: Path) -> Path:
    path = root / "two.csv"
    CUSTOMERS.iloc[:2].to_csv(path, index=False)
    return path


def test_a_table_of_another_shape_is_an_error_after_the_files(
        tmp_path: Path, database: Database) -> None:
    database.execute("CREATE TABLE adgen_assignments (experiment TEXT, customer_id TEXT, "
                     "PRIMARY KEY (experiment, customer_id))")
    campaign = campaign_with_table(tmp_path, database.url)
    with pytest.raises(adgen.OutputError) as info:
        adgen.run(campaign)
    assert not isinstance(info.value, adgen.StoreError)  # exit code 2: not an outage
    assert str(info.value).startswith(
        f"assignments_table {database.url.partition('?')[0]} table adgen_assignments: ")
    assert "ledger_part" in str(info.value)  # the first column it lacks
    assert str(info.value).endswith(
        "(the output's files are written; the table is not); fix the table or the campaign's "
        "assignments_table, then run the command again to fill it")
    assert len(csv(campaign.output_dir)) == 6


def test_other_databases_go_through_sqlalchemy(tmp_path: Path) -> None:
    """SQLite stands for any database with a SQLAlchemy dialect: the audience read through
    SQLAlchemy's server-side cursor, the table upserted row by row, a writing query undone."""
    import sqlite3

    path = tmp_path / "crm.sqlite"
    with sqlite3.connect(path) as connection:
        CUSTOMERS.to_sql("customers", connection, index=False)
    url = f"sqlite:///{path}"
    data = base_campaign(tmp_path)
    data["audience"] = {**{k: v for k, v in data["audience"].items() if k != "path"},
                        "sql": {"url": url, "query": "SELECT * FROM customers WHERE "
                                "first_name LIKE '%a%' OR first_name LIKE '%e%'"}}
    data["assignments_table"] = {"url": url}
    campaign = adgen.load_campaign(write_campaign(tmp_path, data))
    assigned = adgen.assign(campaign)
    assert sorted(assigned["customer_id"]) == ["c1", "c2", "c5", "c6"]  # no a or e: Chloé, Dmitri
    mirrored = table(Database("sqlite", url, url))
    assert mirrored["variant_id"].tolist() == assigned.sort_values("customer_id")[
        "variant_id"].tolist()
    adgen.assign(campaign)  # again: every row a conflict, replaced
    assert len(table(Database("sqlite", url, url))) == 4
    writing = campaign.model_copy(update={"audience": campaign.audience.model_copy(update={
        "sql": adgen.SqlSpec(url=url, query="DELETE FROM customers")})})
    with pytest.raises(adgen.AudienceError, match="the statement returns no rows"):
        adgen.plan(writing)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM customers").fetchone() == (6,)
