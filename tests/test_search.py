"""Chapter 6 library: LRU cache, FAISS indexes (ids, save/load, shards), search engine, graded references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipcourse.cache import LRUCache
from clipcourse.index import (
    IndexConfig,
    IndexFileError,
    IndexMismatchError,
    ShardedIndex,
    VectorIndex,
)
from clipcourse.search import SearchEngine, encoder_fingerprint, recall_vs_exact, top_k_search


def _vectors(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ------------------------------------------------------------------ LRU cache


def test_lru_evicts_least_recent_and_counts():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") is None and cache.get("c") == 3 and cache.get("a") == 1
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)
    cache.put("a", 10)  # update keeps the size
    assert len(cache) == 2 and cache.get("a") == 10
    assert cache.hit_rate == pytest.approx(4 / 5)


def test_lru_update_refreshes_recency():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    cache.put("c", 4)  # b is the least recent now
    assert "b" not in cache and "a" in cache


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_lru_rejects_bad_capacity(bad):
    with pytest.raises(ValueError):
        LRUCache(bad)


# ------------------------------------------------------------------ references


def test_top_k_search_normalises_and_breaks_ties_by_lower_id():
    index = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    scores, ids = top_k_search(torch.tensor([[3.0, 0.0]]), index, 3)
    assert ids.tolist() == [[0, 2, 3]]
    assert torch.allclose(scores, torch.tensor([[1.0, 1.0, 2**-0.5]]))
    with pytest.raises(ValueError):
        top_k_search(torch.ones(1, 2), index, 5)


def test_recall_vs_exact():
    assert recall_vs_exact([[1, 2], [3, 4]], [[2, 1], [3, 5]]) == pytest.approx(0.75)
    assert recall_vs_exact([[1, 1]], [[1, 2]]) == pytest.approx(0.5)  # duplicates count once
    with pytest.raises(ValueError):
        recall_vs_exact([[1, 2]], [[1, 2, 3]])


# ------------------------------------------------------------------ indexes


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_agree_with_exact(kind):
    x, q = _vectors(2000), _vectors(20, seed=1)
    index = VectorIndex(16, IndexConfig(kind, nlist=16, nprobe=16, ef_search=200))
    index.train(x)
    index.add(x)
    scores, ids = index.search(q, 10)
    exact_scores, exact_ids = top_k_search(q, x, 10)
    assert recall_vs_exact(ids, exact_ids) >= (1.0 if kind == "flat" else 0.9)
    if kind == "flat":
        assert torch.allclose(scores, exact_scores, atol=1e-5)


def test_ivf_needs_training():
    index = VectorIndex(16, IndexConfig("ivf", nlist=8))
    with pytest.raises(ValueError, match="not trained"):
        index.add(_vectors(100))
    with pytest.raises(ValueError, match="at least"):
        index.train(_vectors(4))


def test_ids_stay_aligned_with_metadata_after_adds_save_and_load(tmp_path):
    x = _vectors(300)
    index = VectorIndex(16, IndexConfig("hnsw"), fingerprint="model-a")
    ids1 = index.add(x[:100], [{"n": i} for i in range(100)])
    ids2 = index.add(x[100:], [{"n": i} for i in range(100, 300)])
    assert ids1.tolist() == list(range(100)) and ids2.tolist() == list(range(100, 300))
    loaded = VectorIndex.load(index.save(tmp_path / "idx"), fingerprint="model-a")
    loaded.add(_vectors(5, seed=3), [{"n": 300 + i} for i in range(5)])
    for probe in (0, 150, 299):
        _, ids = loaded.search(x[probe], 1)
        assert loaded.metadata[int(ids[0, 0])] == {"n": probe}
    _, ids = loaded.search(_vectors(5, seed=3)[2], 1)
    assert loaded.metadata[int(ids[0, 0])] == {"n": 302}
    assert torch.allclose(loaded.vectors(), torch.cat([x, _vectors(5, seed=3)]), atol=1e-6)


def test_load_refuses_corrupt_and_foreign_indexes(tmp_path):
    index = VectorIndex(16, fingerprint="model-a")
    index.add(_vectors(50))
    path = index.save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="model-b"):
        VectorIndex.load(path, fingerprint="model-b")
    data = bytearray((path / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="corrupt"):
        VectorIndex.load(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)
    with pytest.raises(IndexFileError):
        VectorIndex.load(tmp_path / "missing")
    meta = {"format": "clipcourse-index-1", "fingerprint": "", "sha256": {}}
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFileError):
        VectorIndex.load(path)


def test_bad_queries_and_k():
    index = VectorIndex(16)
    index.add(_vectors(10))
    for bad_k in (0, 11, 2.0):
        with pytest.raises(ValueError):
            index.search(_vectors(1), bad_k)
    with pytest.raises(ValueError, match="shape"):
        index.search(torch.ones(1, 3), 1)
    with pytest.raises(ValueError, match="NaN"):
        index.search(torch.full((1, 16), float("nan")), 1)


@pytest.mark.parametrize("n_shards", [1, 3, 4])
def test_shards_return_exactly_what_one_index_returns(n_shards):
    x, q = _vectors(1000), _vectors(30, seed=2)
    one = VectorIndex(16)
    one.add(x, list(range(1000)))
    shards = ShardedIndex.build(x, n_shards, metadata=list(range(1000)))
    s1, i1 = one.search(q, 10)
    s2, i2 = shards.search(q, 10)
    assert torch.equal(i1, i2) and torch.allclose(s1, s2)
    assert [shards.metadata(int(i)) for i in i2[0]] == i2[0].tolist()


def test_shards_break_ties_by_lower_id():
    x = torch.tensor([[1.0, 0.0]] * 6)
    shards = ShardedIndex.build(x, 3)
    _, ids = shards.search(torch.tensor([[1.0, 0.0]]), 4)
    assert ids.tolist() == [[0, 1, 2, 3]]


# ------------------------------------------------------------------ engine


class _ToyEncoder:
    """Texts are 'v<i>' naming a row of a fixed matrix; images are their own features."""

    fingerprint = "toy"

    def __init__(self, table: torch.Tensor) -> None:
        self.table, self.text_calls = table, 0

    def encode_text(self, texts):
        self.text_calls += 1
        return self.table[[int(t[1:]) for t in texts]]

    def encode_image(self, images):
        return images.flatten(1)[:, : self.table.shape[1]].float()


def test_engine_caches_queries_and_reranks_exactly():
    x = _vectors(500)
    enc = _ToyEncoder(x)
    index = VectorIndex(16, IndexConfig("hnsw", ef_search=8))
    index.add(x, [{"caption": f"item {i}"} for i in range(500)])
    engine = SearchEngine(enc, index, rerank=5, cache_capacity=4)
    passes = list(engine.search_text_progressive(["v3", "v7"], 5))
    assert [p.exact for p in passes] == [False, True]
    final = passes[-1]
    exact_scores, exact_ids = top_k_search(x[[3, 7]], x, 5)
    assert final.ids[:, 0].tolist() == [3, 7] and final.hits[0][0].metadata == {"caption": "item 3"}
    assert torch.allclose(final.scores[:, :1], exact_scores[:, :1], atol=1e-5)
    calls = enc.text_calls
    again = engine.search_text(["v3"], 5)
    assert enc.text_calls == calls and again.cache_hits == 1 and engine.cache.hits == 1
    assert set(final.times.as_dict()) == {"encode_ms", "search_ms", "rerank_ms", "fetch_ms", "total_ms"}
    breakdown = engine.latency_breakdown("v1", 5, repeats=3, warmup=1)
    assert set(breakdown) == {"encode", "encode_cached", "search", "rerank", "fetch"}


def test_engine_image_search_and_errors():
    x = _vectors(50)
    enc = _ToyEncoder(x)
    index = VectorIndex(16)
    index.add(x)
    engine = SearchEngine(enc, index, batch_size=2)
    images = x[:3].view(3, 1, 4, 4).expand(3, 3, 4, 4).contiguous()
    # encode_image takes the first 16 values: the first channel, i.e. the vector itself
    res = engine.search_image(images, 1)
    assert res.ids[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="text_index"):
        engine.search_image(images, 1, target="text")
    with pytest.raises(ValueError, match="non-empty"):
        engine.search_text(["  "], 1)
    with pytest.raises(ValueError):
        engine.search_image(torch.zeros(3, 4, 4), 1)


def test_encoder_fingerprint_changes_with_weights():
    model = torch.nn.Linear(3, 2)
    a = encoder_fingerprint(model)
    with torch.no_grad():
        model.weight.add_(1)
    assert encoder_fingerprint(model) != a
    with pytest.raises(ValueError):
        encoder_fingerprint(object())
    assert np.isscalar(a)


def test_exact_rerank_repairs_compressed_scores():
    from clipcourse.index import merge_top_k

    x, q = _vectors(3000), _vectors(30, seed=5)
    pq = VectorIndex(16, IndexConfig("ivfpq", nlist=8, nprobe=8, pq_m=4))
    pq.train(x)
    pq.add(x)
    _, exact_ids = top_k_search(q, x, 10)
    _, cand = pq.search(q, 40)
    _, reranked = merge_top_k(pq.exact_scores(q, cand), cand, 10)
    assert recall_vs_exact(reranked, exact_ids) > recall_vs_exact(cand[:, :10], exact_ids) + 0.05
