"""Evaluation metrics over scores: top-k accuracy of a classifier (chapter 3).

Scores may be logits or probabilities: only the ranking of classes matters.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["top_k_accuracy", "top_k_predictions"]


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
