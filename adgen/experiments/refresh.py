"""Refreshes: read results, retire clear losers, re-weight traffic, render replacements.

1. analyse the results against the current output (:func:`adgen.experiments.analysis.analyze`)
2. decide: a current variant judged a *loser* in its segment is retired; winners and variants
   without enough data are kept
3. weights for new customers by Thompson sampling over the arms (pooled across segments), with
   a floor per arm; kept as they were while there is too little data
4. journal the decision (``refresh.pending.json``): from here on, the next ``run`` or
   ``refresh`` finishes this refresh instead of deciding again, so a plain run never undoes it
5. run the campaign with the decided state: retired slots move to their next generation (new
   seeds, new variant ids), so only replacements render (the cache has the rest); the ledger
   moves only the retired variants' customers
6. commit: the state (``refresh.json``) atomically, then the decision in ``refresh_log.jsonl``

This module makes the decision (2 to 4: :func:`decide`); :func:`adgen.pipeline.refresh` runs
the steps in order. Killed anywhere, the folder's committed state is the old one (before 6) or
the new one.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from adgen.errors import ResultsError
from adgen.experiments import stats
from adgen.experiments.analysis import HOLDOUT, OVERALL, Analysis, ResultsSource
from adgen.experiments.assignment import RefreshState, arm_list
from adgen.spec import CampaignSpec, SqlSpec


def decide(campaign: CampaignSpec, analysis: Analysis, state: RefreshState,
           results: ResultsSource) -> RefreshState:
    """Decide the refresh after ``state`` from ``analysis`` of ``results`` and journal it:
    the state to run the campaign with (``pending`` holds the decision until it commits)."""
    # 2. decide
    retired, kept, generations = _retire_losers(analysis, state)
    # 3. weights
    weights, note = _thompson(campaign, analysis, state)
    state = RefreshState(state.out_dir, generations, weights, state.refreshes + 1,
                         state.ledger_seq)
    # 4. journal
    state.begin_refresh({
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "refresh": state.refreshes,
        "results_sha256": _fingerprint(results),
        "rule": campaign.refresh.rule, "alpha": campaign.refresh.alpha,
        "retired": retired, "kept": kept, "weights": weights, "weights_note": note,
        "srm_warnings": analysis.srm_warnings, "results_notes": analysis.notes,
        "overall": json.loads(analysis.table[analysis.table["scope"] == OVERALL].to_json(
            orient="records")),
    })
    return state


def _retire_losers(
    analysis: Analysis, state: RefreshState
) -> tuple[list[str], list[str], dict[tuple[str, str, int], int]]:
    """Retired and kept variant ids, and the slot generations after retiring the losers (only
    a slot's current variant can be retired)."""
    table = analysis.table
    rows = table[(table["scope"] != OVERALL) & (table["variant_id"] != HOLDOUT)]
    generations = dict(state.generations)
    retired = []
    for row in rows[rows["verdict"] == "loser"].to_dict("records"):
        slot = (str(row["creative_id"]), str(row["scope"]), int(row["variant_index"]))
        if int(row["generation"]) == generations.get(slot, 0):
            generations[slot] = int(row["generation"]) + 1
            retired.append(str(row["variant_id"]))
    kept = sorted(set(rows["variant_id"]) - set(retired))
    return sorted(retired), kept, generations


def _thompson(
    campaign: CampaignSpec, analysis: Analysis, state: RefreshState
) -> tuple[list[float] | None, str]:
    table = analysis.table
    overall = table[(table["scope"] == OVERALL) & (table["variant_id"] != HOLDOUT)]
    by_arm = {
        (str(creative), int(index)): stats.ArmStats(int(users), float(conversions))
        for creative, index, users, conversions in zip(
            overall["creative_id"], overall["variant_index"], overall["users"],
            overall["conversions"], strict=True)
    }
    arms = arm_list(campaign)
    if set(by_arm) != set(arms):
        return state.weights, "kept the current weights: results do not cover every arm"
    try:
        weights = stats.thompson_weights(
            [by_arm[a] for a in arms],
            floor=campaign.refresh.floor, top_two=campaign.refresh.top_two,
            seed=state.refreshes + 1,
        )
    except ResultsError as exc:
        return state.weights, f"kept the current weights: {exc}"
    return [round(w, 6) for w in weights], "Thompson sampling" + (
        " (top two)" if campaign.refresh.top_two else "")


def _fingerprint(results: ResultsSource) -> str:
    """The results' SHA-256: of the file, the DataFrame, or a query's URL and text."""
    if isinstance(results, pd.DataFrame):
        return hashlib.sha256(pd.util.hash_pandas_object(results).to_numpy().tobytes()).hexdigest()
    if isinstance(results, SqlSpec):
        return hashlib.sha256(f"{results.url}\n{results.sql}".encode()).hexdigest()
    return hashlib.sha256(Path(results).read_bytes()).hexdigest()
