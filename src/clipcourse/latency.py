"""Measuring latency, throughput and resource use honestly, on a CPU or a GPU.

Shared by the compression card (chapter 4), the evaluation card (chapter 5)
and the search service (chapter 6). Every measurement follows the same rules:

* **warm-up** calls first (lazy initialisation, allocator growth, caches) and
  they are not counted;
* **repeats**, reported as percentiles (median and tail), not one run;
* **synchronisation** before reading the clock when the work runs on CUDA,
  and only then (``torch.cuda.synchronize`` fails on a CPU-only machine);
* the **thread count** is recorded beside the figures, since it changes them.
"""

from __future__ import annotations

import gc
import math
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from clipcourse.device import synchronize

__all__ = ["LatencyStats", "ResourceUse", "measure_latency", "percentile", "resource_use", "throughput_curve"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear interpolation (NumPy's default)."""
    if not values:
        raise ValueError("percentile of an empty list of timings")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyStats:
    """Timings of one call repeated ``repeats`` times; milliseconds per call."""

    batch_size: int  #: items processed by one call
    repeats: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    items_per_s: float  #: batch_size / median seconds per call (throughput; queries per second for a search)
    threads: int  #: torch.get_num_threads() during the measurement
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(
    fn: Callable[[], Any],
    *,
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    device: torch.device | str | None = "cpu",
    max_seconds: float | None = None,
) -> LatencyStats:
    """Time ``fn()`` (a closure doing one call on one batch): ``warmup`` untimed calls, then ``repeats``.

    ``device`` is where ``fn`` runs its work: CUDA is synchronised before and
    after each timed call, the CPU is not. ``max_seconds`` stops the repeats
    early (at least 3 are kept) so a slow model cannot stall a lesson.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        synchronize(device)
        times: list[float] = []
        started = time.perf_counter()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
            if max_seconds is not None and len(times) >= 3 and time.perf_counter() - started > max_seconds:
                break
    ms = [t * 1000 for t in times]
    median = percentile(ms, 50)
    return LatencyStats(
        batch_size=batch_size,
        repeats=len(ms),
        p50_ms=median,
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms),
        min_ms=min(ms),
        items_per_s=batch_size / (median / 1000) if median > 0 else float("inf"),
        threads=torch.get_num_threads(),
        device=str(torch.device(device)) if device is not None else "cpu",
    )


def throughput_curve(
    make_call: Callable[[int], Callable[[], Any]],
    batch_sizes: Sequence[int],
    **kwargs: Any,
) -> list[LatencyStats]:
    """:func:`measure_latency` at each batch size; ``make_call(b)`` returns the closure for batch ``b``."""
    return [measure_latency(make_call(b), batch_size=b, **kwargs) for b in batch_sizes]


@dataclass(frozen=True)
class ResourceUse:
    """What one call cost besides time."""

    wall_s: float
    cpu_s: float  #: user + system CPU time of this process (above wall_s: several threads were busy)
    python_peak_mb: float  #: peak of memory allocated through Python (tracemalloc); tensors' storage is not included
    max_rss_mb: float  #: the process's peak resident memory so far (ru_maxrss; never decreases)
    cuda_peak_mb: float | None  #: peak CUDA memory allocated during the call, None on CPU

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resource_use(fn: Callable[[], Any], device: torch.device | str | None = "cpu") -> tuple[Any, ResourceUse]:
    """Run ``fn()`` once and return ``(its result, ResourceUse)``."""
    cuda = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    tracemalloc.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        result = fn()
        synchronize(device)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
    cuda_peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return result, ResourceUse(wall, cpu, peak / 2**20, rss_mb, cuda_peak)
