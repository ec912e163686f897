"""The functional pieces of CLIP: pooling, scaled cosine logits, the symmetric loss.

These three functions are the whole "CLIP recipe" once you have two encoders
(Radford et al. 2021, §2.3): L2-normalise both embeddings, scale the cosine
similarities by a learned temperature, and apply cross-entropy in both
directions, image→text and text→image. :class:`clipcourse.models.MiniCLIP`
uses them, and the chapter-2 exercises grade learners against them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Logits are never scaled by more than this (CLIP §2.5; open_clip clamps the log to [0, log 100]).
MAX_LOGIT_SCALE = 100.0
#: The initial temperature 0.07, stored as the log of the scale 1/0.07 (≈ 2.659).
INIT_LOGIT_SCALE = math.log(1 / 0.07)

__all__ = [
    "INIT_LOGIT_SCALE",
    "MAX_LOGIT_SCALE",
    "clamp_logit_scale_",
    "clip_logits",
    "clip_loss",
    "masked_mean_pool",
]


def masked_mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over real tokens only: ``[B, T, D]``, ``[B, T]`` -> ``[B, D]``.

    A plain ``hidden_states.mean(1)`` would average in the padding tokens, so
    the same caption would get a different embedding depending on how long
    the longest caption in its batch happened to be.
    """
    if hidden_states.dim() != 3:
        raise ValueError(f"hidden_states must be [B, T, D], got shape {tuple(hidden_states.shape)}")
    if attention_mask.shape != hidden_states.shape[:2]:
        raise ValueError(
            f"attention_mask must be [B, T] = {tuple(hidden_states.shape[:2])}, got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # [B, T, 1]
    summed = (hidden_states * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1.0)  # a row with no tokens gives zeros, not NaN
    return summed / count


@torch.no_grad()
def clamp_logit_scale_(logit_scale: torch.Tensor) -> torch.Tensor:
    """Clamp a log scale in place to [0, log 100] and return it: the scale stays in [1, 100].

    open_clip does this after every optimiser step (clamping before the step
    would let the step push it past the bound). The one clamp of the course:
    :meth:`MiniCLIP.clamp_logit_scale_` and :func:`clipcourse.train.train_step` call it.
    """
    return logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))


def clip_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled cosine similarities: ``([N, D], [M, D], log scale)`` -> ``([N, M], [M, N])``.

    ``logit_scale`` is the *log* of the scale (as in CLIP and open_clip), so the
    scale stays positive while the optimiser moves it freely; it is
    exponentiated and capped at 100 so the softmax cannot collapse to one-hot.
    """
    if image_features.dim() != 2 or text_features.dim() != 2:
        raise ValueError(
            "image_features and text_features must be [N, D] and [M, D], got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"embedding sizes differ: image_features has D={image_features.shape[1]}, "
            f"text_features has D={text_features.shape[1]}"
        )
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=image_features.dtype, device=image_features.device)
    scale = scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits_per_image = scale * image_features @ text_features.t()
    return logits_per_image, logits_per_image.t()


def clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: the mean of the image→text and text→image cross-entropies.

    Row ``i`` of ``logits_per_image`` scores image ``i`` against every caption in
    the batch; its match is caption ``i`` (the diagonal). The image→text loss
    is a softmax over each row, the text→image loss a softmax over each column.
    """
    if logits_per_image.dim() != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise ValueError(
            f"logits_per_image must be a square [B, B] matrix of paired examples, got {tuple(logits_per_image.shape)}"
        )
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    loss_image_to_text = F.cross_entropy(logits_per_image, labels)
    loss_text_to_image = F.cross_entropy(logits_per_image.t(), labels)
    return (loss_image_to_text + loss_text_to_image) / 2
