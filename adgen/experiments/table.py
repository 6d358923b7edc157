"""The assignments table: the assignment ledger mirrored into a database table for the CRM
(the campaign's ``assignments_table``).

One row per experiment and customer (the primary key), written by every command that writes
the ledger (``run``, ``refresh``, ``assign``) once the output folder is committed, in one
transaction (:data:`COLUMNS`). The rows written are the command's audience (as its
``assignments.csv`` has them) and every customer the ledger moved since the table was last
written, wherever they are (a refresh moves customers outside its audience too): the table's
newest ``ledger_part`` says how far it got. So when the database cannot be reached, the command
stops with exit code 1 after its files are written, and the next command fills the table in;
the ledger stays the source of truth and the table mirrors it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from adgen.errors import OutputError, StoreError
from adgen.experiments.ledger import Ledger
from adgen.sources.sql import SqlError, open_database
from adgen.spec import CampaignSpec

KEY = ["experiment", "customer_id"]
SCHEMA = pa.schema([
    ("experiment", pa.string()),
    ("customer_id", pa.string()),
    ("segment_id", pa.string()),
    ("variant_id", pa.string()),
    ("creative_id", pa.string()),
    ("variant_index", pa.int32()),
    ("generation", pa.int32()),
    ("holdout", pa.bool_()),
    ("ledger_part", pa.int32()),
    ("assigned_at", pa.timestamp("ms", tz="UTC")),
    ("updated_at", pa.timestamp("ms", tz="UTC")),
])
COLUMNS = SCHEMA.names
"""The table's columns. ``experiment`` is ``<campaign name>/<experiment.name>``; the variant
columns are NULL for held-out customers and for variants customers are not shown (blocked, or
with an asset that failed), as in ``assignments.csv``; ``ledger_part`` is the ledger part
that made the assignment and ``assigned_at`` its time; ``updated_at`` when the row was last
written."""


def experiment_key(campaign: CampaignSpec) -> str:
    """The ``experiment`` column's value for a campaign."""
    return f"{campaign.name}/{campaign.experiment.name}"


def sync_table(campaign: CampaignSpec, ledger: Ledger, customers: pd.Series,
               hidden: Collection[str] = ()) -> int:
    """Upsert the assignments of ``customers`` (the command's audience) and of everyone the
    ``ledger`` moved since the table was last written; returns the rows written. ``hidden``:
    variants customers are not shown. :class:`StoreError` when the database cannot be
    reached, :class:`OutputError` when it refuses the rows."""
    spec = campaign.assignments_table
    if spec is None:
        return 0
    where = f"assignments_table {spec.url.partition('?')[0]} table {spec.table}"
    experiment = experiment_key(campaign)
    try:
        with open_database(spec.url, write=True) as database:
            since = database.latest(spec.table, "ledger_part", ("experiment", experiment))
            if since is None or since > ledger.committed:  # new, or the ledger was reset
                current = ledger.current()
            else:
                moved = ledger.changed_since(since).to_pylist()
                current = ledger.current(list({*customers.astype(str), *moved}))
            rows = _rows(current, experiment, set(hidden))
            database.upsert(spec.table, rows, KEY)
    except SqlError as exc:
        told = f"{exc.reason} (the output's files are written; the table is not)"
        if exc.unavailable:
            raise StoreError(where, told) from None
        raise OutputError(f"{where}: {told}; fix the table or the campaign's assignments_table, "
                          "then run the command again to fill it") from None
    return rows.num_rows


def _rows(current: pd.DataFrame, experiment: str, hidden: set[str]) -> pa.Table:
    """The table's rows from the ledger's current rows."""
    blank = current["holdout"].to_numpy(dtype=bool) | current["variant_id"].isin(hidden)
    frame = pd.DataFrame({
        "experiment": experiment,
        "customer_id": current["customer_id"],
        "segment_id": current["segment_id"],
        **{name: current[name].mask(blank) for name in
           ("variant_id", "creative_id", "variant_index", "generation")},
        "holdout": current["holdout"].astype(bool),
        "ledger_part": current["seq"],
        "assigned_at": current["at"],
        "updated_at": pd.Timestamp(datetime.now(tz=UTC)).floor("ms"),
    })
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
