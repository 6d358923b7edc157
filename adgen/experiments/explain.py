"""Explain one customer's assignment: segment, hash bucket, every variant and why.

Everything comes from the output folder or URL: the assignment ledger (each change, with the
settings of the write that made it), the committed experiment state and the last manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import AudienceError, OutputError
from adgen.experiments.analysis import arm_label
from adgen.experiments.assignment import STATE_FILE, RefreshState, read_log
from adgen.experiments.hashing import HOLDOUT_SUFFIX, bucket_ranges, choose_variation, gb_hash
from adgen.experiments.ledger import LEDGER_DIR, PartInfo
from adgen.output.lock import output_lock
from adgen.output.mirror import open_output
from adgen.output.store import is_url
from adgen.review.decisions import Decisions, content_hashes

_ID_SHOWN = 80
"""Characters of a customer id an error shows."""


@dataclass
class Explanation:
    """Why a customer sees what they see. ``history`` has one entry per ledger row (oldest
    first): ``at, seq, command, variant_id, reason, why``."""

    customer_id: str
    segment_id: str
    segment: dict[str, Any]
    seed: str
    bucket: float
    holdout_bucket: float
    holdout: bool
    variant_id: str
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    review: str = ""
    """The review decision behind the variant (empty when nobody has reviewed the output)."""

    def __str__(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in self.segment.items()) or "keys unknown"
        lines = [
            f"customer {self.customer_id!r}",
            f"  segment   {self.segment_id} ({keys})",
            f"  hash      bucket {self.bucket:.4f} (GrowthBook v2, seed {self.seed!r}); "
            f"holdout hash {self.holdout_bucket:.4f}",
            f"  now       {'held out (no ad)' if self.holdout else self.variant_id}"
            f"{'' if self.holdout else f' — {self.status}'}",
            *([f"  review    {self.review}"] if self.review and not self.holdout else []),
            "  history",
        ]
        for entry in self.history:
            lines.append(f"    {entry['at']}  #{entry['seq']} {entry['command']:<12} "
                         f"{entry['variant_id'] or 'holdout'}")
            lines.append(f"        {entry['why']}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def explain(out: str | Path, customer_id: str) -> Explanation:
    """Explain ``customer_id``'s assignments in the output folder or URL ``out``."""
    if not is_url(out):
        _check_folder(Path(out))
    with (output_lock(out, "explain", create=False, writes=False),
          open_output(out, push=False) as out_dir):
        if not (out_dir / STATE_FILE).is_file() and not (out_dir / LEDGER_DIR).is_dir():
            raise OutputError(f"{out}: no assignments here (no {STATE_FILE}, no {LEDGER_DIR}/): "
                              "give the output folder or URL of a run")
        return _explain(out, out_dir, str(customer_id))


def _check_folder(out: Path) -> None:
    if out.suffix.lower() in {".yaml", ".yml"} and out.is_file():
        raise OutputError(f"{out} is a campaign file; explain reads a run's output: give its "
                          "output folder (the campaign's output:, by default out/<name>)")
    if not out.is_dir():
        raise OutputError(f"{out}: no such folder; give the output folder of a run")


def _short(customer_id: str) -> str:
    if len(customer_id) <= _ID_SHOWN:
        return repr(customer_id)
    return f"{customer_id[:_ID_SHOWN]!r}… ({len(customer_id):,} characters)"


def _explain(out: str | Path, out_dir: Path, customer_id: str) -> Explanation:
    state = RefreshState.load(out_dir)
    rows = state.ledger.history(customer_id)
    if rows.empty:
        raise AudienceError(
            f"{out}: customer {_short(customer_id)} has never been assigned (not in the "
            "assignment ledger); check the id (ids are text: leading zeros count)"
        )
    infos = {seq: state.ledger.info(int(seq)) for seq in rows["seq"].unique()}
    retirements = _retirements(out_dir)
    history = []
    previous: dict[Any, Any] | None = None
    for row in rows.to_dict("records"):
        info = infos[row["seq"]]
        history.append({
            "at": pd.Timestamp(row["at"]).isoformat(timespec="seconds"), "seq": int(row["seq"]),
            "command": info.command if info.command != "refresh" else f"refresh {info.refresh}",
            "variant_id": row["variant_id"], "reason": row["reason"],
            "why": _why(row, previous, info, str(customer_id), retirements),
        })
        previous = row
    last = rows.iloc[-1]
    seed = infos[last["seq"]].seed
    notes = [f"refresh {state.refreshes} did not finish: the next run or refresh finishes it"
             ] if state.unfinished else []
    return Explanation(
        customer_id=str(customer_id), segment_id=str(last["segment_id"]),
        segment=dict(json.loads(last["segment"] or "{}")), seed=seed,
        bucket=float(gb_hash(seed, str(customer_id)) or 0.0),
        holdout_bucket=float(gb_hash(seed + HOLDOUT_SUFFIX, str(customer_id)) or 0.0),
        holdout=bool(last["holdout"]), variant_id=str(last["variant_id"]),
        status=_status(out_dir, str(last["variant_id"])), history=history, notes=notes,
        review=_review(out_dir, str(last["variant_id"])),
    )


def _why(row: dict[Any, Any], previous: dict[Any, Any] | None, info: PartInfo,
         customer_id: str, retirements: dict[str, int]) -> str:
    reason = row["reason"]
    if reason in ("new", "removed", "holdout-ended"):
        start = {"new": "first seen", "removed": "previous creative or variant index left the "
                 "campaign", "holdout-ended": "the experiment's holdout was removed"}[reason]
        holdout = info.holdout if reason == "new" else 0.0
        if row["holdout"]:
            share = gb_hash(info.seed + HOLDOUT_SUFFIX, customer_id) or 0.0
            return f"{start}: holdout hash {share:.4f} < holdout {holdout:g} → held out"
        bucket = gb_hash(info.seed, customer_id) or 0.0
        ranges = bucket_ranges(len(info.weights), 1.0, info.weights)
        arm = choose_variation(bucket, ranges)
        low, high = ranges[arm]
        weights = ", ".join(f"{w:.3g}" for w in info.weights)
        return (f"{start}: bucket {bucket:.4f} in [{low:.4f}, {high:.4f}) → arm {arm + 1} of "
                f"{len(ranges)} ({arm_label(*info.arms[arm])}), weights [{weights}]"
                + (f", holdout {holdout:g} (not held out)" if holdout else ""))
    before = previous["variant_id"] if previous else "?"
    if reason == "retired":
        by = retirements.get(str(before))
        return (f"{before} was retired{f' by refresh {by}' if by else ''}: moved to its "
                f"replacement (generation {row['generation']})")
    if reason == "segment":
        was = previous["segment_id"] if previous else "?"
        return (f"segment changed from {was} to {row['segment_id']}: same creative and variant "
                "index")
    return str(reason)


def _retirements(out_dir: Path) -> dict[str, int]:
    """Variant id → the refresh that retired it, from the refresh log."""
    return {variant: int(entry["refresh"]) for entry in read_log(out_dir, committed_only=True)
            for variant in entry.get("retired", [])}


def _manifest(out_dir: Path) -> pd.DataFrame | None:
    path = out_dir / "manifest.parquet"
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=["variant_id", "placement", "sha256", "captions",
                                          "status"])


def _review(out_dir: Path, variant_id: str) -> str:
    """The decision in force on the variant's current content, who made it, when and why."""
    decisions = Decisions.of(out_dir)
    manifest = _manifest(out_dir)
    if not len(decisions) or manifest is None:
        return ""
    content = content_hashes(manifest[manifest["variant_id"] == variant_id]).get(variant_id)
    held = decisions.in_force(variant_id, content) if content else None
    if held is None:
        last = decisions.latest.get(variant_id)
        why = f" ({last.note})" if last is not None and last.note and last.content == content \
            else ""
        return f"pending: not approved or rejected yet{why}"
    return held.describe()


def _status(out_dir: Path, variant_id: str) -> str:
    """What the last run made of the variant: live, blocked or not made."""
    manifest = _manifest(out_dir)
    rows = manifest[manifest["variant_id"] == variant_id] if manifest is not None else None
    if rows is None or rows.empty:
        return "not in the last run's manifest (its segment was not in that run's audience)"
    ok = int((rows["status"] == "ok").sum())
    if ok:
        return f"live ({ok} asset{'' if ok == 1 else 's'})"
    return str(rows["status"].iloc[0])
