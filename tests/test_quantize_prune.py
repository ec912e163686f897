"""int8 quantisation (first principles and the maintained path), pruning, the model report."""

from __future__ import annotations

import warnings

import pytest
import torch

from clipcourse.model_report import compression_card, count_parameters, model_report, size_mb
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.prune import mask_prune, prune_channels, sparsity
from clipcourse.quantize import (
    dequantize_int8,
    dynamic_quantize,
    int8_backend,
    quantize_int8,
    quantize_model_int8,
)

TINY = MiniCLIPConfig(vocab_size=32, context_length=8, embed_dim=16, image_width=16, text_width=16, text_layers=1)


def test_quantize_int8_per_row_symmetric():
    w = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-254.0, 127.0, 1.0]])
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (3, 1) and scale.dtype == torch.float32
    assert torch.allclose(scale, torch.tensor([[1 / 127], [1.0], [2.0]]))
    assert q.tolist() == [[127, -64, 32], [0, 0, 0], [-127, 64, 0]]  # round half to even: 63.5 -> 64, 0.5 -> 0
    w64 = torch.randn(5, 7, dtype=torch.float64)
    q, scale = quantize_int8(w64)
    assert scale.dtype == torch.float64
    assert (dequantize_int8(q, scale) - w64).abs().max() <= scale.max() / 2 + 1e-12
    assert int(q.abs().max()) == 127
    for bad in (torch.zeros(3), torch.zeros(2, 3, 4)):
        with pytest.raises(ValueError, match="shape"):
            quantize_int8(bad)


def test_model_int8_is_smaller_and_close():
    torch.manual_seed(0)
    model = MiniCLIP(TINY).eval()
    copy_, packed = quantize_model_int8(model)
    assert size_mb(model) / size_mb(packed) > 2.5
    images = torch.rand(4, 3, 32, 32)
    a, b = model.encode_image(images), copy_.encode_image(images)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    assert not torch.equal(a, b)


def test_dynamic_quantize_maintained_path():
    assert int8_backend() in ("torch.ao", "torchao")
    torch.manual_seed(0)
    model = MiniCLIP(TINY).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # silenced inside
        quantized = dynamic_quantize(model)
    ids = torch.randint(5, 32, (3, 6))
    a = model.encode_text(ids)
    b = quantized.encode_text(ids)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.95
    assert count_parameters(quantized) == count_parameters(model)


def test_mask_prune_zeroes_but_does_not_shrink():
    torch.manual_seed(0)
    model = MiniCLIP(TINY)
    masked = mask_prune(model, 0.5)
    assert sparsity(masked) == pytest.approx(0.5, abs=0.01)
    assert count_parameters(masked) == count_parameters(model)
    assert size_mb(masked) > size_mb(model)  # weight_orig and weight_mask are both stored
    permanent = mask_prune(model, 0.5, permanent=True)
    assert size_mb(permanent) == pytest.approx(size_mb(model), rel=0.02)
    with pytest.raises(ValueError, match="amount"):
        mask_prune(model, 1.0)


def test_prune_channels_really_shrinks_and_is_exact_at_zero():
    torch.manual_seed(0)
    model = MiniCLIP(TINY).eval()
    same = prune_channels(model, 0.0)
    images, ids = torch.rand(3, 3, 32, 32), torch.randint(5, 32, (3, 6))
    assert torch.allclose(same.encode_image(images), model.encode_image(images), atol=1e-5)
    small = prune_channels(model, 0.5)
    assert count_parameters(small) < 0.6 * count_parameters(model)
    assert small.encode_image(images).shape == (3, 16) and small.encode_text(ids).shape == (3, 16)
    text_only = prune_channels(model, 0.5, image=False)
    assert torch.equal(text_only.encode_image(images), model.encode_image(images))


def test_model_report_and_card():
    torch.manual_seed(0)
    model = MiniCLIP(TINY).eval()
    images = torch.rand(8, 3, 32, 32)
    rows = [
        model_report("teacher", model, images, accuracy=0.9, batch_sizes=(1, 8), repeats=3, warmup=1),
        model_report("small", prune_channels(model, 0.5), images, accuracy=0.45, batch_sizes=(1, 8), repeats=3),
    ]
    assert rows[0]["p95_ms_b1"] >= rows[0]["p50_ms_b1"] > 0 and rows[0]["device"] == "cpu"
    card = compression_card(rows, "teacher")
    assert card[0]["speedup_b8"] == 1.0 and card[1]["accuracy_kept"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="N >="):
        model_report("x", model, images, batch_sizes=(1, 64))
    with pytest.raises(ValueError, match="no row"):
        compression_card(rows, "nobody")
