"""The ad platforms' performance reports, read into one frame whatever the platform.

Which report a file is, and which of its columns adgen reads, is data (:data:`PLATFORMS`): per
platform, the header names of each field (the first one present wins) and the header names
that tell its reports apart. Fields: ``ad_name``, ``ad_id``, ``final_url`` (text) and
``impressions``, ``clicks``, ``conversions`` (numbers).

- **Meta Ads Manager export**, CSV or XLSX: the header on the first row (``Ad name``,
  ``Impressions``, ``Link clicks``, ``Results``, …), one row per ad (or per ad and day, with a
  breakdown).
- **Google Ads report** (the "Ad" report): a CSV whose header follows two lines, the report's
  title and its date range; UTF-8 with commas, or UTF-16 with tabs ("CSV for Excel");
  ``Ad ID``, ``Final URL``, ``Impr.``, ``Clicks``, ``Conversions``; numbers with thousands
  separators (``1,234``), ``--`` for an empty value, ``Total: …`` rows at the end.

Empty values (``--``, blank) count as 0. A row whose first cell is ``Total``, ``Total: …`` or
``Total (…)`` is a totals row (``total``); the experiment analysis reports it and leaves it out
(:mod:`adgen.experiments.analysis` matches the rows to variants).
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import ResultsError, listed

TEXT_FIELDS = ("ad_name", "ad_id", "final_url")
COUNT_FIELDS = ("impressions", "clicks", "conversions")


@dataclass(frozen=True)
class ReportFormat:
    """One platform's report: its name in messages, the headers that mark it (all present
    in one of its first rows), and the header names of each field adgen reads."""

    title: str
    signature: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]]
    names_an_ad: tuple[str, ...]
    """The fields that say which ad a row is (a report needs one of them)."""


PLATFORMS: dict[str, ReportFormat] = {
    "google": ReportFormat(
        title="Google Ads report",
        signature=("Impr.",),
        columns={"ad_name": ("Ad name",), "ad_id": ("Ad ID",), "final_url": ("Final URL",),
                 "impressions": ("Impr.",), "clicks": ("Clicks",),
                 "conversions": ("Conversions",)},
        names_an_ad=("final_url", "ad_name"),
    ),
    "meta": ReportFormat(
        title="Meta Ads Manager export",
        signature=("Ad name", "Impressions"),
        columns={"ad_name": ("Ad name", "Ad Name"), "ad_id": ("Ad ID",),
                 "impressions": ("Impressions",), "clicks": ("Link clicks", "Clicks (all)"),
                 "conversions": ("Results",)},
        names_an_ad=("ad_name",),
    ),
}
"""The reports adgen reads, tried in this order (Google's ``Impr.`` first: a Google Demand
Gen report has an ``Ad name`` column too)."""

HEADER_ROWS = 10
"""How many of a file's first rows are searched for a report's header."""

_TOTAL = re.compile(r"^\s*total(?::|\s*$|\s+\()", re.IGNORECASE)
"""A totals row's first cell: ``Total``, ``Total: Account``, ``Total (12 ads)``."""
_EMPTY = {"", "--", "-"}
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
"""A count as the platforms write it in English: ``1,234``, ``1234``, ``12.50``."""


@dataclass(frozen=True)
class Report:
    """A platform report read: ``rows`` has ``line`` (the file's line, or the sheet's row
    for XLSX), the text fields (``""`` when the report has no such column), the counts
    (floats) and ``total`` (a totals row), one row per report row."""

    platform: str
    where: str
    rows: pd.DataFrame
    counted: str
    """The count taken as conversions: ``conversions``, else ``clicks`` when the report has
    no conversions column."""
    row_word: str = "line"

    @property
    def title(self) -> str:
        return PLATFORMS[self.platform].title


SHEETS = {".xlsx", ".xlsm"}
TEXTS = {".csv", ".tsv", ".txt"}


def read_report(path: Path) -> Report | None:
    """The platform report in ``path`` (CSV or XLSX), or None when the file is not one (no
    report's header in its first :data:`HEADER_ROWS` rows; an XLSX file must be one)."""
    suffix = path.suffix.lower()
    if suffix not in SHEETS | TEXTS:
        return None
    is_sheet = suffix in SHEETS
    head = _sheet_rows(path, HEADER_ROWS) if is_sheet else _csv_rows(path, HEADER_ROWS)
    for platform, spec in PLATFORMS.items():
        for index, (_, cells) in enumerate(head):
            header = [_text(cell) for cell in cells]
            if all(name in header for name in spec.signature):
                rows = _sheet_rows(path) if is_sheet else _csv_rows(path)
                return _report(path, platform, header, rows[index + 1:],
                               "row" if is_sheet else "line")
    if is_sheet:
        meta = PLATFORMS["meta"]
        raise ResultsError(f"{path}: not a Meta Ads Manager export: no row of its first sheet "
                           f"has the columns {', '.join(map(repr, meta.signature))}; export the "
                           "ads report from Ads Manager again, or save adgen's results as CSV")
    return None


def _csv_rows(path: Path, limit: int | None = None) -> list[tuple[int, list[str]]]:
    """The file's rows (the first ``limit``) with their line numbers: UTF-8, UTF-8 with BOM,
    or UTF-16 with BOM; commas, or tabs when the first lines have any."""
    with path.open("rb") as handle:
        raw = handle.read(1 << 16 if limit else -1)
    encoding = ("utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
                else "utf-8-sig")
    try:
        text = raw.decode(encoding, errors="replace" if limit else "strict")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ResultsError(f"{path}: line {line}: not UTF-8 text ({exc.reason}); export the "
                           "report again as CSV (UTF-8 or UTF-16)") from None
    first = "\n".join(text.splitlines()[:HEADER_ROWS])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if "\t" in first else ",")
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            rows.append((reader.line_num, cells))
            if limit and len(rows) == limit:
                break
    except csv.Error as exc:
        if limit:  # the head was cut inside a quoted value: what came before is enough
            return rows
        raise ResultsError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    return rows


def _sheet_rows(path: Path, limit: int | None = None) -> list[tuple[int, list[Any]]]:
    """The first sheet's rows (the first ``limit``; values, not formulas) with their row
    numbers."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged or foreign files
        raise ResultsError(f"{path}: not a readable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        return [(number, list(cells)) for number, cells in
                enumerate(sheet.iter_rows(max_row=limit, values_only=True), start=1)]
    finally:
        book.close()


def _report(path: Path, platform: str, header: list[str],
            body: Sequence[tuple[int, Sequence[Any]]], row_word: str) -> Report:
    spec = PLATFORMS[platform]
    where = f"{path} ({spec.title})"
    position = {field: next((header.index(n) for n in names if n in header), None)
                for field, names in spec.columns.items()}
    if position["impressions"] is None:
        raise ResultsError(f"{where}: no {' or '.join(spec.columns['impressions'])} column; "
                           "add impressions to the report's columns")
    counted = "conversions" if position["conversions"] is not None else "clicks"
    if position[counted] is None:
        names = [*spec.columns["conversions"], *spec.columns["clicks"]]
        raise ResultsError(f"{where}: no {' or '.join(map(repr, names))} column: add "
                           "conversions (or clicks) to the report's columns")
    if all(position.get(field) is None for field in spec.names_an_ad):
        names = [n for field in spec.names_an_ad for n in spec.columns[field]]
        raise ResultsError(f"{where}: no {' or '.join(map(repr, names))} column, so no row "
                           "can be matched to a variant; add it to the report's columns")
    records = []
    for line, cells in body:
        if not any(_text(cell) for cell in cells):
            continue  # blank lines between the rows and the totals
        record: dict[str, Any] = {"line": line, "total": bool(_TOTAL.match(_text(cells[0])))}
        for field in TEXT_FIELDS:
            at = position.get(field)
            value = _text(cells[at]) if at is not None and at < len(cells) else ""
            record[field] = "" if value in _EMPTY else value
        for field in COUNT_FIELDS:
            at = position.get(field)
            cell = cells[at] if at is not None and at < len(cells) else None
            name = header[at] if at is not None else field
            record[field] = _number(cell, f"{where}: {row_word} {line}: {name}")
        records.append(record)
    rows = pd.DataFrame(records, columns=["line", *TEXT_FIELDS, *COUNT_FIELDS, "total"])
    return Report(platform, str(path), rows, counted, row_word)


def _text(cell: Any) -> str:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # an ID the sheet stored as a number
    return str(cell).strip()


def _number(cell: Any, where: str) -> float:
    """A count: a number, or text with thousands separators; empty (``--``) is 0."""
    if isinstance(cell, bool):
        raise ResultsError(f"{where}: {cell!r} is not a number")
    if isinstance(cell, int | float):
        value = float(cell)
    else:
        text = _text(cell)
        if text in _EMPTY:
            return 0.0
        if not _NUMBER.fullmatch(text):
            raise ResultsError(f"{where}: {text[:40]!r} is not a count as the platform writes "
                               "it in English (1,234 or 12.50); download the report with "
                               "English number formats")
        value = float(text.replace(",", ""))
    if not math.isfinite(value) or value < 0:
        raise ResultsError(f"{where}: {value!r} is not a count (>= 0)")
    return value


def lines(report: Report, found: Iterable[int]) -> str:
    """``lines 4, 9`` (``rows`` for a sheet), at most 10 of them, then how many more."""
    numbers = list(found)
    return f"{report.row_word}{'s' if len(numbers) > 1 else ''} {listed(numbers, 10)}"
