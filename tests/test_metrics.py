"""Ranking metrics: hand-computed cases, ties, agreement with ir_measures and torchmetrics, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from clipcourse import metrics as M
from clipcourse.reference_tools import ir_measures_metrics, shift_positive, torchmetrics_metrics

FIVE = ("recall_at_k", "precision_at_k", "reciprocal_rank", "average_precision", "ndcg_at_k")
WITH_K = ("recall_at_k", "precision_at_k", "hit_rate_at_k", "ndcg_at_k")


def call(name, scores, relevance, k=2):
    fn = getattr(M, name)
    return fn(scores, relevance, k) if name in WITH_K else fn(scores, relevance)


def brute_force(scores, relevance, k):
    """The definitions, written out item by item in plain Python (stable descending sort)."""
    out = {n: [] for n in ("R", "P", "HR", "RR", "AP", "N")}
    for s, r in zip(scores.tolist(), relevance.tolist(), strict=True):
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))
        ranked = [r[j] for j in order]
        rel = [g > 0 for g in ranked]
        n = sum(rel)
        hits = sum(rel[:k])
        out["R"].append(hits / n if n else 0.0)
        out["P"].append(hits / k)
        out["HR"].append(float(hits > 0))
        out["RR"].append(1 / (rel.index(True) + 1) if n else 0.0)
        found, ap = 0, 0.0
        for i, is_rel in enumerate(rel, start=1):
            if is_rel:
                found += 1
                ap += found / i
        out["AP"].append(ap / n if n else 0.0)
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(ranked[:k]))
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(r, reverse=True)[:k]))
        out["N"].append(dcg / idcg if idcg > 0 else 0.0)
    return {n: torch.tensor(v, dtype=torch.float64) for n, v in out.items()}


# ---------------------------------------------------------------- hand-computed cases


def test_small_case_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5]])  # ranking: 1, 2, 3, 0 (tie 2/3 -> lower index first)
    relevance = torch.tensor([[0, 1, 0, 2]])
    assert M.recall_at_k(scores, relevance, 1).tolist() == [0.5]
    assert M.precision_at_k(scores, relevance, 2).tolist() == [0.5]
    assert M.hit_rate_at_k(scores, relevance, 1).tolist() == [1.0]
    assert M.reciprocal_rank(scores, relevance).tolist() == [1.0]
    assert M.average_precision(scores, relevance).item() == pytest.approx((1 / 1 + 2 / 3) / 2)
    dcg = 1 + 0 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 + 1 / math.log2(3) + 0
    assert M.ndcg_at_k(scores, relevance, 3).item() == pytest.approx(dcg / idcg)
    assert M.ndcg_at_k(scores, relevance, 1).item() == pytest.approx(0.5)


def test_ties_break_by_lower_index():
    constant = torch.zeros(2, 4)
    relevance = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]])
    assert M.reciprocal_rank(constant, relevance).tolist() == [1.0, 0.25]
    assert M.hit_rate_at_k(constant, relevance, 1).tolist() == [1.0, 0.0]
    assert M.average_precision(constant, relevance).tolist() == [1.0, 0.25]
    assert M.ndcg_at_k(constant, relevance, 4)[1].item() == pytest.approx(1 / math.log2(5))
    # the same tie at a different place in the ranking
    scores = torch.tensor([[0.3, 0.7, 0.3, 0.3]])
    rel = torch.tensor([[0, 0, 0, 1]])
    assert M.reciprocal_rank(scores, rel).tolist() == [0.25]
    assert M.reciprocal_rank(-scores, rel).item() == pytest.approx(1 / 3)


def test_negative_zero_ties_with_zero():
    scores = torch.tensor([[0.0, -0.0, -1.0], [-0.0, 0.0, -1.0]])
    relevance = torch.tensor([[0, 1, 0], [0, 1, 0]])
    assert M.reciprocal_rank(scores, relevance).tolist() == [0.5, 0.5]


def test_query_without_relevant_items_scores_zero():
    scores = torch.randn(2, 5)
    relevance = torch.tensor([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    for name in (*FIVE, "hit_rate_at_k"):
        assert call(name, scores, relevance)[0].item() == 0.0, name


def test_recall_and_hit_rate_agree_with_one_relevant_item_only():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
    one = torch.tensor([[0, 1, 0, 0]])
    two = torch.tensor([[0, 1, 1, 0]])
    assert M.recall_at_k(scores, one, 2).item() == M.hit_rate_at_k(scores, one, 2).item() == 1.0
    assert M.recall_at_k(scores, two, 2).item() == 0.5
    assert M.hit_rate_at_k(scores, two, 2).item() == 1.0


def test_bool_int_float_relevance_and_dtypes():
    scores = torch.randn(3, 6, dtype=torch.float64)
    rel = torch.rand(3, 6) > 0.5
    for name in FIVE:
        a, b = call(name, scores, rel), call(name, scores, rel.to(torch.int64))
        assert a.dtype == torch.float64 and a.shape == (3,)
        assert torch.equal(a, b)
    assert M.recall_at_k(scores.float(), rel, 2).dtype == torch.float32
    assert M.recall_at_k(scores.half(), rel, 2).dtype == torch.float32
    assert torch.allclose(M.recall_at_k(scores.t().contiguous().t(), rel, 3), M.recall_at_k(scores, rel, 3))


@pytest.mark.parametrize("n_relevant", [1, 3, 12])  # counting path (few relevant) and sorting path (many)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_against_brute_force_with_ties(n_relevant, dtype):
    g = torch.Generator().manual_seed(n_relevant)
    for _ in range(10):
        q, n = 7, 20
        scores = torch.randint(-3, 4, (q, n), generator=g).to(dtype) / 2  # many ties, negative scores
        relevance = torch.zeros(q, n)
        for row in range(q):
            idx = torch.randperm(n, generator=g)[:n_relevant]
            relevance[row, idx] = torch.randint(1, 4, (n_relevant,), generator=g).float()
        relevance[0] = 0  # one query without relevant items
        k = int(torch.randint(1, n + 1, (1,), generator=g))
        want = brute_force(scores, relevance, k)
        got = M.ranking_metrics(scores, relevance, ks=(k,))
        for short, name in (("R", f"R@{k}"), ("P", f"P@{k}"), ("HR", f"HR@{k}"), ("N", f"nDCG@{k}")):
            torch.testing.assert_close(got[name].double(), want[short], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["RR"].double(), want["RR"], atol=1e-6, rtol=0)
        torch.testing.assert_close(got["AP"].double(), want["AP"], atol=1e-6, rtol=0)
        torch.testing.assert_close(M.ndcg_at_k(scores, relevance, k).double(), want["N"], atol=1e-6, rtol=0)
        torch.testing.assert_close(M.average_precision(scores, relevance).double(), want["AP"], atol=1e-6, rtol=0)


def test_ranked_relevance_is_the_stable_descending_order():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0]])
    relevance = torch.tensor([[10, 20, 30, 40]])
    assert M.ranked_relevance(scores, relevance).tolist() == [[20.0, 30.0, 40.0, 10.0]]


# ---------------------------------------------------------------- reference tools


def _random_queries(n_queries, n_items, seed, graded=True):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n_queries, n_items, generator=g, dtype=torch.float64) * 2 - 1  # distinct, some negative
    relevance = (torch.rand(n_queries, n_items, generator=g) < 0.15).long()
    if graded:
        relevance *= torch.randint(1, 4, (n_queries, n_items), generator=g)
    relevance[torch.arange(n_queries), torch.randint(n_items, (n_queries,), generator=g)] = 1  # >= 1 relevant
    return scores, relevance


def test_agrees_with_ir_measures_pytrec_eval():
    scores, relevance = _random_queries(150, 30, seed=1)
    ks = (1, 5, 10)
    ours = M.ranking_metrics(scores, relevance, ks)
    ref = ir_measures_metrics(scores, relevance, ks)
    for name, values in ref.items():
        assert (ours[name] - values).abs().max() < 1e-6, name


def test_ir_measures_agrees_on_ties_when_ids_follow_our_rule():
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (40, 12), generator=g).double()
    relevance = torch.randint(0, 3, (40, 12), generator=g)
    ours = M.ranking_metrics(scores, relevance, (1, 3))
    ref = ir_measures_metrics(scores, relevance, (1, 3))
    for name, values in ref.items():
        assert (ours[name] - values).abs().max() < 1e-6, name


def test_agrees_with_torchmetrics_on_shifted_scores():
    scores, relevance = _random_queries(30, 25, seed=2)
    ks = (1, 5, 10)
    ours = M.ranking_metrics(scores, relevance, ks)
    ref = torchmetrics_metrics(scores, relevance, ks, shift=True)
    for name, values in ref.items():
        assert (ours[name] - values).abs().max() < 1e-6, name


def test_torchmetrics_pitfall_unshifted_scores_lower_recall():
    scores, relevance = _random_queries(30, 25, seed=4)
    ours = M.ranking_metrics(scores, relevance, (20,))
    raw = torchmetrics_metrics(scores, relevance, (20,), shift=False)
    for name in ("R@20", "P@20"):  # relevant items with negative scores count as "not retrieved"
        assert raw[name].mean() < ours[name].mean() - 0.01, name
    assert (raw["AP"].mean() - ours["AP"].mean()).abs() > 0.01  # AP changes too (either way)
    assert (raw["nDCG@20"] - ours["nDCG@20"]).abs().max() < 1e-6  # NDCG is unaffected
    assert (raw["HR@20"] - ours["HR@20"]).abs().max() < 1e-6  # and so is the hit rate
    assert torch.all(shift_positive(scores) > 0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", (*FIVE, "hit_rate_at_k", "ranking_metrics"))
def test_bad_input_raises_named_errors(name):
    ok_s, ok_r = torch.randn(2, 4), torch.tensor([[0, 1, 0, 0], [1, 0, 0, 2]])

    def run(s, r, k=2):
        if name == "ranking_metrics":
            return M.ranking_metrics(s, r, (k,))
        return call(name, s, r, k)

    nan = ok_s.clone()
    nan[0, 1] = float("nan")
    inf = ok_s.clone()
    inf[1, 0] = -float("inf")
    cases = [
        (nan, ok_r, "NaN"),
        (inf, ok_r, "infinite"),
        (ok_s, -ok_r, "negative"),
        (ok_s, ok_r[:, :3], "same shape"),
        (ok_s[0], ok_r[0], r"\[Q, N\]"),
        (torch.empty(0, 4), torch.empty(0, 4), "empty"),
        (torch.empty(2, 0), torch.empty(2, 0), "empty"),
        (ok_s.tolist(), ok_r, "torch.Tensor"),
        (ok_s, ok_r.float().masked_fill(ok_r == 1, float("nan")), "relevance contains NaN"),
    ]
    for s, r, match in cases:
        with pytest.raises(ValueError, match=match):
            run(s, r)
    if name in (*WITH_K, "ranking_metrics"):
        for k in (0, 5, -1):
            with pytest.raises(ValueError, match="1 <= k <= N"):
                run(ok_s, ok_r, k)
        for k in (1.5, "2", True):
            with pytest.raises(ValueError, match="k must be an integer"):
                run(ok_s, ok_r, k)
