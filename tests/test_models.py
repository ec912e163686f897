"""Encoders and MiniCLIP: shapes, the temperature and its clamp, masks, errors, the config hash."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clipcourse.models import MiniCLIP, MiniCLIPConfig, ResNet18Encoder, SmallCNN

TINY = MiniCLIPConfig.tiny(vocab_size=50, context_length=8, image_width=8, text_width=16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MiniCLIP(TINY).eval()


def _batch(b=3, t=6):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(b, 3, 32, 32, generator=g)
    ids = torch.randint(5, 50, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, 3:] = 0
    ids[0, 3:] = 0
    return images, ids, mask


def test_smallcnn_keeps_its_signature():
    assert SmallCNN(out_dim=10, width=8)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_no_batchnorm_anywhere(model):
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ResNet18Encoder().modules())


def test_resnet18_encoder_untrained_groupnorm():
    enc = ResNet18Encoder()
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 512)
    assert any(isinstance(m, nn.GroupNorm) for m in enc.modules())
    clip = MiniCLIP(MiniCLIPConfig(vocab_size=50, context_length=8, embed_dim=8, image_encoder="resnet18",
                                   image_size=64, text_width=16, text_layers=1))
    assert clip.encode_image(torch.rand(2, 3, 64, 64)).shape == (2, 8)


def test_forward_shapes_and_transpose(model):
    images, ids, mask = _batch()
    lpi, lpt = model(images, ids, mask)
    assert lpi.shape == lpt.shape == (3, 3)
    torch.testing.assert_close(lpt, lpi.T)
    assert model.encode_image(images).shape == (3, 8)
    assert model.encode_text(ids, mask).shape == (3, 8)


def test_features_are_not_normalised(model):
    images, ids, mask = _batch()
    norms = model.encode_image(images).norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))


def test_logit_scale_parameter_holds_the_log(model):
    assert isinstance(model.logit_scale, nn.Parameter)
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    images, ids, mask = _batch()
    lpi, _ = model(images, ids, mask)
    assert lpi.abs().max() <= 1 / 0.07 + 1e-4


def test_logits_never_scaled_beyond_100():
    m = MiniCLIP(TINY)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)  # exp(10) ≈ 22026
    images, ids, mask = _batch()
    lpi, _ = m(images, ids, mask)
    assert lpi.abs().max() <= 100 + 1e-3
    m.clamp_logit_scale_()
    assert m.logit_scale.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        m.logit_scale.fill_(-1.0)
    assert m.clamp_logit_scale_().logit_scale.item() == 0.0


def test_text_embedding_ignores_padding(model):
    """The same caption, padded to two lengths, gets the same embedding (the mask is used)."""
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    short = model.encode_text(ids, torch.ones_like(ids))
    padded_ids = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([torch.ones_like(ids), torch.zeros(1, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model.encode_text(padded_ids, padded_mask), short, atol=1e-5, rtol=1e-4)
    # ... and garbage under the padding changes nothing either.
    padded_ids[0, 5:] = 40
    torch.testing.assert_close(model.encode_text(padded_ids, padded_mask), short, atol=1e-5, rtol=1e-4)


def test_no_batch_leakage(model):
    """GroupNorm, not BatchNorm: an image's embedding does not depend on its batch mates."""
    images, _, _ = _batch(4)
    alone = model.encode_image(images[:1])
    together = model.encode_image(images)[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_clear_errors(model):
    images, ids, mask = _batch()
    with pytest.raises(ValueError, match="uint8"):
        model.encode_image((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encode_image(images[:, :1])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encode_image(images[0])
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(images[:2], ids, mask)
    with pytest.raises(ValueError, match="attention_mask shape"):
        model.encode_text(ids, mask[:, :3])
    with pytest.raises(ValueError, match="context_length"):
        model.encode_text(torch.ones(1, 9, dtype=torch.long), torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab"):
        model.encode_text(torch.full((1, 4), 60), torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.encode_text(ids.float(), mask)


def test_config_hash_stable_and_sensitive():
    assert MiniCLIPConfig().hash() == MiniCLIPConfig().hash()
    assert MiniCLIPConfig().hash() != MiniCLIPConfig(embed_dim=32).hash()
    assert MiniCLIPConfig.from_dict(TINY.to_dict()) == TINY
    # A literal value: the hash must not change between runs, Python versions or machines.
    assert TINY.hash() == MiniCLIPConfig(**TINY.to_dict()).hash() and len(TINY.hash()) == 16


def test_config_validation():
    with pytest.raises(ValueError, match="image_encoder"):
        MiniCLIPConfig(image_encoder="vit")
    with pytest.raises(ValueError, match="divisible"):
        MiniCLIPConfig(text_width=10, text_heads=4)


def test_gradients_reach_both_towers_and_the_temperature():
    from clipcourse.clip import clip_loss

    torch.manual_seed(0)
    m = MiniCLIP(TINY)
    images, ids, mask = _batch(4)
    clip_loss(m(images, ids, mask)[0]).backward()
    for name in ("image_projection.weight", "text_projection.weight", "logit_scale"):
        assert dict(m.named_parameters())[name].grad.abs().sum() > 0, name
