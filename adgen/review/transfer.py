"""Decisions as CSV, to review elsewhere: ``adgen review OUT --export FILE`` / ``--import FILE``.

The columns are ``variant_id, decision, reviewer, comment``; an export adds ``decided_at`` and
``content`` (the content hash of the variant it describes). An import records each row whose
decision or comment differs from the one in force, for the variant's current content; a row
whose ``content`` is not the variant's current one (it changed since the export) is refused,
so nobody approves a picture they have not seen. Every row is checked first: one bad row
(an unknown variant, an unknown decision, no reviewer) records nothing and is named in the
error with its row number as a spreadsheet shows it (the header is row 1).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adgen.errors import MAX_LISTED, ReviewError, listed
from adgen.output.files import atomic_write_text, safe_csv, unguard
from adgen.review.decisions import (
    PENDING,
    Decision,
    Decisions,
    new_decision,
    record,
    reviewable,
)
from adgen.review.source import check_output, current_manifest

CSV_COLUMNS = ("variant_id", "decision", "reviewer", "comment")
EXPORT_COLUMNS = (*CSV_COLUMNS, "decided_at", "content")


def export_decisions(location: str | Path, path: str | Path) -> int:
    """Write the decision in force of every variant with files (pending ones too) to the CSV
    ``path``, formula-safe; returns the number of rows."""
    check_output(location)
    manifest = current_manifest(location)
    contents = reviewable(manifest)
    decisions = Decisions.of(location)
    rows = []
    for variant_id, content in contents.items():
        held = decisions.in_force(variant_id, content)
        rows.append({"variant_id": variant_id, "decision": decisions.status(variant_id, content),
                     "reviewer": held.reviewer if held else "",
                     "comment": held.comment if held else "",
                     "decided_at": held.at if held else "", "content": content})
    atomic_write_text(Path(path), safe_csv(pd.DataFrame(rows, columns=list(EXPORT_COLUMNS))))
    return len(rows)


def import_decisions(location: str | Path, path: str | Path, *, reviewer: str = "",
                     wait: float | None = None) -> list[Decision]:
    """Record the decisions of the CSV ``path`` (``reviewer``: for rows that name none) in
    the output ``location``; returns those recorded (rows that change nothing are skipped)."""
    check_output(location)
    path = Path(path)
    rows = _read(path)

    def events(decisions: Decisions) -> list[Decision]:
        contents = reviewable(current_manifest(location))
        made, problems = [], []
        for number, row in rows.iterrows():
            where = f"{path} row {number}"
            variant_id = row["variant_id"].strip()
            if variant_id not in contents:
                problems.append(f"{where}: variant {variant_id[:80]!r} is not in the output (or "
                                f"has no files to review); check the id against manifest.csv")
                continue
            content = contents[variant_id]
            if row.get("content", "").strip() not in ("", content):
                problems.append(f"{where}: {variant_id} changed since the export (a run made it "
                                "again): export again and review the new picture")
                continue
            held = decisions.in_force(variant_id, content)
            said = (row["decision"].strip().lower(), row["comment"].replace("\r\n", "\n").strip())
            if said == ((held.decision, held.comment) if held else (PENDING, "")):
                continue  # what holds already: nothing to record
            try:
                made.append(new_decision(variant_id, row["decision"], row["reviewer"] or reviewer,
                                         row["comment"], content, source="import",
                                         take=decisions.take(variant_id)))
            except ReviewError as exc:
                problems.append(f"{where}: {exc}")
        if problems:
            raise ReviewError(listed(problems, MAX_LISTED, "\n"))
        return made

    return record(location, events, wait=wait)[1]


def _read(path: Path) -> pd.DataFrame:
    """The CSV's rows as text (formula guards removed), indexed by spreadsheet row number."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise ReviewError(f"{path}: file not found") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: cannot read it as CSV ({exc}); save it as UTF-8 CSV "
                          f"with the columns {', '.join(CSV_COLUMNS)}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise ReviewError(f"{path}: missing column(s) {', '.join(missing)}; the columns are "
                          f"{', '.join(CSV_COLUMNS)} (adgen review OUT --export FILE writes them)")
    frame = frame.apply(unguard)
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    return frame
