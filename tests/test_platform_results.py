"""Results from the ad platforms' own reports and from SQL: a Meta Ads Manager export (CSV and
XLSX) and a Google Ads ad report made to the platforms' documented shapes (two lines before
the header, thousands separators, ``--`` for empty, totals rows), matched back to variants by
the names adgen's exports gave the ads; and results per variant or per customer from DuckDB
and a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook

import adgen
from adgen.experiments.assignment import RefreshState
from tests.conftest import REPO
from tests.databases import Database
from tests.export_fixture import campaign_data

IMPRESSIONS = 5000
RATES = {0: 0.08, 1: 0.04}  # v1 converts at half v0's rate: a loser everywhere


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> adgen.RunResult:
    """A run whose Meta and Google exports name every ad (3 segments × 2 variants)."""
    root = tmp_path_factory.mktemp("platforms")
    data = campaign_data(root, to=["meta", "google"])
    data["variants"] = 2
    data["placements"] = ["feed_square", "display_1.91"]
    return adgen.run(adgen.campaign_from_dict(data, base_dir=root))


def exported(output: adgen.RunResult, path: str) -> list[dict[str, str]]:
    text = (output.out / "exports" / path).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def index_of(output: adgen.RunResult) -> dict[str, int]:
    ads = output.manifest.drop_duplicates("variant_id")
    return dict(zip(ads["variant_id"], ads["variant_index"].astype(int), strict=True))


def verdicts(analysis: adgen.Analysis) -> dict[str, str]:
    table = analysis.table
    return dict(zip(table.loc[table["scope"] == "all", "variant_id"],
                    table.loc[table["scope"] == "all", "verdict"], strict=True))


def adgen_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


# --- Meta Ads Manager -----------------------------------------------------------------------

META_HEADER = ["Reporting starts", "Reporting ends", "Campaign name", "Ad set name", "Ad name",
               "Ad delivery", "Results", "Result indicator", "Reach", "Impressions",
               "Cost per results", "Amount spent (USD)", "Link clicks", "Ends"]


def meta_rows(output: adgen.RunResult) -> list[list[Any]]:
    """Two days per ad (a daily breakdown), named as the bulk sheet named them, and an ad of
    another campaign."""
    index = index_of(output)
    rows: list[list[Any]] = []
    for ad in exported(output, "meta/bulk_import.csv"):
        name = ad["Ad Name"]
        results = IMPRESSIONS * RATES[index[name]]
        for day, share in (("2026-11-01", 0.4), ("2026-11-02", 0.6)):
            rows.append([day, day, ad["Campaign Name"], ad["Ad Set Name"], name, "active",
                         results * share, "actions:link_click", 1900, IMPRESSIONS * share,
                         0.31, 60.5, results * share + 3, "Ongoing"])
    rows.append(["2026-11-01", "2026-11-02", "Black Friday", "BF all", "BF teaser", "active",
                 12, "actions:link_click", 900, 1000, 0.2, 2.4, 12, "Ongoing"])
    return rows


def test_a_meta_ads_manager_csv_is_matched_by_ad_name(output: adgen.RunResult,
                                                      tmp_path: Path) -> None:
    report = tmp_path / "meta.csv"
    with report.open("w", encoding="utf-8-sig", newline="") as handle:  # Meta writes a BOM
        writer = csv.writer(handle)
        writer.writerow(META_HEADER)
        writer.writerows([[f"{v:g}" if isinstance(v, float) else v for v in row]
                          for row in meta_rows(output)])
    analysis = adgen.analyze(output.out, report)
    table = analysis.table
    overall = table[table["scope"] == "all"].set_index("variant_id")
    assert overall.loc["hero-v0", "users"] == 3 * IMPRESSIONS  # two days summed, 3 segments
    assert overall.loc["hero-v0", "conversions"] == 3 * IMPRESSIONS * RATES[0]
    assert verdicts(analysis) == {"hero-v0": "control", "hero-v1": "loser"}
    assert analysis.srm == {}  # impressions follow Meta's delivery, not adgen's split
    assert analysis.notes == [
        f"{report} (Meta Ads Manager export): 1 row matches no variant of this output, not "
        "counted: line 14 (ad 'BF teaser')"]


def workbook(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def test_a_meta_ads_manager_xlsx_with_a_summary_row(output: adgen.RunResult,
                                                   tmp_path: Path) -> None:
    workbook(tmp_path / "meta.xlsx", [
        META_HEADER, *meta_rows(output)[:-1], [None] * len(META_HEADER),
        ["Total", None, None, None, None, None, 1200, None, None, 30000]])
    out = adgen_cli("analyze", output.out, "--results", tmp_path / "meta.xlsx")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"note: {tmp_path / 'meta.xlsx'} (Meta Ads Manager export): row 15: totals rows, not "
        "counted"]
    analysis = pd.read_csv(output.out / "analysis.csv")
    assert set(analysis.loc[analysis["variant_id"].str.endswith("v1"), "verdict"]) == {"loser"}


# --- Google Ads -----------------------------------------------------------------------------

GOOGLE_HEADER = ["Ad status", "Ad ID", "Final URL", "Campaign", "Ad group", "Impr.", "Clicks",
                 "Conversions", "Cost"]


def google_report(output: adgen.RunResult, *, conversions: dict[int, str] | None = None,
                  impressions: str = "5,000") -> list[list[str]]:
    """The "Ad" report as Google Ads downloads it: title, date range, header, one row per ad
    (the final URL the export wrote), an ad of another campaign, totals rows."""
    index = index_of(output)
    wanted = conversions or {i: f"{IMPRESSIONS * rate:,.2f}" for i, rate in RATES.items()}
    rows = [["Ad report"], ["November 1, 2026 - November 30, 2026"], GOOGLE_HEADER]
    for number, ad in enumerate(exported(output, "google/responsive_display_ads.csv")):
        variant = ad["Final URL"].rsplit("utm_content=", 1)[1]
        rows.append(["Enabled", str(681234567890 + number), ad["Final URL"], ad["Campaign"],
                     ad["Ad group"], impressions, "1,210", wanted[index[variant]], "1,234.56"])
    rows.append(["Paused", "699999999999", "https://shop.example/other", "Black Friday", "BF",
                 "1,000", "--", "--", "--"])
    rows.append(["Total: Account", "--", "--", "--", "--", "31,000", "7,260", "1,212.00",
                 "7,407.36"])
    rows.append(["Total: Display Network", "--", "--", "--", "--", "31,000", "7,260", "1,212.00",
                 "7,407.36"])
    return rows


def write_google(path: Path, rows: list[list[str]], *, excel: bool = False) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t" if excel else ",", lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-16" if excel else "utf-8"))
    return path


@pytest.mark.parametrize("excel", [False, True], ids=["csv", "csv-for-excel"])
def test_a_google_ads_report_is_matched_by_final_url(output: adgen.RunResult, tmp_path: Path,
                                                     excel: bool) -> None:
    report = write_google(tmp_path / "ads.csv", google_report(output), excel=excel)
    analysis = adgen.analyze(output.out, report)
    overall = analysis.table[analysis.table["scope"] == "all"].set_index("variant_id")
    assert overall.loc["hero-v1", "users"] == 3 * IMPRESSIONS
    assert overall.loc["hero-v1", "conversions"] == 3 * IMPRESSIONS * RATES[1]
    assert verdicts(analysis) == {"hero-v0": "control", "hero-v1": "loser"}
    where = f"{report} (Google Ads report)"
    assert analysis.notes == [
        f"{where}: lines 11, 12: totals rows, not counted",
        f"{where}: 1 row matches no variant of this output, not counted: line 10 (ad ID "
        "'699999999999')"]


def test_fractional_conversions_are_rounded_per_variant_and_said(output: adgen.RunResult,
                                                                 tmp_path: Path) -> None:
    report = write_google(tmp_path / "ads.csv", google_report(
        output, conversions={0: "400.60", 1: "--"}))
    analysis = adgen.analyze(output.out, report)
    overall = analysis.table[analysis.table["scope"] == "all"].set_index("variant_id")
    assert overall.loc["hero-v0", "conversions"] == 3 * 401  # each segment's ad rounded
    assert overall.loc["hero-v1", "conversions"] == 0  # "--" is empty
    assert any("fractional conversions" in note for note in analysis.notes)


@pytest.mark.parametrize(("change", "message"), [
    ({"impressions": "5.000,0"}, r"line 4: Impr\.: '5\.000,0' is not a count as the platform "
                                 r"writes it in English"),
    ({"impressions": "12"}, r"lines? \d+: variant 'hero-.*' has \d+ conversions but 12 "
                            r"impressions; conversions cannot exceed impressions"),
])
def test_numbers_a_report_cannot_mean_are_errors_naming_the_line(
        output: adgen.RunResult, tmp_path: Path, change: dict[str, str], message: str) -> None:
    report = write_google(tmp_path / "ads.csv", google_report(output, **change))
    with pytest.raises(adgen.ResultsError, match=message):
        adgen.analyze(output.out, report)


def test_a_report_of_other_ads_only_is_an_error(output: adgen.RunResult, tmp_path: Path) -> None:
    rows = google_report(output)
    report = write_google(tmp_path / "ads.csv", [*rows[:3], *rows[-3:]])
    out = adgen_cli("analyze", output.out, "--results", report)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: {report} (Google Ads report): no row matches a variant of this output; adgen's "
        "exports name each ad by its variant id (Meta: the ad name; Google Ads: utm_content in "
        "the final URL): report on the ads that export created"]


def test_an_xlsx_that_is_no_meta_export_is_refused(output: adgen.RunResult,
                                                   tmp_path: Path) -> None:
    workbook(tmp_path / "results.xlsx", [["variant_id", "users", "conversions"], ["a", 1, 0]])
    with pytest.raises(adgen.ResultsError, match=r"not a Meta Ads Manager export: no row of its "
                       r"first sheet has the columns 'Ad name', 'Impressions'"):
        adgen.analyze(output.out, tmp_path / "results.xlsx")


# --- SQL --------------------------------------------------------------------------------------


def test_results_per_variant_and_per_customer_from_sql(output: adgen.RunResult, tmp_path: Path,
                                                       database: Database) -> None:
    index = index_of(output)
    per_variant = pd.DataFrame({"variant_id": list(index), "users": IMPRESSIONS,
                                "conversions": [int(IMPRESSIONS * RATES[i])
                                                for i in index.values()]})
    database.load("variant_results", per_variant)
    query = "SELECT variant_id, users, conversions FROM variant_results WHERE users > 0"
    from_sql = adgen.analyze(output.out, adgen.SqlSpec(url=database.url, query=query))
    from_csv = adgen.analyze(output.out, per_variant)
    pd.testing.assert_frame_equal(from_sql.table, from_csv.table)
    # per customer, joined to the ledger: ids as text, whatever the column's type
    current = RefreshState.load(output.out).ledger.current()
    customers = pd.DataFrame({"customer_id": current["customer_id"],
                              "converted": [i % 2 for i in range(len(current))]})
    database.load("conversions", customers)
    out = adgen_cli("analyze", output.out, "--results-sql", database.url,
                    "--query", "SELECT customer_id, converted FROM conversions")
    assert out.returncode == 0, out.stderr
    written = pd.read_csv(output.out / "analysis.csv")
    assert written["users"].sum() == 2 * len(customers)  # each customer in a segment and overall
    assert written["conversions"].sum() == 2 * customers["converted"].sum()


def test_results_sql_usage_and_a_failing_query(output: adgen.RunResult,
                                               database: Database) -> None:
    out = adgen_cli("analyze", output.out, "--results-sql", database.url)
    assert out.returncode == 2 and "--results-sql needs --query SQL" in out.stderr
    out = adgen_cli("analyze", output.out)
    assert out.returncode == 2 and "give --results FILE, or --results-sql URL with --query SQL" \
        in out.stderr
    out = adgen_cli("analyze", output.out, "--results-sql", database.url,
                    "--query", "SELECT variant, users FROM nothing_here")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing_here" in lines[0]
    assert lines[0].startswith(f"error: results {database.url.partition('?')[0]} query "
                               "'SELECT variant, users FROM nothing_here': ")
