"""Renderers for backend tests: deterministic, cheap, and able to fail on demand."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from adgen.jobs import RenderJob
from adgen.renderers.base import Rendered


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
