"""Region-level matching: score each phrase of a caption against one region of the image.

A dual encoder pools the whole image into one vector and the whole caption into
another, so "a red circle and a blue square" and "a blue circle and a red square"
can only differ if both encoders learned to bind. Region-level models (GLIP,
RegionCLIP, OWL-ViT) instead match *phrases* to *regions*. The same idea works at
test time with any CLIP: split the caption into one phrase per object, encode the
image with everything outside one region greyed out, and take the best one-to-one
assignment of phrases to regions. On Shapes world the regions are the five
object positions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "POSITION_CENTRES",
    "assignment_scores",
    "region_binding_accuracy",
    "region_features",
    "region_masks",
    "with_article",
]

#: (y, x) centres of Shapes world's five positions as fractions of the side (see ``data.shapes``).
POSITION_CENTRES: tuple[tuple[float, float], ...] = ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75), (0.5, 0.5))


def region_masks(images: torch.Tensor, centres: Sequence[tuple[float, float]] = POSITION_CENTRES, half: float = 0.28) -> torch.Tensor:
    """``[N, R, 3, H, W]``: each float image with everything outside a square around each centre
    filled with the image's darkest colour (close to the background), so objects keep their scale."""
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be float [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    n, _, h, w = images.shape
    fill = images.amin(1, keepdim=True).mean((2, 3), keepdim=True)  # [N, 1, 1, 1]
    out = []
    for cy, cx in centres:
        m = torch.zeros(1, 1, h, w, dtype=images.dtype, device=images.device)
        y0, y1 = max(round((cy - half) * h), 0), min(round((cy + half) * h), h)
        x0, x1 = max(round((cx - half) * w), 0), min(round((cx + half) * w), w)
        m[..., y0:y1, x0:x1] = 1
        out.append(images * m + fill * (1 - m))
    return torch.stack(out, 1)


@torch.no_grad()
def region_features(encode_image: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, **kwargs) -> torch.Tensor:
    """Unit features ``[N, R, D]`` of every region view of every image (see :func:`region_masks`)."""
    from clipcourse.encoding import encode_in_batches

    views = region_masks(images, **kwargs)
    n, r = views.shape[:2]
    feats = encode_in_batches(encode_image, views.flatten(0, 1), 256)
    return F.normalize(feats.float(), dim=-1).view(n, r, -1).cpu()


def assignment_scores(regions: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
    """Best one-to-one phrase→region assignment: ``[N, R, D]`` regions, ``[N, P, D]`` unit phrases -> ``[N]``.

    The score is the largest sum over phrases of cosine(phrase, its region), with distinct
    regions for distinct phrases (brute force: P is 2 or 3 here).
    """
    if regions.shape[0] != phrases.shape[0] or regions.shape[-1] != phrases.shape[-1]:
        raise ValueError(f"regions {tuple(regions.shape)} and phrases {tuple(phrases.shape)} do not match")
    sims = torch.einsum("nrd,npd->nrp", regions, phrases)
    n_regions, n_phrases = sims.shape[1:]
    if n_phrases > n_regions:
        raise ValueError(f"{n_phrases} phrases but only {n_regions} regions")
    options = [
        sum(sims[:, r, p] for p, r in enumerate(rs)) for rs in itertools.permutations(range(n_regions), n_phrases)
    ]
    return torch.stack(options, 1).amax(1)


def with_article(words: str) -> str:
    """'red circle' -> 'a red circle'; 'orange cross' -> 'an orange cross'."""
    return ("an " if words[0] in "aeiou" else "a ") + words


@torch.no_grad()
def region_binding_accuracy(clip, n: int = 500, seed_offset: int = 1, world_seed: int = 0, combos: str = "seen") -> float:
    """:func:`clipcourse.binding.binding_accuracy` with region-level matching instead of one vector per image.

    The true scene ("a red circle", "a blue square") wins when its best phrase→region
    assignment scores higher than the swapped one's ("a blue circle", "a red square").
    """
    from clipcourse.data import ShapesWorld

    scenes = ShapesWorld(seed=world_seed).scene_split(n, n_objects=2, seed_offset=seed_offset, combos=combos)
    regions = region_features(clip.encode_image, scenes.float_images())

    def phrases(swap: bool) -> torch.Tensor:
        texts = []
        for a, b in scenes.attributes:
            ca, cb = (b.colour, a.colour) if swap else (a.colour, b.colour)
            texts += [with_article(f"{ca} {a.shape}"), with_article(f"{cb} {b.shape}")]
        return F.normalize(clip.encode_text(texts).float(), dim=-1).cpu().view(len(scenes), 2, -1)

    return float((assignment_scores(regions, phrases(False)) > assignment_scores(regions, phrases(True))).float().mean())
