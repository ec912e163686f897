"""Accuracy per class: what a single accuracy number hides on a long-tailed test set.

With skewed class frequencies, the overall accuracy is dominated by the head
classes; a model can score 90% and never get a tail class right. Reporting the
accuracy within each class (and their mean, the balanced accuracy) exposes that,
and :func:`logit_adjust` is the simplest remedy that uses only the class priors
(Menon et al., ICLR 2021).
"""

from __future__ import annotations

import torch

__all__ = ["balanced_accuracy", "logit_adjust", "per_class_accuracy"]


def _check_labels(x: torch.Tensor, name: str, num_classes: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.is_floating_point():
        raise ValueError(f"{name} must be a 1-D integer tensor, got {getattr(x, 'dtype', type(x))}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {int(x.min())} to {int(x.max())}")


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float ``[num_classes]``: the share of class c's examples predicted as c; NaN where c has none.

    ``predictions`` and ``labels`` are ``[N]`` integer class indices in ``[0, num_classes)``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    _check_labels(predictions, "predictions", num_classes)
    _check_labels(labels, "labels", num_classes)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels = labels.to(predictions.device)
    total = torch.bincount(labels, minlength=num_classes).float()
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
    return torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, float("nan")))


def balanced_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean of :func:`per_class_accuracy` over the classes present in ``labels``."""
    return float(per_class_accuracy(predictions, labels, num_classes).nanmean())


def logit_adjust(logits: torch.Tensor, class_counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - tau * log(prior)`` ([N, C]) so rare classes are not drowned out."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32, device=logits.device)
    if counts.shape != (logits.shape[-1],):
        raise ValueError(f"class_counts must be [C] = [{logits.shape[-1]}], got {tuple(counts.shape)}")
    prior = counts.clamp(min=1) / counts.clamp(min=1).sum()
    return logits - tau * prior.log()
