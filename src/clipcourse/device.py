"""Choosing a device and timing on it without calling CUDA-only code on a CPU machine."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


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
