"""Zero-shot classification: a classifier built from class names and prompt templates.

A zero-shot classifier is retrieval over class prompts. Every class name is
written into a few templates ("a photo of a {}."; see :mod:`clipcourse.prompts`),
the text encoder embeds them, and the class's weight vector is the normalised
mean of those embeddings (open_clip's ``build_zero_shot_classifier``). An image
is assigned to the class whose weight vector has the highest cosine with the
image embedding, and the model's learned scale turns those cosines into
sensible probabilities.

``encode_text: Callable[[list[str]], Tensor]`` stands for the text side of any
CLIP-like model. ``scale`` is always the multiplier itself
(``model.logit_scale.exp()``), never its log.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clipcourse.encoding import encode_normalized
from clipcourse.prompts import (
    CONTRASTS,
    check_classnames,
    check_templates,
    fill_template,
    nearest_other_class,
    template_slots,
)
from clipcourse.text import EncodeText

__all__ = ["build_zero_shot_weights", "zero_shot_logits", "zero_shot_probabilities"]


@torch.no_grad()
def build_zero_shot_weights(
    encode_text: EncodeText,
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    contrast: str = "nearest",
    batch_size: int = 256,
) -> torch.Tensor:
    """Zero-shot classifier weights ``[D, C]``: one unit column per class.

    For each class, each template's embedding is L2-normalised, the template
    embeddings are averaged, and the mean is normalised again (so every
    template counts equally whatever its norm, and the column is a unit
    vector for cosine scoring). Averaging embeddings, not probabilities, is
    what CLIP calls ensembling "in embedding space": one classifier, the cost
    of a single template at test time.

    Two-slot templates ("a photo of a {}, not a {}.") have their second slot
    filled as ``contrast`` says (see :data:`CONTRASTS`); with ``"all"`` the
    C-1 filled prompts are normalised, averaged and normalised into one
    template embedding, so the template still counts once.
    """
    names = check_classnames(classnames)
    templates = check_templates(templates)
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    two_slot = [t for t in templates if template_slots(t) == 2]
    if two_slot and len(names) < 2:
        raise ValueError(f"contrastive template {two_slot[0]!r} needs at least two classes")
    nearest = (
        nearest_other_class(encode_text, names, batch_size)
        if two_slot and contrast == "nearest"
        else None
    )

    # Every prompt once, in one batched pass; `owner[i]` = (class, template) of prompt i.
    texts: list[str] = []
    owner: list[tuple[int, int]] = []
    for c, name in enumerate(names):
        for t, template in enumerate(templates):
            if template_slots(template) == 1:
                others = [None]
            elif nearest is not None:
                others = [names[nearest[c]]]
            else:
                others = [o for o in names if o != name]
            for other in others:
                texts.append(fill_template(template, name, other))
                owner.append((c, t))
    emb = encode_normalized(encode_text, texts, batch_size)  # [P, D], unit rows

    C, T, D = len(names), len(templates), emb.shape[1]
    sums = torch.zeros(C, T, D)
    index = torch.tensor([c * T + t for c, t in owner])
    sums.view(C * T, D).index_add_(0, index, emb)
    per_template = F.normalize(sums, dim=-1)  # mean of fills, renormalised: [C, T, D]
    weights = F.normalize(per_template.mean(dim=1), dim=-1)  # [C, D]
    return weights.T.contiguous()  # [D, C]

def _scale_value(scale: float | torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(scale).detach().float()
    if value.numel() != 1:
        raise ValueError(f"scale must be a single number, got shape {tuple(value.shape)}")
    if not torch.isfinite(value) or value <= 0:
        raise ValueError(
            f"scale must be a positive number (the multiplier, model.logit_scale.exp()), got {value.item()}"
        )
    return value.reshape(())


def zero_shot_logits(
    image_features: torch.Tensor, class_weights: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """Scaled cosines ``[N, C]`` between images ``[N, D]`` and class weights ``[D, C]``.

    ``scale`` is the multiplier itself (``model.logit_scale.exp()``), not its log.
    Image features are normalised here; the class weights are used as given
    (they come normalised from :func:`build_zero_shot_weights`).
    """
    if image_features.dim() != 2:
        raise ValueError(f"image_features must be [N, D], got shape {tuple(image_features.shape)}")
    if class_weights.dim() != 2:
        raise ValueError(f"class_weights must be [D, C], got shape {tuple(class_weights.shape)}")
    if image_features.shape[1] != class_weights.shape[0]:
        hint = (
            " (class_weights looks like [C, D]: transpose it)"
            if class_weights.shape[1] == image_features.shape[1]
            else ""
        )
        raise ValueError(
            f"feature dimensions differ: image_features {tuple(image_features.shape)} is [N, D] with "
            f"D={image_features.shape[1]}, class_weights {tuple(class_weights.shape)} must be [D, C]{hint}"
        )
    scale = _scale_value(scale)
    image = F.normalize(image_features.float(), dim=-1)
    return scale.to(image.device) * image @ class_weights.float().to(image.device)


def zero_shot_probabilities(
    image_features: torch.Tensor, class_weights: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """Class probabilities ``[N, C]``: softmax over classes of the scaled cosines.

    Without the scale (``scale=1``) cosines within ±1 give nearly uniform
    probabilities; CLIP's learned scale (up to 100) is what makes them sharp.
    """
    return zero_shot_logits(image_features, class_weights, scale).softmax(dim=-1)
