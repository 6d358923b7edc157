"""Renderers for backend tests: deterministic, cheap, and able to fail on demand."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adgen.jobs import Rendered, RenderJob


class SeedRenderer:
    """Paints a picture from the job seed (same job, same bytes), optionally sleeping per image
    (simulated GPU work), dying once when a marker file exists, or failing chosen prompts."""

    name = "seed"

    def __init__(self, *, sleep: float = 0.0, die_marker: str | None = None,
                 fail_prompt: str | None = None) -> None:
        self.sleep, self.die_marker, self.fail_prompt = sleep, die_marker, fail_prompt

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        if self.die_marker and Path(self.die_marker).exists():
            Path(self.die_marker).unlink()  # die once, as a crashed GPU process would
            os._exit(1)
        results = []
        for job in jobs:
            if self.sleep:
                time.sleep(self.sleep)
            if self.fail_prompt and self.fail_prompt in job.prompt:
                results.append(Rendered(job.key, None, error="NaN image"))
                continue
            rng = np.random.default_rng(job.seed)
            pixels = rng.integers(0, 255, (job.height // 8, job.width // 8, 3), dtype=np.uint8)
            image = Image.fromarray(pixels).resize((job.width, job.height),
                                                   Image.Resampling.NEAREST)
            results.append(Rendered(job.key, image))
        return results


class RecordingRenderer(SeedRenderer):
    """A :class:`SeedRenderer` that records where each batch ran (process id, Ray actor, GPU ids,
    cluster address) in a JSON file per batch under ``log_dir``."""

    def __init__(self, log_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_dir = log_dir

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        where: dict[str, Any] = {"pid": os.getpid(), "jobs": [job.key for job in jobs]}
        try:
            import ray

            if ray.is_initialized():
                context = ray.get_runtime_context()
                where.update(actor=context.get_actor_id(), gpus=[str(g) for g in
                                                                  ray.get_gpu_ids()],
                             gcs=context.gcs_address)
        except ImportError:  # pragma: no cover - ray is a dependency
            pass
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.log_dir) / f"{os.getpid()}-{time.time_ns()}.json").write_text(
            json.dumps(where), encoding="utf-8")
        return super().__call__(jobs)


def batches_ran(log_dir: Path) -> list[dict[str, Any]]:
    """What :class:`RecordingRenderer` recorded, one entry per batch."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(log_dir.glob("*.json"))]


def recording_renderer(name: str, model: str | None = None, **options: Any) -> RecordingRenderer:
    """A stand-in for :func:`adgen.renderers.create_renderer` (patched into the pipeline by
    tests of the CLI): records where batches ran under ``$ADGEN_TEST_RENDER_LOG``."""
    return RecordingRenderer(os.environ["ADGEN_TEST_RENDER_LOG"])
