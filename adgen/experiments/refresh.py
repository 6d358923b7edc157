"""Refreshes: read results, retire clear losers, re-weight traffic, render replacements.

1. analyse the results against the current output (see :mod:`adgen.analysis`)
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

Killed anywhere, the folder's committed state is the old one (before 6) or the new one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen import stats
from adgen.analysis import (
    CATALOG_COLUMNS,
    HOLDOUT,
    OVERALL,
    Analysis,
    aggregate_results,
    analyze_counts,
)
from adgen.assignment import RefreshState, arm_list
from adgen.audience import AudienceSource
from adgen.errors import ResultsError
from adgen.lock import output_lock
from adgen.pipeline import Progress, RunResult, run_with_state
from adgen.spec import CampaignSpec
from adgen.storage import open_output


def analyze(
    target: CampaignSpec | str | Path, results: str | Path | pd.DataFrame,
) -> Analysis:
    """Analyse experiment results against a campaign's last run: ``target`` is the campaign
    or its output folder or URL (whose ``run.json`` holds the experiment settings of that
    run)."""
    location = target.output_location if isinstance(target, CampaignSpec) else target
    with (output_lock(location, "analyze", create=False, writes=False),
          open_output(location, push=False) as out_dir):
        return _analyze(target, out_dir, results)


def _analyze(
    target: CampaignSpec | str | Path, out_dir: Path, results: str | Path | pd.DataFrame,
) -> Analysis:
    if isinstance(target, CampaignSpec):
        state = RefreshState.load(out_dir)
        settings = {"weights": state.weights or target.experiment.weights,
                    "holdout": target.experiment.holdout, **target.refresh.model_dump()}
    else:
        state = RefreshState.load(out_dir)
        settings = _run_settings(out_dir)
    if state.unfinished:
        raise ResultsError(
            f"{out_dir}: refresh {state.refreshes} did not finish; run `adgen refresh` again "
            "(or `adgen run`) to finish it, then analyse")
    customers = state.ledger.current()
    catalog = variant_catalog(out_dir, customers)
    counts = aggregate_results(results, customers, catalog)
    return analyze_counts(
        counts, catalog, weights=settings["weights"],
        holdout=settings["holdout"], alpha=settings["alpha"],
        correction=settings["correction"], sequential=settings["sequential"],
        rule=settings["rule"],
    )


def variant_catalog(out_dir: Path, customers: pd.DataFrame) -> pd.DataFrame:
    """Every variant results may name (:data:`~adgen.analysis.CATALOG_COLUMNS`): the last run's
    manifest, then any variant a customer of the ledger still holds."""
    path = out_dir / "manifest.parquet"
    if not path.exists():
        raise ResultsError(f"{out_dir}: no manifest here; run the campaign first (adgen run) "
                           "or give its output folder")
    manifest = pd.read_parquet(path)
    missing = [c for c in CATALOG_COLUMNS if c not in manifest.columns]
    if missing:
        raise ResultsError(f"{path}: no {', '.join(missing)} column (written by an older adgen); "
                           "run the campaign again")
    frames = [manifest[CATALOG_COLUMNS]]
    if len(customers):
        frames.append(customers.loc[~customers["holdout"].astype(bool), CATALOG_COLUMNS])
    catalog = pd.concat(frames, ignore_index=True).astype(
        {"variant_index": "int64", "generation": "int64"})
    return catalog.drop_duplicates("variant_id").reset_index(drop=True)


def _run_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if not path.exists():
        raise ResultsError(f"{out_dir}: no run.json; give the output folder of an `adgen run`")
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {**summary["experiment"], **summary["refresh"]}


@dataclass
class RefreshResult:
    """What a refresh decided and what its run produced. ``analysis`` is None when this call
    finished a refresh that was interrupted (``resumed``): its decision was made before."""

    analysis: Analysis | None
    retired: list[str]
    kept: list[str]
    weights: list[float] | None
    weights_note: str
    run: RunResult
    log: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False


def refresh(
    campaign: CampaignSpec, results: str | Path | pd.DataFrame, *,
    audience: AudienceSource | None = None, progress: Progress | None = None,
    reset_ledger: bool = False,
) -> RefreshResult:
    """Retire losers, re-weight, render replacements and re-assign. See the module doc. After
    an interrupted refresh, finishes that one (its decision stands) instead of deciding anew.
    Holds the output's lock (:func:`adgen.lock.output_lock`) throughout; a URL output is
    worked on in its local mirror and pushed back when the refresh succeeds.
    ``reset_ledger`` starts the assignment ledger over first
    (:meth:`~adgen.assignment.RefreshState.reset_ledger`)."""
    with (output_lock(campaign.output_location, "refresh"),
          open_output(campaign.output_location)):
        if reset_ledger:
            RefreshState.reset_ledger(campaign.output_dir)
        return _refresh(campaign, results, audience=audience, progress=progress)


def _refresh(
    campaign: CampaignSpec, results: str | Path | pd.DataFrame, *,
    audience: AudienceSource | None = None, progress: Progress | None = None,
) -> RefreshResult:
    out_dir = campaign.output_dir
    state = RefreshState.load(out_dir)
    analysis = None
    if state.pending is None:
        # 1. analyse
        analysis = analyze(campaign, results)
        # 2. decide
        retired, kept, generations = _retire_losers(analysis, state)
        # 3. weights
        weights, note = _thompson(campaign, analysis, state)
        state = RefreshState(out_dir, generations, weights, state.refreshes + 1,
                             state.ledger_seq)
        # 4. journal
        state.begin_refresh({
            "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "refresh": state.refreshes,
            "results_sha256": _fingerprint(results),
            "rule": campaign.refresh.rule, "alpha": campaign.refresh.alpha,
            "retired": retired, "kept": kept, "weights": weights, "weights_note": note,
            "srm_warnings": analysis.srm_warnings,
            "overall": json.loads(analysis.table[analysis.table["scope"] == OVERALL].to_json(
                orient="records")),
        })
    # 5. run with the decided state
    log = dict(state.pending or {})
    result = run_with_state(campaign, state, audience=audience, progress=progress)
    # 6. commit
    state.commit(rendered=result.rendered)
    return RefreshResult(analysis, log["retired"], log["kept"], log["weights"],
                         log["weights_note"], result, {**log, "rendered": result.rendered},
                         resumed=analysis is None)


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


def _fingerprint(results: str | Path | pd.DataFrame) -> str:
    if isinstance(results, pd.DataFrame):
        return hashlib.sha256(pd.util.hash_pandas_object(results).to_numpy().tobytes()).hexdigest()
    return hashlib.sha256(Path(results).read_bytes()).hexdigest()


def schedule(
    campaign: CampaignSpec, results: str | Path, *, max_runs: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[str], None] = print,
) -> int:
    """Run refreshes on the campaign's cron schedule, in the foreground, until ``max_runs``
    (forever by default). A failed refresh is reported and the loop goes on: the last good
    output stays in place. Returns the number of successful refreshes."""
    from croniter import croniter

    from adgen.errors import AdgenError, CampaignError

    if not campaign.refresh.schedule:
        raise CampaignError("refresh.schedule is not set: give a cron expression, e.g. "
                            "--set 'refresh.schedule=0 6 * * 1'")
    cron = croniter(campaign.refresh.schedule, now())
    runs = succeeded = 0
    while max_runs is None or runs < max_runs:
        due = cron.get_next(datetime)
        wait = (due - now()).total_seconds()
        on_event(f"next refresh at {due.isoformat(timespec='seconds')}")
        if wait > 0:
            sleep(wait)
        runs += 1
        try:
            outcome = refresh(campaign, results)
        except AdgenError as exc:
            on_event(f"refresh failed, last good output kept: {exc}")
            continue
        succeeded += 1
        on_event(f"refreshed: retired {len(outcome.retired)}, rendered {outcome.run.rendered}")
    return succeeded
