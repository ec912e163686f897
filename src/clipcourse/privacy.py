"""Membership inference: can the model tell the pairs it was trained on from new ones?

The simplest attack (Shokri et al. 2017; for CLIP, Ko et al. 2023) thresholds a
per-pair score, here the cosine similarity of an image and its caption: a model
that memorised its training pairs scores them higher than fresh pairs from the
same distribution. The area under the ROC curve of that score, members against
non-members, is 0.5 when nothing leaks and 1.0 when membership is obvious.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["auc", "membership_auc", "pair_scores"]


@torch.no_grad()
def pair_scores(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    encode_text: Callable[[list[str]], torch.Tensor],
    images: torch.Tensor,
    texts: Sequence[str],
    batch_size: int = 256,
) -> torch.Tensor:
    """Cosine similarity ``[N]`` of image i with caption i."""
    from clipcourse.encoding import encode_in_batches

    if len(texts) != images.shape[0]:
        raise ValueError(f"{len(texts)} captions for {images.shape[0]} images")
    img = F.normalize(encode_in_batches(encode_image, images, batch_size).float(), dim=-1)
    txt = F.normalize(encode_in_batches(encode_text, list(texts), batch_size).float(), dim=-1)
    return (img * txt.to(img.device)).sum(-1).cpu()


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted half."""
    if positive.numel() == 0 or negative.numel() == 0:
        raise ValueError("need at least one positive and one negative score")
    p, n = positive.flatten().double()[:, None], negative.flatten().double()[None, :]
    return float((p > n).double().mean() + 0.5 * (p == n).double().mean())


def membership_auc(clip, members: tuple[torch.Tensor, Sequence[str]], non_members: tuple[torch.Tensor, Sequence[str]]) -> float:
    """AUC of the similarity attack: ``members``/``non_members`` are (images, captions) pairs."""
    s_in = pair_scores(clip.encode_image, clip.encode_text, *members)
    s_out = pair_scores(clip.encode_image, clip.encode_text, *non_members)
    return auc(s_in, s_out)
