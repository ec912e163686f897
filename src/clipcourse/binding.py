"""Attribute binding: does a model know which colour goes with which shape? (chapter 3)

"a red circle and a blue square" and "a blue circle and a red square" hold the
same words; a text encoder that only counts words cannot tell them apart
(Yuksekgonul et al. 2023, "When and why vision-language models behave like
bags-of-words"). The test scores each image against its true caption and the
colour-swapped twin.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipcourse.encoding import encode_normalized
from clipcourse.text import EncodeText

__all__ = ["attribute_binding_accuracy", "swapped_caption"]


def swapped_caption(colours: Sequence[str], shapes: Sequence[str]) -> tuple[str, str]:
    """("a red circle and a blue square", "a blue circle and a red square") for two objects.

    The swapped caption has exactly the same words, so a bag-of-words model
    cannot tell them apart; only a model that binds colour to shape can.
    """
    if len(colours) != 2 or len(shapes) != 2:
        raise ValueError(f"need two colours and two shapes, got {list(colours)} and {list(shapes)}")
    if colours[0] == colours[1] or shapes[0] == shapes[1]:
        raise ValueError(
            f"swapping needs two different colours and two different shapes, got {colours}, {shapes}"
        )
    true = f"a {colours[0]} {shapes[0]} and a {colours[1]} {shapes[1]}"
    swapped = f"a {colours[1]} {shapes[0]} and a {colours[0]} {shapes[1]}"
    return true, swapped


@torch.no_grad()
def attribute_binding_accuracy(
    image_features: torch.Tensor,
    encode_text: EncodeText,
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    batch_size: int = 256,
) -> dict[str, float]:
    """How often the true two-object caption beats its colour-swapped twin.

    ``pairs[i]`` = (colours, shapes) of image i's two objects. Returns the win
    rate (0.5 is chance: a bag of words), the tie rate, the mean cosine margin
    and every image's margin (cosine with the true caption minus the swapped one).
    """
    if len(pairs) != image_features.shape[0]:
        raise ValueError(
            f"{len(pairs)} (colours, shapes) pairs for {image_features.shape[0]} images"
        )
    if len(pairs) == 0:
        raise ValueError("no images to test")
    true, swapped = zip(*(swapped_caption(c, s) for c, s in pairs), strict=True)
    t = encode_normalized(encode_text, list(true), batch_size)
    s = encode_normalized(encode_text, list(swapped), batch_size)
    if t.shape[1] != image_features.shape[1]:
        raise ValueError(
            f"text features have D={t.shape[1]} but image features D={image_features.shape[1]}"
        )
    img = F.normalize(image_features.float(), dim=-1)
    margin = (img * t).sum(-1) - (img * s).sum(-1)
    return {
        "true_wins": float((margin > 0).float().mean()),
        "ties": float((margin == 0).float().mean()),
        "mean_margin": float(margin.mean()),
        "n": len(pairs),
        "margins": margin.tolist(),
    }
