"""Recall-QPS sweeps, batch QPS, the Zipf stream and the cache hit rate (small and fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipcourse.index import IndexConfig, VectorIndex
from clipcourse.tradeoff import batch_qps, cache_hit_rate, recall_qps_sweep, zipf_stream


def test_sweep_recall_rises_to_one_with_nprobe():
    x = F.normalize(torch.randn(1000, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    q = F.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    exact = VectorIndex(8)
    exact.add(x)
    _, exact_ids = exact.search(q, 5)
    ivf = VectorIndex(8, IndexConfig("ivf", nlist=16))
    ivf.train(x)
    ivf.add(x)
    rows = recall_qps_sweep(ivf, q, exact_ids, 5, "nprobe", [1, 16], repeats=1)
    assert rows[0]["recall"] < rows[1]["recall"] == pytest.approx(1.0)
    assert all(r["qps"] > 0 for r in rows)
    assert batch_qps(exact, q, 5, 64, repeats=1) > 0
    with pytest.raises(ValueError):
        recall_qps_sweep(ivf, q, exact_ids, 5, "efsearch", [1])


def test_zipf_stream_is_skewed_and_seeded():
    s = zipf_stream(1000, 5000, s=1.1, seed=0)
    assert np.array_equal(s, zipf_stream(1000, 5000, s=1.1, seed=0))
    counts = np.bincount(s, minlength=1000)
    assert counts[0] > counts[10] > counts[500]
    with pytest.raises(ValueError):
        zipf_stream(0, 10)


def test_cache_hit_rate_counts_repeats():
    assert cache_hit_rate([1, 1, 1, 2], capacity=1) == pytest.approx(2 / 4)
    assert cache_hit_rate([1, 2, 1, 2], capacity=1) == 0.0
    assert cache_hit_rate([1, 2, 1, 2], capacity=2) == pytest.approx(0.5)
