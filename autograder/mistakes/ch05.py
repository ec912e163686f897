"""Chapter 5 (evaluating retrieval): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch`` and ``math`` are in scope. Every wrong answer keeps the input checks of the
solution, so it fails on its one mistake only. The visible checks of
``solutions/ch05/ch05_exercises.ipynb`` carry these answers' outputs on fixed inputs
(with ties), so each hint is printed when its mistake is made; the hidden tests fail on
all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake

_CHECKS = """if scores.shape != relevance.shape:
    raise ValueError(f"scores {tuple(scores.shape)} and relevance {tuple(relevance.shape)} differ in shape")
"""
_CHECK_K = """if not 1 <= k <= scores.shape[1]:
    raise ValueError(f"k must satisfy 1 <= k <= N = {scores.shape[1]}, got {k}")
"""
_SORT = "order = torch.sort(scores, dim=1, descending=True, stable=True).indices\n"
_ASCENDING = "order = torch.sort(scores, dim=1, stable=True).indices\n"
_HIGHER_FIRST = (
    "order = scores.shape[1] - 1 - torch.sort(scores.flip(1), dim=1, descending=True, stable=True).indices\n"
)
_RANKED = "relevant = (relevance > 0).gather(1, order).to(scores.dtype)\n"


def _m(function: str, name: str, hint: str, body: str, with_k: bool = True, order: str = _SORT) -> Mistake:
    args = "scores, relevance, k" if with_k else "scores, relevance"
    text = _CHECKS + (_CHECK_K if with_k else "") + order + body.strip("\n") + "\n"
    lines = "\n".join("    " + line if line else "" for line in text.splitlines())
    return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")


_RECALL = _RANKED + """found = relevant[:, :k].sum(dim=1)
total = relevant.sum(dim=1)
return torch.where(total > 0, found / total.clamp(min=1), torch.zeros_like(total))
"""

RECALL = [
    _m("recall_at_k", "ascending", "rank by score descending", _RECALL, order=_ASCENDING),
    _m("recall_at_k", "ties_higher_index_first", "ties go to the lower item index", _RECALL, order=_HIGHER_FIRST),
    _m("recall_at_k", "divided_by_k", "recall divides by all relevant items of the query, not by k",
       _RANKED + "return relevant[:, :k].sum(dim=1) / k\n"),
    _m("recall_at_k", "hit_rate", "that is the hit rate",
       _RANKED + "return relevant[:, :k].amax(dim=1)\n"),
    _m("recall_at_k", "relevance_values_counted", "count relevant items (relevance greater than 0), not relevance values",
       """gains = relevance.to(scores.dtype).gather(1, order)
total = gains.sum(dim=1)
return torch.where(total > 0, gains[:, :k].sum(dim=1) / total.clamp(min=1e-12), torch.zeros_like(total))
"""),
    _m("recall_at_k", "empty_query_nan", "a query with no relevant item must score 0, not NaN",
       _RANKED + "return relevant[:, :k].sum(dim=1) / relevant.sum(dim=1)\n"),
    _m("recall_at_k", "top_k_plus_one", "the top k are the first k columns of the ranking",
       _RANKED + """found = relevant[:, : k + 1].sum(dim=1)
total = relevant.sum(dim=1)
return torch.where(total > 0, found / total.clamp(min=1), torch.zeros_like(total))
"""),
]

_PRECISION = _RANKED + "return relevant[:, :k].sum(dim=1) / k\n"

PRECISION = [
    _m("precision_at_k", "ascending", "rank by score descending", _PRECISION, order=_ASCENDING),
    _m("precision_at_k", "ties_higher_index_first", "ties go to the lower item index", _PRECISION, order=_HIGHER_FIRST),
    _m("precision_at_k", "divided_by_relevant", "precision divides by k, not by the number of relevant items",
       _RANKED + """total = relevant.sum(dim=1)
return torch.where(total > 0, relevant[:, :k].sum(dim=1) / total.clamp(min=1), torch.zeros_like(total))
"""),
    _m("precision_at_k", "divided_by_n", "divide by k (the size of the cut), not by N",
       _RANKED + "return relevant[:, :k].sum(dim=1) / scores.shape[1]\n"),
    _m("precision_at_k", "relevance_values_counted", "count relevant items (relevance greater than 0), not relevance values",
       "return relevance.to(scores.dtype).gather(1, order)[:, :k].sum(dim=1) / k\n"),
    _m("precision_at_k", "hit_rate", "count every relevant item of the top k, not only whether there is one",
       _RANKED + "return relevant[:, :k].amax(dim=1)\n"),
]

_RR = _RANKED + """first = relevant.argmax(dim=1)  # first 1 in ranked order (0 when there is none)
return torch.where(relevant.sum(dim=1) > 0, 1.0 / (first + 1).to(scores.dtype), torch.zeros_like(relevant[:, 0]))
"""

RECIPROCAL = [
    _m("reciprocal_rank", "ascending", "rank by score descending", _RR, with_k=False, order=_ASCENDING),
    _m("reciprocal_rank", "ties_higher_index_first", "ties go to the lower item index", _RR, with_k=False,
       order=_HIGHER_FIRST),
    _m("reciprocal_rank", "ranks_from_zero_shifted", "ranks count from 1: the top item has rank 1",
       _RANKED + """first = relevant.argmax(dim=1)
return torch.where(relevant.sum(dim=1) > 0, 1.0 / (first + 2).to(scores.dtype), torch.zeros_like(relevant[:, 0]))
""", with_k=False),
    _m("reciprocal_rank", "mean_over_relevant", "only the first relevant item counts",
       _RANKED + """ranks = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)
total = relevant.sum(dim=1)
return torch.where(total > 0, (relevant / ranks).sum(dim=1) / total.clamp(min=1), torch.zeros_like(total))
""", with_k=False),
    _m("reciprocal_rank", "last_relevant", "the first relevant item, not the last",
       _RANKED + """last = scores.shape[1] - 1 - relevant.flip(1).argmax(dim=1)
return torch.where(relevant.sum(dim=1) > 0, 1.0 / (last + 1).to(scores.dtype), torch.zeros_like(relevant[:, 0]))
""", with_k=False),
    _m("reciprocal_rank", "most_relevant_item", "the first item with relevance greater than 0, whatever its grade",
       """gains = relevance.to(scores.dtype).gather(1, order)
best = gains.argmax(dim=1)
return torch.where(gains.sum(dim=1) > 0, 1.0 / (best + 1).to(scores.dtype), torch.zeros_like(gains[:, 0]))
""", with_k=False),
]

_AP_PARTS = _RANKED + "ranks = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)\ntotal = relevant.sum(dim=1)\n"
_AP = _AP_PARTS + """precision = relevant.cumsum(dim=1) / ranks
return torch.where(total > 0, (precision * relevant).sum(dim=1) / total.clamp(min=1), torch.zeros_like(total))
"""

AVERAGE_PRECISION = [
    _m("average_precision", "ascending", "rank by score descending", _AP, with_k=False, order=_ASCENDING),
    _m("average_precision", "ties_higher_index_first", "ties go to the lower item index", _AP, with_k=False,
       order=_HIGHER_FIRST),
    _m("average_precision", "all_ranks", "average the precision at the ranks of the relevant items only",
       _AP_PARTS + "return (relevant.cumsum(dim=1) / ranks).mean(dim=1) * (total > 0)\n", with_k=False),
    _m("average_precision", "divided_by_n", "divide by the number of relevant items, not by N",
       _AP_PARTS + "return (relevant.cumsum(dim=1) / ranks * relevant).sum(dim=1) / scores.shape[1]\n", with_k=False),
    _m("average_precision", "reciprocal_ranks", "precision at rank r is (relevant items up to r) / r, not 1 / r",
       _AP_PARTS + """return torch.where(total > 0, (relevant / ranks).sum(dim=1) / total.clamp(min=1), torch.zeros_like(total))
""", with_k=False),
    _m("average_precision", "exclusive_count", "count the relevant item itself in the precision at its rank",
       _AP_PARTS + """precision = (relevant.cumsum(dim=1) - relevant) / ranks
return torch.where(total > 0, (precision * relevant).sum(dim=1) / total.clamp(min=1), torch.zeros_like(total))
""", with_k=False),
    _m("average_precision", "relevance_values_counted", "count relevant items (relevance greater than 0), not relevance values",
       """gains = relevance.to(scores.dtype).gather(1, order)
ranks = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype)
relevant = (gains > 0).to(scores.dtype)
total = gains.sum(dim=1)
precision = gains.cumsum(dim=1) / ranks
return torch.where(total > 0, (precision * relevant).sum(dim=1) / total.clamp(min=1e-12), torch.zeros_like(total))
""", with_k=False),
]

_NDCG_HEAD = "gains = relevance.to(scores.dtype).gather(1, order)\n"


def _ndcg(discount: str = "1 / torch.log2(torch.arange(2, k + 2, dtype=scores.dtype))",
          ideal: str = "torch.sort(relevance.to(scores.dtype), dim=1, descending=True).values",
          gains: str = "gains") -> str:
    return f"""discount = {discount}
ideal_gains = {ideal}
dcg = ({gains})[:, :k] @ discount
idcg = ideal_gains[:, :k] @ discount
return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
"""


NDCG = [
    _m("ndcg_at_k", "ascending", "rank by score descending", _NDCG_HEAD + _ndcg(), order=_ASCENDING),
    _m("ndcg_at_k", "ties_higher_index_first", "ties go to the lower item index", _NDCG_HEAD + _ndcg(),
       order=_HIGHER_FIRST),
    _m("ndcg_at_k", "discount_one_over_rank", "the discount is 1 / log2(rank + 1), not 1 / rank",
       _NDCG_HEAD + _ndcg(discount="1 / torch.arange(1, k + 1, dtype=scores.dtype)")),
    _m("ndcg_at_k", "discount_off_by_one", "the top item is not discounted: 1 / log2(1 + 1) = 1",
       _NDCG_HEAD + _ndcg(discount="1 / torch.log2(torch.arange(3, k + 3, dtype=scores.dtype))")),
    _m("ndcg_at_k", "unsorted_ideal", "the ideal DCG sorts the relevance values, best first",
       _NDCG_HEAD + _ndcg(ideal="relevance.to(scores.dtype)")),
    _m("ndcg_at_k", "binary_gain", "the gain is the relevance value itself, not 1 for every relevant item",
       _NDCG_HEAD + _ndcg(ideal="torch.sort((relevance > 0).to(scores.dtype), dim=1, descending=True).values",
                          gains="(gains > 0).to(scores.dtype)")),
    _m("ndcg_at_k", "exponential_gain", "use the relevance as a linear gain, not 2 to the relevance minus 1",
       _NDCG_HEAD + _ndcg(ideal="torch.sort(2 ** relevance.to(scores.dtype) - 1, dim=1, descending=True).values",
                          gains="2 ** gains - 1")),
    _m("ndcg_at_k", "ideal_not_cut_at_k", "cut the ideal DCG at k too",
       _NDCG_HEAD + """discount = 1 / torch.log2(torch.arange(2, scores.shape[1] + 2, dtype=scores.dtype))
ideal_gains = torch.sort(relevance.to(scores.dtype), dim=1, descending=True).values
dcg = gains[:, :k] @ discount[:k]
idcg = ideal_gains @ discount
return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
"""),
]

MISTAKES = [*RECALL, *PRECISION, *RECIPROCAL, *AVERAGE_PRECISION, *NDCG]
