"""A platform's report (:mod:`adgen.sources.reports`) matched back to the variants of an output.

adgen's own exports name each ad by its variant id: the Meta bulk sheet's ``Ad Name`` is the
variant id, and each Google Ads ad's ``Final URL`` carries it as ``utm_content``. A report row
is a variant's when its ad name, or a query value of its final URL, is one of the output's
variant ids. The counts of a variant's rows are summed (a report broken down by day or
placement has several). Totals rows, rows that match no variant and rows that match several
are left out and reported (notes), never counted.

Users are impressions; conversions are the report's conversions (Meta's ``Results``), else its
clicks. Attributed conversions can be fractional: a variant's sum is rounded to a whole number
(and that is noted).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from adgen.errors import ResultsError
from adgen.sources.reports import Report, lines


def _named(row: pd.Series) -> set[str]:
    """What a report row calls its ad: its name, and every query value of its final URL."""
    names = {str(row["ad_name"])} if row["ad_name"] else set()
    if row["final_url"]:
        names |= {value for _, value in parse_qsl(urlsplit(str(row["final_url"])).query)}
    return names


def _shown(row: pd.Series) -> str:
    for key, label in (("ad_name", "ad"), ("ad_id", "ad ID"), ("final_url", "final URL")):
        if row[key]:
            return f"{label} {str(row[key])[:80]!r}"
    return "no ad name, ID or final URL"


def match_report(report: Report, catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Users and conversions per ``segment_id, variant_id`` of ``catalog`` from a report's
    rows, and notes on the rows left out; :class:`ResultsError` when no row matches."""
    where = f"{report.where} ({report.title})"
    segment_of = dict(zip(catalog["variant_id"], catalog["segment_id"], strict=True))
    rows = report.rows
    notes = []
    totals = rows[rows["total"]]
    if len(totals):
        notes.append(f"{where}: {lines(report, totals['line'])}: totals rows, not counted")
    data = rows[~rows["total"]]
    matched = [sorted(_named(row) & segment_of.keys()) for _, row in data.iterrows()]
    variant = pd.Series([m[0] if len(m) == 1 else "" for m in matched], index=data.index,
                        dtype=object)
    for label, mask in (("no variant of this output", [not m for m in matched]),
                        ("several variants", [len(m) > 1 for m in matched])):
        left = data[np.asarray(mask, dtype=bool)]
        if len(left):
            shown = ", ".join(f"{report.row_word} {line} ({_shown(row)})"
                              for line, (_, row) in zip(left["line"][:5], left.iterrows(),
                                                        strict=False))
            more = f" and {len(left) - 5} more" if len(left) > 5 else ""
            rows_match = "1 row matches" if len(left) == 1 else f"{len(left)} rows match"
            notes.append(f"{where}: {rows_match} {label}, not counted: {shown}{more}")
    counted = data[variant != ""].assign(variant_id=variant[variant != ""])
    if counted.empty:
        raise ResultsError(
            f"{where}: no row matches a variant of this output; adgen's exports name each ad "
            "by its variant id (Meta: the ad name; Google Ads: utm_content in the final URL): "
            "report on the ads that export created")
    sums = counted.groupby("variant_id", sort=True).agg(
        users=("impressions", "sum"), conversions=(report.counted, "sum"),
        lines=("line", list))
    if (sums["conversions"] != sums["conversions"].round()).any():
        notes.append(f"{where}: fractional {report.counted} (attributed conversions): each "
                     "variant's sum is rounded to a whole number")
    sums["conversions"] = sums["conversions"].round()
    over = sums[sums["conversions"] > sums["users"]]
    if len(over):
        name, first = over.index[0], over.iloc[0]
        raise ResultsError(
            f"{where}: {lines(report, first['lines'])}: variant {name!r} has "
            f"{first['conversions']:.0f} {report.counted} but {first['users']:.0f} impressions; "
            f"{report.counted} cannot exceed impressions")
    frame = pd.DataFrame({
        "segment_id": [segment_of[v] for v in sums.index], "variant_id": list(sums.index),
        "users": sums["users"].round().astype("int64").to_numpy(),
        "conversions": sums["conversions"].astype("int64").to_numpy()})
    if report.counted == "clicks":
        notes.append(f"{where}: no conversions column: clicks are counted as conversions")
    return frame, notes
