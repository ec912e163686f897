"""A pretrained CLIP from ``transformers`` behind the same small interface as MiniCLIP.

For the Colab paths: ``load_pretrained_clip("openai/clip-vit-base-patch32")``
downloads OpenAI's weights once (with the network), and lessons call
``encode_text(list_of_strings)``, ``encode_image(images)`` and
``logit_scale`` exactly as they do with the course's own model.

transformers changed ``CLIPModel.get_text_features`` between major versions:
4.x returns the projected features as a tensor, 5.x returns an output object
whose ``pooler_output`` holds them. :func:`features_tensor` accepts both.

:func:`classify_images` and :func:`classify_dataset` run zero-shot
classification end to end with any CLIP-like model, on scikit-image's bundled
photos (:func:`skimage_photos`, offline) or a torchvision dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipcourse.encoding import encode_in_batches
from clipcourse.zeroshot import build_zero_shot_weights, zero_shot_probabilities

__all__ = [
    "SKIMAGE_PHOTOS",
    "PretrainedCLIP",
    "classify_dataset",
    "classify_images",
    "features_tensor",
    "load_pretrained_clip",
    "skimage_photos",
]


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


#: scikit-image's bundled colour photos and a class name for each (no download needed).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "coffee": "cup of coffee",
    "chelsea": "cat",
    "rocket": "rocket",
    "hubble_deep_field": "galaxy",
    "immunohistochemistry": "microscope slide",
}


def skimage_photos(names: Iterable[str] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's bundled photos as HxWx3 uint8 arrays, with their class names.

    They ship inside the scikit-image wheel, so they load offline.
    """
    import skimage.data

    names = list(SKIMAGE_PHOTOS if names is None else names)
    images, labels = [], []
    for name in names:
        if name not in SKIMAGE_PHOTOS:
            raise ValueError(f"unknown photo {name!r}; choose from {sorted(SKIMAGE_PHOTOS)}")
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        images.append(image[..., :3].astype(np.uint8))
        labels.append(SKIMAGE_PHOTOS[name])
    return images, labels


@torch.no_grad()
def classify_images(
    model,
    images,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """Zero-shot class probabilities ``[N, C]`` for ``images`` with any CLIP-like ``model``.

    ``model`` needs ``encode_text(list[str])``, ``encode_image(images)`` and a
    ``logit_scale`` holding the LOG of the scale (as in CLIP and
    :func:`clipcourse.hf_clip.load_pretrained_clip`). ``images`` is whatever
    ``encode_image`` accepts (a list of photos, or a batch tensor); it is fed in
    slices of ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(images) == 0:
        raise ValueError("images is empty")
    weights = build_zero_shot_weights(model.encode_text, classnames, templates)
    feats = encode_in_batches(lambda batch: model.encode_image(batch).detach().float(), images, batch_size)
    scale = torch.as_tensor(model.logit_scale).detach().float().exp()
    return zero_shot_probabilities(feats.cpu(), weights.cpu(), scale)


def classify_dataset(
    model,
    dataset,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    *,
    limit: int | None = None,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot probabilities and labels for a labelled dataset of ``(image, label)`` pairs.

    Works with any torchvision classification dataset (CIFAR-10 yields PIL
    images and int labels); ``limit`` keeps only the first examples, for a quick look.
    Returns ``(probabilities [N, C], labels [N])``.
    """
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise ValueError(f"no examples to classify (dataset of {len(dataset)}, limit={limit})")
    images, labels = [], []
    for i in range(n):
        image, label = dataset[i]
        images.append(image)
        labels.append(int(label))
    probs = classify_images(model, images, classnames, templates, batch_size=batch_size)
    return probs, torch.tensor(labels, dtype=torch.long)
