"""The shared measurement and batching helpers (chapters 4-6 build on them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipcourse.encoding import as_float_images, encode_in_batches
from clipcourse.latency import measure_latency, percentile, resource_use, throughput_curve


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.random(37).tolist()
    for q in (0, 12.5, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 101)


def test_measure_latency_counts_repeats_not_warmup():
    calls = []
    stats = measure_latency(lambda: calls.append(1), batch_size=4, warmup=2, repeats=5)
    assert len(calls) == 7 and stats.repeats == 5
    assert stats.min_ms <= stats.p50_ms <= stats.p95_ms <= stats.p99_ms
    assert stats.items_per_s > 0 and stats.device == "cpu" and stats.threads >= 1
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, repeats=0)


def test_measure_latency_stops_at_max_seconds():
    import time

    stats = measure_latency(lambda: time.sleep(0.02), warmup=0, repeats=1000, max_seconds=0.05)
    assert 3 <= stats.repeats < 1000


def test_throughput_curve_one_entry_per_batch_size():
    x = torch.randn(64, 8)
    curve = throughput_curve(lambda b: (lambda: x[:b] @ x[:b].T), [1, 16, 64], warmup=1, repeats=3)
    assert [s.batch_size for s in curve] == [1, 16, 64]


def test_resource_use_reports_cpu_and_memory():
    result, use = resource_use(lambda: [0] * 1_000_000)
    assert len(result) == 1_000_000
    assert use.python_peak_mb > 5 and use.max_rss_mb > 0 and use.cpu_s >= 0 and use.cuda_peak_mb is None


def test_as_float_images():
    u8 = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert as_float_images(u8).dtype == torch.float32 and as_float_images(u8).max() == 1.0
    f = torch.rand(2, 3, 4, 4)
    assert as_float_images(f) is f
    with pytest.raises(ValueError, match="dtype"):
        as_float_images(torch.zeros(2, 3, 4, 4, dtype=torch.int64))


def test_encode_in_batches_order_and_slices():
    seen = []

    def encode(batch):
        seen.append(len(batch))
        return torch.as_tensor(batch, dtype=torch.float32)[:, None] * 2

    out = encode_in_batches(encode, list(range(10)), 4)
    assert seen == [4, 4, 2]
    assert out.squeeze(1).tolist() == [2.0 * i for i in range(10)]
    with pytest.raises(ValueError, match="batch_size"):
        encode_in_batches(encode, [1], 0)
    with pytest.raises(ValueError, match="empty"):
        encode_in_batches(encode, [], 3)
