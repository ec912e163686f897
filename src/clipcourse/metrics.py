"""Evaluation metrics: ranking metrics over score matrices (chapter 5) and top-k accuracy (chapter 3).

The ranking metrics are the references the metrics chapter grades against.

Every function takes

* ``scores``: a real tensor ``[Q, N]``, one row per query, one column per
  candidate item; higher means more relevant. NaN and ±inf raise.
* ``relevance``: a non-negative tensor ``[Q, N]`` of the same shape (bool,
  integer or float). An item is *relevant* when its relevance is > 0; NDCG
  uses the value itself as the gain. Negative values raise.

and returns a float tensor ``[Q]``, one value per query (average it for the
usual "mean" figure: MRR is ``reciprocal_rank(...).mean()``, mAP is
``average_precision(...).mean()``). The conventions, stated once because tools
disagree on every one of them:

* **Ranking**: items are sorted by score, descending, with **ties broken by
  the lower item index first** (a stable sort). trec_eval breaks ties by
  document id instead, scikit-learn's ``ndcg_score`` averages over tied
  orders, torchmetrics leaves them to ``torch.argsort``; a constant scorer can
  look perfect under some rules, so the rule has to be fixed and written down.
* **Ranks count from 1.**
* **A query with no relevant item scores 0** on every metric (like
  torchmetrics' default ``empty_target_action="neg"``); drop such queries
  before averaging if you want them ignored.
* **Every score counts**: unlike torchmetrics ≥ 1.7.4, a score ≤ 0 does not
  mean "not retrieved" (cosine similarities are often negative).
* **Recall@k** divides by all relevant items of the query; **hit rate@k**
  (what CLIP papers call R@K) is 1 when *any* relevant item is in the top k.
  The two agree when every query has exactly one relevant item.
* **Average precision** divides by all relevant items (trec_eval's and ranx's
  convention), not by the relevant items found (torchmetrics' AP@k).
* **NDCG@k** uses linear gain (the relevance value) and the discount
  ``1 / log2(rank + 1)``; the ideal DCG sorts the relevance values themselves.
* ``k`` must be an integer with ``1 <= k <= N`` (``torch.topk`` would raise
  beyond N; silently capping would change what "@k" means).

All functions are vectorised over queries and only need the ranks of the
relevant items (:func:`relevant_ranks`); :func:`ranking_metrics` computes
every metric from one ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "RelevantRanks",
    "average_precision",
    "check_scores_relevance",
    "hit_rate_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranked_relevance",
    "ranking_metrics",
    "relevant_ranks",
    "recall_at_k",
    "reciprocal_rank",
    "top_k_accuracy",
    "top_k_predictions",
]


def _result_dtype(scores: torch.Tensor) -> torch.dtype:
    return scores.dtype if scores.dtype in (torch.float64, torch.float32) else torch.float32


def check_scores_relevance(scores: torch.Tensor, relevance: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the problem unless the inputs follow the conventions above."""
    for name, t in (("scores", scores), ("relevance", relevance)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be a [Q, N] matrix, got shape {tuple(t.shape)}")
        if t.is_complex():
            raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    if scores.shape != relevance.shape:
        raise ValueError(
            f"scores and relevance must have the same shape, got {tuple(scores.shape)} and {tuple(relevance.shape)}"
        )
    if scores.numel() == 0:
        raise ValueError(f"scores is empty (shape {tuple(scores.shape)}): need at least one query and one item")
    if scores.is_floating_point():
        lowest, highest = torch.aminmax(scores.detach())  # one pass; NaN propagates into both
        if torch.isnan(lowest) or torch.isnan(highest):
            raise ValueError("scores contain NaN: a NaN has no place in a ranking")
        if torch.isinf(lowest) or torch.isinf(highest):
            raise ValueError("scores contain an infinite value: replace it by a finite one before ranking")
    if relevance.dtype != torch.bool:
        lowest, highest = torch.aminmax(relevance.detach())
        if relevance.is_floating_point() and not (torch.isfinite(lowest) and torch.isfinite(highest)):
            raise ValueError("relevance contains NaN or an infinite value")
        if lowest < 0:
            raise ValueError("relevance contains a negative value: relevance must be >= 0")


def _check_k(k: int, n_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        if isinstance(k, torch.Tensor) and k.numel() == 1 and not k.is_floating_point():
            k = int(k)
        else:
            raise ValueError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= n_items:
        raise ValueError(f"k must satisfy 1 <= k <= N = {n_items} (the number of items), got k={k}")
    return k


def ranked_relevance(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """Relevance of the items in ranked order: ``[Q, N]`` float64, column 0 is each query's top item.

    Descending stable sort, so ties keep the lower item index first. Every
    metric is a function of this matrix alone; the metrics below compute the
    same numbers from :func:`relevant_ranks`, which avoids the full sort when
    queries have few relevant items.
    """
    check_scores_relevance(scores, relevance)
    order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices
    return relevance.detach().to(torch.float64).gather(1, order.to(relevance.device))


@dataclass(frozen=True)
class RelevantRanks:
    """Where each query's relevant items landed: everything the metrics need.

    ``ranks[q, m]`` is the rank (from 1) of query q's m-th best-ranked
    relevant item, ascending along m; ``gains[q, m]`` its relevance. Rows are
    padded to the largest number of relevant items ``M`` with rank ``N + 1``
    and gain 0. ``ideal`` holds each row's relevance values sorted, best first
    (``[Q, min(N, max_k)]``) for the ideal DCG.
    """

    ranks: torch.Tensor  #: [Q, M] float64
    gains: torch.Tensor  #: [Q, M] float64
    n_relevant: torch.Tensor  #: [Q] float64
    ideal: torch.Tensor  #: [Q, K] float64
    n_items: int


def _padded(values: torch.Tensor, rows: torch.Tensor, n_rows: int, width: int, fill: float) -> torch.Tensor:
    """Scatter ``values`` (row-major, grouped by ``rows``) into a ``[n_rows, width]`` matrix padded with ``fill``."""
    counts = torch.bincount(rows, minlength=n_rows)
    starts = counts.cumsum(0) - counts
    slots = torch.arange(len(rows), device=rows.device) - starts[rows]
    out = torch.full((n_rows, width), fill, dtype=values.dtype, device=values.device)
    out[rows, slots] = values
    return out


def _ranks_by_counting(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, width: int) -> torch.Tensor:
    """Rank of each relevant item = 1 + #higher scores + #equal scores at lower indices: ``[Q, width]``.

    Two comparisons per (relevant item, item) pair; the positional tie-break is
    only computed for the rare items that tie with another one.
    """
    n_queries, n_items = scores.shape
    target = _padded(scores[rows, cols], rows, n_queries, width, float("nan"))  # NaN padding compares False
    index = _padded(cols, rows, n_queries, width, n_items)
    positions = torch.arange(n_items, device=scores.device)
    out = torch.empty((n_queries, width), dtype=torch.float64, device=scores.device)
    chunk = max(1, 2**24 // (width * n_items))
    for lo in range(0, n_queries, chunk):
        s, t = scores[lo : lo + chunk, None, :], target[lo : lo + chunk, :, None]
        ahead = (s > t).sum(dim=-1)
        tied_row, tied_slot = ((s == t).sum(dim=-1) > 1).nonzero(as_tuple=True)
        if tied_row.numel():
            same = scores[lo + tied_row] == target[lo + tied_row, tied_slot, None]  # [T, N]
            before = same & (positions < index[lo + tied_row, tied_slot, None])
            ahead[tied_row, tied_slot] += before.sum(dim=-1)
        out[lo : lo + chunk] = 1 + ahead.to(torch.float64)
    return out


def relevant_ranks(scores: torch.Tensor, relevance: torch.Tensor, max_k: int = 1) -> RelevantRanks:
    """The ranks of every query's relevant items under the module's ranking convention.

    With few relevant items per query (``M <= 4``) each rank is counted
    directly, ``O(Q M N)``; otherwise one stable sort of each row,
    ``O(Q N log N)``. Both give the same ranks.
    """
    check_scores_relevance(scores, relevance)
    scores = scores.detach()
    scores = scores.to(torch.float64) if not scores.is_floating_point() else scores
    relevance = relevance.detach().to(scores.device)
    n_queries, n_items = scores.shape
    relevant = relevance > 0
    n_relevant = relevant.sum(dim=1)
    width = max(1, int(n_relevant.max()))
    if width <= 4:
        rows, cols = relevant.nonzero(as_tuple=True)
        gains = _padded(relevance[rows, cols].to(torch.float64), rows, n_queries, width, 0.0)
        ranks = _ranks_by_counting(scores, rows, cols, width).masked_fill(gains == 0, n_items + 1)
        ranks, order = ranks.sort(dim=1)
        gains = gains.gather(1, order)
    else:
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        rows, positions = relevant.gather(1, order).nonzero(as_tuple=True)
        ranks = _padded(positions.to(torch.float64) + 1, rows, n_queries, width, n_items + 1)
        gains = _padded(relevance[rows, order[rows, positions]].to(torch.float64), rows, n_queries, width, 0.0)
    ideal = torch.zeros((n_queries, max(1, min(max_k, n_items))), dtype=torch.float64, device=scores.device)
    best = gains.sort(dim=1, descending=True).values[:, : ideal.shape[1]]  # the relevance values, best first
    ideal[:, : best.shape[1]] = best
    return RelevantRanks(ranks, gains, n_relevant.to(torch.float64), ideal, n_items)


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (a query with no relevant item scores 0)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _found(r: RelevantRanks, k: int) -> torch.Tensor:
    return (r.ranks <= k).sum(dim=1).to(torch.float64)


def _recall(r: RelevantRanks, k: int) -> torch.Tensor:
    return _safe_divide(_found(r, k), r.n_relevant)


def _precision(r: RelevantRanks, k: int) -> torch.Tensor:
    return _found(r, k) / k


def _hit_rate(r: RelevantRanks, k: int) -> torch.Tensor:
    return (_found(r, k) > 0).to(torch.float64)


def _reciprocal_rank(r: RelevantRanks) -> torch.Tensor:
    return _safe_divide(torch.ones_like(r.n_relevant), r.ranks[:, 0]) * (r.n_relevant > 0)


def _average_precision(r: RelevantRanks) -> torch.Tensor:
    # the m-th relevant item (from 1) at rank ranks[m] has precision m / ranks[m] there
    m = torch.arange(1, r.ranks.shape[1] + 1, dtype=torch.float64, device=r.ranks.device)
    precision = torch.where(r.gains > 0, m / r.ranks, torch.zeros_like(r.ranks))
    return _safe_divide(precision.sum(dim=1), r.n_relevant)


def _discount(ranks: torch.Tensor) -> torch.Tensor:
    return 1.0 / torch.log2(ranks + 1)


def _ndcg(r: RelevantRanks, k: int) -> torch.Tensor:
    dcg = torch.where(r.ranks <= k, r.gains * _discount(r.ranks), torch.zeros_like(r.gains)).sum(dim=1)
    positions = torch.arange(1, k + 1, dtype=torch.float64, device=r.ideal.device)
    ideal = (r.ideal[:, :k] * _discount(positions)).sum(dim=1)
    return _safe_divide(dcg, ideal)


def _ranks_at(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> tuple[RelevantRanks, int]:
    check_scores_relevance(scores, relevance)
    k = _check_k(k, scores.shape[1])
    return relevant_ranks(scores, relevance, k), k


def recall_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """Relevant items in the top ``k`` ÷ all relevant items of the query: ``[Q]``."""
    r, k = _ranks_at(scores, relevance, k)
    return _recall(r, k).to(_result_dtype(scores))


def precision_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """Relevant items in the top ``k`` ÷ ``k``: ``[Q]``."""
    r, k = _ranks_at(scores, relevance, k)
    return _precision(r, k).to(_result_dtype(scores))


def hit_rate_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """1 when any relevant item is in the top ``k``, else 0: ``[Q]`` (the CLIP papers' "R@K")."""
    r, k = _ranks_at(scores, relevance, k)
    return _hit_rate(r, k).to(_result_dtype(scores))


def reciprocal_rank(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """1 ÷ the rank (from 1) of the first relevant item: ``[Q]``; its mean is the MRR."""
    return _reciprocal_rank(relevant_ranks(scores, relevance)).to(_result_dtype(scores))


def average_precision(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """Sum over relevant items of the precision at each one's rank ÷ the number of relevant items: ``[Q]``.

    The denominator is *all* relevant items (trec_eval), so a relevant item
    ranked last still counts; the mean over queries is the mAP.
    """
    return _average_precision(relevant_ranks(scores, relevance)).to(_result_dtype(scores))


def ndcg_at_k(scores: torch.Tensor, relevance: torch.Tensor, k: int) -> torch.Tensor:
    """DCG@k ÷ ideal DCG@k with DCG@k = Σ_{r ≤ k} relevance_r / log2(r + 1): ``[Q]`` in [0, 1]."""
    r, k = _ranks_at(scores, relevance, k)
    return _ndcg(r, k).to(_result_dtype(scores))


def ranking_metrics(
    scores: torch.Tensor, relevance: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, torch.Tensor]:
    """Every metric above from one pass: ``{"R@1": [Q], "HR@1", "P@1", "nDCG@1", ..., "RR", "AP"}``.

    Names: ``R@k`` is true recall, ``HR@k`` the hit rate, ``P@k`` precision,
    ``nDCG@k``, ``RR`` the reciprocal rank (mean: MRR), ``AP`` average
    precision (mean: mAP). The same values as the single functions, at the
    cost of one ranking instead of one per metric.
    """
    check_scores_relevance(scores, relevance)
    ks = [_check_k(k, scores.shape[1]) for k in ks]
    r = relevant_ranks(scores, relevance, max(ks, default=1))
    dtype = _result_dtype(scores)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        out[f"R@{k}"] = _recall(r, k).to(dtype)
        out[f"HR@{k}"] = _hit_rate(r, k).to(dtype)
        out[f"P@{k}"] = _precision(r, k).to(dtype)
        out[f"nDCG@{k}"] = _ndcg(r, k).to(dtype)
    out["RR"] = _reciprocal_rank(r).to(dtype)
    out["AP"] = _average_precision(r).to(dtype)
    return out


# ---------------------------------------------------------------------------------------------
# top-k accuracy of a classifier (chapter 3): scores may be logits or probabilities

def _check_logits_labels(
    logits: torch.Tensor, labels: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels)
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, C], got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be [N] with N={logits.shape[0]} to match logits, got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_classes = logits.shape[1]
    if k > n_classes:
        raise ValueError(
            f"k={k} is larger than the number of classes ({n_classes}): top-{k} is undefined"
        )
    if logits.shape[0] == 0:
        raise ValueError("logits is empty: accuracy of zero examples is undefined")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes - 1}], got values in [{labels.min()}, {labels.max()}]"
        )
    return logits, labels


def top_k_predictions(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices ``[N, k]`` of the k highest-scoring classes, best first."""
    logits = torch.as_tensor(logits)
    _check_logits_labels(
        logits, torch.zeros(logits.shape[0] if logits.dim() else 0, dtype=torch.long), k
    )
    return logits.topk(k, dim=1).indices


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose label is among the k highest scores (a float in [0, 1]).

    ``torch.topk`` would raise a cryptic RuntimeError for k > C; we raise a ValueError instead.
    Scores may be logits or probabilities: the ranking is the same.
    """
    logits, labels = _check_logits_labels(logits, labels, k)
    top = logits.topk(k, dim=1).indices
    hits = (top == labels.to(top.device).unsqueeze(1)).any(dim=1)
    return float(hits.float().mean().item())
