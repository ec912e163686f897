"""load_pretrained_clip on a tiny CLIPModel saved to a temporary folder (no download)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

transformers = pytest.importorskip("transformers")

from clipcourse.hf_clip import features_tensor, load_pretrained_clip  # noqa: E402


def test_loads_offline_and_encodes(tiny_clip_dir):
    clip = load_pretrained_clip(tiny_clip_dir, device="cpu", local_files_only=True)
    text = clip.encode_text(["a red circle", "a much longer caption about a blue square"])
    assert text.shape == (2, 8) and text.dtype == torch.float32
    images = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8)
    feats = clip.encode_image(images)
    assert feats.shape == (3, 8)
    torch.testing.assert_close(clip.encode_image(images.float() / 255), feats, atol=1e-4, rtol=1e-3)
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-4)


def test_matches_the_model_directly(tiny_clip_dir):
    clip = load_pretrained_clip(tiny_clip_dir, device="cpu")
    inputs = clip.tokenizer(["a red circle"], return_tensors="pt")
    with torch.no_grad():
        direct = features_tensor(clip.model.get_text_features(input_ids=inputs["input_ids"],
                                                              attention_mask=inputs["attention_mask"]))
    torch.testing.assert_close(clip.encode_text(["a red circle"]), direct)


def test_features_tensor_handles_both_major_versions():
    t = torch.randn(2, 4)
    assert features_tensor(t) is t  # transformers 4.x: a tensor
    assert features_tensor(SimpleNamespace(pooler_output=t)) is t  # 5.x: an output object
    assert features_tensor((t,)) is t
    with pytest.raises(TypeError):
        features_tensor(SimpleNamespace(last_hidden_state=t))


def test_bad_inputs(tiny_clip_dir):
    clip = load_pretrained_clip(tiny_clip_dir, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        clip.encode_text([])
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        clip.encode_image(torch.rand(3, 32, 32))
