"""Chapter 7's library: hard negatives and NegCLIP, the training hook, Shapes-world variants,
adversarial perturbations, membership AUC, per-class accuracy and occlusion maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipcourse import adversarial, class_metrics, hard_negatives, privacy, saliency
from clipcourse.clip import clip_logits, clip_loss
from clipcourse.data import ALL_CLASSES, ShapesWorld, variants
from clipcourse.hard_negatives import COLOUR_WORDS, hard_negative, negclip_loss, swap_colours
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.train import TrainConfig, train_clip

TINY = MiniCLIPConfig(vocab_size=40, context_length=6, embed_dim=8, image_width=4, text_width=8, text_layers=1)
COLOURS = {"red", "blue", "green"}


# -- perturbations ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a red circle and a blue square", "a blue circle and a red square"),
        ("there is a red circle, and a green square!", "there is a green circle, and a red square!"),
        ("red  blue red", "blue  red red"),  # only the first two; spacing kept
        ("a redish red circle and a blue  square", "a redish blue circle and a red  square"),  # whole words only
        ("Red blue green", "Red green blue"),  # case-sensitive
    ],
)
def test_swap_colours(caption, expected):
    assert swap_colours(caption, COLOURS) == expected


def test_swap_colours_rejects_fewer_than_two_colours_and_bad_types():
    for caption in ("a red circle", "a circle", ""):
        with pytest.raises(ValueError, match="two"):
            swap_colours(caption, COLOURS)
    with pytest.raises(ValueError, match="collection"):
        swap_colours("a red circle and a blue square", "red blue")
    with pytest.raises(ValueError, match="string"):
        swap_colours(["a red circle and a blue square"], COLOURS)


def test_hard_negative_covers_every_shapes_caption():
    world = ShapesWorld(seed=0)
    rng = np.random.default_rng(0)
    captions = [c.text for caps in world.scene_split(40).captions + world.split("val", n=40).captions for c in caps]
    changed = [hard_negative(c, rng) != c for c in captions]
    assert all(changed)
    # A two-object caption keeps its words: the negative is a permutation of them.
    scene = world.scene_split(5).captions[0][0].text
    assert sorted(hard_negative(scene).split()) == sorted(scene.split())
    single = hard_negative("a small red circle in the top left", 0)
    assert single != "a small red circle in the top left" and single.split()[2] in COLOUR_WORDS


# -- NegCLIP ------------------------------------------------------------------------------
def _features(b=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for _ in range(3)]


def test_negclip_loss_matches_the_formula():
    img, txt, neg = _features()
    scale = torch.tensor(math.log(20.0))
    i, t, n = (F.normalize(x, dim=-1) for x in (img, txt, neg))
    labels = torch.arange(5)
    want = (F.cross_entropy(20 * i @ torch.cat([t, n]).T, labels) + F.cross_entropy(20 * t @ i.T, labels)) / 2
    torch.testing.assert_close(negclip_loss(img, txt, neg, scale), want)


def test_negclip_loss_reduces_to_clip_loss_when_negatives_are_useless():
    img, txt, _ = _features()
    far = -1e4 * torch.ones(5, 4)  # a huge opposite vector per row: logit near -scale
    per_image, _ = clip_logits(img, txt, torch.tensor(0.0))
    neg = -F.normalize(img, dim=-1)  # cosine -1 with its own image
    got = negclip_loss(img, txt, neg, torch.tensor(0.0))
    assert got > clip_loss(per_image)  # extra candidates only add to the image->text loss
    assert torch.isfinite(negclip_loss(img, txt, far, torch.tensor(0.0)))


def test_negclip_loss_clamps_and_keeps_gradients():
    img, txt, neg = _features()
    capped = negclip_loss(img, txt, neg, torch.tensor(math.log(1000.0)))
    torch.testing.assert_close(capped, negclip_loss(img, txt, neg, torch.tensor(math.log(100.0))))
    s = torch.tensor(1.0, requires_grad=True)
    negclip_loss(img, txt, neg, s).backward()
    assert s.grad is not None and s.grad != 0
    with pytest.raises(ValueError, match="B, D"):
        negclip_loss(img, txt, neg[:3], s)


def test_training_hook_replaces_the_loss():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 32, 32, generator=g)
    ids = torch.randint(5, 40, (16, 2, 6), generator=g)
    mask = torch.ones_like(ids)
    neg_ids = torch.randint(5, 40, (16, 2, 6), generator=g)
    cfg = TrainConfig(steps=3, batch_size=8, n_train=16, warmup_steps=1, lr=1e-2, num_threads=1)
    seen = []
    hook = hard_negatives.negclip_batch_loss(neg_ids, torch.ones_like(neg_ids))

    def spy(model, batch):
        seen.append((batch.index.clone(), batch.caption.clone()))
        return hook(model, batch)

    torch.manual_seed(0)
    history = train_clip(MiniCLIP(TINY), images, ids, mask, cfg, device="cpu", progress=False, loss_fn=spy)
    assert len(seen) == 3 and all(len(i) == 8 and int(c.max()) < 2 for i, c in seen)
    assert all(math.isfinite(v) for v in history.loss)


# -- variants -----------------------------------------------------------------------------
def test_spurious_and_counter_splits():
    world = ShapesWorld(seed=0)
    biased = variants.spurious_split(world, 400, correlation=0.9)
    agree = np.mean([o[0].colour == variants._partner(o[0].shape) for o in biased.attributes])
    assert 0.85 < agree < 0.95
    counter = variants.counter_split(world, 100)
    assert not any(o[0].colour == variants._partner(o[0].shape) for o in counter.attributes)
    again = variants.spurious_split(world, 400, correlation=0.9)
    assert torch.equal(biased.images, again.images)  # deterministic by seed


def test_long_tail_counts_and_split():
    counts = variants.long_tail_counts(5, 100, 100.0)
    assert counts[0] == 100 and counts[-1] == 1 and counts == sorted(counts, reverse=True)
    split = variants.long_tail_split(ShapesWorld(seed=0), [("red", "circle"), ("blue", "square")], 20, 10.0)
    assert len(split) == 22
    with pytest.raises(ValueError):
        variants.long_tail_counts(3, 10, 0.5)


def test_sketch_and_texture_change_only_what_they_say():
    images = ShapesWorld(seed=0).split("val", n=8).images
    mask = variants.foreground_mask(images)
    assert mask.float().mean() > 0.02
    drawn = variants.sketch(images)
    assert drawn.dtype == torch.uint8 and drawn.shape == images.shape
    assert variants.foreground_mask(drawn).sum() < mask.sum()  # the insides are gone
    textured = variants.textured_background(images)
    assert torch.equal(textured.permute(0, 2, 3, 1)[mask], images.permute(0, 2, 3, 1)[mask])  # shapes untouched
    assert not torch.equal(textured, images)
    floats = variants.textured_background(images.float() / 255)
    assert floats.is_floating_point() and 0 <= floats.min() and floats.max() <= 1


def test_synonym_and_vague_names():
    assert variants.synonym_names([("red", "circle")]) == ["scarlet disc"]
    assert variants.vague_names([("blue", "square")]) == ["bluish boxy one"]
    assert variants.rewrite_vague("a bluish boxy one") == "a blue square"
    assert all(variants.rewrite_vague(v) == f"{c} {s}" for v, (c, s) in zip(variants.vague_names(), ALL_CLASSES))


# -- adversarial, privacy, per-class accuracy, saliency ----------------------------------------
def test_pgd_stays_in_the_ball_and_lowers_accuracy():
    torch.manual_seed(0)
    proj = torch.randn(3 * 8 * 8, 4)
    encode = lambda x: x.flatten(1) @ proj  # noqa: E731
    images = torch.rand(16, 3, 8, 8)
    weights = F.normalize(torch.randn(3, 4), dim=-1)
    labels = adversarial.zero_shot_margin_logits(encode, images, weights).argmax(1)
    eps = 0.03
    for attack in (adversarial.pgd(encode, images, labels, weights, eps), adversarial.fgsm(encode, images, labels, weights, eps)):
        assert (attack - images).abs().max() <= eps + 1e-6 and attack.min() >= 0 and attack.max() <= 1
        accuracy = (adversarial.zero_shot_margin_logits(encode, attack, weights).argmax(1) == labels).float().mean()
        assert accuracy < 1.0
    assert torch.equal(adversarial.squeeze(torch.tensor([0.0, 0.1, 0.5, 1.0]), 1), torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_auc():
    assert privacy.auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert privacy.auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
    assert privacy.auc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == 0.0


def test_per_class_accuracy_and_logit_adjust():
    preds = torch.tensor([0, 1, 1, 2, 0])
    labels = torch.tensor([0, 1, 2, 2, 2])
    acc = class_metrics.per_class_accuracy(preds, labels, 4)
    torch.testing.assert_close(acc[:3], torch.tensor([1.0, 1.0, 1 / 3]))
    assert math.isnan(acc[3])
    assert class_metrics.balanced_accuracy(preds, labels, 4) == pytest.approx(7 / 9)
    for bad in (torch.tensor([0, 1, 1, 2, 4]), torch.tensor([0, 1, 1, 2, -1])):
        with pytest.raises(ValueError, match="lie in"):
            class_metrics.per_class_accuracy(bad, labels, 4)
    adjusted = class_metrics.logit_adjust(torch.zeros(1, 2), torch.tensor([90, 10]))
    assert adjusted.argmax() == 1


def test_occlusion_map_finds_the_object():
    # A toy "model": the image feature is the mean colour of the top-left quadrant.
    def encode_image(x):
        return x[:, :, :16, :16].mean((2, 3)) + 1e-3

    def encode_text(texts):
        return torch.tensor([[1.0, 0.0, 0.0] if "red" in t else [0.0, 0.0, 1.0] for t in texts])

    image = torch.full((3, 32, 32), 0.1)
    image[0, 4:12, 4:12] = 1.0  # a red square in the top left
    maps = saliency.occlusion_maps(encode_image, encode_text, image, ["red", "blue"], patch=8, stride=4)
    assert maps.shape == (2, 32, 32)
    red = maps[0]
    assert red[4:12, 4:12].mean() > 0 and red[4:12, 4:12].mean() > red[20:, 20:].abs().mean()
    with pytest.raises(ValueError):
        saliency.occlusion_map(encode_image, encode_text, image[None], "red")


# -- failure rows, on a tiny untrained model (shape of the result, not its value) ------------------
@pytest.fixture(scope="module")
def tiny_clip():
    from clipcourse.course_model import TrainedMiniCLIP
    from clipcourse.text import shapes_tokenizer
    from clipcourse.train import History

    tokenizer = shapes_tokenizer()
    config = MiniCLIPConfig(vocab_size=len(tokenizer), embed_dim=8, image_width=4, text_width=8, text_layers=1)
    torch.manual_seed(0)
    return TrainedMiniCLIP(MiniCLIP(config).eval(), tokenizer, History(), config, TrainConfig(), 0, False)


def test_failure_rows_are_well_formed(tiny_clip):
    from clipcourse import failures

    rows = [
        failures.bias_row(tiny_clip, n=200),
        failures.adversarial_row(tiny_clip, n=20, steps=2),
        failures.privacy_row(tiny_clip, n=50),
    ]
    for row in rows:
        assert {"challenge", "metric", "before", "after", "remedy"} <= set(row)
        assert 0.0 <= row["before"] <= 1.0 and 0.0 <= row["after"] <= 1.0
    assert rows[1]["before"] <= rows[1]["clean"] + 1e-6  # an attack never helps


def test_region_masks_and_assignment():
    from clipcourse import regions

    images = torch.rand(2, 3, 32, 32)
    views = regions.region_masks(images)
    assert views.shape == (2, 5, 3, 32, 32)
    assert torch.equal(views[:, 0, :, 2:14, 2:14], images[:, :, 2:14, 2:14])  # inside the top-left region
    assert not torch.equal(views[:, 0, :, 20:, 20:], images[:, :, 20:, 20:])  # outside it: filled
    r = F.normalize(torch.eye(3)[None].repeat(1, 1, 1), dim=-1)  # 3 regions, each its own axis
    p = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.9, 0.1]]])  # both phrases prefer region 1
    torch.testing.assert_close(regions.assignment_scores(r, p), torch.tensor([1.1]))  # distinct regions: 1 + 0.1
    with pytest.raises(ValueError):
        regions.assignment_scores(r, torch.zeros(1, 4, 3))
