"""The assignment ledger: who was assigned which variant, when and why, append-only.

Layout, under a campaign's output folder::

    ledger/part-000001.parquet   one file per write (run, assign, refresh) that changed something
    ledger/part-000002.parquet   ...

A part holds one row per customer whose assignment began or changed in that write
(:data:`COLUMNS`): the structured variant (segment, creative, variant index, generation), the
variant id, whether the customer is held out, the reason (:data:`REASONS`) and the time. Its
Parquet metadata records the write's settings (command, refresh number, hash seed, weights,
holdout share, arms), so every change can be explained later. A customer's current assignment
is their last row; customers missing from a later run keep theirs.

A part counts only once the experiment state (``refresh.json``, see
:mod:`adgen.experiments.assignment`) names it as committed: a part written by a run that was
killed before its commit is ignored by readers and replaced by the next write. Committed parts
are never rewritten. A committed part that is missing (or parts the state does not count) stop
every reader with an error naming it: hashing its customers again would move them.
``--reset-ledger`` starts over on purpose.

Reading is columnar (pyarrow): finding the current rows of a million customers in a ledger of
ten million is a filter and a group-by, not a Python loop (``bench/bench_ledger.py``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adgen.errors import OutputError
from adgen.output.files import atomic_write_bytes
from adgen.output.mirror import shown
from adgen.output.store import join

LEDGER_DIR = "ledger"
_META_KEY = b"adgen.ledger"

REASONS = {
    "new": "first assignment: the GrowthBook hash with the weights of that write",
    "retired": "the variant was retired by a refresh: moved to its replacement",
    "segment": "the customer's segment changed: same creative and variant index, new segment",
    "removed": "the creative or variant index left the campaign: hashed again",
    "holdout-ended": "the experiment no longer has a holdout: hashed into a variant",
}
"""Why a ledger row was written."""

SCHEMA = pa.schema([
    ("customer_id", pa.string()),
    ("segment_id", pa.string()),
    ("segment", pa.string()),
    ("creative_id", pa.string()),
    ("variant_index", pa.int32()),
    ("generation", pa.int32()),
    ("variant_id", pa.string()),
    ("holdout", pa.bool_()),
    ("reason", pa.string()),
    ("at", pa.timestamp("ms", tz="UTC")),
])
COLUMNS = SCHEMA.names
"""Ledger columns. ``segment`` holds the segment's key values (JSON). Held-out customers have
empty variant fields (index and generation -1)."""


@dataclass(frozen=True)
class PartInfo:
    """The settings of one ledger write."""

    seq: int
    at: str
    command: str
    refresh: int
    seed: str
    weights: list[float]
    holdout: float
    arms: list[tuple[str, int]]

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "at": self.at, "command": self.command,
                           "refresh": self.refresh, "seed": self.seed, "weights": self.weights,
                           "holdout": self.holdout, "arms": [list(a) for a in self.arms]})

    @classmethod
    def from_json(cls, text: str | bytes) -> PartInfo:
        data = json.loads(text)
        return cls(int(data["seq"]), str(data["at"]), str(data["command"]),
                   int(data["refresh"]), str(data["seed"]), [float(w) for w in data["weights"]],
                   float(data["holdout"]), [(str(c), int(i)) for c, i in data["arms"]])


def _seq_of(path: Path) -> int:
    return int(path.stem.removeprefix("part-"))


def _now() -> datetime:
    return datetime.now(tz=UTC)


class Ledger:
    """The committed parts of an output folder's ledger (``committed`` = last committed seq)."""

    def __init__(self, out_dir: Path, committed: int) -> None:
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / LEDGER_DIR
        self.committed = committed

    def _path(self, seq: int) -> Path:
        return self.root / f"part-{seq:06d}.parquet"

    def check(self) -> None:
        """:class:`OutputError` unless every committed part is there, and no part beyond the
        next one (the state that counted them is gone): either way customers would move."""
        over = "or start the assignments over with --reset-ledger (every customer is hashed again)"
        missing = [seq for seq in range(1, self.committed + 1) if not self._path(seq).is_file()]
        if missing:
            more = f" and {len(missing) - 1} more parts" if len(missing) > 1 else ""
            raise OutputError(
                f"{self._shown(missing[0])}{more}: missing, but refresh.json counts "
                f"{self.committed} ledger parts; restore it from a backup (or the bucket's "
                f"object versions), {over}")
        found = [_seq_of(p) for p in self.root.glob("part-*.parquet")] if self.root.is_dir() else []
        ahead = [seq for seq in found if seq > self.committed + 1]
        if ahead:
            raise OutputError(
                f"{self._shown(max(ahead))}: refresh.json counts only {self.committed} ledger "
                f"parts (it was replaced or deleted); restore refresh.json from a backup, {over}")

    def _shown(self, seq: int) -> str:
        return join(shown(self.out_dir), LEDGER_DIR, self._path(seq).name)

    def parts(self) -> list[Path]:
        """Committed part files, oldest first (:meth:`check` first)."""
        self.check()
        return [self._path(seq) for seq in range(1, self.committed + 1)]

    def info(self, seq: int) -> PartInfo:
        meta = pq.read_schema(self._path(seq)).metadata or {}
        return PartInfo.from_json(meta[_META_KEY])

    def _part(self, path: Path, columns: Sequence[str] | None = None) -> pa.Table:
        table = pq.read_table(path, columns=list(columns or COLUMNS)).combine_chunks()
        return table.append_column("seq", pa.array(
            np.full(table.num_rows, _seq_of(path), dtype=np.int32)))

    def _tables(self, columns: Sequence[str] | None = None) -> list[pa.Table]:
        """One table per committed part, oldest first, with a ``seq`` column."""
        return [self._part(path, columns) for path in self.parts()]

    def _empty(self, columns: Sequence[str] | None) -> pa.Table:
        fields = [SCHEMA.field(c) for c in (columns or COLUMNS)]
        return pa.schema([*fields, pa.field("seq", pa.int32())]).empty_table()

    def _of(self, customers: Sequence[str] | pa.Array,
            columns: Sequence[str] | None = None) -> list[pa.Table]:
        """The rows of ``customers`` only, one table per part: the id columns are matched
        first (one hash set for all parts); only parts with matches are read whole."""
        paths = self.parts()
        ids = [pq.read_table(p, columns=["customer_id"])["customer_id"] for p in paths]
        if not paths:
            return []
        value_set = pa.array(customers, type=pa.string())
        mask = pc.is_in(pa.chunked_array([c for i in ids for c in i.chunks], type=pa.string()),
                        value_set=value_set).combine_chunks()
        tables, start = [], 0
        for path, part_ids in zip(paths, ids, strict=True):
            hits = mask.slice(start, len(part_ids))
            start += len(part_ids)
            if pc.any(hits).as_py():
                table = self._part(path, columns).filter(hits)
            else:
                table = self._empty(columns)
            tables.append(table)
        return tables

    def read(self, customers: Sequence[str] | pa.Array | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """Committed rows (of ``customers`` only, if given) in write order, with a ``seq``
        column naming their part."""
        wanted = list(columns or COLUMNS)
        if "customer_id" not in wanted:
            wanted.append("customer_id")
        tables = self._tables(wanted) if customers is None else self._of(customers, wanted)
        return pa.concat_tables(tables) if tables else self._empty(wanted)

    def current(self, customers: Sequence[str] | pa.Array | None = None) -> pd.DataFrame:
        """Each customer's current (last) row, one per customer, for ``customers`` or all.

        A part has one row per customer, so parts are deduplicated newest first: a part keeps
        the rows of customers no newer part has (most writes are small next to the first)."""
        tables = self._tables() if customers is None else self._of(customers)
        kept: list[pa.Table] = []
        seen: pa.Array | None = None
        for table in reversed(tables):
            if seen is not None and len(seen):
                table = table.filter(pc.invert(pc.is_in(table["customer_id"], value_set=seen)))
            kept.append(table)
            ids = table["customer_id"].combine_chunks()
            seen = ids if seen is None else pa.concat_arrays([seen, ids])
        if not kept:
            return self._empty(None).to_pandas()
        return pa.concat_tables(kept[::-1]).to_pandas()

    def changed_since(self, seq: int) -> pa.Array:
        """The ids of the customers whose assignment a committed part after ``seq`` wrote."""
        paths = self.parts()[seq:]
        ids = [pq.read_table(p, columns=["customer_id"])["customer_id"].combine_chunks()
               for p in paths]
        return pa.concat_arrays(ids) if ids else pa.array([], pa.string())

    def history(self, customer_id: str) -> pd.DataFrame:
        """Every row of one customer, oldest first."""
        return self.read([customer_id]).to_pandas()

    def write(self, rows: pd.DataFrame, info: PartInfo) -> Path:
        """Write part ``info.seq`` (= committed + 1) atomically; it counts once committed.
        Uncommitted leftovers of a killed write are removed first."""
        if info.seq != self.committed + 1:
            raise ValueError(f"ledger part {info.seq} after committed part {self.committed}")
        if self.root.is_dir():
            for stale in self.root.glob("part-*.parquet"):
                if _seq_of(stale) > self.committed:
                    stale.unlink()
        frame = rows[COLUMNS[:-1]].assign(at=pd.Timestamp(info.at))
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({_META_KEY: info.to_json().encode()})
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        path = self._path(info.seq)
        atomic_write_bytes(path, buffer.getvalue())
        return path


def new_part_info(seq: int, *, command: str, refresh: int, seed: str, weights: Sequence[float],
                  holdout: float, arms: Sequence[tuple[str, int]]) -> PartInfo:
    return PartInfo(seq, _now().isoformat(timespec="milliseconds"), command, refresh, seed,
                    [float(w) for w in weights], float(holdout), list(arms))
