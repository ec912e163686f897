"""Robustness probes: perturb images or captions, re-run retrieval, report the change in a metric.

A metric measured on clean test data says how a model does on data like its
training data. Users send blurred photos, colour casts, typos and synonyms the
model never saw. Each probe here applies one kind of change at one strength,
deterministically for a seed, so "robustness" becomes a table of deltas:

* images (float ``[N, 3, H, W]`` in [0, 1]): Gaussian ``noise`` (std),
  ``blur`` (Gaussian, sigma in pixels), ``occlusion`` (a grey square covering a
  fraction of the image at a random place), ``colour_shift`` (a colour cast:
  the red channel up and the blue channel down by the strength);
* captions: ``synonyms`` (each attribute word replaced by another synonym of
  the same value, where one exists), ``word_order`` (words shuffled with the
  given probability per caption), ``typos`` (adjacent letters swapped in a
  fraction of the words).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "CAPTION_PERTURBATIONS",
    "IMAGE_PERTURBATIONS",
    "RobustnessRow",
    "perturb_captions",
    "perturb_images",
    "robustness_table",
]

IMAGE_PERTURBATIONS = ("noise", "blur", "occlusion", "colour_shift")
CAPTION_PERTURBATIONS = ("synonyms", "word_order", "typos")


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a float tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1] (use as_float_images), got {images.dtype}")


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def perturb_images(images: torch.Tensor, kind: str, strength: float, seed: int = 0) -> torch.Tensor:
    """A perturbed copy of ``images`` (float ``[N, 3, H, W]`` in [0, 1]); strength 0 returns them unchanged."""
    _check_images(images)
    if kind not in IMAGE_PERTURBATIONS:
        raise ValueError(f"unknown image perturbation {kind!r}; expected one of {IMAGE_PERTURBATIONS}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    if strength == 0:
        return images.clone()
    g = torch.Generator(device="cpu").manual_seed(seed)
    n, _, h, w = images.shape
    if kind == "noise":
        out = images + strength * torch.randn(images.shape, generator=g).to(images)
    elif kind == "blur":
        out = _gaussian_blur(images, strength)
    elif kind == "occlusion":
        if strength >= 1:
            raise ValueError(f"occlusion strength is the covered fraction of the area, in [0, 1), got {strength}")
        side_h, side_w = max(1, round(h * strength**0.5)), max(1, round(w * strength**0.5))
        top = torch.randint(0, h - side_h + 1, (n,), generator=g)
        left = torch.randint(0, w - side_w + 1, (n,), generator=g)
        rows = torch.arange(h)[None, :, None]
        cols = torch.arange(w)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + side_h)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + side_w)[:, None, None]))
        out = torch.where(inside[:, None].to(images.device), torch.full_like(images, 0.5), images)
    else:  # colour_shift
        cast = torch.tensor([strength, 0.0, -strength], dtype=images.dtype, device=images.device)
        out = images + cast.view(1, 3, 1, 1)
    return out.clamp(0, 1)


def _word_synonyms() -> dict[str, list[str]]:
    """Every single-word synonym -> the other words for the same attribute value."""
    from clipcourse.data import SYNONYMS

    table: dict[str, list[str]] = {}
    for by_value in SYNONYMS.values():
        for words in by_value.values():
            single = [w for w in words if " " not in w]
            for w in single:
                table[w] = [o for o in single if o != w]
    return {w: others for w, others in table.items() if others}


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def perturb_captions(texts: Sequence[str], kind: str, strength: float = 1.0, seed: int = 0) -> list[str]:
    """Perturbed copies of ``texts``; ``strength`` is the probability each word (or caption) is changed."""
    if kind not in CAPTION_PERTURBATIONS:
        raise ValueError(f"unknown caption perturbation {kind!r}; expected one of {CAPTION_PERTURBATIONS}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be a probability in [0, 1], got {strength}")
    rng = random.Random(seed)
    synonyms = _word_synonyms() if kind == "synonyms" else {}
    out = []
    for text in texts:
        words = text.split()
        if kind == "synonyms":
            words = [rng.choice(synonyms[w]) if w in synonyms and rng.random() < strength else w for w in words]
        elif kind == "word_order":
            if rng.random() < strength:
                rng.shuffle(words)
        else:
            words = [_typo(w, rng) if rng.random() < strength else w for w in words]
        out.append(" ".join(words))
    return out


@dataclass(frozen=True)
class RobustnessRow:
    """One probe: the metric on clean and perturbed inputs."""

    kind: str
    strength: float
    clean: float
    perturbed: float

    @property
    def delta(self) -> float:
        return self.perturbed - self.clean


def robustness_table(
    metric: Callable[[torch.Tensor, torch.Tensor], float],
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    encode_text: Callable[[list[str]], torch.Tensor],
    images: torch.Tensor,
    texts: Sequence[str],
    probes: Sequence[tuple[str, float]],
    seed: int = 0,
) -> list[RobustnessRow]:
    """``metric(text_features, image_features)`` on clean data, then with each ``(kind, strength)`` probe.

    Image probes re-encode the perturbed images, caption probes the perturbed
    captions; the other side stays clean. Encoders return ``[n, D]`` features
    (normalised here).
    """
    norm = lambda x: F.normalize(x.float(), dim=-1)  # noqa: E731
    clean_images, clean_texts = norm(encode_image(images)), norm(encode_text(list(texts)))
    clean = float(metric(clean_texts, clean_images))
    rows = []
    for kind, strength in probes:
        if kind in IMAGE_PERTURBATIONS:
            value = metric(clean_texts, norm(encode_image(perturb_images(images, kind, strength, seed))))
        elif kind in CAPTION_PERTURBATIONS:
            value = metric(norm(encode_text(perturb_captions(texts, kind, strength, seed))), clean_images)
        else:
            raise ValueError(f"unknown perturbation {kind!r}")
        rows.append(RobustnessRow(kind, float(strength), clean, float(value)))
    return rows
