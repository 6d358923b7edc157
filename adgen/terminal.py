"""The experiment results as a terminal table, laid out for the terminal's width.

One section per scope (each segment, then ``all``), every cell in full: the variant id, its
uplift, interval and verdict always; the other columns only while they fit the width, in the
order of :data:`OPTIONAL` until one does not (``analysis.csv`` has them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from adgen.experiments.analysis import OVERALL, Analysis

HEADERS = ("variant", "users", "conv.", "rate", "uplift", "95% CI", "p (adj.)", "P(win)",
           "verdict")
OPTIONAL = ("p (adj.)", "P(win)", "rate", "users", "conv.")
"""Columns shown while they fit, most wanted first."""
VERDICT_STYLES = {"winner": "green", "loser": "red", "control": "cyan"}


def cells(row: Mapping[str, Any]) -> dict[str, str]:
    """One analysis row as text, by header: nothing but the rate for a control."""
    treated = row["uplift"] is not None and row["uplift"] == row["uplift"]  # not None, not NaN
    return {
        "variant": str(row["variant_id"]), "users": f"{row['users']:,}",
        "conv.": f"{row['conversions']:,}", "rate": f"{row['rate']:.2%}",
        "uplift": f"{row['uplift']:+.1%}" if treated else "",
        "95% CI": f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]" if treated else "",
        "p (adj.)": f"{row['p_adjusted']:.3g}" if treated else "",
        "P(win)": f"{row['chance_to_win']:.1%}" if treated else "",
        "verdict": str(row["verdict"]),
    }


def analysis_table(analysis: Analysis, console: Console) -> tuple[Table, list[str]]:
    """The table for ``console``'s width, and the optional columns it leaves out."""
    rows = [{str(k): v for k, v in row.items()} for row in analysis.table.to_dict("records")]
    shown = [h for h in HEADERS if h not in OPTIONAL]
    for header in OPTIONAL:
        wider = [h for h in HEADERS if h in shown or h == header]
        if _width(console, _table(rows, wider)) > console.width:
            break
        shown = wider
    return _table(rows, shown), [h for h in OPTIONAL if h not in shown]


def _table(rows: list[dict[str, Any]], headers: list[str]) -> Table:
    table = Table(title="experiment results", box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 1, 0, 0))
    for header in headers:
        table.add_column(header, justify="left" if header in ("variant", "verdict") else "right",
                         no_wrap=header != "variant", overflow="fold")
    scope = None
    for row in rows:
        if row["scope"] != scope:
            scope = row["scope"]
            if table.row_count:
                table.add_section()
            title = "all segments (arms pooled)" if scope == OVERALL else f"segment {scope}"
            table.add_row(f"[bold]{title}[/bold]", *[""] * (len(headers) - 1))
        text = cells(row)
        style = VERDICT_STYLES.get(text["verdict"], "")
        table.add_row(*(f"[{style}]{text[h]}[/]" if h == "verdict" and style else text[h]
                        for h in headers))
    return table


def _width(console: Console, table: Table) -> int:
    """The table's natural width (wider than the console: it is not wrapped)."""
    unlimited = console.options.update(width=10_000)
    return Measurement.get(console, unlimited, table).maximum
