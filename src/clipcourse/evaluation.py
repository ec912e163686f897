"""Evaluating a CLIP model's retrieval in both directions, with intervals: the evaluation card.

Builds on :mod:`clipcourse.metrics` (the per-query metrics) and
:mod:`clipcourse.retrieval` (embeddings of a Shapes-world split):

* **both directions**: text→image (every caption is a query, the images are
  the items) and image→text (every image is a query, every caption an item;
  with five captions per image an image has five relevant items, so recall
  and the hit rate differ);
* **three relevance definitions**: *pair* (only the caption's own image),
  *attribute* (every image with all the attributes the caption mentions) and
  *graded* (how many of the mentioned attributes the image has, the Shapes
  world's :func:`~clipcourse.data.relevance`; the gain of NDCG);
* **bootstrap intervals** over queries, or over groups of queries (the five
  captions of one image are not independent queries: resample images);
* **diversity** of the top k: how different the returned items are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from clipcourse import metrics
from clipcourse.retrieval import SplitEmbeddings, attribute_relevance, pair_relevance

__all__ = [
    "Interval",
    "RetrievalTask",
    "bootstrap_interval",
    "distinct_in_top_k",
    "evaluate_task",
    "graded_relevance",
    "intra_list_diversity",
    "retrieval_tasks",
    "search_call",
]


@dataclass(frozen=True)
class Interval:
    """A mean over queries with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_interval(
    values: torch.Tensor,
    *,
    groups: torch.Tensor | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``values.mean()``; ``values`` is ``[Q]``, one value per query.

    With ``groups`` (``[Q]`` integer ids, e.g. each caption's image), whole
    groups are resampled, so correlated queries are not counted as
    independent evidence. Two models whose intervals overlap heavily may not
    differ at all on another sample of queries.
    """
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if not torch.isfinite(values).all():
        raise ValueError("bootstrap_interval: values contain NaN or inf")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if groups is None:
        sums, counts = values, torch.ones_like(values)
    else:
        groups = torch.as_tensor(groups).reshape(-1)
        if groups.shape != values.shape:
            raise ValueError(f"groups has shape {tuple(groups.shape)}, values {tuple(values.shape)}")
        _, ids = torch.unique(groups, return_inverse=True)
        sums = torch.zeros(int(ids.max()) + 1, dtype=torch.float64).index_add_(0, ids, values)
        counts = torch.bincount(ids).to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(sums), (n_resamples, len(sums)), generator=g)
    means = sums[pick].sum(dim=1) / counts[pick].sum(dim=1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Interval(float(values.mean()), low, high, level)


def graded_relevance(captions: Sequence, attributes: Sequence) -> torch.Tensor:
    """``[Q, N]`` float: how many of caption q's mentioned attributes image n has (0 to 4).

    Vectorised for one-object images (the retrieval splits); scenes call
    :func:`clipcourse.data.relevance` on every pair.
    """
    from clipcourse.data import ATTRIBUTE_VALUES, ATTRIBUTES, relevance

    if all(len(objs) == 1 for objs in attributes) and all(len(c.mentions) == 1 for c in captions):
        def code(values: dict) -> list[int]:
            return [ATTRIBUTE_VALUES[a].index(values[a]) if a in values else -1 for a in ATTRIBUTES]

        image_codes = torch.tensor([code(objs[0].as_dict()) for objs in attributes])  # [N, 4]
        caption_codes = torch.tensor([code(c.mentioned) for c in captions])  # [Q, 4]
        same = (caption_codes[:, None, :] == image_codes[None, :, :]) & (caption_codes[:, None, :] >= 0)
        return same.sum(dim=-1).to(torch.float32)
    return torch.tensor([[float(relevance(c, objs)) for objs in attributes] for c in captions])


@dataclass
class RetrievalTask:
    """One direction of retrieval: query-by-item scores and the relevance definitions."""

    name: str  #: "text→image" or "image→text"
    scores: torch.Tensor  #: [Q, N] cosine similarities
    pair: torch.Tensor  #: [Q, N] bool, exact-pair relevance
    attribute: torch.Tensor  #: [Q, N] bool, every mentioned attribute matches
    graded: torch.Tensor  #: [Q, N] float, number of matching attributes
    groups: torch.Tensor  #: [Q] image id of each query, for the grouped bootstrap


def retrieval_tasks(embeddings: SplitEmbeddings, split) -> dict[str, RetrievalTask]:
    """Both directions of a split's retrieval, from :func:`clipcourse.retrieval.encode_split` output."""
    n_images = embeddings.image_features.shape[0]
    t2i = embeddings.text_features @ embeddings.image_features.T  # [N * K, N]
    pair = pair_relevance(embeddings.caption_image, n_images)
    attribute = attribute_relevance(embeddings.captions, split.attributes)
    graded = graded_relevance(embeddings.captions, split.attributes)
    return {
        "text→image": RetrievalTask("text→image", t2i, pair, attribute, graded, embeddings.caption_image),
        "image→text": RetrievalTask(
            "image→text", t2i.T.contiguous(), pair.T.contiguous(), attribute.T.contiguous(),
            graded.T.contiguous(), torch.arange(n_images),
        ),
    }


def evaluate_task(
    task: RetrievalTask, ks: Sequence[int] = (1, 5, 10), *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, Interval]]:
    """Every metric of one direction with grouped 95% intervals: ``{"pair": {...}, "attribute": {...}, "graded": {...}}``.

    ``pair`` and ``attribute`` hold ``R@k``, ``HR@k``, ``P@k``, ``RR``, ``AP``
    (binary relevance); ``graded`` holds ``nDCG@k`` with the graded gains.
    """
    out: dict[str, dict[str, Interval]] = {}
    for name in ("pair", "attribute", "graded"):
        per_query = metrics.ranking_metrics(task.scores, getattr(task, name), ks)
        keep = [m for m in per_query if (m.startswith("nDCG") == (name == "graded"))]
        out[name] = {
            m: bootstrap_interval(per_query[m], groups=task.groups, n_resamples=n_resamples, seed=seed) for m in keep
        }
    return out


def intra_list_diversity(scores: torch.Tensor, item_features: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Mean pairwise cosine distance (1 - cos) among each query's top ``k`` items: ``[Q]``.

    0 when the k items are identical in embedding space; larger when they
    differ. ``item_features`` are L2-normalised ``[N, D]``. Ties follow the
    metrics' convention (stable sort).
    """
    if not 2 <= k <= scores.shape[1]:
        raise ValueError(f"k must satisfy 2 <= k <= N = {scores.shape[1]} to measure diversity, got {k}")
    top = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    feats = item_features[top]  # [Q, k, D]
    cos = feats @ feats.transpose(1, 2)
    off_diagonal = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=1)
    return 1 - off_diagonal / (k * (k - 1))


def distinct_in_top_k(scores: torch.Tensor, item_labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Number of distinct labels (e.g. colour×shape classes) among each query's top ``k`` items: ``[Q]``."""
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must satisfy 1 <= k <= N = {scores.shape[1]}, got {k}")
    top = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    labels = torch.sort(item_labels[top], dim=1).values
    return 1 + (labels[:, 1:] != labels[:, :-1]).sum(dim=1)


def search_call(
    encode_text: Callable[[list[str]], torch.Tensor],
    queries: Sequence[str],
    gallery: torch.Tensor,
    batch_size: int,
    k: int = 10,
) -> Callable[[], torch.Tensor]:
    """A closure doing one batched text→image search: encode ``batch_size`` queries, score, top ``k``.

    For :func:`clipcourse.latency.measure_latency` / ``throughput_curve``;
    ``gallery`` is ``[N, D]`` normalised image features.
    """
    if batch_size > len(queries):
        queries = list(queries) * (batch_size // max(1, len(queries)) + 1)
    batch = list(queries[:batch_size])

    def call() -> torch.Tensor:
        features = torch.nn.functional.normalize(encode_text(batch).float(), dim=-1)
        return (features @ gallery.T).topk(k, dim=1).indices

    return call
