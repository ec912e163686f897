"""Encoders and the mini CLIP model.

Contrastive batches must not use BatchNorm: its batch statistics let examples
in a batch "see" each other, which leaks information between positives and
negatives. The encoders here use GroupNorm instead.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(c_in: int, c_out: int, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.GELU(),
    )


class SmallCNN(nn.Module):
    """A four-stage CNN for 32×32 images: ``[B, 3, H, W]`` floats in [0, 1] -> ``[B, out_dim]``."""

    def __init__(self, out_dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.features = nn.Sequential(
            _conv_block(3, width),
            _conv_block(width, width),
            nn.MaxPool2d(2),  # 16×16
            _conv_block(width, 2 * width),
            nn.MaxPool2d(2),  # 8×8
            _conv_block(2 * width, 4 * width),
            nn.MaxPool2d(2),  # 4×4
            _conv_block(4 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype} (divide uint8 by 255)")
        return self.head(self.features(images))
