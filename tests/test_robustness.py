"""Robustness probes: each perturbation does what it says, deterministically, and the table reports deltas."""

from __future__ import annotations

import pytest
import torch

from clipcourse import robustness as R


def _images():
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", R.IMAGE_PERTURBATIONS)
def test_image_perturbations_change_images_within_range_and_deterministically(kind):
    images = _images()
    strength = 1.0 if kind == "blur" else 0.3
    out = R.perturb_images(images, kind, strength, seed=1)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert (out - images).abs().mean() > 0.01
    assert torch.equal(out, R.perturb_images(images, kind, strength, seed=1))
    assert torch.equal(R.perturb_images(images, kind, 0.0), images)


def test_blur_keeps_constant_images_and_occlusion_covers_the_fraction():
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(R.perturb_images(flat, "blur", 2.0), flat, atol=1e-6)
    black = torch.zeros(2, 3, 16, 16)
    covered = (R.perturb_images(black, "occlusion", 0.25)[:, 0] == 0.5).float().mean(dim=(1, 2))
    assert covered.tolist() == [0.25, 0.25]
    shifted = R.perturb_images(torch.full((1, 3, 2, 2), 0.5), "colour_shift", 0.2)
    assert shifted[0, :, 0, 0].tolist() == pytest.approx([0.7, 0.5, 0.3])


def test_caption_perturbations():
    texts = ["a small red circle in the centre", "a big blue square"]
    syn = R.perturb_captions(texts, "synonyms", 1.0)
    assert syn[0].split()[1] in {"little", "tiny"} and syn[0].split()[2] in {"crimson", "scarlet"}
    shuffled = R.perturb_captions(texts, "word_order", 1.0, seed=3)
    assert [sorted(s.split()) for s in shuffled] == [sorted(t.split()) for t in texts] and shuffled != texts
    typos = R.perturb_captions(texts, "typos", 1.0)
    assert typos != texts and [len(s) for s in typos] == [len(t) for t in texts]
    assert R.perturb_captions(texts, "typos", 0.0) == texts


def test_bad_input():
    with pytest.raises(ValueError, match="unknown image perturbation"):
        R.perturb_images(_images(), "rotate", 0.1)
    with pytest.raises(ValueError, match="floating point"):
        R.perturb_images((_images() * 255).to(torch.uint8), "noise", 0.1)
    with pytest.raises(ValueError, match="probability"):
        R.perturb_captions(["a"], "typos", 2.0)
    with pytest.raises(ValueError, match="covered fraction"):
        R.perturb_images(_images(), "occlusion", 1.0)


def test_robustness_table_reports_deltas():
    images = _images()
    encode_image = lambda x: x.mean(dim=(2, 3))  # noqa: E731  mean colour
    encode_text = lambda texts: torch.tensor([[float(len(t)), 1.0, 0.0] for t in texts])  # noqa: E731
    metric = lambda t, i: float(i[:, 0].mean())  # noqa: E731
    rows = R.robustness_table(metric, encode_image, encode_text, images, ["ab", "cd", "ef", "gh"],
                              [("colour_shift", 0.3), ("typos", 1.0)])
    assert rows[0].delta > 0 and rows[1].delta == 0.0
    assert rows[0].clean == rows[1].clean
