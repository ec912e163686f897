"""A minimal SimCLR training loop (Chen et al. 2020, arXiv 2002.05709).

Each step samples a batch of images, makes two augmented views of every image,
embeds all ``2N`` views with the encoder and minimises NT-Xent
(:func:`clipcourse.losses.nt_xent_loss`). No labels are used anywhere. The loop
is deliberately plain (no scheduler, no projection-head wrapper) so a lesson
can show every line of what matters; ``max_seconds`` keeps lessons within
their time budget on slow machines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from clipcourse.encoding import as_float_images
from clipcourse.losses import nt_xent_loss
from clipcourse.progress import tqdm
from clipcourse.train import shuffled_batches

__all__ = ["train_simclr"]


def _checked_images(images: torch.Tensor, steps: int, batch_size: int, temperature: float) -> torch.Tensor:
    """``images`` as float in [0, 1], after checking the arguments of :func:`train_simclr`."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a [N, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}"
        )
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 2 <= batch_size <= len(images):
        raise ValueError(
            f"batch_size must be between 2 (one negative) and the number of images ({len(images)}), got {batch_size}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return as_float_images(images)


def train_simclr(
    encoder: nn.Module,
    images: torch.Tensor,
    steps: int = 200,
    batch_size: int = 128,
    temperature: float = 0.2,
    *,
    transform: Callable | None = None,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    device: torch.device | str | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``encoder`` in place with SimCLR on unlabelled ``images``; returns the loss of every step.

    ``images`` is ``[N, 3, H, W]``, uint8 or float in [0, 1], kept on the CPU;
    each batch is moved to ``device`` (default: the encoder's). ``transform``
    is the augmentation recipe (default: ``clipcourse.data.simclr_augment``,
    crops, flips, blur and noise, no colour jitter); both views of a batch are
    made by :func:`clipcourse.data.two_view_batch`. Batches are sampled without
    replacement within an epoch and everything random is seeded by ``seed``.
    Training stops early when ``max_seconds`` have passed; the returned history
    is then shorter than ``steps``. The encoder is left in eval mode.
    """
    from clipcourse.data import simclr_augment, two_view_batch  # lazy: keep this module light

    images = _checked_images(images, steps, batch_size, temperature)
    if device is None:
        device = next(encoder.parameters()).device
    transform = simclr_augment(images.shape[-1]) if transform is None else transform

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=weight_decay)
    encoder.train()
    history: list[float] = []
    batches = shuffled_batches(len(images), batch_size, generator)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="SimCLR", disable=not progress)
    for _ in bar:
        batch = images[next(batches)]
        view1, view2 = two_view_batch(batch, transform, generator=generator)
        # One forward pass over all 2N views (GroupNorm: no statistics shared across the batch).
        z = encoder(torch.cat([view1, view2]).to(device))
        loss = nt_xent_loss(z[:batch_size], z[batch_size:], temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    encoder.eval()
    return history
