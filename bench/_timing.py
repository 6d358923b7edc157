"""Timing shared by the render benchmarks: one warm-up call, then the timed run, with CUDA
synchronised around both and peak memory counted over the timed run only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Timing:
    """What one timed run gave: its outputs, steady-state and warm-up seconds, peak memory."""

    outputs: list[Any]
    seconds: float
    warmup: float
    peak_bytes: int = 0

    def rate(self) -> float:
        """Outputs (images, clips) per second."""
        return len(self.outputs) / self.seconds


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_bytes(device: str) -> int:
    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else 0


def time_after_warmup(warm: Callable[[], object], run: Callable[[], list[Any]],
                      device: str) -> Timing:
    """Call ``warm`` once (loads, compiles, autotunes: timed apart), then time ``run``."""
    start = time.perf_counter()
    warm()
    sync(device)
    warmup = time.perf_counter() - start
    reset_peak(device)
    start = time.perf_counter()
    outputs = run()
    sync(device)
    return Timing(outputs, time.perf_counter() - start, warmup, peak_bytes(device))
