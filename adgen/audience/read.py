"""Audience data: read and validate customers (CSV, Parquet, a DataFrame or a SQL query); the
customers are then split into segments (:mod:`adgen.audience.segments`).

A SQL audience (``audience.sql``) is read in Arrow batches (:mod:`adgen.sources.sql`), its id
column as text; a query that fails or a missing table is an error naming the query.

Rules, all checked before anything renders:
- the id column and every segment/aggregate column must exist (the error lists those that do);
- customer ids must be present and unique (the error names the rows);
- a segment key that is empty is an error naming the rows, unless ``drop_missing_keys: true``,
  which drops those customers (they then get no variant and no assignment);
- an audience that is empty (after the optional ``filter``, a restricted expression: see
  :mod:`adgen.audience.filters`) is an error.
Row numbers in messages are the file's line numbers for CSV (header = line 1) and 0-based
positions otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from adgen.audience.filters import apply_filter
from adgen.errors import AudienceError, listed
from adgen.sources.sql import SqlError, read_frame
from adgen.spec import AudienceSpec, SqlSpec

AudienceSource = str | Path | pd.DataFrame | SqlSpec


@dataclass(frozen=True)
class Audience:
    """Validated customers: ``frame`` holds the customer id column (as text) and the data
    columns; ``where`` names the source in messages; ``first_line`` is the line number of the
    first data row (2 for CSV with a header, else 0); ``kind`` says what the source is in
    messages (``file``, ``query``, ``DataFrame``)."""

    frame: pd.DataFrame
    where: str
    first_line: int
    kind: str = "file"

    def row_label(self, position: int) -> str:
        if self.first_line:
            return f"line {position + self.first_line}"
        return f"row {position}"


def read_audience(spec: AudienceSpec, source: AudienceSource | None = None) -> Audience:
    """Read the audience from ``source`` (else the spec's path or query) and validate it."""
    if source is None:
        source = spec.sql or spec.path
    if source is None:
        raise AudienceError("no audience given: set audience.path or audience.sql in the "
                            "campaign, or pass --audience PATH")
    if isinstance(source, pd.DataFrame):
        audience = Audience(source.reset_index(drop=True), "audience DataFrame", 0, "DataFrame")
    elif isinstance(source, SqlSpec):
        audience = _read_sql(source, spec)
    else:
        path = Path(source)
        audience = _read_file(path, spec)
    return _validate(audience, spec)


def _read_file(path: Path, spec: AudienceSpec) -> Audience:
    if not path.exists():
        raise AudienceError(f"{path}: audience file not found")
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise AudienceError(f"{path}: not a readable Parquet file ({exc})") from None
        return Audience(frame, str(path), 0)
    if suffix not in {".csv", ".txt", ".tsv"}:
        raise AudienceError(f"{path}: unsupported audience format {suffix!r}: use .csv or .parquet")
    try:
        frame = pd.read_csv(
            path,
            dtype={spec.id_column: "string"},
            encoding=spec.encoding,
            sep="\t" if suffix == ".tsv" else ",",
            on_bad_lines="error",
            engine="c",
        )
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path, spec.encoding)
        raise AudienceError(
            f"{path}: line {line}: not valid {spec.encoding} text ({exc.reason}); save the file as "
            f"UTF-8 or set audience.encoding (e.g. latin-1)"
        ) from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise AudienceError(
            f"{path}: malformed CSV: {detail}; quote values that contain commas"
        ) from None
    except pd.errors.EmptyDataError:
        raise AudienceError(f"{path}: the audience file is empty (no header, no rows)") from None
    return Audience(frame, str(path), 2)


def _read_sql(source: SqlSpec, spec: AudienceSpec) -> Audience:
    where = f"audience.sql {source.where}"
    try:
        frame = read_frame(source.url, source.sql, text=[spec.id_column])
    except SqlError as exc:
        raise AudienceError(f"{where}: {exc.reason}") from None
    return Audience(frame, where, 0, "query")


def _first_undecodable_line(path: Path, encoding: str) -> int:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return 0


def _check_plain_values(frame: pd.DataFrame, where: str) -> None:
    """Audience values must be text, numbers, booleans or dates: Parquet list, struct, map and
    bytes columns cannot be segmented, compared or put in a template."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        kinds = {type(v).__name__ for v in frame[column].dropna().head(1000)
                 if isinstance(v, list | tuple | dict | set | bytes | bytearray | np.ndarray)}
        if kinds:
            raise AudienceError(
                f"{where}: column {str(column)!r} holds {'/'.join(sorted(kinds))} values "
                "(a list, struct, map or bytes column); flatten it to text or numbers, or drop "
                "it from the file")


def _validate(audience: Audience, spec: AudienceSpec) -> Audience:
    frame, where = audience.frame, audience.where
    _check_plain_values(frame, where)
    columns = [str(c) for c in frame.columns]
    needed = [spec.id_column, *spec.segment_by, *(a.column for a in spec.aggregates.values())]
    needed += [c for c in (spec.product_column, spec.product_rank_by) if c]
    missing = [c for c in dict.fromkeys(needed) if c not in columns]
    if missing:
        has, fix = (("returns", "the query") if audience.kind == "query"
                    else ("has", f"the {audience.kind}'s header"))
        raise AudienceError(
            f"{where}: missing column(s) [{listed(map(repr, missing))}]; the {audience.kind} "
            f"{has} columns [{listed(map(repr, columns))}]. "
            f"Fix the campaign's audience section or {fix}"
        )
    if spec.filter:
        frame = apply_filter(frame, spec.filter, where)
    if frame.empty:
        raise AudienceError(
            f"{where}: the audience is empty"
            + (f" after audience.filter {spec.filter!r}" if spec.filter else "")
        )
    ids = frame[spec.id_column]
    null_ids = ids.isna() | (ids.astype("string").str.strip() == "")
    if null_ids.any():
        raise AudienceError(
            f"{where}: {_rows(audience, frame, null_ids)}: empty customer id in column "
            f"{spec.id_column!r}; every customer needs an id"
        )
    ids = ids.astype("string")
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        first = ids[duplicated].iloc[0]
        raise AudienceError(
            f"{where}: {_rows(audience, frame, ids == first)}: duplicate customer id {first!r} in "
            f"column {spec.id_column!r} ({int(ids.duplicated().sum())} duplicate rows in all); "
            "ids must be unique"
        )
    if spec.segment_by:
        null_keys = frame[spec.segment_by].isna().any(axis=1)
        if null_keys.any():
            if not spec.drop_missing_keys:
                raise AudienceError(
                    f"{where}: {_rows(audience, frame, null_keys)}: empty segment value in "
                    f"{spec.segment_by}; fill it in, or set audience.drop_missing_keys: true "
                    "to leave those customers out"
                )
            frame = frame[~null_keys]
            if frame.empty:
                raise AudienceError(f"{where}: every customer has an empty segment value")
    frame = frame.assign(**{spec.id_column: ids.loc[frame.index]})
    return replace(audience, frame=frame)


def _rows(audience: Audience, frame: pd.DataFrame, mask: pd.Series) -> str:
    positions = [frame.index.get_loc(i) for i in frame.index[mask.to_numpy()][:5]]
    labels = [audience.row_label(int(p)) for p in positions]  # type: ignore[arg-type]
    more = int(mask.sum()) - len(labels)
    return ", ".join(labels) + (f" and {more} more" if more > 0 else "")
