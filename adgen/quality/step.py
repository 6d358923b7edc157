"""The quality gate's part of a run, on the driver: which cached renders to measure again,
which renders may go on to post-processing, and the retries of near-duplicate variants."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from adgen.jobs import Rendered, RenderJob
from adgen.output.cache import RenderCache
from adgen.planning import Plan
from adgen.quality.gate import GateSettings, SharedGate, TwinFilter, failure_message
from adgen.renderers.base import Renderer

RenderFn = Callable[[Callable[[], Renderer], list[RenderJob], Callable[[Rendered], None]], None]
"""``render(make_renderer, jobs, on_rendered)``: the run's backend."""


def _single_attempt(shared: SharedGate) -> Renderer:
    return shared.single_attempt()


class QualityStep:
    """Gates a run's renders. With ``quality.enabled: false`` every render passes untouched."""

    def __init__(self, plan: Plan, cache: RenderCache) -> None:
        campaign = plan.campaign
        spec = campaign.quality
        self.plan, self.cache = plan, cache
        self.settings = (GateSettings.of(spec, campaign.renderer.name, campaign.renderer.model)
                         if spec.enabled else None)
        # each variant's renders (one per aspect class): twins are sought among the variants
        # of one segment and creative, class by class
        self.renders: list[tuple[str, str, str]] = []  # (variant id, class, job key)
        groups: dict[tuple[str, str, str], list[str]] = {}
        for row in plan.variants[plan.variants["job_key"] != ""].itertuples():
            for name, key in json.loads(str(row.renders)).items():
                self.renders.append((str(row.variant_id), name, key))
                groups.setdefault((str(row.segment_id), str(row.creative_id), name),
                                  []).append(key)
        distance = spec.max_duplicate_distance if self.settings else None
        self.twins = TwinFilter(groups.values(), distance, self._phash)
        self.variant_of = {key: variant for variant, _, key in self.renders}
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.phashes: dict[str, str] = {}
        self.rerendered: set[str] = set()
        """Job keys whose picture a near-duplicate retry replaced (rendered again this run)."""
        self._shared: SharedGate | None = None

    # -- rendering ----------------------------------------------------------------------------

    def wrap(self, make_renderer: Callable[[], Renderer]) -> Callable[[], Renderer]:
        """The renderer factory, gated (built once per worker)."""
        if self.settings is None:
            return make_renderer
        self._shared = SharedGate(make_renderer, self.settings)
        return self._shared

    def stale(self, key: str) -> bool:
        """A cached render that must be rendered again: measured by other checks (or none), or
        failing a threshold that changed since."""
        if self.settings is None:
            return False
        quality = (self.cache.info(key) or {}).get("quality")
        if not isinstance(quality, dict) or quality.get("gate") != self.settings.key:
            return True
        return bool(self.settings.reasons(quality.get("scores") or {}))

    def arrived(self, result: Rendered) -> list[str]:
        """A render came back: the job keys now ready for post-processing."""
        phash = (result.quality or {}).get("phash")
        if isinstance(phash, str):  # on the cluster its cache entry may not be written yet
            self.phashes[result.job_key] = phash
        if result.error is not None and result.quality:
            self.failures[result.job_key] = list(result.quality.get("rejected", []))
        if self.twins.max_distance is None:  # no twins to wait for
            return [] if result.error is not None else [result.job_key]
        if result.error is not None:
            return self.twins.drop(result.job_key)
        return self.twins.add(result.job_key)

    def retry_twins(self, render: RenderFn, release: Callable[[str], None],
                    failed: dict[str, str]) -> None:
        """Render near-duplicates again with their next seeds (one seed per round, up to
        ``retries`` seeds in all per variant); a variant still a twin then fails."""
        if self.settings is None or self._shared is None:
            return
        retries = self.settings.spec.retries
        history: dict[str, list[dict[str, Any]]] = {}
        queue = self._new_twins(history)
        while queue:
            todo: list[RenderJob] = []
            back: dict[str, str] = {}  # retry job key -> job key
            for key in queue:
                if len(history[key]) > retries:
                    self._fail(key, history[key], failed, release)
                    continue
                seeds = [r["seed"] for r in history[key] if isinstance(r.get("seed"), int)]
                seed = max(seeds, default=self.plan.jobs[key].seed) + 1
                job = replace(self.plan.jobs[key], seed=seed)
                todo.append(job)
                back[job.key] = key
            errored: list[str] = []

            def on_retry(result: Rendered, back: dict[str, str] = back,
                         errored: list[str] = errored) -> None:
                key = back[result.job_key]
                if result.error is not None:
                    history[key] += (result.quality or {}).get("rejected") or [
                        {"seed": None, "reasons": [result.error]}]
                    errored.append(key)
                    return
                info = self.cache.info(result.job_key) or {}
                quality = dict(info.get("quality") or {})
                quality["rejected"] = history[key] + list(quality.get("rejected", []))
                self.cache.move(result.job_key, key, {**info, "quality": quality})
                self.phashes.pop(key, None)  # the picture moved in: its hash is in the cache
                self.rerendered.add(key)
                for released in self.twins.add(key):
                    release(released)

            if todo:
                render(functools.partial(_single_attempt, self._shared), todo, on_retry)
            queue = sorted(set(errored) | set(self._new_twins(history)))

    def _new_twins(self, history: dict[str, list[dict[str, Any]]]) -> list[str]:
        """Twins not yet queued for a retry, each with its picture's rejection added."""
        assert self.settings is not None
        out = []
        for key, (other, distance) in sorted(self.twins.twins.items()):
            quality = (self.cache.info(key) or {}).get("quality") or {}
            reason = (f"near-duplicate of {self.variant_of.get(other, other)} (pHash distance "
                      f"{distance} <= {self.settings.spec.max_duplicate_distance})")
            history[key] = [*quality.get("rejected", []),
                            {"seed": quality.get("seed"), "reasons": [reason]}]
            del self.twins.twins[key]
            out.append(key)
        return out

    def _fail(self, key: str, rejected: list[dict[str, Any]], failed: dict[str, str],
              release: Callable[[str], None]) -> None:
        failed[key] = failure_message(rejected)
        self.failures[key] = rejected
        self.cache.discard(key)
        release(key)  # its placements become failed rows
        for released in self.twins.drop(key):
            release(released)

    # -- records ------------------------------------------------------------------------------

    def record(self, key: str) -> dict[str, Any] | None:
        """The quality record of a job: its cached render's, or the seeds a failed job tried."""
        if key in self.failures:
            return {"rejected": self.failures[key]}
        quality = (self.cache.info(key) or {}).get("quality")
        return quality if isinstance(quality, dict) else None

    def summary(self) -> dict[str, Any]:
        """For run.json: every variant that had a seed rejected, with the seeds tried, why they
        were rejected and the seed kept (``null`` when the variant failed)."""
        out: dict[str, Any] = {}
        several = {v for v, _, _ in self.renders if sum(x == v for x, _, _ in self.renders) > 1}
        for variant, name, key in self.renders:
            record = self.record(key) or {}
            rejected = record.get("rejected") or []
            if rejected:
                label = f"{variant} ({name})" if variant in several else variant
                out[label] = {"seed": record.get("seed"), "rejected": rejected}
        return out

    def _phash(self, key: str) -> str | None:
        if key in self.phashes:
            return self.phashes[key]
        quality = (self.cache.info(key) or {}).get("quality") or {}
        value = quality.get("phash")
        return value if isinstance(value, str) else None
