"""Contrastive losses: the reference implementations of chapter 1.

Every loss here works on *cosine* similarities: embeddings are L2-normalised
first, so only their directions matter and a similarity divided by the
temperature is bounded by ``1 / temperature``. Inputs need not be normalised,
contiguous or float32; the result has the inputs' (promoted) floating dtype.

Conventions shared by all functions:

* embeddings are 2-D, ``[N, D]`` (one row per example); 1-D inputs, empty
  batches, zero-width embeddings and integer tensors raise :class:`ValueError`;
* a zero vector has no direction; it is normalised to zero (cosine 0 with
  everything), as :func:`torch.nn.functional.normalize` does;
* the temperature is a positive number (a float or a 0-d tensor, so a learned
  temperature keeps its gradient).

References: van den Oord et al. 2018 (InfoNCE, arXiv 1807.03748); Chen et
al. 2020 (SimCLR's NT-Xent, arXiv 2002.05709); Wang & Isola 2020 (alignment and
uniformity, arXiv 2005.10242).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "alignment_uniformity",
    "cosine_similarity_matrix",
    "info_nce_loss",
    "nt_xent_loss",
]


def _check_embeddings(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be 2-D [N, D] (one row per example), got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(
            f"{name} is an empty batch (shape {tuple(x.shape)}); need at least one row"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero-width embeddings (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], *, same_n: bool) -> None:
    _check_embeddings(a, names[0])
    _check_embeddings(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same embedding width D, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if same_n and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (row i of one is the "
            f"positive of row i of the other), got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_positive(value: float | torch.Tensor, name: str) -> None:
    try:
        number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number, got {number}")


def _common_dtype(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine similarities: ``out[i, j] = cos(a[i], b[j])``, shape ``[N, M]``.

    ``a`` is ``[N, D]`` and ``b`` is ``[M, D]``. Rows are L2-normalised and
    multiplied, one matrix product instead of ``N * M`` calls, which is how
    every contrastive loss builds its logits.
    """
    _check_pair(a, b, ("a", "b"), same_n=False)
    a, b = _common_dtype(a, b)
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def info_nce_loss(
    queries: torch.Tensor, keys: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """InfoNCE: cross-entropy that picks each query's own key out of the batch.

    ``queries`` and ``keys`` are ``[N, D]``; ``keys[i]`` is the positive of
    ``queries[i]`` and the other ``N - 1`` keys are its negatives. The logits
    are cosine similarities divided by ``temperature`` and the loss is the mean
    over the ``N`` queries of ``-log softmax(logits[i])[i]``. One direction
    only (queries -> keys); CLIP's loss averages both directions.

    With ``N = 1`` there are no negatives and the loss is exactly 0. The loss is
    at most ``log N`` for random-looking embeddings and falls as positives stand
    out from negatives.
    """
    _check_pair(queries, keys, ("queries", "keys"), same_n=True)
    _check_positive(temperature, "temperature")
    logits = cosine_similarity_matrix(queries, keys) / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, targets)


def nt_xent_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """SimCLR's NT-Xent loss over the ``2N`` views of a batch.

    ``z1[i]`` and ``z2[i]`` embed two augmented views of image ``i``. Stacking
    them gives ``2N`` anchors; each anchor's positive is its partner view
    (``k`` and ``k + N``) and its negatives are the other ``2N - 2`` views, from
    both halves. The self-similarity (always 1, the largest logit) is removed by
    masking it with ``-inf`` before the softmax, so it contributes ``exp(-inf) =
    0`` to the denominator; zeroing it would still add ``exp(0)``. The loss is
    the mean over all ``2N`` anchors.

    With ``N = 1`` each anchor's only candidate is its positive, so the loss is 0.
    """
    _check_pair(z1, z2, ("z1", "z2"), same_n=True)
    _check_positive(temperature, "temperature")
    n = z1.shape[0]
    z = torch.cat(_common_dtype(z1, z2), dim=0)
    logits = cosine_similarity_matrix(z, z) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(logits.device)
    return F.cross_entropy(logits, targets)


def alignment_uniformity(
    z1: torch.Tensor, z2: torch.Tensor, t: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wang & Isola's two properties of a contrastive embedding, after L2 normalisation.

    * ``alignment = mean_i ||z1_i - z2_i||^2``: positives should land close
      together (0 is perfect, 4 is antipodal);
    * ``uniformity = log mean_{i != j} exp(-t ||z1_i - z1_j||^2)``, over the
      ordered pairs of distinct rows of ``z1``: the embeddings should spread over
      the sphere (lower is more uniform; 0 means every point is identical).

    Lower is better for both. The mean is computed as a log-sum-exp, so large
    ``t`` cannot underflow. With ``N = 1`` there are no pairs ``i != j``:
    alignment is still defined but uniformity is ``nan`` (an empty mean, as in
    the paper's code ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()``).
    """
    _check_pair(z1, z2, ("z1", "z2"), same_n=True)
    _check_positive(t, "t")
    z1, z2 = _common_dtype(z1, z2)
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    alignment = (z1 - z2).pow(2).sum(dim=1).mean()
    n = z1.shape[0]
    if n < 2:
        return alignment, torch.full((), float("nan"), dtype=z1.dtype, device=z1.device)
    # For unit vectors ||a - b||^2 = 2 - 2 a.b: one matrix product, and no sqrt whose
    # gradient blows up at distance 0 (torch.cdist's would).
    sq_dist = (2 - 2 * z1 @ z1.T).clamp_min(0)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=z1.device)
    exponents = (-t * sq_dist)[off_diagonal]
    uniformity = torch.logsumexp(exponents, dim=0) - math.log(exponents.numel())
    return alignment, uniformity
