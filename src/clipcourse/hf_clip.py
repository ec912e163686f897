"""A pretrained CLIP from ``transformers`` behind the same small interface as MiniCLIP.

For the Colab paths: ``load_pretrained_clip("openai/clip-vit-base-patch32")``
downloads OpenAI's weights once (with the network), and lessons call
``encode_text(list_of_strings)``, ``encode_image(images)`` and
``logit_scale`` exactly as they do with the course's own model.

transformers changed ``CLIPModel.get_text_features`` between major versions:
4.x returns the projected features as a tensor, 5.x returns an output object
whose ``pooler_output`` holds them. :func:`features_tensor` accepts both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["PretrainedCLIP", "features_tensor", "load_pretrained_clip"]


def features_tensor(output: Any) -> torch.Tensor:
    """The feature tensor from ``get_text_features``/``get_image_features`` in transformers 4.x or 5.x."""
    if isinstance(output, torch.Tensor):
        return output  # transformers 4.x
    pooled = getattr(output, "pooler_output", None)  # transformers 5.x: BaseModelOutputWithPooling
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find the features in a {type(output).__name__}")


@dataclass
class PretrainedCLIP:
    """A ``transformers.CLIPModel`` + its processor, with MiniCLIP's interface.

    ``encode_text``/``encode_image`` return unnormalised projected features (as
    MiniCLIP does); ``logit_scale`` is the *log* of the scale, a parameter.
    """

    model: Any  #: transformers.CLIPModel, in eval mode
    processor: Any  #: transformers.CLIPProcessor
    device: torch.device

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        return self.model.logit_scale

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``list[str]`` -> ``[M, D]`` projected text features."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty: nothing to encode")
        max_length = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        inputs = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        return features_tensor(self.model.get_text_features(**inputs)).float()

    @torch.no_grad()
    def encode_image(self, images) -> torch.Tensor:
        """PIL images, or a ``[N, 3, H, W]`` tensor (uint8, or float in [0, 1]) -> ``[N, D]`` features.

        The processor resizes, crops and normalises with CLIP's own statistics.
        """
        if isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"expected images of shape [N, 3, H, W], got {tuple(images.shape)}")
            if images.is_floating_point():
                images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
            images = list(images.cpu())
        inputs = self.processor.image_processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model.dtype)
        return features_tensor(self.model.get_image_features(pixel_values=pixel_values)).float()


def load_pretrained_clip(
    name_or_path: str | Path = "openai/clip-vit-base-patch32",
    device: torch.device | str | None = None,
    *,
    local_files_only: bool = False,
) -> PretrainedCLIP:
    """Load ``transformers.CLIPModel`` and ``CLIPProcessor`` (a Hub name, or a local folder).

    A Hub name downloads the weights on first use (Colab); a local folder, or
    ``local_files_only=True``, never touches the network.
    """
    from transformers import CLIPModel, CLIPProcessor

    from clipcourse.device import get_device

    device = torch.device(device) if device is not None else get_device()
    local = local_files_only or Path(name_or_path).is_dir()
    model = CLIPModel.from_pretrained(str(name_or_path), local_files_only=local)
    processor = CLIPProcessor.from_pretrained(str(name_or_path), local_files_only=local)
    return PretrainedCLIP(model.to(device).eval(), processor, device)
