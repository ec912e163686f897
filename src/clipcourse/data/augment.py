"""SimCLR-style augmentation: two random views of every image.

Contrastive learning pulls two views of one image together and pushes other
images away, so the encoder becomes *invariant to whatever the augmentation
changes*. In Shapes world that is a visible design choice:

* random resized crops and flips move and rescale the object, so they erode
  position (a flip swaps left and right) and size information;
* colour jitter (``colour=True``) hides colour, forcing the encoder to use
  shape; without it, colour alone solves the contrastive task (the shortcut the
  SimCLR paper found with colour histograms).

:func:`simclr_augment` builds a torchvision ``v2`` pipeline for one image;
:func:`two_view_batch` applies the same recipe to a whole batch at once, which
is what a CPU training loop needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

__all__ = ["GaussianNoise", "TwoViews", "simclr_augment", "two_view_batch"]

_GREY = torch.tensor([0.2989, 0.587, 0.114])  # luma weights, as torchvision uses
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class GaussianNoise:
    """Add N(0, std²) noise to a float image and clip to [0, 1] (also works on batches)."""

    def __init__(self, std: float = 0.03) -> None:
        if std < 0:
            raise ValueError(f"std must be non-negative, got {std}")
        self.std = float(std)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = torch.as_tensor(image)
        if not image.is_floating_point():
            raise ValueError("GaussianNoise expects a float image in [0, 1]")
        return (image + self.std * torch.randn_like(image)).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


def simclr_augment(image_size: int = 32, *, colour: bool = False) -> v2.Compose:
    """The SimCLR recipe scaled to tiny images; returns float [3, size, size] in [0, 1].

    Accepts float or uint8 tensors (or PIL images). ``colour=True`` adds colour jitter
    and random greyscale, making the encoder invariant to colour.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    ops: list[Callable] = [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
    ]
    if colour:
        ops += [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
    ops += [v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.5), GaussianNoise(0.03)]
    return v2.Compose(ops)


class TwoViews:
    """``image -> (view1, view2)``: the same random transform applied twice, independently."""

    def __init__(self, transform: Callable | None = None) -> None:
        self.transform = simclr_augment() if transform is None else transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)

    def __repr__(self) -> str:
        return f"TwoViews({self.transform!r})"


# --------------------------------------------------------------------------
# Batched path: the same operations, vectorised over [N, 3, H, W]
# --------------------------------------------------------------------------

Op = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def _uniform(n: int, low: float, high: float, x: torch.Tensor, gen) -> torch.Tensor:
    """n uniforms on x's device, drawn from ``gen`` (which may live on another device)."""
    device = x.device if gen is None else gen.device
    return (low + (high - low) * torch.rand(n, generator=gen, device=device)).to(x)


def _crop(size: Sequence[int], scale: Sequence[float], ratio: Sequence[float]) -> Op:
    """Random resized crop as one affine resampling per image (grid_sample)."""
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)

    def op(x, gen):
        n = len(x)
        area = _uniform(n, scale[0], scale[1], x, gen)
        aspect = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), x, gen))
        w = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the width
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx = (1 - w) * _uniform(n, -1, 1, x, gen)  # centre, in [-1, 1] coordinates
        cy = (1 - h) * _uniform(n, -1, 1, x, gen)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        grid = F.affine_grid(theta, [n, x.shape[1], out_h, out_w], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return op


def _where(p: float, x: torch.Tensor, y: torch.Tensor, gen) -> torch.Tensor:
    """Per image: y with probability p, else x."""
    mask = _uniform(len(x), 0, 1, x, gen) < p
    return torch.where(mask[:, None, None, None], y, x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (x * _GREY.to(x)[None, :, None, None]).sum(1, keepdim=True)


def _colour_jitter(brightness, contrast, saturation, hue) -> Op:
    """Brightness, contrast, saturation and hue (a YIQ rotation), in a fixed order."""

    def factor(rng, x, gen):
        return _uniform(len(x), rng[0], rng[1], x, gen)[:, None, None, None]

    def op(x, gen):
        if brightness is not None:
            x = (x * factor(brightness, x, gen)).clamp(0, 1)
        if contrast is not None:
            mean = _grey(x).mean(dim=(2, 3), keepdim=True)
            x = (mean + factor(contrast, x, gen) * (x - mean)).clamp(0, 1)
        if saturation is not None:
            g = _grey(x)
            x = (g + factor(saturation, x, gen) * (x - g)).clamp(0, 1)
        if hue is not None:  # rotate the chroma plane of YIQ: one 3×3 matrix per image
            angle = 2 * math.pi * factor(hue, x, gen).flatten()
            cos, sin = torch.cos(angle), torch.sin(angle)
            rot = torch.zeros(len(x), 3, 3, dtype=x.dtype, device=x.device)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
            yiq = _YIQ.to(x)
            m = torch.linalg.inv(yiq) @ rot @ yiq
            x = torch.bmm(m, x.flatten(2)).view_as(x).clamp(0, 1)
        return x

    return op


def _blur(kernel_size: Sequence[int], sigma: Sequence[float]) -> Op:
    """Gaussian blur with a random sigma per image (separable, grouped convolution)."""
    k = kernel_size[0] if isinstance(kernel_size, (list, tuple)) else int(kernel_size)

    def op(x, gen):
        n, c, h, w = x.shape
        s = _uniform(n, sigma[0], sigma[1], x, gen)
        t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
        kern = torch.exp(-(t[None] ** 2) / (2 * s[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [N*C, k]
        y = x.reshape(1, n * c, h, w)
        y = F.conv2d(
            F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern[:, None, None, :], groups=n * c
        )
        y = F.conv2d(
            F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern[:, None, :, None], groups=n * c
        )
        return y.reshape(n, c, h, w)

    return op


def _noise(std: float) -> Op:
    def op(x, gen):
        noise = torch.randn(x.shape, generator=gen, device=x.device if gen is None else gen.device)
        return (x + std * noise.to(x)).clamp(0, 1)

    return op


def _batched_ops(transform) -> list[Op] | None:
    """Translate a (SimCLR-like) v2 pipeline into batched ops; None if something is unknown."""
    items = list(transform.transforms) if isinstance(transform, v2.Compose) else [transform]
    ops: list[Op] = []
    for t in items:
        if isinstance(t, (v2.ToImage, v2.ToDtype)):
            continue  # two_view_batch already works on float images
        if isinstance(t, v2.RandomResizedCrop):
            ops.append(_crop(t.size, t.scale, t.ratio))
        elif isinstance(t, v2.RandomHorizontalFlip):
            ops.append(lambda x, gen, p=t.p: _where(p, x, x.flip(-1), gen))
        elif isinstance(t, v2.ColorJitter):
            ops.append(_colour_jitter(t.brightness, t.contrast, t.saturation, t.hue))
        elif isinstance(t, v2.RandomGrayscale):
            ops.append(lambda x, gen, p=t.p: _where(p, x, _grey(x).expand_as(x), gen))
        elif isinstance(t, v2.GaussianBlur):
            ops.append(_blur(t.kernel_size, t.sigma))
        elif isinstance(t, GaussianNoise):
            ops.append(_noise(t.std))
        elif type(t).__name__ == "GaussianNoise" and getattr(t, "mean", 0.0) == 0.0:
            ops.append(_noise(t.sigma))  # torchvision >= 0.20's v2.GaussianNoise
        elif isinstance(t, v2.RandomApply):
            inner = _batched_ops(v2.Compose(list(t.transforms)))
            if inner is None:
                return None

            def apply(x, gen, inner=inner, p=t.p):
                y = x
                for op in inner:
                    y = op(y, gen)
                return _where(p, x, y, gen)

            ops.append(apply)
        else:
            return None
    return ops


def two_view_batch(
    images: torch.Tensor, transform=None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of a float batch [N, 3, H, W] in [0, 1].

    Pipelines built from the operations :func:`simclr_augment` uses run vectorised
    (one ``grid_sample`` for all crops, ...), and ``generator`` makes them reproducible.
    They follow the same distributions as torchvision, not its exact random stream.
    Any other transform falls back to a per-image loop (seeded from ``generator``).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [N, 3, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError("images must be float in [0, 1]; use ShapesSplit.float_images()")
    transform = simclr_augment(images.shape[-1]) if transform is None else transform
    ops = _batched_ops(transform)
    if ops is None:
        return _per_image(images, transform, generator)

    def view() -> torch.Tensor:
        x = images
        for op in ops:
            x = op(x, generator)
        return x

    return view(), view()


def _per_image(images, transform, generator):
    with torch.random.fork_rng(devices=[]):
        if generator is not None:
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        views = [torch.stack([torch.as_tensor(transform(x)) for x in images]) for _ in range(2)]
    return views[0], views[1]
