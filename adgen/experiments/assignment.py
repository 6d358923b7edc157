"""Customer → variant assignment for the CRM, kept in the ledger, and the experiment state.

A customer seen for the first time gets one of their segment's variant *slots* (creative ×
variant index) by the GrowthBook-compatible hash of the experiment seed and their id, in the
current weights (see :mod:`adgen.experiments.hashing`); the holdout is a separate hash. The
choice is written to the assignment ledger (:mod:`adgen.experiments.ledger`), and from then on
the ledger decides: the customer keeps their variant whatever audience a later run or assign
sees, until

- a refresh retires it: they move to its replacement (the slot's next generation);
- their segment changes: they keep the creative and variant index, in the new segment;
- its creative or variant index leaves the campaign, or the holdout is removed: hashed again.

Every such change is a new ledger row with its reason and time; nothing else moves anyone.

The experiment state (``refresh.json``: slot generations, weights, refresh count, the last
committed ledger part) is the commit point; loading it checks that every ledger part it counts
is there (:meth:`Ledger.check`). A refresh first writes its decision to a journal
(``refresh.pending.json``); the run that follows (the refresh itself, or any later ``run`` if it
was killed) commits it. So a killed refresh leaves the old state, and the next run or refresh
finishes it; a plain run never undoes a retirement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adgen.errors import CampaignError
from adgen.experiments import hashing
from adgen.experiments.ledger import LEDGER_DIR, Ledger, new_part_info
from adgen.output.files import atomic_write_text
from adgen.planning import Plan, SlotKey, variant_name
from adgen.spec import CampaignSpec

STATE_FILE = "refresh.json"
JOURNAL_FILE = "refresh.pending.json"
LOG_FILE = "refresh_log.jsonl"
ASSIGNMENTS_FILE = "assignments.csv"
ASSIGNMENT_COLUMNS = ["customer_id", "segment_id", "variant_id", "creative_id", "variant_index",
                      "generation"]
"""``assignments.csv`` columns (+ ``holdout`` when the experiment has one)."""

_SLOT = ["segment_id", "creative_id", "variant_index"]


@dataclass
class RefreshState:
    """The experiment state: each slot's generation, the traffic weights for new customers, the
    number of refreshes and the last committed ledger part. ``pending`` is the log entry of a
    refresh whose decision is made but not yet committed (see the module docstring)."""

    out_dir: Path
    generations: dict[SlotKey, int] = field(default_factory=dict)
    weights: list[float] | None = None
    refreshes: int = 0
    ledger_seq: int = 0
    pending: dict[str, Any] | None = None
    unfinished: bool = False
    """True while the pending refresh's state is not committed (its run has not finished)."""

    @classmethod
    def load(cls, out_dir: Path) -> RefreshState:
        """The committed state, or, after a refresh that did not finish, the state it decided
        (the next run commits it). :class:`OutputError` when a ledger part it counts is
        missing."""
        out_dir = Path(out_dir)
        state = cls._read(out_dir, out_dir / STATE_FILE)
        journal = out_dir / JOURNAL_FILE
        if journal.exists():
            data = json.loads(journal.read_text(encoding="utf-8"))
            decided = cls._from_dict(out_dir, data["state"])
            if decided.refreshes > state.refreshes:
                decided.ledger_seq = state.ledger_seq
                decided.unfinished = True
                state = decided
            state.pending = data["log"]
        state.ledger.check()
        return state

    @classmethod
    def reset_ledger(cls, out_dir: Path) -> Path | None:
        """Start the assignment ledger over, on purpose (``--reset-ledger``): its parts move
        to ``ledger.reset-<UTC time>/`` (kept, never read again) and the state counts none, so
        the next write hashes every customer again. Returns where the old parts went."""
        out_dir = Path(out_dir)
        folder, moved = out_dir / LEDGER_DIR, None
        if folder.is_dir():
            stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            moved = folder.rename(out_dir / f"{LEDGER_DIR}.reset-{stamp}")
        state = cls._read(out_dir, out_dir / STATE_FILE)
        if state.ledger_seq:
            state.ledger_seq = 0
            atomic_write_text(out_dir / STATE_FILE, json.dumps(state.to_dict(), indent=2))
        return moved

    @classmethod
    def _read(cls, out_dir: Path, path: Path) -> RefreshState:
        if not path.exists():
            return cls(out_dir)
        return cls._from_dict(out_dir, json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def _from_dict(cls, out_dir: Path, data: dict[str, Any]) -> RefreshState:
        if not isinstance(data.get("generations", []), list):
            raise CampaignError(
                f"{out_dir / STATE_FILE}: written by an older adgen (variant generations keyed "
                "by id); refresh into a new output folder, or delete it to start the "
                "experiment again")
        generations = {(str(g["creative_id"]), str(g["segment_id"]), int(g["variant_index"])):
                       int(g["generation"]) for g in data.get("generations", [])}
        return cls(out_dir, generations, data.get("weights"), int(data.get("refreshes", 0)),
                   int(data.get("ledger_seq", 0)))

    def to_dict(self) -> dict[str, Any]:
        generations = [{"creative_id": c, "segment_id": s, "variant_index": i, "generation": g}
                       for (c, s, i), g in sorted(self.generations.items())]
        return {"generations": generations, "weights": self.weights,
                "refreshes": self.refreshes, "ledger_seq": self.ledger_seq}

    @property
    def ledger(self) -> Ledger:
        """The committed ledger."""
        return Ledger(self.out_dir, self.ledger_seq)

    def begin_refresh(self, log: dict[str, Any]) -> None:
        """Record a refresh's decision (this state and its log entry) before anything changes."""
        self.pending, self.unfinished = log, True
        atomic_write_text(self.out_dir / JOURNAL_FILE, json.dumps(
            {"state": self.to_dict(), "log": log}, indent=2))

    def commit(self, **log_extra: Any) -> None:
        """The commit point: write the state (with the ledger part the run wrote) atomically.
        A refresh's log entry is written just before; readers skip entries the state does not
        count yet (:func:`read_log`)."""
        path = self.out_dir / LOG_FILE
        if self.pending is not None and self.unfinished:
            entry = {**self.pending, **log_extra}
            kept = [e for e in read_log(self.out_dir) if e["refresh"] < entry["refresh"]]
            atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in [*kept, entry]))
        atomic_write_text(self.out_dir / STATE_FILE, json.dumps(self.to_dict(), indent=2))
        self.unfinished = False
        (self.out_dir / JOURNAL_FILE).unlink(missing_ok=True)
        self.pending = None


def read_log(out_dir: Path, *, committed_only: bool = False) -> list[dict[str, Any]]:
    """The refresh log's entries; with ``committed_only``, those the state counts."""
    path = Path(out_dir) / LOG_FILE
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip()]
    if committed_only:
        done = RefreshState._read(Path(out_dir), Path(out_dir) / STATE_FILE).refreshes
        entries = [e for e in entries if int(e["refresh"]) <= done]
    return entries


def current_weights(campaign: CampaignSpec, state: RefreshState) -> list[float]:
    """The split new customers get: the refresh's weights, else the campaign's, else equal."""
    arms = campaign.arms
    weights = state.weights or campaign.experiment.weights or [1.0 / arms] * arms
    if len(weights) != arms:
        raise CampaignError(
            f"experiment.weights has {len(weights)} values but each segment has {arms} variants "
            f"({len(campaign.creatives)} creatives × {campaign.variants} variants); give {arms}"
        )
    return list(weights)


def arm_list(campaign: CampaignSpec) -> list[tuple[str, int]]:
    """The arms in hash-range order: (creative_id, variant_index)."""
    return [(c.id, i) for c in campaign.creatives for i in range(campaign.variants)]


def assign_customers(
    plan: Plan, state: RefreshState, *, exclude: set[str] | None = None, command: str = "run",
) -> pd.DataFrame:
    """Assign the plan's audience against the ledger and write what changed as a new ledger
    part (committed by ``state.commit()``). Returns one row per customer of the audience
    (:data:`ASSIGNMENT_COLUMNS`, + ``holdout`` when the experiment has one); held-out customers,
    and those whose variant is in ``exclude`` (blocked, or failed to render), get empty variant
    fields: the ledger keeps their slot for the next run."""
    campaign = plan.campaign
    weights = current_weights(campaign, state)
    reconcile = state.unfinished or state.pending is not None  # a refresh moves everyone
    ledger = state.ledger
    members = plan.segments.members
    ids = members["customer_id"].astype("string")
    everyone = ledger.current() if reconcile else None
    current = everyone if everyone is not None else ledger.current(ids.to_numpy(dtype=object))
    rows = _decide(plan, ids, current, weights)
    changes = rows[rows["reason"] != ""]
    if everyone is not None:
        outside = everyone[~everyone["customer_id"].isin(set(ids.tolist()))]
        changes = pd.concat([changes, _retire(outside, state.generations)], ignore_index=True)
    if len(changes):
        info = new_part_info(
            state.ledger_seq + 1, command=command, refresh=state.refreshes,
            seed=campaign.experiment.seed, weights=weights, holdout=campaign.experiment.holdout,
            arms=arm_list(campaign))
        ledger.write(changes, info)
        state.ledger_seq = info.seq
    return _export(rows, campaign.experiment.holdout > 0, exclude or set())


def _decide(plan: Plan, ids: pd.Series, current: pd.DataFrame,
            weights: list[float]) -> pd.DataFrame:
    """Each customer's assignment now (ledger columns) and the reason it changed ("" if not)."""
    campaign, exp = plan.campaign, plan.campaign.experiment
    segment = plan.segments.members["segment_id"].astype(str).to_numpy()
    count = len(ids)
    prev = current.set_index("customer_id").reindex(ids.to_numpy(dtype=object))
    known = prev["segment_id"].notna().to_numpy()
    held = prev["holdout"].fillna(False).to_numpy(dtype=bool, copy=True)
    creative = prev["creative_id"].fillna("").to_numpy(dtype=object, copy=True)
    index = prev["variant_index"].fillna(-1).to_numpy(dtype=np.int64, copy=True)
    generation = prev["generation"].fillna(-1).to_numpy(dtype=np.int64, copy=True)
    reason = np.full(count, "", dtype=object)
    # who is hashed: new customers (with the holdout), and those whose slot is gone (without)
    creative_ids = [c.id for c in campaign.creatives]
    gone = known & ~held & (~pd.Series(creative).isin(creative_ids).to_numpy()
                            | (index >= campaign.variants))
    ended = known & held & (exp.holdout == 0)
    arms = arm_list(campaign)
    for mask, why, holdout in ((~known, "new", exp.holdout), (gone, "removed", 0.0),
                               (ended, "holdout-ended", 0.0)):
        if not mask.any():
            continue
        arm = hashing.assign_arms(ids[mask], seed=exp.seed, weights=weights, holdout=holdout)
        held[mask] = arm < 0
        picked = np.where(arm < 0, 0, arm)
        creative[mask] = np.where(arm < 0, "", np.array([a[0] for a in arms], dtype=object)[picked])
        index[mask] = np.where(arm < 0, -1, np.array([a[1] for a in arms])[picked])
        generation[mask] = -1
        reason[mask] = why
    moved_segment = known & (prev["segment_id"].fillna("").to_numpy(dtype=object) != segment)
    reason[(reason == "") & moved_segment] = "segment"
    # the slot's current generation and variant id, from the plan
    frame = pd.DataFrame({"customer_id": ids.to_numpy(dtype=object), "segment_id": segment,
                          "creative_id": creative, "variant_index": index})
    slots = plan.variants[[*_SLOT, "generation", "variant_id"]].astype(
        {"variant_index": np.int64, "generation": np.int64})
    frame = frame.merge(slots, on=_SLOT, how="left", validate="many_to_one")
    keys = plan.variants.drop_duplicates("segment_id").set_index("segment_id")["segment"]
    frame["segment"] = frame["segment_id"].map(keys).fillna("{}")
    now = frame["generation"].fillna(-1).to_numpy(dtype=np.int64)
    reason[(reason == "") & ~held & (generation != now)] = "retired"
    frame["generation"] = now
    frame["variant_id"] = frame["variant_id"].fillna("")
    frame.loc[held, ["creative_id", "variant_id"]] = ""
    frame.loc[held, ["variant_index", "generation"]] = -1
    frame["holdout"] = held
    frame["reason"] = reason
    return frame


def _retire(current: pd.DataFrame, generations: dict[SlotKey, int]) -> pd.DataFrame:
    """Ledger rows moving customers (outside the audience) off retired variants."""
    if current.empty or not generations:
        return current.iloc[0:0].assign(reason="")
    slots = pd.DataFrame([(s, c, i, g) for (c, s, i), g in generations.items()],
                         columns=[*_SLOT, "now"])
    merged = current.astype({"variant_index": np.int64}).merge(slots, on=_SLOT, how="inner")
    moved = merged[~merged["holdout"] & (merged["generation"] < merged["now"])].copy()
    moved["generation"] = moved["now"]
    moved["variant_id"] = [variant_name(c, s, int(i), int(g)) for c, s, i, g in zip(
        moved["creative_id"], moved["segment_id"], moved["variant_index"], moved["generation"],
        strict=True)]
    return moved.drop(columns=["now"]).assign(reason="retired")


def _export(rows: pd.DataFrame, with_holdout: bool, exclude: set[str]) -> pd.DataFrame:
    """The CRM's view: variant fields empty for held-out customers and excluded variants."""
    frame = rows[ASSIGNMENT_COLUMNS].copy()
    empty = rows["holdout"].to_numpy() | rows["variant_id"].isin(list(exclude)).to_numpy()
    for column in ("variant_index", "generation"):
        frame[column] = frame[column].astype("Int64").mask(empty)
    for column in ("variant_id", "creative_id"):
        frame[column] = frame[column].astype("string").mask(empty, "")
    frame["customer_id"] = frame["customer_id"].astype("string")
    if with_holdout:
        frame["holdout"] = rows["holdout"].to_numpy()
    return frame.reset_index(drop=True)
