"""The same ranking metrics from established tools, to check :mod:`clipcourse.metrics` against.

* :func:`ir_measures_metrics` runs ``ir_measures`` with its ``pytrec_eval``
  backend (trec_eval's C code). trec_eval breaks score ties by document id,
  *descending*, so items are named so that a higher id means a lower index:
  with that naming its tie rule is the course's (lower index first).
  trec_eval needs integer relevance (qrels), so relevance is rounded.
* :func:`torchmetrics_metrics` runs torchmetrics' functional retrieval
  metrics one query at a time (the functional NDCG on a 2-D input pools all
  queries, torchmetrics issue #3216). torchmetrics (≥ 1.7.4) treats an item whose score
  is ≤ 0 as *not retrieved* in recall, precision, MRR and MAP, so pass
  ``shift_positive=True`` to map the scores into (0, 1] by rank-preserving
  transformation before comparing; its tie order is ``torch.argsort``'s, so
  compare on tie-free scores only.

Both return ``{"R@k", "P@k", "HR@k", "nDCG@k", "RR", "AP"}`` -> ``[Q]`` float64
tensors, the names of :func:`clipcourse.metrics.ranking_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clipcourse.metrics import check_scores_relevance

__all__ = ["ir_measures_metrics", "shift_positive", "torchmetrics_metrics"]


def shift_positive(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into (0, 1] with the same order per row: ``[Q, N]``.

    ``(cos + 1) / 2`` does this for cosines; for any scores a row-wise
    min-max map plus a small offset keeps every score above 0.
    """
    scores = scores.to(torch.float64)
    lo = scores.min(dim=1, keepdim=True).values
    span = (scores.max(dim=1, keepdim=True).values - lo).clamp_min(1e-12)
    return 0.5 + 0.5 * (scores - lo) / span


def ir_measures_metrics(
    scores: torch.Tensor, relevance: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, torch.Tensor]:
    """Per-query metrics from ``ir_measures`` (pytrec_eval backend): ``{name: [Q]}``."""
    import ir_measures
    from ir_measures import AP, RR, P, R, Success, nDCG

    check_scores_relevance(scores, relevance)
    n_queries, n_items = scores.shape
    rel = relevance.detach().to(torch.float64).round().to(torch.int64).tolist()
    sc = scores.detach().to(torch.float64).tolist()
    width = len(str(n_items))

    def doc(j: int) -> str:  # higher id <-> lower index, so trec_eval's tie rule is ours
        return f"d{n_items - 1 - j:0{width}d}"

    qrels = [ir_measures.Qrel(f"q{q}", doc(j), rel[q][j]) for q in range(n_queries) for j in range(n_items)]
    run = [ir_measures.ScoredDoc(f"q{q}", doc(j), sc[q][j]) for q in range(n_queries) for j in range(n_items)]
    names = {RR: "RR", AP: "AP"}
    for k in ks:
        names.update({R @ k: f"R@{k}", P @ k: f"P@{k}", Success @ k: f"HR@{k}", nDCG @ k: f"nDCG@{k}"})
    out = {name: torch.zeros(n_queries, dtype=torch.float64) for name in names.values()}
    for metric in ir_measures.pytrec_eval.iter_calc(list(names), qrels, run):
        out[names[metric.measure]][int(metric.query_id[1:])] = metric.value
    return out


def torchmetrics_metrics(
    scores: torch.Tensor,
    relevance: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    shift: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-query metrics from torchmetrics' functional retrieval metrics, one query per call: ``{name: [Q]}``.

    ``shift=False`` shows the pitfall: scores ≤ 0 count as not retrieved.
    (One query per call also sidesteps the functional NDCG pooling 2-D input.)
    """
    from torchmetrics.functional import retrieval as tr

    check_scores_relevance(scores, relevance)
    preds = shift_positive(scores) if shift else scores.to(torch.float64)
    binary, graded = relevance > 0, relevance.to(torch.float64)
    makers = {
        "RR": (tr.retrieval_reciprocal_rank, {}, binary),
        "AP": (tr.retrieval_average_precision, {}, binary),
    }
    for k in ks:
        makers[f"R@{k}"] = (tr.retrieval_recall, {"top_k": k}, binary)
        makers[f"P@{k}"] = (tr.retrieval_precision, {"top_k": k}, binary)
        makers[f"HR@{k}"] = (tr.retrieval_hit_rate, {"top_k": k}, binary)
        makers[f"nDCG@{k}"] = (tr.retrieval_normalized_dcg, {"top_k": k}, graded)
    return {
        name: torch.tensor([float(fn(preds[q], target[q], **kwargs)) for q in range(len(preds))], dtype=torch.float64)
        for name, (fn, kwargs, target) in makers.items()
    }
