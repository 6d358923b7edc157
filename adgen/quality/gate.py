"""The quality gate: score every render, reject the ones that fail, render those again.

* :class:`QualityChecker` scores a batch of pictures (a plain callable: it runs wherever the
  renders are, in-process or in a Ray actor) and says why a score fails its threshold.
* :class:`GatedRenderer` wraps a renderer: it renders a batch, scores it on the renderer's
  device, renders each rejected job again with the next seed (``seed + 1`` …) up to
  ``retries`` times, and returns each accepted picture under its job's key with a quality
  record (scores, the seed kept, every seed rejected and why). A job whose seeds all fail comes
  back as a failed render whose error lists them.
* :class:`TwinFilter` runs on the driver: variants of one segment and creative whose pictures'
  perceptual hashes are too close are twins; the first (in plan order) is kept and the others
  are rendered again with their next seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from adgen.jobs import Rendered, RenderJob, stable_hash
from adgen.quality.pixels import hash_distance, phash, pixel_scores
from adgen.renderers.base import Renderer
from adgen.spec import QualitySpec

GENERATIVE = frozenset({"diffusers", "diffusers-video"})
"""Renderers whose pictures come from a model: the safety and text checks default on for them."""

QualityRecord = dict[str, Any]
"""What the gate knows of one render: ``scores``, ``phash``, ``seed`` (the one kept),
``rejected`` (``[{"seed": s, "reasons": [...]}, ...]``) and ``gate`` (a hash of the checks)."""


@dataclass(frozen=True)
class GateSettings:
    """The checks the gate runs for one campaign, resolved from its ``quality`` section."""

    spec: QualitySpec
    safety: bool
    text: bool
    safety_model: str
    """The safety checker: ``quality.safety_model`` when the campaign sets it, else the
    renderer's own when its model is a local folder that ships one (``safety_checker/``, the
    Stable Diffusion 1.x layout: nothing to download), else the default hub id."""

    @classmethod
    def of(cls, spec: QualitySpec, renderer: str, model: str | None = None) -> GateSettings:
        """The settings for a campaign's ``quality``, ``renderer`` name and renderer ``model``."""
        generative = renderer in GENERATIVE
        own = Path(model).expanduser() if model else None
        ships_checker = own is not None and (own / "safety_checker").is_dir()
        return cls(spec, generative if spec.safety == "auto" else bool(spec.safety),
                   generative if spec.text == "auto" else bool(spec.text),
                   str(own) if ships_checker and "safety_model" not in spec.model_fields_set
                   else spec.safety_model)

    @property
    def key(self) -> str:
        """A hash of what is measured (models, checks on or off): a cached score made with
        other checks is measured again."""
        spec = self.spec
        return stable_hash("quality/v1", spec.clip_model if spec.min_alignment is not None else
                           None, self.safety_model if self.safety else None, self.text)[:12]

    def reasons(self, scores: dict[str, float]) -> list[str]:
        """Why these scores fail the thresholds (empty when they pass)."""
        spec = self.spec
        out = []
        value = scores.get("brightness")
        if value is not None and spec.min_brightness is not None and value < spec.min_brightness:
            out.append(f"too dark: brightness {value:.3f} < {spec.min_brightness}")
        if value is not None and spec.max_brightness is not None and value > spec.max_brightness:
            out.append(f"washed out: brightness {value:.3f} > {spec.max_brightness}")
        value = scores.get("contrast")
        if value is not None and spec.min_contrast is not None and value < spec.min_contrast:
            out.append(f"flat: contrast {value:.3f} < {spec.min_contrast}")
        value = scores.get("sharpness")
        if value is not None and spec.min_sharpness is not None and value < spec.min_sharpness:
            out.append(f"blurred: sharpness {value:.5f} < {spec.min_sharpness}")
        value = scores.get("alignment")
        if value is not None and spec.min_alignment is not None and value < spec.min_alignment:
            out.append(f"off-prompt: CLIP alignment {value:.3f} < {spec.min_alignment}")
        value = scores.get("unsafe")
        if value is not None and value > spec.max_unsafe:
            out.append(f"unsafe: safety score {value:.3f} > {spec.max_unsafe}")
        value = scores.get("text_area")
        if value is not None and value > spec.max_text_area:
            out.append(f"text in the scene: {value:.2%} of the picture "
                       f"(max {spec.max_text_area:.2%})")
        return out


class QualityChecker:
    """Scores batches of pictures; the models load once, here, on ``device`` (in ``dtype`` on a
    GPU: the renderer's). Each model check scores a whole batch in one call.

    Call it on pictures and their prompts: it returns one ``scores`` dict per picture
    (``brightness``, ``contrast``, ``sharpness``, and ``alignment``, ``unsafe``, ``text_area``
    for the checks that are on) plus its perceptual hash under ``phash``."""

    def __init__(self, settings: GateSettings, *, device: str = "cpu", dtype: Any = None) -> None:
        from adgen.quality.models import (
            AlignmentScorer,
            SafetyScorer,
            TextDetector,
            same_image_tower,
        )

        spec = settings.spec
        self.settings = settings
        self.device = spec.device or device
        if not self.device.startswith("cuda"):
            dtype = None  # half precision only on a GPU: on a CPU it is slower, not faster
        self.alignment = (AlignmentScorer(spec.clip_model, device=self.device, dtype=dtype)
                          if spec.clip_model and spec.min_alignment is not None else None)
        self.safety = (SafetyScorer(settings.safety_model, device=self.device, dtype=dtype)
                       if settings.safety else None)
        self.text = TextDetector(device=self.device) if settings.text else None
        self.shared_tower = bool(self.alignment and self.safety
                                 and same_image_tower(self.alignment, self.safety))
        """The safety checker's vision tower is CLIP's: it runs once for both checks."""

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]
                 ) -> list[dict[str, Any]]:
        # 1. pixels: exposure, contrast, sharpness, perceptual hash
        scores: list[dict[str, Any]] = [pixel_scores(image) for image in images]
        hashes = [phash(image) for image in images]
        # 2. models, one batched call each (one image tower run when CLIP's is the safety's)
        embeds = (self.alignment.image_embeds(images)
                  if self.alignment is not None and self.shared_tower and images else None)
        if self.alignment is not None:
            for row, value in zip(scores, self.alignment(images, prompts, embeds), strict=True):
                row["alignment"] = value
        if self.safety is not None:
            for row, value in zip(scores, self.safety(images, embeds), strict=True):
                row["unsafe"] = value
        if self.text is not None:
            for row, value in zip(scores, self.text(images), strict=True):
                row["text_area"] = value
        return [{"scores": row, "phash": h} for row, h in zip(scores, hashes, strict=True)]


class GatedRenderer:
    """A renderer whose pictures pass the quality gate (see the module docstring). Built inside
    the worker that renders (``make_renderer`` is called here), so the checks load once per
    worker, on the renderer's device."""

    def __init__(self, make_renderer: Callable[[], Renderer], settings: GateSettings,
                 *, retries: int | None = None) -> None:
        self.inner = make_renderer()
        self.name = self.inner.name
        self.settings = settings
        self.retries = settings.spec.retries if retries is None else retries
        device = str(getattr(self.inner, "device", "cpu"))
        dtype = getattr(self.inner, "dtype", None) if device.startswith("cuda") else None
        self.checker = QualityChecker(settings, device=device, dtype=_torch_dtype(dtype))

    def single_attempt(self) -> GatedRenderer:
        """The same renderer and checks, without retries (the driver retries twins itself)."""
        view = copy.copy(self)
        view.retries = 0
        return view

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        jobs = list(jobs)
        results: dict[int, Rendered] = {}
        rejected: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(jobs))}
        pending = list(range(len(jobs)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            tries = [replace(jobs[i], seed=jobs[i].seed + attempt) for i in pending]
            # 1. render the batch with this attempt's seeds
            rendered = self.inner(tries)
            ok = [(i, job, r) for i, job, r in zip(pending, tries, rendered, strict=True)
                  if r.error is None and r.image is not None]
            for i, job, r in zip(pending, tries, rendered, strict=True):
                if r.error is not None or r.image is None:
                    rejected[i].append({"seed": job.seed, "reasons": [r.error or "no image"]})
            # 2. score what rendered, in one batch on the renderer's device
            records = self.checker([r.image for _, _, r in ok if r.image is not None],
                                   [job.prompt for _, job, _ in ok])
            still = [i for i in pending if i not in {i for i, _, _ in ok}]
            for (i, job, r), record in zip(ok, records, strict=True):
                reasons = self.settings.reasons(record["scores"])
                if reasons:
                    rejected[i].append({"seed": job.seed, "reasons": reasons})
                    still.append(i)
                    continue
                record |= {"seed": job.seed, "rejected": rejected[i], "gate": self.settings.key}
                results[i] = replace(r, job_key=jobs[i].key, quality=record)
            pending = sorted(still)
        # 3. jobs whose every seed failed
        for i in pending:
            results[i] = Rendered(jobs[i].key, None, error=failure_message(rejected[i]),
                                  quality={"rejected": rejected[i], "gate": self.settings.key})
        return [results[i] for i in range(len(jobs))]


def failure_message(rejected: Sequence[dict[str, Any]]) -> str:
    """``quality: seed 12: flat: contrast 0.000 < 0.03; seed 13: …``"""
    parts = [f"seed {r['seed']}: {', '.join(r['reasons'])}" for r in rejected]
    return "quality: " + "; ".join(parts)


def _torch_dtype(name: Any) -> Any:
    if name is None or not isinstance(name, str):
        return name
    import torch

    return getattr(torch, name)


class SharedGate:
    """A factory of :class:`GatedRenderer` that builds it once per process and hands the same
    one out again (the local backend's later rounds reuse its loaded models). It pickles as its
    recipe, so each Ray worker builds its own."""

    def __init__(self, make_renderer: Callable[[], Renderer], settings: GateSettings) -> None:
        self.make_renderer, self.settings = make_renderer, settings
        self._built: GatedRenderer | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedGate, (self.make_renderer, self.settings))

    def __call__(self) -> GatedRenderer:
        if self._built is None:
            self._built = GatedRenderer(self.make_renderer, self.settings)
        return self._built

    def single_attempt(self) -> GatedRenderer:
        return self().single_attempt()


class TwinFilter:
    """Finds near-duplicate variants, group by group, as their renders arrive.

    ``groups`` lists the job keys of each segment × creative in plan order. A group is judged
    once all its jobs have arrived (or failed): walking in plan order, a picture whose pHash is
    within ``max_distance`` bits of an already kept one is a twin. A job is released (ready for
    post-processing) once every group it belongs to has kept it. Kept jobs stay kept: a twin
    rendered again is compared with them, never the other way round, so decisions do not
    depend on the order renders arrive in."""

    def __init__(self, groups: Iterable[Sequence[str]], max_distance: int | None,
                 phash_of: Callable[[str], str | None]) -> None:
        self.max_distance = max_distance
        self.phash_of = phash_of
        self.groups = [list(dict.fromkeys(g)) for g in groups]
        self.of_key: dict[str, list[int]] = {}
        for index, keys in enumerate(self.groups):
            for key in keys:
                self.of_key.setdefault(key, []).append(index)
        self.arrived: set[str] = set()
        self.gone: set[str] = set()
        self.kept: dict[int, list[str]] = {}
        self.cleared: dict[str, set[int]] = {}
        self.released: set[str] = set()
        self.twins: dict[str, tuple[str, int]] = {}
        """Twin job key → the kept key it duplicates and their pHash distance."""

    def add(self, key: str) -> list[str]:
        """A render arrived (or came again after a retry); returns the keys now released."""
        self.twins.pop(key, None)
        self.arrived.add(key)
        if key not in self.of_key:
            return [key]
        return self._settle(self.of_key[key], key)

    def drop(self, key: str) -> list[str]:
        """A job failed for good: it no longer holds its groups back."""
        self.twins.pop(key, None)
        self.gone.add(key)
        return self._settle(self.of_key.get(key, []), None)

    def _settle(self, indices: list[int], key: str | None) -> list[str]:
        released = []
        for index in indices:
            keys = self.groups[index]
            if any(k not in self.arrived and k not in self.gone for k in keys):
                continue
            judged = keys if index not in self.kept else [key] if key else []
            kept = self.kept.setdefault(index, [])
            for candidate in judged:
                if candidate in self.gone or candidate in kept:
                    continue
                twin = self._twin(candidate, kept)
                if twin is None:
                    kept.append(candidate)
                    self.cleared.setdefault(candidate, set()).add(index)
                else:
                    self.twins[candidate] = twin
            for candidate in keys:
                if (candidate not in self.released and candidate not in self.twins
                        and self.cleared.get(candidate, set()) >= set(self.of_key[candidate])):
                    self.released.add(candidate)
                    released.append(candidate)
        return released

    def _twin(self, key: str, kept: list[str]) -> tuple[str, int] | None:
        if self.max_distance is None:
            return None
        mine = self.phash_of(key)
        if mine is None:
            return None
        for other in kept:
            theirs = self.phash_of(other)
            if theirs is not None:
                distance = hash_distance(mine, theirs)
                if distance <= self.max_distance:
                    return other, distance
        return None
