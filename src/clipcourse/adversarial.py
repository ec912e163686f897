"""Small adversarial perturbations of images against a zero-shot classifier (FGSM and PGD).

A perturbation of a few grey levels per pixel, invisible to us, can flip CLIP's
zero-shot answer (Goodfellow et al. 2015; Madry et al. 2018). The attacks below
need gradients through the image encoder, so they take a differentiable
``encode_image`` (``clip.model.encode_image`` for the course model, not the
``torch.no_grad`` wrapper). :func:`squeeze` is the cheapest remedy, reducing
colour depth (feature squeezing, Xu et al. 2018); it only holds against an
attacker who does not know about it, which the chapter says plainly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["fgsm", "pgd", "squeeze", "zero_shot_margin_logits"]

EncodeImage = Callable[[torch.Tensor], torch.Tensor]


def zero_shot_margin_logits(encode_image: EncodeImage, images: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Cosine logits ``[N, C]`` of float images ``[N, 3, H, W]`` against unit class embeddings ``[C, D]``."""
    return F.normalize(encode_image(images).float(), dim=-1) @ class_weights.float().t()


def _check(images: torch.Tensor, labels: torch.Tensor, eps: float) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be float [N, 3, H, W] in [0, 1], got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [N] = [{images.shape[0]}], got {tuple(labels.shape)}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def pgd(
    encode_image: EncodeImage,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor,
    eps: float = 4 / 255,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient ascent on the zero-shot cross-entropy inside an L∞ ball of radius ``eps``.

    Returns adversarial images ``[N, 3, H, W]`` in [0, 1], detached. ``steps=1``,
    ``step_size=eps``, ``random_start=False`` is FGSM.
    """
    _check(images, labels, eps)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    x0 = images.detach()
    x = x0.clone()
    if random_start:
        g = torch.Generator().manual_seed(seed)
        x = (x + (torch.rand(x.shape, generator=g) * 2 - 1).to(x) * eps).clamp(0, 1)
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(100 * zero_shot_margin_logits(encode_image, x, class_weights), labels)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = x + step_size * grad.sign()
            x = (x0 + (x - x0).clamp(-eps, eps)).clamp(0, 1)
    return x.detach()


def fgsm(encode_image: EncodeImage, images: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, eps: float = 4 / 255) -> torch.Tensor:
    """The fast gradient sign method: one step of size ``eps`` along the sign of the gradient."""
    return pgd(encode_image, images, labels, class_weights, eps, steps=1, step_size=eps, random_start=False)


def squeeze(images: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Round float images in [0, 1] to ``2**bits`` levels per channel (feature squeezing)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    levels = 2**bits - 1
    return torch.round(images.clamp(0, 1) * levels) / levels
