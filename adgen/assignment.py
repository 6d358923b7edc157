"""Customer → variant assignment for the CRM, and the refresh state that keeps it sticky.

Each customer of a segment gets one of its segment's variant *slots* (creative × variant index)
by the GrowthBook-compatible hash of the experiment seed and the customer id, in the split
weights (see :mod:`adgen.experiment`); the holdout is a separate hash. A slot holds its current
variant: ``hero-s…-v1`` at first, ``hero-s…-v1-g1`` after a refresh retired the original.

Sticky: when a previous assignment exists (a campaign under refresh), a customer keeps the slot
they had, so they keep their variant unless it was retired, and then get its replacement; only
new customers are hashed with the current weights. Retiring a variant moves only its customers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adgen import experiment
from adgen.errors import CampaignError
from adgen.planning import Plan
from adgen.store import atomic_write_text, read_safe_csv

STATE_FILE = "refresh.json"
ASSIGNMENTS_FILE = "assignments.csv"


@dataclass
class RefreshState:
    """What refreshes decided so far: each slot's generation and the traffic weights."""

    out_dir: Path
    generations: dict[str, int] = field(default_factory=dict)
    weights: list[float] | None = None
    refreshes: int = 0

    @classmethod
    def load(cls, out_dir: Path) -> RefreshState:
        path = out_dir / STATE_FILE
        if not path.exists():
            return cls(out_dir)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(out_dir, dict(data.get("generations", {})), data.get("weights"),
                   int(data.get("refreshes", 0)))

    @property
    def active(self) -> bool:
        """True once a refresh happened: assignments are then sticky."""
        return self.refreshes > 0

    def save(self) -> None:
        payload = {"generations": self.generations, "weights": self.weights,
                   "refreshes": self.refreshes}
        atomic_write_text(self.out_dir / STATE_FILE, json.dumps(payload, indent=2,
                                                                sort_keys=True))

    def previous_assignments(self) -> pd.DataFrame | None:
        path = self.out_dir / ASSIGNMENTS_FILE
        if not self.active or not path.exists():
            return None
        return read_safe_csv(path)


def assign_customers(
    plan: Plan, *, exclude: set[str] | None = None, weights: list[float] | None = None,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer: ``customer_id, segment_id, variant_id`` (+ ``holdout`` when the
    experiment has one). Held-out customers, and those whose variant is in ``exclude`` (it
    failed to render), get an empty ``variant_id``. ``weights`` overrides the campaign's split
    (refreshes); ``previous`` makes the assignment sticky."""
    campaign = plan.campaign
    exp = campaign.experiment
    members = plan.segments.members
    arms = campaign.arms
    weights = weights or exp.weights or [1.0 / arms] * arms
    if len(weights) != arms:
        raise CampaignError(
            f"experiment.weights has {len(weights)} values but each segment has {arms} variants "
            f"({len(campaign.creatives)} creatives × {campaign.variants} variants); give {arms}"
        )
    ids = members["customer_id"].astype("string")
    arm = experiment.assign_arms(ids, seed=exp.seed, weights=weights, holdout=exp.holdout)
    in_test = arm >= 0
    picked = np.where(in_test, arm, 0)
    creative = np.array([c.id for c in campaign.creatives])[picked // campaign.variants]
    index = (picked % campaign.variants).astype(str)
    segment = members["segment_id"].to_numpy(dtype=str)
    slot = pd.Series(_concat(creative, "-", segment, "-v", index), dtype="string")
    if previous is not None:
        slot = _sticky(slot, ids, members["segment_id"], previous, plan)
    current = dict(zip(plan.variants["slot"], plan.variants["variant_id"], strict=True))
    variant = slot.map(current).fillna("").astype("string").where(in_test, "")
    if exclude:
        variant = variant.where(~variant.isin(list(exclude)), "")
    frame = pd.DataFrame({"customer_id": ids, "segment_id": members["segment_id"],
                          "variant_id": variant})
    if exp.holdout > 0:
        frame["holdout"] = ~in_test
    return frame


def _concat(*parts: Any) -> np.ndarray:
    result = np.asarray(parts[0], dtype=str)
    for part in parts[1:]:
        result = np.char.add(result, part)
    return result


def _sticky(slot: pd.Series, ids: pd.Series, segments: pd.Series, previous: pd.DataFrame,
            plan: Plan) -> pd.Series:
    """Keep each returning customer's previous slot when it still exists in their segment."""
    known = previous[previous["variant_id"] != ""]
    prev_slot = known["variant_id"].str.replace(r"-g\d+$", "", regex=True)
    lookup = pd.Series(prev_slot.to_numpy(), index=known["customer_id"].to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    before = ids.map(lookup)
    same_segment = before.str.extract(r"-(s[0-9a-f]{10})-v\d+$")[0] == segments.to_numpy()
    keep = (before.isin(list(plan.variants["slot"])) & same_segment).fillna(False)
    return slot.where(~keep.to_numpy(dtype=bool), before)
