"""Choosing a device, timing on it without CUDA-only calls on a CPU machine, and the CPU thread policy.

The thread policy is written once here: :func:`cpu_threads` says how many torch
threads to use (at most a limit, fewer when other processes keep the cores
busy) and :func:`torch_threads` runs a block with that many, restoring the
previous setting afterwards.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import torch

__all__ = [
    "cpu_threads",
    "get_device",
    "idle_cores",
    "seed_everything",
    "synchronize",
    "timer",
    "torch_threads",
]


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, CPU otherwise; ``prefer="cpu"`` forces the CPU."""
    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work; a no-op on CPU (``torch.cuda.synchronize`` would fail there)."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


@contextmanager
def timer(device: torch.device | str | None = None) -> Iterator[dict]:
    """Wall-clock timing that synchronises CUDA before reading the clock.

    >>> with timer() as t:
    ...     _ = sum(range(10))
    >>> t["seconds"] >= 0
    True
    """
    result: dict = {}
    synchronize(device)
    start = time.perf_counter()
    try:
        yield result
    finally:
        synchronize(device)
        result["seconds"] = time.perf_counter() - start


def seed_everything(seed: int = 0) -> None:
    """Seed ``random``, NumPy and torch (and CUDA when present)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def idle_cores(window: float = 0.2) -> float:
    """How many cores are idle right now: ``psutil``'s system-wide CPU use over ``window`` seconds."""
    busy = psutil.cpu_percent(interval=window) / 100
    return (psutil.cpu_count() or 1) * (1.0 - busy)


def cpu_threads(limit: int = 2) -> int:
    """Threads for CPU work: at most ``limit``, fewer when other processes keep the cores busy.

    Two threads on two cores that another process is using are far slower than one
    (each waits for the other at every parallel region), so we look at how many cores
    are idle right now. The result changes the speed, not the results.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return max(1, min(limit, torch.get_num_threads(), int(idle_cores() + 0.5)))


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` torch CPU threads, then restore the previous number.

    >>> with torch_threads(1) as n:
    ...     n
    1
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
