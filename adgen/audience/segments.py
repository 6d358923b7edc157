"""Segments: customers grouped by the campaign's ``audience.segment_by`` keys, each with the
context its templates see (key values, size, aggregates, its product), and an id that is safe
to publish (:func:`segment_id`)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from adgen.audience.read import Audience
from adgen.errors import AudienceError, listed
from adgen.spec import AudienceSpec

SEGMENT_ID = "segment_id"


@dataclass(frozen=True)
class Segments:
    """Segments of an audience.

    ``table``: one row per segment, ``segment_id`` first, then the key columns, ``segment_size``
    and one column per aggregate (the template context). ``members``: for every customer its
    ``customer_id`` and ``segment_id``, in audience order."""

    table: pd.DataFrame
    members: pd.DataFrame
    keys: tuple[str, ...]

    def contexts(self) -> list[dict[str, Any]]:
        """One template context per segment (plain Python values), in table order."""
        records = self.table.drop(columns=[SEGMENT_ID]).to_dict("records")
        return [{str(k): _plain(v) for k, v in row.items()} for row in records]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def segment_audience(
    audience: Audience, spec: AudienceSpec, *, row_columns: Sequence[str] = (),
    secret: str = "adgen",
) -> Segments:
    """Group customers by ``spec.segment_by`` (vectorised) and build each segment's context.

    In per-customer mode (no ``segment_by``) the ``row_columns`` (allowed by the campaign's
    guardrails) join the context with the customer's own values. Segment ids are keyed with
    ``secret`` (the experiment seed): see :func:`segment_id`."""
    frame = audience.frame
    keys = tuple(spec.segment_by) or (spec.id_column,)
    grouped = frame.groupby(list(keys), sort=True, dropna=False, observed=True)
    table = grouped.size().rename("segment_size").reset_index()
    if not spec.segment_by:
        missing = [c for c in row_columns if c not in frame.columns]
        if missing:
            raise AudienceError(f"{audience.where}: guardrails.prompt_columns {listed(missing)} "
                                f"are not audience columns ({listed(frame.columns)})")
        for column in row_columns:
            if column != spec.id_column:
                table[column] = grouped[column].first().to_numpy()
    for name, agg in spec.aggregates.items():
        table[name] = _aggregate(grouped[agg.column], agg.agg, name, audience.where).to_numpy()
    if spec.product_column and spec.product_column not in keys and spec.product_rank_by:
        table["segment_product"] = _top_by(frame, list(keys), spec.product_column,
                                           spec.product_rank_by, audience.where)
    elif spec.product_column and spec.product_column not in keys:
        table["segment_product"] = _aggregate(
            grouped[spec.product_column], "mode", "product", audience.where
        ).to_numpy()
    elif spec.product_column:
        table["segment_product"] = table[spec.product_column]
    key_text = table[list(keys)].astype("string").fillna("")
    joined = key_text.apply(lambda row: "\x1f".join(row), axis=1) if len(keys) > 1 else key_text[
        keys[0]
    ]
    table.insert(0, SEGMENT_ID, [segment_id(k, secret) for k in joined])
    codes = grouped.ngroup().to_numpy()
    members = pd.DataFrame(
        {
            "customer_id": frame[spec.id_column].to_numpy(),
            SEGMENT_ID: table[SEGMENT_ID].to_numpy()[codes],
        }
    )
    return Segments(table, members, keys)


def _top_by(frame: pd.DataFrame, keys: list[str], product: str, weight: str,
            where: str) -> Any:
    """Per segment (in group order), the product with the largest sum of ``weight``; ties go
    to the smallest product value."""
    values = pd.to_numeric(frame[weight], errors="coerce")
    if values.isna().all():
        raise AudienceError(f"{where}: audience.product_rank_by column {weight!r} has no numbers")
    sums = (frame.assign(_w=values.fillna(0)).groupby([*keys, product], sort=True, dropna=False,
                                                     observed=True)["_w"].sum().reset_index())
    sums = sums.sort_values([*keys, "_w", product], ascending=[*[True] * len(keys), False, True],
                            kind="stable")
    top = sums.drop_duplicates(subset=keys, keep="first").set_index(keys)[product]
    index = frame.groupby(keys, sort=True, dropna=False, observed=True).size().index
    return top.reindex(index).to_numpy()


def segment_id(key: str, secret: str = "adgen") -> str:
    """A short, file-name-safe id for a segment key: an HMAC-SHA256 of the key under the
    campaign's ``secret`` (its experiment seed), so an id in a published asset URL cannot be
    reversed by hashing guessed e-mails or customer ids without the seed."""
    digest = hmac.new(secret.encode("utf-8"), key.encode("utf-8"), hashlib.sha256)
    return "s" + digest.hexdigest()[:10]


def _aggregate(series: Any, how: str, name: str, where: str) -> pd.Series:
    if how == "mode":
        # most common value; ties go to the smallest value so results do not depend on row order
        counts = series.value_counts(dropna=True, sort=False).rename("n").reset_index()
        value_col = counts.columns[-2]
        counts = counts.sort_values(["n", value_col], ascending=[False, True], kind="stable")
        first = counts.drop_duplicates(subset=counts.columns[:-2].tolist(), keep="first")
        group_cols = first.columns[:-2].tolist()
        result = first.set_index(group_cols)[value_col]
        return result.reindex(series.size().index)
    try:
        return series.agg(how)
    except (TypeError, ValueError) as exc:
        raise AudienceError(
            f"{where}: aggregate {name!r} ({how}) needs a numeric column: {exc}"
        ) from None
