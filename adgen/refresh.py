"""Refreshes: read results, retire clear losers, re-weight traffic, render replacements.

1. analyse the results against the current output (see :mod:`adgen.analysis`)
2. decide: a variant judged a *loser* in its segment is retired; winners and variants without
   enough data are kept
3. weights for new customers by Thompson sampling over the arms (pooled across segments), with
   a floor per arm; kept as they were while there is too little data
4. run the campaign with the new state: retired slots move to their next generation (new seeds,
   new variant ids), so only replacements render (the cache has the rest); assignments stay
   sticky, so only the retired variants' customers move
5. record the decision in ``refresh_log.jsonl`` and save the state: only after the run
   succeeded, so a failed refresh leaves the last good output in place
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
from adgen.analysis import HOLDOUT, OVERALL, Analysis, aggregate_results, analyze_counts
from adgen.assignment import ASSIGNMENTS_FILE, RefreshState
from adgen.audience import AudienceSource
from adgen.errors import ResultsError
from adgen.pipeline import Progress, RunResult, run_with_state
from adgen.spec import CampaignSpec
from adgen.storage import open_output
from adgen.store import read_safe_csv

LOG_FILE = "refresh_log.jsonl"


def analyze(
    target: CampaignSpec | str | Path, results: str | Path | pd.DataFrame,
) -> Analysis:
    """Analyse experiment results against a campaign's last run: ``target`` is the campaign
    or its output folder or URL (whose ``run.json`` holds the experiment settings of that
    run)."""
    location = target.output_location if isinstance(target, CampaignSpec) else target
    with open_output(location, push=False) as out_dir:
        return _analyze(target, out_dir, results)


def _analyze(target: CampaignSpec | str | Path, out_dir: Path,
             results: str | Path | pd.DataFrame) -> Analysis:
    if isinstance(target, CampaignSpec):
        settings = {"weights": RefreshState.load(out_dir).weights or target.experiment.weights,
                    "holdout": target.experiment.holdout, **target.refresh.model_dump()}
    else:
        settings = _run_settings(out_dir)
    assignments_path, manifest_path = out_dir / ASSIGNMENTS_FILE, out_dir / "manifest.parquet"
    if not (assignments_path.exists() and manifest_path.exists()):
        raise ResultsError(f"{out_dir}: no manifest and assignments here; run the campaign "
                           "first (adgen run) or give its output folder")
    variants = pd.read_parquet(manifest_path, columns=["variant_id", "segment_id"])
    variants = variants.drop_duplicates("variant_id")
    assignments = read_safe_csv(assignments_path)
    counts = aggregate_results(results, assignments, variants)
    return analyze_counts(
        counts, variants, weights=settings["weights"], holdout=settings["holdout"],
        alpha=settings["alpha"], correction=settings["correction"],
        sequential=settings["sequential"], rule=settings["rule"],
    )


def _run_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if not path.exists():
        raise ResultsError(f"{out_dir}: no run.json; give the output folder of an `adgen run`")
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {**summary["experiment"], **summary["refresh"]}


@dataclass
class RefreshResult:
    """What a refresh decided and what its run produced."""

    analysis: Analysis
    retired: list[str]
    kept: list[str]
    weights: list[float] | None
    weights_note: str
    run: RunResult
    log: dict[str, Any] = field(default_factory=dict)


def refresh(
    campaign: CampaignSpec, results: str | Path | pd.DataFrame, *,
    audience: AudienceSource | None = None, progress: Progress | None = None,
) -> RefreshResult:
    """Retire losers, re-weight, render replacements and re-assign (sticky). See module doc."""
    with open_output(campaign.output_location):
        return _refresh(campaign, results, audience, progress)


def _refresh(
    campaign: CampaignSpec, results: str | Path | pd.DataFrame,
    audience: AudienceSource | None, progress: Progress | None,
) -> RefreshResult:
    out_dir = campaign.output_dir
    # 1. analyse
    analysis = analyze(campaign, results)
    state = RefreshState.load(out_dir)
    # 2. decide
    per_segment = analysis.table[analysis.table["scope"] != OVERALL]
    retired = sorted(per_segment.loc[per_segment["verdict"] == "loser", "variant_id"])
    kept = sorted(set(per_segment["variant_id"]) - set(retired) - {HOLDOUT})
    # 3. weights
    weights, note = _thompson(campaign, analysis, state)
    # 4. run with the new state
    generations = dict(state.generations)
    for variant_id in retired:
        slot = variant_id.split("-g")[0] if "-g" in variant_id else variant_id
        generations[slot] = generations.get(slot, 0) + 1
    new_state = RefreshState(out_dir, generations, weights, state.refreshes + 1)
    result = run_with_state(campaign, new_state, audience=audience, progress=progress)
    # 5. record and save (only now: a failed run above leaves everything as it was)
    log = {
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "refresh": new_state.refreshes,
        "results_sha256": _fingerprint(results),
        "rule": campaign.refresh.rule, "alpha": campaign.refresh.alpha,
        "retired": retired, "kept": kept, "weights": weights, "weights_note": note,
        "srm_warnings": analysis.srm_warnings,
        "rendered": result.rendered,
        "overall": json.loads(analysis.table[analysis.table["scope"] == OVERALL].to_json(
            orient="records")),
    }
    with (out_dir / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(log) + "\n")
    new_state.save()
    return RefreshResult(analysis, retired, kept, weights, note, result, log)


def _thompson(
    campaign: CampaignSpec, analysis: Analysis, state: RefreshState
) -> tuple[list[float] | None, str]:
    overall = analysis.table[(analysis.table["scope"] == OVERALL)
                             & (analysis.table["variant_id"] != HOLDOUT)]
    arms = [f"{c.id}-v{i}" for c in campaign.creatives for i in range(campaign.variants)]
    by_arm = {
        str(arm): stats.ArmStats(int(users), float(conversions))
        for arm, users, conversions in zip(overall["arm"], overall["users"],
                                           overall["conversions"], strict=True)
    }
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
