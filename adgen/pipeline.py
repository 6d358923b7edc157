"""``run(campaign)``: the whole pipeline, from a campaign to placement-ready assets; and the other
commands that change an output: ``assign`` and ``refresh`` (on a schedule: ``schedule``).

1. plan: read the audience, segment it, render templates, build and dedupe jobs
2. preflight: brand assets load, every caption fits and can be drawn (:mod:`adgen.preflight`)
3. render: jobs not in the cache, on the chosen backend
4. post-process: crops, logo and captions per variant × placement, encoded and written; an
   asset that cannot be made is a ``failed: <reason>`` row, the others are written
5. write: manifest, assignments, the run summary and the review sheet (atomically, always);
   once they are committed (on an object store: pushed), prune the assets adgen wrote earlier
   that the manifest no longer lists, and mirror the ledger into the campaign's
   ``assignments_table`` (:mod:`adgen.experiments.table`)
6. publish: the upload files of ``export.to`` (:mod:`adgen.export`)
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.assets import brand_style, post_context
from adgen.audience.read import AudienceSource
from adgen.backends import get_backend
from adgen.backends.base import ClusterPost, Progress
from adgen.backends.local import AssetMaker
from adgen.errors import MAX_LISTED, AdgenError, CampaignError
from adgen.experiments.analysis import Analysis, ResultsSource, analyze
from adgen.experiments.assignment import RefreshState, assign_customers
from adgen.experiments.refresh import decide
from adgen.experiments.table import sync_table
from adgen.export import export
from adgen.jobs import Rendered, RenderJob
from adgen.manifest import MANIFEST_COLUMNS, blocked_rows, write_manifest
from adgen.output.cache import RenderCache
from adgen.output.files import atomic_write_text, no_links, remove_orphaned_temps, safe_csv
from adgen.output.lock import output_lock
from adgen.output.mirror import after_commit, open_output
from adgen.output.store import ASSETS_DIR, CACHE_DIR, OutputStore, is_url
from adgen.planning import Plan, SlotKey, make_plan
from adgen.preflight import preflight
from adgen.quality import QualityStep
from adgen.renderers import create_renderer
from adgen.renderers.base import Renderer
from adgen.review.decisions import settle_run
from adgen.review.sheet import write_report
from adgen.spec import CampaignSpec

_NUMBERS = re.compile(r"\d[\d,.]*")


@dataclass
class RunResult:
    """What a run produced. ``manifest`` has one row per asset (:data:`MANIFEST_COLUMNS`)."""

    out: Path
    manifest: pd.DataFrame
    assignments: pd.DataFrame
    plan: Plan
    rendered: int = 0
    assets_written: int = 0
    assets_reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Render jobs that failed, by job key (their assets are ``failed`` rows)."""
    cached: int = 0
    """Render jobs whose cached picture was used as it was (not measured stale, not a
    near-duplicate rendered again, not failed)."""
    review: dict[str, int] = field(
        default_factory=lambda: {"approved": 0, "rejected": 0, "pending": 0})
    """How many variants with files are approved, rejected and pending in review."""

    @property
    def location(self) -> str:
        """Where the run wrote: its output folder or URL (``out`` is a URL's local mirror)."""
        return self.plan.campaign.output_location

    @property
    def failures(self) -> pd.DataFrame:
        """The manifest rows of assets that could not be made (``status: failed: …``)."""
        return self.manifest[self.manifest["status"].str.startswith("failed")]

    def failure_reasons(self) -> dict[str, int]:
        """How many assets failed for each kind of reason (see :func:`count_reasons`)."""
        return count_reasons(self.failures["status"].str.removeprefix("failed: "))

    def blocked_reasons(self) -> dict[str, int]:
        """How many variants were blocked (no assets, no customers) for each kind of reason."""
        return count_reasons(self.plan.blocked.values())

    def summary(self) -> dict[str, Any]:
        plan = self.plan.summary()
        return {
            **plan,
            "blocked": len(self.plan.blocked),
            "cached": self.cached,
            "rendered": self.rendered,
            "assets": int((self.manifest["status"] == "ok").sum()),
            "assets_written": self.assets_written,
            "assets_reused": self.assets_reused,
            "failed_jobs": len(self.failed),
            "failed_assets": len(self.failures),
            "assigned_customers": int((self.assignments["variant_id"] != "").sum()),
            **self.review,
        }


def count_reasons(reasons: Iterable[str]) -> dict[str, int]:
    """How often each kind of reason occurs, most frequent first: reasons that differ only in
    their numbers (sizes, lengths) count as one, shown by its first."""
    groups: dict[str, list[str]] = {}
    for reason in reasons:
        groups.setdefault(_NUMBERS.sub("#", reason), []).append(str(reason))
    ranked = sorted(groups.values(), key=len, reverse=True)
    return {group[0]: len(group) for group in ranked}


def with_options(
    campaign: CampaignSpec, *, out: str | Path | None = None, renderer: str | None = None,
    model: str | None = None, backend: str | None = None, ray_address: str | None = None,
    gpus: int | None = None,
) -> CampaignSpec:
    """A copy of the campaign with the output folder, renderer, model or backend replaced."""
    update: dict[str, Any] = {}
    if out is not None:
        update["output"] = str(out) if is_url(out) else Path(out).resolve()
    sections: dict[str, dict[str, Any]] = {
        "renderer": {"name": renderer, "model": model},
        "backend": {"name": backend, "address": ray_address, "gpus": gpus},
    }
    for section, values in sections.items():
        changes = {k: v for k, v in values.items() if v is not None}
        if changes:
            current = getattr(campaign, section)
            try:
                update[section] = type(current).model_validate(current.model_dump() | changes)
            except ValueError as exc:
                raise CampaignError(f"{section} override: {exc}") from None
    return campaign.model_copy(update=update) if update else campaign


def run(
    campaign: CampaignSpec,
    *,
    audience: AudienceSource | None = None,
    out: str | Path | None = None,
    renderer: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    gpus: int | None = None,
    make_renderer: Callable[[], Renderer] | None = None,
    progress: Progress | None = None,
    reset_ledger: bool = False,
) -> RunResult:
    """Run a campaign end to end and return what it wrote. Safe to rerun: cached renders and
    assets are reused, so an interrupted run continues where it stopped.

    The keyword options override the campaign's output folder, renderer, model and backend.
    ``make_renderer`` replaces the campaign's renderer (it must be picklable for Ray).
    ``reset_ledger`` starts the assignment ledger over (:meth:`RefreshState.reset_ledger`)."""
    campaign = with_options(campaign, out=out, renderer=renderer, model=model, backend=backend,
                            ray_address=ray_address, gpus=gpus)
    with (output_lock(campaign.output_location, "run"),
          open_output(campaign.output_location)):
        if reset_ledger:
            RefreshState.reset_ledger(campaign.output_dir)
        state = RefreshState.load(campaign.output_dir)  # finishes a refresh that was killed
        result = _run_with_state(campaign, state, audience=audience,
                                 make_renderer=make_renderer, progress=progress)
        state.commit(rendered=result.rendered)
        _mirror_assignments(campaign, state, result.assignments, _hidden(result))
        return result


def _run_with_state(
    campaign: CampaignSpec, state: RefreshState, *, audience: AudienceSource | None = None,
    make_renderer: Callable[[], Renderer] | None = None, progress: Progress | None = None,
) -> RunResult:
    """:func:`run` with the experiment state given (slot generations, weights, ledger). The
    caller holds the output's lock and its local folder (:func:`open_output`), and commits the
    state afterwards (``state.commit()``)."""
    out_dir = campaign.output_dir
    for folder in (ASSETS_DIR, CACHE_DIR):
        no_links(out_dir, folder)  # never write through a link out of the folder
    remove_orphaned_temps(out_dir)
    # 1. plan, 2. preflight: campaign-wide problems stop here; per-asset ones are failed
    plan = make_plan(campaign, audience, generations=state.generations)
    style = brand_style(campaign)
    checked = preflight(plan, style)
    checked.raise_problems()
    cache = RenderCache.of(campaign.output_location)
    backend = get_backend(campaign)
    # the quality gate scores every render; only the renders it releases are post-processed
    gate = QualityStep(plan, cache)
    stale = {key for key in plan.cached if gate.stale(key)}
    for key in stale:  # measured with other checks, or failing changed thresholds
        cache.discard(key)
    # 3. render and 4. post-process, overlapped: a variant's assets are made as soon as the
    #    gate releases its render (on Ray: by a CPU worker on the cluster, near the render)
    ctx = post_context(plan, cache, style)
    on_cluster = backend.posts_where_it_renders
    processes = not on_cluster and ctx.device is None and _use_processes(plan)  # one GPU
    post = AssetMaker(plan, ctx, progress, failing=checked.failing, processes=processes,
                      quality=gate.record)
    failed: dict[str, str] = {}
    todo = [job for job in plan.to_render + [plan.jobs[key] for key in sorted(stale)]
            if post.needs_render(job.key)]
    rendered = 0

    def release(key: str) -> None:
        if key in failed:
            post.submit(key, render_error=failed[key])
        else:
            post.submit(key)

    def retaken(key: str) -> None:  # the gate rendered it again: the cache has the new take
        post.forget(key)
        release(key)

    def on_rendered(result: Rendered) -> None:
        nonlocal rendered
        rendered += 1
        post.keep(result)  # backend.post: gpu takes the render as it is, on its device
        # the gate first (it records a failed render's rejected seeds); on the cluster the
        # pool has asked it already (``ready``)
        ready = [] if on_cluster else gate.arrived(result)
        if result.error is not None:
            failed[result.job_key] = result.error
            post.submit(result.job_key, render_error=result.error)
        for key in ready:
            release(key)
        if progress:
            progress("render", rendered, len(todo))

    def render(make: Callable[[], Renderer], jobs: list[RenderJob],
               done: Callable[[Rendered], None]) -> None:
        backend.render(make, jobs, cache, done, progress=progress)  # retries: assets here

    spec = campaign.renderer
    factory = gate.wrap(make_renderer or functools.partial(
        create_renderer, spec.name, spec.model, sources=cache.source, **spec.options))
    with post:
        for key in plan.jobs:
            if key in stale and post.needs_render(key):
                continue
            if key in plan.cached or not post.needs_render(key):
                for ready in gate.arrived(Rendered(key, None)):
                    post.submit(ready)
        cluster = ClusterPost(ctx, post.by_job, post.add, gate.arrived) if on_cluster else None
        # extend jobs outpaint other renders: those go first, and a failed one fails them
        later = [job for job in todo if job.source_key is not None]
        backend.render(factory, todo[:len(todo) - len(later)], cache, on_rendered,
                       progress=progress, post=cluster)
        for job in later:
            if job.source_key in failed:
                on_rendered(Rendered(job.key, None, error=f"the render it extends failed: "
                                                          f"{failed[job.source_key]}"))
        backend.render(factory, [j for j in later if j.source_key not in failed], cache,
                       on_rendered, progress=progress, post=cluster)
        gate.retry_twins(render, retaken, failed)
        rows = post.results()
    manifest = pd.DataFrame(rows + blocked_rows(plan), columns=MANIFEST_COLUMNS)
    # 5. write: manifest, assignments, run.json and the review sheet, always
    failures = manifest[manifest["status"].str.startswith("failed")]
    assignments = assign_customers(plan, state,
                                   exclude=set(failures["variant_id"]) | set(plan.blocked),
                                   command="refresh" if state.pending else "run")
    _write_outputs(out_dir, ctx.assets, manifest, assignments)
    review = settle_run(out_dir, manifest, plan.takes)  # changed variants are pending again
    # rendered and kept: a cached twin rendered again counts, a variant failed afterwards not
    kept = ({job.key for job in todo} | gate.rerendered) - failed.keys()
    reused = set(plan.cached) - stale - gate.rerendered - failed.keys()
    result = RunResult(out_dir, manifest, assignments, plan, len(kept),
                       post.written, int((manifest["status"] == "ok").sum()) - post.written,
                       failed, cached=len(reused), review=review)
    settings = {
        "experiment": {"weights": state.weights or campaign.experiment.weights,
                       "holdout": campaign.experiment.holdout},
        "refresh": campaign.refresh.model_dump(),
    }
    atomic_write_text(out_dir / "run.json", json.dumps(
        {**result.summary(), "failed": failed, "failures": result.failure_reasons(),
         "blocked": plan.blocked, "products_left_out": plan.products_left_out,
         "quality": gate.summary(), **settings,
         "review": {"require_approval": campaign.approval_required},
         "finished_at": _now()}, indent=2))
    if campaign.report:
        write_report(campaign.output_location, title=campaign.name)
    if campaign.export.to:
        export(campaign, audience=audience)
    return result


def validate(
    campaign: CampaignSpec, *, audience: AudienceSource | None = None,
    generations: Mapping[SlotKey, int] | None = None,
) -> Plan:
    """Check everything a run needs before it renders (spec, audience, templates, brand assets,
    every caption in every placement, byte budgets, video timing, renderer options) and return
    the plan. Raises an :class:`AdgenError` listing every problem, one per line."""
    plan = make_plan(campaign, audience, generations=generations)
    checked = preflight(plan, brand_style(campaign))
    lines = checked.lines(campaign)
    if lines:
        raise CampaignError("\n".join(lines[:MAX_LISTED] + (
            [f"and {len(lines) - MAX_LISTED} more problems"] if len(lines) > MAX_LISTED else [])))
    return plan


def assign(
    campaign: CampaignSpec, *, audience: AudienceSource | None = None
) -> pd.DataFrame:
    """The customer → variant assignment of a campaign (what ``adgen run`` writes to
    ``assignments.csv``), without rendering anything. New customers are recorded in the
    output folder's assignment ledger (under the output's lock), so a later run gives them the
    same variants."""
    with (output_lock(campaign.output_location, "assign"),
          open_output(campaign.output_location)):
        state = RefreshState.load(campaign.output_dir)
        if state.unfinished:
            raise CampaignError(
                f"{campaign.output_dir}: refresh {state.refreshes} did not finish; run `adgen "
                "refresh` (or `adgen run`) again to finish it, then assign")
        plan = make_plan(campaign, audience, generations=state.generations)
        assignments = assign_customers(plan, state, command="assign")
        state.commit()
        _mirror_assignments(campaign, state, assignments)
        return assignments


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
    campaign: CampaignSpec, results: ResultsSource, *,
    audience: AudienceSource | None = None, progress: Progress | None = None,
    reset_ledger: bool = False,
) -> RefreshResult:
    """Retire losers, re-weight, render replacements and re-assign (the steps are in
    :mod:`adgen.experiments.refresh`). After an interrupted refresh, finishes that one (its
    decision stands) instead of deciding anew. Holds the output's lock
    (:func:`adgen.output.lock.output_lock`) throughout; a URL output is worked on in its local
    mirror and pushed back when the refresh succeeds. ``reset_ledger`` starts the assignment
    ledger over first (:meth:`~adgen.experiments.assignment.RefreshState.reset_ledger`)."""
    with (output_lock(campaign.output_location, "refresh"),
          open_output(campaign.output_location)):
        if reset_ledger:
            RefreshState.reset_ledger(campaign.output_dir)
        state = RefreshState.load(campaign.output_dir)
        analysis = None
        if state.pending is None:
            # 1. analyse, 2. to 4. decide and journal the decision
            analysis = analyze(campaign, results)
            state = decide(campaign, analysis, state, results)
        # 5. run with the decided state
        log = dict(state.pending or {})
        result = _run_with_state(campaign, state, audience=audience, progress=progress)
        # 6. commit
        state.commit(rendered=result.rendered)
        _mirror_assignments(campaign, state, result.assignments, _hidden(result))
        return RefreshResult(analysis, log["retired"], log["kept"], log["weights"],
                             log["weights_note"], result, {**log, "rendered": result.rendered},
                             resumed=analysis is None)


def schedule(
    campaign: CampaignSpec, results: ResultsSource, *, max_runs: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[str], None] = print,
) -> int:
    """Run refreshes on the campaign's cron schedule, in the foreground, until ``max_runs``
    (forever by default). A failed refresh is reported and the loop goes on: the last good
    output stays in place. Returns the number of successful refreshes."""
    from croniter import croniter

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


PROCESS_MIN_CORES, PROCESS_MIN_JOBS = 8, 64
"""From how many cores and renders the local backend post-processes on one process per core
rather than one thread per core. Threads share the GIL only for caption layout and crops
(Pillow's resize and encoders release it), so on few cores they win: on the 2-core CI machine
processes ran at 0.47x threads' speed (see the README's "Running at scale")."""


def _use_processes(plan: Plan) -> bool:
    jobs = plan.variants.loc[plan.variants["blocked"] == "", "job_key"].nunique()
    return (os.cpu_count() or 1) >= PROCESS_MIN_CORES and jobs >= PROCESS_MIN_JOBS


def _write_outputs(out_dir: Path, assets: OutputStore, manifest: pd.DataFrame,
                   assignments: pd.DataFrame) -> None:
    atomic_write_text(out_dir / "assignments.csv", safe_csv(assignments))
    write_manifest(out_dir, manifest)
    # once the new manifest is committed (at once for a folder): a failed commit deletes nothing
    keep = set(manifest["path"]) - {""}
    after_commit(assets.location, functools.partial(assets.prune_assets, keep))


def _hidden(result: RunResult) -> set[str]:
    """The variants a run's customers are not shown: blocked, or with an asset that failed."""
    return set(result.failures["variant_id"]) | set(result.plan.blocked)


def _mirror_assignments(campaign: CampaignSpec, state: RefreshState, assignments: pd.DataFrame,
                        hidden: set[str] | None = None) -> None:
    """Once the output is committed (pushed, for a URL): the campaign's assignments table."""
    if campaign.assignments_table is not None:
        after_commit(campaign.output_location, functools.partial(
            sync_table, campaign, state.ledger, assignments["customer_id"], hidden or set()))


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds")
