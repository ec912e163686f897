"""Measuring the trade-offs of a search system: recall against speed, batching, caching.

* :func:`recall_qps_sweep`: for one index and one knob (HNSW's ``ef_search``, IVF's
  ``nprobe``), recall@k against exact search and queries per second at each value,
  the curve ann-benchmarks draws (https://ann-benchmarks.com, Aumüller et al. 2020);
* :func:`batch_qps`: queries per second when queries arrive one at a time or in batches;
* :func:`zipf_stream` and :func:`cache_hit_rate`: a skewed query stream (a few
  queries very often, most rarely, as in web search logs) and what an LRU cache of
  a given capacity catches of it.

Timings use :func:`clipcourse.latency.measure_latency` (warm-up, repeats, median).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clipcourse.cache import LRUCache
from clipcourse.index import ShardedIndex, VectorIndex, faiss_threads
from clipcourse.latency import measure_latency
from clipcourse.search import recall_vs_exact

__all__ = ["batch_qps", "cache_hit_rate", "recall_qps_sweep", "zipf_stream"]


def batch_qps(
    index: VectorIndex | ShardedIndex, queries: torch.Tensor, k: int, batch_size: int, *,
    repeats: int = 3, max_seconds: float | None = 5.0, threads: int = 1,
) -> float:
    """Queries per second answering ``queries [Q, D]`` in batches of ``batch_size`` (1: one at a time).

    FAISS runs on ``threads`` threads (default one, as ann-benchmarks measures).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    q = queries.float().contiguous()
    batches = [q[i : i + batch_size] for i in range(0, len(q), batch_size)]

    def run() -> None:
        for b in batches:
            index.search(b, k)

    with faiss_threads(threads):
        stats = measure_latency(run, batch_size=len(q), warmup=1, repeats=repeats, max_seconds=max_seconds)
    return stats.items_per_s


def recall_qps_sweep(
    index: VectorIndex, queries: torch.Tensor, exact_ids: torch.Tensor, k: int, knob: str,
    values: Sequence[int], *, repeats: int = 3, threads: int = 1,
) -> list[dict[str, Any]]:
    """For each value of ``knob`` (``"ef_search"`` or ``"nprobe"``): recall@k against ``exact_ids`` and QPS at batch 1."""
    if knob not in ("ef_search", "nprobe"):
        raise ValueError(f"knob must be 'ef_search' or 'nprobe', got {knob!r}")
    rows = []
    for value in values:
        index.set_search_params(**{knob: int(value)})
        _, ids = index.search(queries, k)
        rows.append({
            knob: int(value),
            "recall": recall_vs_exact(ids, exact_ids[:, :k]),
            "qps": batch_qps(index, queries, k, 1, repeats=repeats, threads=threads),
        })
    return rows


def zipf_stream(n_distinct: int, length: int, *, s: float = 1.1, seed: int = 0) -> np.ndarray:
    """``length`` query ids in ``[0, n_distinct)``, id ``r`` drawn with probability ∝ 1 / (r + 1) ** s."""
    if n_distinct < 1 or length < 1 or s <= 0:
        raise ValueError(f"need n_distinct >= 1, length >= 1 and s > 0, got {n_distinct}, {length}, {s}")
    weights = 1.0 / np.arange(1, n_distinct + 1) ** s
    rng = np.random.default_rng(seed)
    return rng.choice(n_distinct, size=length, p=weights / weights.sum())


def cache_hit_rate(stream: Sequence[Any], capacity: int) -> float:
    """Share of ``get``s an :class:`~clipcourse.cache.LRUCache` of ``capacity`` answers (a miss puts the key)."""
    cache = LRUCache(capacity)
    for key in stream:
        key = key.item() if hasattr(key, "item") else key
        if cache.get(key) is None:
            cache.put(key, True)
    return cache.hit_rate
