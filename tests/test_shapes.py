"""Tests for the Shapes world dataset and the SimCLR augmentation (clipcourse.data)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from clipcourse.data import (
    ALL_CLASSES,
    ATTRIBUTES,
    COLOURS,
    DEFAULT_HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLIT_SIZES,
    SYNONYMS,
    Caption,
    ShapeAttributes,
    ShapesDataset,
    ShapesWorld,
    TwoViews,
    captions_for,
    class_name,
    matches_all,
    relevance,
    simclr_augment,
    two_view_batch,
)
from clipcourse.device import torch_threads

RED_CIRCLE = ShapeAttributes("red", "circle", "small", "top left")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: threads only add synchronisation cost (badly so on a shared 2-core CI box)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0)


@pytest.fixture(scope="module")
def train(world):
    return world.split("train", 1000)


# ---------------------------------------------------------------- vocabulary


def test_vocabulary_matches_the_contract():
    assert COLOURS == ("red", "green", "blue", "yellow", "purple", "orange")
    assert SHAPES == ("circle", "square", "triangle", "diamond", "cross")
    assert SIZES == ("small", "large")
    assert POSITIONS == ("top left", "top right", "bottom left", "bottom right", "centre")
    assert ATTRIBUTES == ("colour", "shape", "size", "position")
    assert len(ALL_CLASSES) == 30 and len(set(ALL_CLASSES)) == 30
    assert class_name("red", "circle") == "red circle"


def test_default_held_out_keeps_every_colour_and_shape_in_training():
    assert len(DEFAULT_HELD_OUT) == 5
    assert sorted(s for _, s in DEFAULT_HELD_OUT) == sorted(SHAPES)
    assert len({c for c, _ in DEFAULT_HELD_OUT}) == 5
    assert set(DEFAULT_HELD_OUT) <= set(ALL_CLASSES)


def test_attributes_validate_and_convert():
    assert RED_CIRCLE.as_dict() == {
        "colour": "red",
        "shape": "circle",
        "size": "small",
        "position": "top left",
    }
    with pytest.raises(ValueError, match="colour 'pink'"):
        ShapeAttributes("pink", "circle", "small", "centre")
    with pytest.raises(ValueError, match="position"):
        ShapeAttributes("red", "circle", "small", "middle")


# ---------------------------------------------------------------- relevance


def test_relevance_counts_matching_attributes():
    assert relevance({"colour": "red", "shape": "circle"}, RED_CIRCLE) == 2
    assert relevance({"colour": "red", "shape": "square"}, RED_CIRCLE) == 1
    assert relevance({"colour": "blue", "size": "large"}, RED_CIRCLE) == 0
    assert relevance(RED_CIRCLE.as_dict(), RED_CIRCLE.as_dict()) == 4
    assert matches_all({"colour": "red", "position": "top left"}, RED_CIRCLE)
    assert not matches_all({"colour": "red", "position": "centre"}, RED_CIRCLE)


def test_relevance_on_scenes_uses_best_object_and_binding():
    blue_square = ShapeAttributes("blue", "square", "large", "bottom right")
    scene = (RED_CIRCLE, blue_square)
    assert relevance({"colour": "blue", "shape": "square"}, scene) == 2
    assert relevance({"colour": "blue", "shape": "circle"}, scene) == 1
    both = Caption(
        "a red circle and a blue square",
        {"colour": "red", "shape": "circle"},
        ({"colour": "red", "shape": "circle"}, {"colour": "blue", "shape": "square"}),
    )
    swapped = (
        ShapeAttributes("blue", "circle", "small", "top left"),
        ShapeAttributes("red", "square", "large", "bottom right"),
    )
    assert relevance(both, scene) == 4 and matches_all(both, scene)
    assert relevance(both, swapped) == 2 and not matches_all(both, swapped)


@pytest.mark.parametrize("bad", [{"colour": "pink"}, {"texture": "striped"}, {"shape": "star"}])
def test_relevance_rejects_unknown_names_and_values(bad):
    with pytest.raises(ValueError):
        relevance(bad, RED_CIRCLE)
    with pytest.raises(ValueError):
        relevance({"colour": "red"}, {"colour": "red", "shape": "circle"})  # incomplete image


# ---------------------------------------------------------------- captions


def test_captions_mention_what_the_text_says():
    captions = captions_for(RED_CIRCLE, np.random.default_rng(0), n=8)
    assert len(captions) == 8
    assert captions[0].text == "a small red circle in the top left"
    assert len({c.text for c in captions}) == 8  # distinct templates while there are enough
    for cap in captions:
        assert cap.mentioned and ("colour" in cap.mentioned or "shape" in cap.mentioned)
        assert matches_all(cap, RED_CIRCLE)
        for attribute, value in cap.mentioned.items():
            words = SYNONYMS[attribute][value]
            assert any(w in cap.text for w in words), (cap.text, attribute)


def test_captions_use_correct_articles_and_synonyms():
    orange = ShapeAttributes("orange", "square", "large", "centre")
    texts = [c.text for seed in range(20) for c in captions_for(orange, seed)]
    assert not any(re.search(r"\ba (orange|emerald)", t) for t in texts)
    assert any("an orange" in t for t in texts)
    red_texts = [c.text for seed in range(30) for c in captions_for(RED_CIRCLE, seed)]
    assert any("crimson" in t or "scarlet" in t for t in red_texts)
    assert any("disc" in t for t in red_texts)


# ---------------------------------------------------------------- world and splits


def test_split_sizes_shapes_and_types(world, train):
    assert len(train) == 1000 and train.images.shape == (1000, 3, 32, 32)
    assert train.images.dtype == torch.uint8
    assert len(train.attributes) == len(train.captions) == 1000
    assert all(len(c) == 5 for c in train.captions)
    x = train.float_images()
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    labels = train.labels()
    assert labels.dtype == torch.int64
    assert ALL_CLASSES[int(labels[0])] == train.attributes[0][0].combo
    assert len(world.split("test_unseen")) == SPLIT_SIZES["test_unseen"]


def test_images_are_not_trivial(train):
    x = train.float_images()
    background = x[:, :, 0, 0]  # corners are background: grey-ish but varied
    assert background.std() > 0.03
    assert x.std(dim=(1, 2, 3)).min() > 0.02


def test_held_out_combos_never_in_train_or_val(world, train):
    held = set(world.held_out)
    val = world.split("val", 500)
    for split in (train, val):
        assert not {objs[0].combo for objs in split.attributes} & held
    for caps in train.captions:
        for cap in caps:
            assert (cap.mentioned.get("colour"), cap.mentioned.get("shape")) not in held
            for colour, shape in held:
                for c in SYNONYMS["colour"][colour]:
                    for s in SYNONYMS["shape"][shape]:
                        assert f"{c} {s}" not in cap.text and f"{s} that is {c}" not in cap.text


def test_test_splits_cover_the_right_combos(world):
    unseen = world.split("test_unseen", 300)
    assert {o[0].combo for o in unseen.attributes} == set(world.held_out)
    assert all(world.is_held_out(o[0]) for o in unseen.attributes)
    test = world.split("test", 600)
    assert {o[0].combo for o in test.attributes} == set(ALL_CLASSES)


def test_splits_are_deterministic_and_independent_of_order(world):
    a = ShapesWorld(seed=0).split("test", 200)
    fresh = ShapesWorld(seed=0)
    fresh.split("val", 50)  # generating something else first must not change "test"
    b = fresh.split("test", 200)
    assert torch.equal(a.images, b.images)
    assert a.attributes == b.attributes
    assert [[c.text for c in caps] for caps in a.captions] == [
        [c.text for c in caps] for caps in b.captions
    ]
    c = ShapesWorld(seed=1).split("test", 200)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.images, world.split("val", 200).images)


def test_render_draws_the_requested_colour_where_requested(world):
    objs = [
        ShapeAttributes(c, "square", "large", p) for c in ("red", "blue") for p in POSITIONS[:2]
    ]
    images = world.render(objs, np.random.default_rng(0)).float() / 255
    assert images.shape == (4, 3, 32, 32)
    left, right = images[..., 6:10, 6:10].mean((-1, -2)), images[..., 6:10, 22:26].mean((-1, -2))
    assert left[0, 0] > 0.7 and left[0, 2] < 0.35  # red square top left
    assert right[1, 0] > 0.7 and left[1, 0] < 0.5  # red square moved to the top right
    assert left[2, 2] > 0.7 and left[2, 0] < 0.35  # blue square top left


def test_held_out_from_int_and_explicit_pairs():
    w = ShapesWorld(seed=3, held_out=4)
    assert len(w.held_out) == 4 == len(set(w.held_out))
    assert len({c for c, _ in w.held_out}) == 4 and len({s for _, s in w.held_out}) == 4
    assert ShapesWorld(seed=3, held_out=4).held_out == w.held_out
    assert ShapesWorld(held_out=0).held_out == ()
    assert ShapesWorld(held_out=[("red", "circle")]).held_out == (("red", "circle"),)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": -32}, "image_size"),
        ({"held_out": 31}, "held_out"),
        ({"held_out": -1}, "held_out"),
        ({"held_out": 30}, "training would be empty"),
        ({"held_out": ALL_CLASSES}, "training would be empty"),
        ({"held_out": [("pink", "circle")]}, "colour 'pink'"),
        ({"held_out": [("red", "star")]}, "shape 'star'"),
        ({"n_captions": 0}, "n_captions"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_world_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesWorld(**kwargs)


def test_bad_requests_raise_value_error(world):
    with pytest.raises(ValueError, match="unknown split"):
        world.split("training")
    with pytest.raises(ValueError, match="n must be"):
        world.split("train", 0)
    with pytest.raises(ValueError, match="n must be"):
        world.sample_attributes(-1, 0)
    with pytest.raises(ValueError, match="combos"):
        world.sample_attributes(3, 0, combos="unseen")
    with pytest.raises(ValueError, match="empty"):
        ShapesWorld(held_out=0).split("test_unseen")
    with pytest.raises(ValueError, match="empty"):
        world.render([], 0)
    with pytest.raises(ValueError, match="different positions"):
        world.render([[RED_CIRCLE, RED_CIRCLE]], 0)
    with pytest.raises(ValueError, match="classes do not include"):
        world.split("test_unseen", 10).labels(classes=world.seen)


def test_other_image_sizes(world):
    images = ShapesWorld(image_size=64).render([RED_CIRCLE], 0)
    assert images.shape == (1, 3, 64, 64)


# ---------------------------------------------------------------- scenes


def test_two_object_scenes(world):
    scenes = world.scene_split(200, n_objects=2)
    assert scenes.images.shape == (200, 3, 32, 32)
    held = set(world.held_out)
    for objs, caps in zip(scenes.attributes, scenes.captions):
        assert len(objs) == 2
        assert len({o.position for o in objs}) == 2
        assert objs[0].colour != objs[1].colour and objs[0].shape != objs[1].shape
        assert not {o.combo for o in objs} & held
        assert " and " in caps[0].text
        for cap in caps:
            assert len(cap.mentions) == 2 and matches_all(cap, objs)
    assert torch.equal(scenes.images, ShapesWorld(seed=0).scene_split(200).images)
    assert not torch.equal(scenes.images, world.scene_split(200, seed_offset=1).images)


def test_scene_objects_do_not_overlap(world):
    """Each object's colour must be visible somewhere: a later object never covers an earlier one."""
    scenes = world.scene_split(100, n_objects=3)
    x = scenes.float_images()
    rgb = torch.tensor(
        [
            [0.90, 0.12, 0.12],
            [0.15, 0.78, 0.20],
            [0.15, 0.32, 0.95],
            [0.95, 0.90, 0.12],
            [0.62, 0.18, 0.82],
            [0.98, 0.52, 0.06],
        ]
    )
    for img, objs in zip(x, scenes.attributes):
        for o in objs:
            dist = (img - rgb[COLOURS.index(o.colour)][:, None, None]).norm(dim=0)
            assert (dist < 0.2).sum() >= 4, o


# ---------------------------------------------------------------- dataset and augmentation


def test_dataset_items_and_caption_modes(train):
    ds = ShapesDataset(train)
    item = ds[3]
    assert set(item) == {"image", "caption", "index", "label"}
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["index"] == 3 and isinstance(item["caption"], str)
    assert item["label"] == int(train.labels()[3])
    texts = {c.text for c in train.captions[3]}
    assert item["caption"] in texts
    seen = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        seen.add(ds[3]["caption"])
    assert len(seen) > 1
    ds.set_epoch(0)
    assert ShapesDataset(train)[3]["caption"] == item["caption"]  # deterministic
    assert ShapesDataset(train, caption="first")[3]["caption"] == train.captions[3][0].text
    assert ShapesDataset(train, caption=2)[3]["caption"] == train.captions[3][2].text
    with pytest.raises(ValueError, match="caption"):
        ShapesDataset(train, caption=9)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch["image"].shape == (8, 3, 32, 32) and len(batch["caption"]) == 8


def test_simclr_augment_and_two_views(train):
    image = train.float_images()[0]
    for colour in (False, True):
        aug = simclr_augment(32, colour=colour)
        out = aug(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1
        a, b = TwoViews(aug)(image)
        assert a.shape == b.shape == (3, 32, 32) and not torch.equal(a, b)
    assert simclr_augment(16)(train.images[0]).shape == (3, 16, 16)  # uint8 input works too


def test_two_view_batch_is_batched_and_reproducible(train):
    x = train.float_images()[:64]
    aug = simclr_augment(colour=True)
    a, b = two_view_batch(x, aug, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == x.shape and not torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    a2, _ = two_view_batch(x, aug, torch.Generator().manual_seed(0))
    assert torch.equal(a, a2)
    # an unknown transform falls back to the per-image loop
    c, d = two_view_batch(x[:4], lambda im: im.flip(-1), torch.Generator().manual_seed(0))
    assert torch.equal(c, x[:4].flip(-1)) and torch.equal(d, c)
    with pytest.raises(ValueError, match="float"):
        two_view_batch(train.images[:4], aug)


def test_batched_ops_match_their_definitions(train):
    from torchvision.transforms import v2

    from clipcourse.data.augment import _colour_jitter

    x = train.float_images()[:8]
    same, _ = two_view_batch(x, v2.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1)))
    assert torch.allclose(same, x, atol=1e-5)  # a full-size crop is the identity
    flipped, _ = two_view_batch(x, v2.RandomHorizontalFlip(p=1.0))
    assert torch.equal(flipped, x.flip(-1))
    hue0 = _colour_jitter(None, None, None, (0.0, 0.0))(x, None)
    assert torch.allclose(hue0, x, atol=1e-4)
    grey, _ = two_view_batch(x, v2.RandomGrayscale(p=1.0))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_colour_free_augmentation_keeps_colour(train):
    """Teaching point: without colour jitter the views keep the object's colour."""
    x = train.float_images()[:32]
    a, _ = two_view_batch(x, simclr_augment(colour=False), torch.Generator().manual_seed(0))

    # mean colour of the brightest pixels is preserved by crops, flips, blur and noise
    def top_colour(im):
        flat = im.flatten(2)
        idx = flat.sum(1).topk(5, dim=1).indices
        return torch.gather(flat, 2, idx[:, None].expand(-1, 3, -1)).mean(-1)

    assert (top_colour(a) - top_colour(x)).abs().mean() < 0.15
