"""Which image regions a caption matches: occlusion similarity maps.

Hide one patch of the image at a time, re-encode it, and record how much the
cosine similarity with the caption drops. Regions whose removal costs the most
similarity are the ones the caption "looks at" (Zeiler & Fergus 2014 for
classifiers; for CLIP, the same idea underlies many explanation tools). It needs
nothing but ``encode_image`` and ``encode_text``, so it works on MiniCLIP, on a
pretrained CLIP from ``transformers`` (:mod:`clipcourse.hf_clip`) and on any model
with that interface; it costs one image encoding per patch position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["occlusion_map", "occlusion_maps"]


def _occluded(image: torch.Tensor, patch: int, stride: int, fill: float | None) -> tuple[torch.Tensor, int, int]:
    """Every copy of ``image`` ``[3, H, W]`` with one patch filled: ``[P, 3, H, W]`` and the grid size."""
    _, h, w = image.shape
    rows = list(range(0, max(h - patch, 0) + 1, stride))
    cols = list(range(0, max(w - patch, 0) + 1, stride))
    value = image.mean((1, 2), keepdim=True) if fill is None else torch.full((3, 1, 1), float(fill), dtype=image.dtype)
    copies = image.unsqueeze(0).repeat(len(rows) * len(cols), 1, 1, 1)
    for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
        copies[k, :, r : r + patch, c : c + patch] = value.to(image.device)
    return copies, len(rows), len(cols)


@torch.no_grad()
def occlusion_maps(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    encode_text: Callable[[list[str]], torch.Tensor],
    image: torch.Tensor,
    captions: Sequence[str],
    patch: int = 8,
    stride: int = 4,
    fill: float | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Similarity drop maps ``[len(captions), H, W]`` for one float image ``[3, H, W]`` in [0, 1].

    Pixel (y, x) holds the mean drop in cosine similarity over the occluded patches that
    cover it (positive: hiding it hurts the match). ``fill=None`` fills patches with the
    image's mean colour, which carries no shape. Upsampled to the image size by averaging.
    """
    from clipcourse.encoding import encode_in_batches

    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"image must be one float [3, H, W] image, got {image.dtype} {tuple(image.shape)}")
    if isinstance(captions, str) or not captions:
        raise ValueError("captions must be a non-empty list of strings")
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be positive, got {patch} and {stride}")
    text = F.normalize(encode_text(list(captions)).float(), dim=-1).cpu()  # [M, D]
    base = F.normalize(encode_image(image.unsqueeze(0)).float(), dim=-1).cpu()  # [1, D]
    copies, n_rows, n_cols = _occluded(image, patch, stride, fill)
    feats = F.normalize(encode_in_batches(encode_image, copies, batch_size).float(), dim=-1).cpu()  # [P, D]
    drop = (base @ text.t()) - feats @ text.t()  # [P, M]
    _, h, w = image.shape
    total = torch.zeros(len(captions), h, w)
    count = torch.zeros(1, h, w)
    for k in range(n_rows * n_cols):
        r, c = (k // n_cols) * stride, (k % n_cols) * stride
        total[:, r : r + patch, c : c + patch] += drop[k][:, None, None]
        count[:, r : r + patch, c : c + patch] += 1
    return total / count.clamp(min=1)


def occlusion_map(encode_image, encode_text, image: torch.Tensor, caption: str, **kwargs) -> torch.Tensor:
    """:func:`occlusion_maps` for one caption: ``[H, W]``."""
    return occlusion_maps(encode_image, encode_text, image, [caption], **kwargs)[0]
