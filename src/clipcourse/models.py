"""Encoders and the mini CLIP model.

Contrastive batches must not use BatchNorm: its batch statistics let examples
in a batch "see" each other, which leaks information between positives and
negatives. The encoders here use GroupNorm instead.

:class:`MiniCLIP` puts a :class:`SmallCNN` (or a GroupNorm ResNet-18 for larger
images) and a tiny BERT side by side, each followed by a linear projection
into a shared space, with a learnable temperature: the architecture of CLIP
(Radford et al. 2021) at a size that trains on a laptop CPU.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from clipcourse.clip import INIT_LOGIT_SCALE, clamp_logit_scale_, clip_logits, masked_mean_pool


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


# ---------------------------------------------------------------------------------------------
# A ResNet-18 image encoder for larger images
# ---------------------------------------------------------------------------------------------


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18, untrained (``weights=None``), GroupNorm instead of BatchNorm.

    ``[B, 3, H, W]`` floats -> ``[B, 512]`` pooled features. For images of 64
    pixels and more; its stride-32 stem wastes most of a 32×32 image. Note
    ``weights=None``: the old ``pretrained=True`` argument is deprecated in
    torchvision (and would download ImageNet weights).
    """

    out_dim = 512

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, norm_layer=_group_norm)
        net.fc = nn.Identity()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return self.net(images)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected images as a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype} (divide uint8 by 255)")


# ---------------------------------------------------------------------------------------------
# The mini CLIP
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MiniCLIPConfig:
    """Everything that defines a :class:`MiniCLIP`; :meth:`hash` keys the weight cache."""

    vocab_size: int = 256  #: at least the tokenizer's vocabulary (``len(tokenizer)``)
    context_length: int = 24  #: maximum tokens per caption, [CLS] and [SEP] included
    pad_token_id: int = 0
    embed_dim: int = 64  #: the shared image–text space
    image_encoder: str = "cnn"  #: ``"cnn"`` (SmallCNN, 32×32) or ``"resnet18"`` (larger images)
    image_size: int = 32
    image_width: int = 16  #: SmallCNN base width (features: ``4 * image_width``)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    init_logit_scale: float = INIT_LOGIT_SCALE  #: the log of the initial scale 1/0.07

    def __post_init__(self) -> None:
        if self.image_encoder not in ("cnn", "resnet18"):
            raise ValueError(f"image_encoder must be 'cnn' or 'resnet18', got {self.image_encoder!r}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width={self.text_width} must be divisible by text_heads={self.text_heads}")
        if self.image_width > 8 and self.image_width % 8:
            raise ValueError(f"image_width must be at most 8 or a multiple of 8 (GroupNorm groups), got {self.image_width}")
        for name in ("vocab_size", "context_length", "embed_dim", "image_size", "image_width", "text_width", "text_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> MiniCLIPConfig:
        # A staticmethod, not a classmethod: clipcourse.grading.protect snapshots class members by
        # identity, and a classmethod gives a new bound object on every attribute access.
        return MiniCLIPConfig(**values)

    @staticmethod
    def tiny(**overrides) -> MiniCLIPConfig:
        """The smallest useful MiniCLIP (8-d space, one text layer): for tests and exercise checks.

        It builds in milliseconds and keeps every code path of the full model;
        ``overrides`` change any field (``MiniCLIPConfig.tiny(vocab_size=32, context_length=8)``).
        """
        values = {"embed_dim": 8, "image_width": 4, "text_width": 8, "text_layers": 1, **overrides}
        return MiniCLIPConfig(**values)

    def hash(self) -> str:
        """A short hash that is stable across runs and machines (sorted JSON, SHA-256)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class TextEncoder(nn.Module):
    """A tiny BERT (``transformers.BertModel``) pooled by a masked mean over real tokens."""

    def __init__(self, config: MiniCLIPConfig) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        bert_config = BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.text_heads,
            intermediate_size=4 * config.text_width,
            max_position_embeddings=config.context_length,
            type_vocab_size=1,
            pad_token_id=config.pad_token_id,
            hidden_dropout_prob=0.0,  # tiny data, short training: dropout only slows it down
            attention_probs_dropout_prob=0.0,
        )
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        self.out_dim = config.text_width

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean_pool(hidden, attention_mask)


class MiniCLIP(nn.Module):
    """Two encoders, two linear projections and a learnable temperature (CLIP §2.3–2.5).

    ``encode_image`` and ``encode_text`` return *unnormalised* projected
    features; :func:`clipcourse.clip.clip_logits` normalises them.
    ``logit_scale`` holds the log of the scale, initialised to log(1/0.07).
    """

    def __init__(self, config: MiniCLIPConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MiniCLIPConfig()
        if config.image_encoder == "cnn":
            cnn = SmallCNN(width=config.image_width)
            cnn.head = nn.Identity()  # the projection below plays that role
            cnn.out_dim = 4 * config.image_width
            self.image_encoder: nn.Module = cnn
        else:
            self.image_encoder = ResNet18Encoder()
        self.text_encoder = TextEncoder(config)
        self.image_projection = nn.Linear(self.image_encoder.out_dim, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(self.text_encoder.out_dim, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` floats in [0, 1] -> ``[B, embed_dim]`` (not normalised)."""
        _check_images(images)
        return self.image_projection(self.image_encoder(images))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T]`` token ids (+ mask, 1 = real token) -> ``[B, embed_dim]`` (not normalised)."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be a [B, T] tensor, got {getattr(input_ids, 'shape', type(input_ids))}")
        if input_ids.is_floating_point():
            raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"captions of {input_ids.shape[1]} tokens exceed context_length={self.config.context_length}; "
                "tokenize with context_length to truncate them"
            )
        if input_ids.numel() and (int(input_ids.max()) >= self.config.vocab_size or int(input_ids.min()) < 0):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}); got max {int(input_ids.max())}: "
                "was the tokenizer trained with a larger vocabulary than config.vocab_size?"
            )
        return self.text_projection(self.text_encoder(input_ids, attention_mask))

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits_per_image [B, B], logits_per_text [B, B])``; pair ``i`` is image ``i`` with caption ``i``."""
        if images.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"batch sizes differ: {images.shape[0]} images but {input_ids.shape[0]} captions "
                "(CLIP pairs image i with caption i)"
            )
        image_features = self.encode_image(images)
        text_features = self.encode_text(input_ids, attention_mask)
        # Compute the similarities in float32 even under autocast: the loss is sensitive to rounding.
        return clip_logits(image_features.float(), text_features.float(), self.logit_scale.float())

    def clamp_logit_scale_(self) -> MiniCLIP:
        """Keep the log scale in [0, log 100] (open_clip does this after every optimiser step)."""
        clamp_logit_scale_(self.logit_scale)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
