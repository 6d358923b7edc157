"""Audiences from SQL (``audience.sql``), on DuckDB and on a real PostgreSQL: the same customers
and segments as from the CSV, ids kept as text, passwords only from the environment, and every
failure one line naming the query."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import adgen
from adgen.sources import sql
from tests.conftest import AUDIENCE_CSV, REPO, base_campaign, write_campaign
from tests.databases import Database
from tests.postgres import Server

CUSTOMERS = pd.read_csv(io.StringIO(AUDIENCE_CSV), dtype={"customer_id": str})


def adgen_cli(*args: object, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def sql_campaign(root: Path, source: dict[str, Any]) -> Path:
    data = base_campaign(root)
    data["audience"] = {**{k: v for k, v in data["audience"].items() if k != "path"},
                        "sql": source}
    return write_campaign(root, data)


def test_a_sql_audience_plans_as_its_csv_does(tmp_path: Path, database: Database) -> None:
    customers = CUSTOMERS.assign(customer_id="00" + CUSTOMERS["customer_id"])
    database.load("customers", customers)
    campaign = adgen.load_campaign(sql_campaign(tmp_path, {"url": database.url,
                                                          "table": "customers"}))
    from_sql = adgen.plan(campaign)
    from_csv = adgen.plan(campaign, customers)
    assert from_sql.segments.contexts() == from_csv.segments.contexts()
    pd.testing.assert_frame_equal(from_sql.segments.members, from_csv.segments.members)
    members = from_sql.segments.members
    assert members["customer_id"].tolist() == ["00c1", "00c2", "00c3", "00c4", "00c5", "00c6"]
    assert from_sql.summary()["customers"] == 6


def test_numeric_ids_and_decimals_arrive_as_text_and_floats(tmp_path: Path,
                                                            database: Database) -> None:
    database.execute(  # ids in a NUMERIC column too: "7", never "7.0"
        "CREATE TABLE people (id NUMERIC(20, 0), region TEXT, tier TEXT, spend NUMERIC(10, 2))",
        "INSERT INTO people VALUES (7, 'north', 'gold', 10.25), (42, 'south', 'gold', 3.50), "
        "(900000000001, 'north', 'silver', NULL)")
    spec = adgen.SqlSpec(url=database.url, query="SELECT * FROM people ORDER BY id")
    campaign = adgen.load_campaign(sql_campaign(tmp_path, spec.model_dump(exclude_none=True)),
                                   overrides=["audience.id_column=id"])
    plan = adgen.plan(campaign)
    assert plan.segments.members["customer_id"].tolist() == ["7", "42", "900000000001"]
    contexts = {(c["region"], c["tier"]): c["avg_spend"] for c in plan.segments.contexts()}
    assert contexts[("north", "gold")] == pytest.approx(10.25)
    assert contexts[("south", "gold")] == pytest.approx(3.5)


@pytest.mark.parametrize(("query", "names"), [
    ("SELECT customer_id, region, tier, spennd FROM customers", ["spennd"]),
    ("SELECT * FROM clients", ["clients"]),
    ("SELECT customer_id, region, spend FROM customers", ["'tier'", "missing column"]),
])
def test_a_failing_query_is_an_error_naming_the_query_and_column(
        tmp_path: Path, database: Database, query: str, names: list[str]) -> None:
    database.load("customers", CUSTOMERS)
    campaign = adgen.load_campaign(sql_campaign(tmp_path, {"url": database.url,
                                                          "query": query}))
    with pytest.raises(adgen.AudienceError) as info:
        adgen.validate(campaign)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"audience.sql {database.url.partition('?')[0]} query {query!r}: ")
    for name in names:
        assert name in message


def test_the_cli_prints_a_failing_query_on_one_line_and_exits_2(tmp_path: Path,
                                                                database: Database) -> None:
    database.load("customers", CUSTOMERS)
    query = "SELECT customer_id, region, tier, spennd FROM customers"
    out = adgen_cli("validate", sql_campaign(tmp_path, {"url": database.url, "query": query}))
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith(f"error: audience.sql {database.url.partition('?')[0]} query "
                               f"{query!r}: ") and "spennd" in lines[0]


def test_a_sql_audience_cannot_change_the_database(tmp_path: Path, database: Database) -> None:
    database.load("customers", CUSTOMERS)
    for query in ("DELETE FROM customers", "DROP TABLE customers",
                  "WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone"):
        campaign = adgen.load_campaign(sql_campaign(tmp_path, {"url": database.url,
                                                              "query": query}))
        with pytest.raises(adgen.AudienceError, match=r"^audience\.sql .* query"):
            adgen.plan(campaign)
    assert len(database.frame("SELECT * FROM customers")) == 6
    if database.kind == "postgresql":  # and whatever the query, in a read-only transaction
        read_only = sql.read_table(database.url, "SELECT current_setting("
                                   "'transaction_read_only') AS setting")
        assert read_only.column("setting").to_pylist() == ["on"]


def test_reading_goes_in_batches_and_a_chunk_of_nulls_takes_the_others_types(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    database.execute("CREATE TABLE t (id TEXT, score INTEGER)",
                     "INSERT INTO t VALUES ('a', NULL), ('b', NULL), ('c', 3), ('d', 4), "
                     "('e', NULL)")
    monkeypatch.setattr(sql, "BATCH_ROWS", 2)
    query = "SELECT * FROM t ORDER BY id"
    with sql.open_database(database.url) as opened:
        batches = list(opened.batches(query))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    table = sql.read_table(database.url, query, text=["id"])
    assert table.schema.field("score").type == pa.int64() or \
        table.schema.field("score").type == pa.int32()
    assert table.column("score").to_pylist() == [None, None, 3, 4, None]
    assert sql.read_frame(database.url, query, text=["id"])["id"].tolist() == list("abcde")


def test_duckdb_reads_parquet_and_csv_globs_next_to_the_campaign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "crm").mkdir()
    CUSTOMERS.iloc[:3].to_parquet(tmp_path / "crm" / "part-1.parquet")
    CUSTOMERS.iloc[3:].to_parquet(tmp_path / "crm" / "part-2.parquet")
    (tmp_path / "crm" / "extra.csv").write_text(
        "customer_id,first_name,region,tier,spend\n00123,Gil,east,gold,4\n", encoding="utf-8")
    campaign = sql_campaign(tmp_path, {
        "url": "duckdb://",
        "query": "SELECT * FROM 'crm/*.parquet' UNION ALL SELECT * FROM 'crm/*.csv'"})
    monkeypatch.chdir(tmp_path.parent)  # relative names resolve against the campaign's folder
    plan = adgen.plan(adgen.load_campaign(campaign))
    assert sorted(plan.segments.members["customer_id"]) == sorted(
        [*CUSTOMERS["customer_id"], "00123"])


def test_a_password_written_in_a_url_is_refused_and_never_repeated(tmp_path: Path) -> None:
    data = base_campaign(tmp_path)
    data["audience"] = {"sql": {"url": "postgresql://crm:hunter2@db.internal/crm",
                                "table": "customers"}}
    data["assignments_table"] = {"url": "postgresql://db.internal/crm?password=hunter3"}
    out = adgen_cli("validate", write_campaign(tmp_path, data))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    path = tmp_path / "campaign.yaml"
    assert lines == [
        f"error: {path}: audience.sql.url: the URL holds a password written out; secrets come "
        "from the environment: write ${PGPASSWORD} (any variable name) in its place, or leave "
        "it out and set the driver's own variable (PGPASSWORD or ~/.pgpass for PostgreSQL)",
        f"error: {path}: assignments_table.url: the URL's password= parameter holds a password "
        "written out; secrets come from the environment: write ${PGPASSWORD} (any variable "
        "name) in its place, or leave it out and set the driver's own variable (PGPASSWORD or "
        "~/.pgpass for PostgreSQL)"]
    assert "hunter" not in out.stderr + out.stdout


def test_the_password_comes_from_the_environment(
        tmp_path: Path, postgres: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "p@ss:w/rd%20&?#"  # every character a URL gives a meaning to
    postgres.psql("DROP ROLE IF EXISTS reader; CREATE ROLE reader LOGIN PASSWORD "
                  f"'{secret}'; GRANT pg_read_all_data TO reader")
    base = f"127.0.0.1:{postgres.port}/postgres"
    query = {"query": "SELECT 'c' || g AS customer_id, 'north' AS region, 'gold' AS tier, "
                      "1.0 AS spend FROM generate_series(1, 3) g"}

    def plan(url: str) -> adgen.Plan:
        return adgen.plan(adgen.load_campaign(sql_campaign(tmp_path, {"url": url, **query})))

    monkeypatch.setenv("READER_PW", secret)
    assert plan(f"postgresql://reader:${{READER_PW}}@{base}").summary()["customers"] == 3
    monkeypatch.delenv("READER_PW")
    with pytest.raises(adgen.AudienceError, match=r"the environment variable READER_PW is not "
                       r"set \(the URL reads \$\{READER_PW\}\); set it before running adgen"):
        plan(f"postgresql://reader:${{READER_PW}}@{base}")
    monkeypatch.setenv("PGPASSWORD", secret)  # the driver's own variable
    assert plan(f"postgresql://reader@{base}").summary()["customers"] == 3
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(adgen.AudienceError) as info:
        plan(f"postgresql://reader@{base}")
    assert "password authentication failed" in str(info.value)
    assert "wrong" not in str(info.value) and secret not in str(info.value)


@pytest.mark.parametrize("url", [
    "postgresql://crm:hunter2@db/crm", "postgresql://crm:pa/ss@db/crm",  # '/' in a password
    "postgresql://crm:${A}x@db/crm", "postgresql://db/crm?sslmode=require&PASSWORD=hunter2",
    "mysql+pymysql://crm:hunter2@db/crm",
])
def test_urls_with_a_password_written_out_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="password written out"):
        sql.check_url(url)


def test_environment_values_are_encoded_where_the_url_needs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_NAME", "ana@crm")
    monkeypatch.setenv("SECRET", "p@ss:w/rd%")
    monkeypatch.setenv("DB", "crm_eu")
    url = sql.check_url("postgresql://${USER_NAME}:${SECRET}@db:5432/${DB}?sslmode=require")
    assert sql.expand(url) == \
        "postgresql://ana%40crm:p%40ss%3Aw%2Frd%25@db:5432/crm_eu?sslmode=require"
    from sqlalchemy.engine import make_url

    parsed = make_url(sql.expand(url))
    assert (parsed.username, parsed.password, parsed.database) == ("ana@crm", "p@ss:w/rd%",
                                                                   "crm_eu")


def test_duckdb_urls_resolve_against_the_campaign_folder(tmp_path: Path) -> None:
    folder = str(tmp_path).replace("/", "%2F")
    assert sql.resolve_url("duckdb:///crm.duckdb", tmp_path) == \
        f"duckdb:///{tmp_path}/crm.duckdb?file_search_path={folder}"
    assert sql.resolve_url("duckdb:////srv/crm.duckdb?threads=2", tmp_path) == \
        f"duckdb:////srv/crm.duckdb?threads=2&file_search_path={folder}"
    assert sql.resolve_url("duckdb://", tmp_path) == f"duckdb:///?file_search_path={folder}"
    assert sql.resolve_url("duckdb:///${DATA}/crm.duckdb?file_search_path=/x", tmp_path) == \
        "duckdb:///${DATA}/crm.duckdb?file_search_path=/x"
    assert sql.resolve_url("postgresql://db/crm", tmp_path) == "postgresql://db/crm"
