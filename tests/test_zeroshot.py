"""Tests for clipcourse.zeroshot against independent computations, properties and errors."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import top_k_accuracy_score

from clipcourse import hf_clip, metrics, probe, prompts, text
from clipcourse.binding import attribute_binding_accuracy, swapped_caption
from clipcourse.metrics import top_k_accuracy
from clipcourse.prompts import TEMPLATE_FAMILIES, evaluate_templates, fill_template, template_slots
from clipcourse.zeroshot import build_zero_shot_weights, zero_shot_logits, zero_shot_probabilities

D = 16
CLASSES = ["red circle", "blue square", "green triangle", "yellow star"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "{}"]


def _vector(text: str, dim: int = D) -> torch.Tensor:
    """A fixed random vector for each string, with a string-dependent norm (not normalised)."""
    g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
    return torch.randn(dim, generator=g, dtype=torch.float64) * (1 + len(text) % 7)


def encode_random(texts: list[str]) -> torch.Tensor:
    return torch.stack([_vector(t) for t in texts])


def encode_bag_of_words(texts: list[str]) -> torch.Tensor:
    """Order-blind: the sum of word vectors (like a model that ignores word order)."""
    return torch.stack([sum(_vector(w) for w in t.replace(",", " ").split()) for t in texts])


def reference_weights(encode_text, classnames, templates):
    """open_clip's loop: per class, normalise each template embedding, mean, normalise."""
    columns = []
    for name in classnames:
        emb = encode_text([t.format(name) for t in templates]).double()
        emb = emb / emb.norm(dim=-1, keepdim=True)
        mean = emb.mean(dim=0)
        columns.append(mean / mean.norm())
    return torch.stack(columns, dim=1)


# -- build_zero_shot_weights -----------------------------------------------------------
def test_weights_match_open_clip_loop():
    w = build_zero_shot_weights(encode_random, CLASSES, TEMPLATES)
    assert w.shape == (D, len(CLASSES))
    torch.testing.assert_close(
        w.double(), reference_weights(encode_random, CLASSES, TEMPLATES), atol=1e-6, rtol=0
    )


def test_weights_are_unit_columns_and_ignore_text_norms():
    w = build_zero_shot_weights(encode_random, CLASSES, TEMPLATES)
    torch.testing.assert_close(w.norm(dim=0), torch.ones(len(CLASSES)))

    # rescaling each text embedding by any positive factor changes nothing: templates are normalised first
    def rescaled(texts):
        return encode_random(texts) * torch.rand(len(texts), 1, dtype=torch.float64).add(0.1) * 50

    torch.testing.assert_close(
        build_zero_shot_weights(rescaled, CLASSES, TEMPLATES), w, atol=1e-6, rtol=0
    )


def test_weights_differ_from_unnormalised_mean():
    """The check above can fail: averaging raw embeddings gives a different direction."""
    raw = torch.stack(
        [
            F.normalize(encode_random([t.format(c) for t in TEMPLATES]).mean(0), dim=0)
            for c in CLASSES
        ],
        1,
    )
    w = build_zero_shot_weights(encode_random, CLASSES, TEMPLATES)
    assert (raw.float() - w).abs().max() > 1e-2


def test_single_template_is_its_normalised_embedding_and_batching_is_invisible():
    w = build_zero_shot_weights(encode_random, CLASSES, ["a photo of a {}."], batch_size=1)
    expected = F.normalize(encode_random([f"a photo of a {c}." for c in CLASSES]).float(), dim=-1).T
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(
        build_zero_shot_weights(encode_random, CLASSES, TEMPLATES, batch_size=2),
        build_zero_shot_weights(encode_random, CLASSES, TEMPLATES),
    )


def test_template_order_does_not_matter():
    a = build_zero_shot_weights(encode_random, CLASSES, TEMPLATES)
    b = build_zero_shot_weights(encode_random, CLASSES, TEMPLATES[::-1])
    torch.testing.assert_close(a, b)


def test_contrastive_nearest_fills_the_most_similar_other_class():
    names = F.normalize(encode_random(CLASSES).float(), dim=-1)
    sims = names @ names.T
    sims.fill_diagonal_(-2)
    nearest = sims.argmax(1).tolist()
    assert prompts.nearest_other_class(encode_random, CLASSES) == nearest
    w = build_zero_shot_weights(
        encode_random, CLASSES, ["a photo of a {}, not a {}."], contrast="nearest"
    )
    expected = F.normalize(
        encode_random(
            [
                f"a photo of a {c}, not a {CLASSES[j]}."
                for c, j in zip(CLASSES, nearest, strict=True)
            ]
        ).float(),
        dim=-1,
    ).T
    torch.testing.assert_close(w, expected)


def test_contrastive_all_averages_every_other_class_then_counts_once():
    template = "a photo of a {}, not a {}."
    w = build_zero_shot_weights(encode_random, CLASSES, [template, "{}"], contrast="all")
    for c, name in enumerate(CLASSES):
        fills = F.normalize(
            encode_random([template.format(name, o) for o in CLASSES if o != name]), dim=-1
        )
        contrast = F.normalize(fills.mean(0), dim=0)
        bare = F.normalize(encode_random([name])[0], dim=0)
        expected = F.normalize((contrast + bare) / 2, dim=0)
        torch.testing.assert_close(w[:, c].double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("classnames", "templates", "match"),
    [
        ([], TEMPLATES, "empty"),
        (["cat", "dog", "cat"], TEMPLATES, "duplicate"),
        ("cat", TEMPLATES, "list of names"),
        (["cat", ""], TEMPLATES, "non-empty"),
        (CLASSES, ["a photo of a cat"], "no '{}' slot"),
        (CLASSES, [], "templates is empty"),
        (CLASSES, ["a {label}"], "named field"),
        (CLASSES, ["{} {} {}"], "3 slots"),
        (CLASSES, ["a {"], "not a valid format"),
        (["cat"], ["a {}, not a {}"], "at least two classes"),
    ],
)
def test_weights_reject_bad_inputs(classnames, templates, match):
    with pytest.raises(ValueError, match=match):
        build_zero_shot_weights(encode_random, classnames, templates)


def test_weights_reject_bad_encoder_output_and_contrast():
    with pytest.raises(ValueError, match=r"\[n, D\]"):
        build_zero_shot_weights(lambda texts: torch.zeros(D), CLASSES, TEMPLATES)
    with pytest.raises(ValueError, match="contrast"):
        build_zero_shot_weights(encode_random, CLASSES, TEMPLATES, contrast="random")


def test_template_helpers():
    assert template_slots("a {}") == 1 and template_slots("a {}, not a {}") == 2
    assert fill_template("a {}, not a {}", "cat", "dog") == "a cat, not a dog"
    with pytest.raises(ValueError, match="other class"):
        fill_template("a {}, not a {}", "cat")
    for family, templates in TEMPLATE_FAMILIES.items():
        assert templates, family
        for t in templates:
            assert template_slots(t) == (2 if family == "contrastive" else 1)
    assert set(prompts.ENSEMBLE_FAMILIES) <= set(TEMPLATE_FAMILIES)
    assert len(TEMPLATE_FAMILIES["ensemble"]) >= 5
    assert len(prompts.PHOTO_TEMPLATES) == len(set(prompts.PHOTO_TEMPLATES)) == 18
    assert all(template_slots(t) == 1 for t in prompts.PHOTO_TEMPLATES)


# -- probabilities -------------------------------------------------------------------
def test_probabilities_match_manual_softmax():
    torch.manual_seed(0)
    x = torch.randn(7, D) * 3
    w = F.normalize(torch.randn(D, 5), dim=0)
    probs = zero_shot_probabilities(x, w, 100.0)
    manual = np.exp(100.0 * (x / x.norm(dim=1, keepdim=True)).numpy() @ w.numpy())
    manual /= manual.sum(1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), manual, atol=1e-5)
    torch.testing.assert_close(probs.sum(1), torch.ones(7))
    # the image features' norm does not matter; a tensor scale works like a float
    torch.testing.assert_close(zero_shot_probabilities(x * 10, w, torch.tensor(100.0)), probs)


def test_softmax_over_raw_cosines_is_nearly_uniform():
    """Without the scale, 30 classes can never exceed e^2 / (e^2 + 29) ~ 0.203 (cosines in [-1, 1])."""
    torch.manual_seed(0)
    x, w = torch.randn(50, D), F.normalize(torch.randn(D, 30), dim=0)
    raw = zero_shot_probabilities(x, w, 1.0)
    assert raw.max() <= math.exp(2) / (math.exp(2) + 29) + 1e-6
    assert (raw - 1 / 30).abs().max() < 0.1
    scaled = zero_shot_probabilities(x, w, 100.0)
    assert scaled.max(1).values.mean() > 0.5
    assert torch.equal(raw.argmax(1), scaled.argmax(1))  # same ranking, different confidence


def test_probabilities_reject_mismatched_dimensions():
    x = torch.randn(3, D)
    with pytest.raises(ValueError, match=r"transpose"):
        zero_shot_probabilities(x, torch.randn(5, D), 100.0)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        zero_shot_probabilities(x, torch.randn(D + 1, 5), 100.0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        zero_shot_probabilities(torch.randn(D), torch.randn(D, 5), 100.0)
    with pytest.raises(ValueError, match="positive"):
        zero_shot_probabilities(x, torch.randn(D, 5), -1.0)


# -- top-k -------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_matches_sklearn(k):
    rng = np.random.default_rng(k)
    scores = rng.normal(size=(200, 6))
    labels = rng.integers(0, 6, size=200)
    ours = top_k_accuracy(torch.from_numpy(scores), torch.from_numpy(labels), k)
    assert isinstance(ours, float)
    assert ours == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=range(6)))


def test_top_k_edge_cases():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]])
    assert top_k_accuracy(logits, torch.tensor([1, 2]), 1) == 0.5
    assert top_k_accuracy(logits, torch.tensor([1, 2]), 2) == 1.0
    assert top_k_accuracy(logits, torch.tensor([2, 1]), 3) == 1.0
    assert metrics.top_k_predictions(logits, 2).tolist() == [[1, 0], [0, 2]]
    with pytest.raises(ValueError, match="larger than the number of classes"):
        top_k_accuracy(logits, torch.tensor([1, 2]), 4)
    with pytest.raises(ValueError, match="positive integer"):
        top_k_accuracy(logits, torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="labels must be"):
        top_k_accuracy(logits, torch.tensor([1]), 1)
    with pytest.raises(ValueError, match="lie in"):
        top_k_accuracy(logits, torch.tensor([1, 3]), 1)


# -- template families -------------------------------------------------------------------
def _labelled_features(encode_text, classnames, n_per_class=6, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(encode_text([f"a {c}" for c in classnames]).float(), dim=-1)
    labels = torch.arange(len(classnames)).repeat_interleave(n_per_class)
    feats = centres[labels] + noise * torch.randn(len(labels), centres.shape[1], generator=g)
    return feats, labels


def test_evaluate_templates_matches_direct_computation():
    feats, labels = _labelled_features(encode_random, CLASSES)
    families = {
        "one": ["a {}"],
        "pair": ["a {}", "a photo of a {}."],
        "contrast": ["a {}, not a {}"],
    }
    table = evaluate_templates(encode_random, feats, labels, CLASSES, families)
    assert [r["family"] for r in table.families] == ["one", "pair", "contrast"]
    for row in table.families:
        w = build_zero_shot_weights(encode_random, CLASSES, families[row["family"]])
        logits = zero_shot_logits(feats, w, 1.0)
        assert row["top1"] == top_k_accuracy(logits, labels, 1)
        assert row["top5"] == top_k_accuracy(logits, labels, len(CLASSES))  # top-5 capped at C
    assert table.family("one")["top1"] == 1.0  # features were drawn around "a {}" embeddings
    assert {r["template"] for r in table.singles} == {"a {}", "a photo of a {}.", "a {}, not a {}"}
    assert table.best_single["top1"] == max(r["top1"] for r in table.singles)
    assert table.ensemble_gain("pair") == pytest.approx(table.family("pair")["top1"] - 1.0)
    md = table.to_markdown()
    assert md.count("\n") == 2 + len(families) - 1 and "a red circle, not a" in md
    html = table.to_html()
    assert html.count("<tr>") == 1 + len(families) and "a red circle, not a" in html
    with pytest.raises(KeyError):
        table.family("missing")


def test_select_templates_ranks_on_validation_accuracy():
    feats, labels = _labelled_features(encode_random, CLASSES)  # drawn around the "a {}" prompts
    candidates = ["a photo of a {}.", "a {}", "{} here", "a drawing of a {}."]
    chosen = prompts.select_templates(encode_random, feats, labels, CLASSES, candidates, top=2)
    assert chosen[0] == "a {}" and len(chosen) == 2
    scores = [
        evaluate_templates(encode_random, feats, labels, CLASSES, {"t": [t]}).families[0]["top1"]
        for t in candidates
    ]
    assert scores[candidates.index(chosen[1])] == max(
        s for t, s in zip(candidates, scores, strict=True) if t != "a {}"
    )
    assert (
        prompts.select_templates(encode_random, feats, labels, CLASSES, candidates, top=4)[0]
        == "a {}"
    )
    with pytest.raises(ValueError, match="top must be"):
        prompts.select_templates(encode_random, feats, labels, CLASSES, candidates, top=5)


def test_evaluate_templates_default_families_run():
    feats, labels = _labelled_features(encode_random, CLASSES)
    table = evaluate_templates(encode_random, feats, labels, CLASSES)
    assert [r["family"] for r in table.families] == list(TEMPLATE_FAMILIES)
    assert all(0 <= r["top1"] <= r["top5"] <= 1 for r in table.families)


# -- attribute binding ---------------------------------------------------------------
def test_swapped_caption():
    assert swapped_caption(["red", "blue"], ["circle", "square"]) == (
        "a red circle and a blue square",
        "a blue circle and a red square",
    )
    with pytest.raises(ValueError, match="different"):
        swapped_caption(["red", "red"], ["circle", "square"])
    with pytest.raises(ValueError, match="two colours"):
        swapped_caption(["red"], ["circle", "square"])


def test_bag_of_words_cannot_bind_but_an_order_aware_encoder_can():
    pairs = [(["red", "blue"], ["circle", "square"]), (["green", "yellow"], ["star", "triangle"])]
    true = [swapped_caption(c, s)[0] for c, s in pairs]
    # images that look exactly like their true caption's embedding
    bow = attribute_binding_accuracy(encode_bag_of_words(true).float(), encode_bag_of_words, pairs)
    assert bow["ties"] == 1.0 and bow["true_wins"] == 0.0 and bow["n"] == 2
    ordered = attribute_binding_accuracy(encode_random(true).float(), encode_random, pairs)
    assert ordered["true_wins"] == 1.0 and ordered["mean_margin"] > 0
    assert len(ordered["margins"]) == 2 and min(ordered["margins"]) > 0
    assert np.mean(ordered["margins"]) == pytest.approx(ordered["mean_margin"], abs=1e-6)
    with pytest.raises(ValueError, match="pairs for"):
        attribute_binding_accuracy(torch.randn(3, D), encode_random, pairs)


# -- photos and pretrained-model path ------------------------------------------------
def test_skimage_photos_load_offline():
    images, labels = hf_clip.skimage_photos()
    assert len(images) == len(labels) == len(hf_clip.SKIMAGE_PHOTOS)
    for image in images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert dict(zip(hf_clip.SKIMAGE_PHOTOS, labels, strict=True))["chelsea"] == "cat"
    with pytest.raises(ValueError, match="unknown photo"):
        hf_clip.skimage_photos(["nope"])


class _StandInCLIP:
    """Images are [N, D] tensors already; text goes through the random encoder."""

    logit_scale = torch.tensor(math.log(100.0))

    def encode_text(self, texts):
        return encode_random(texts).float()

    def encode_image(self, images):
        return images


def test_classify_images_with_a_stand_in_model():
    model = _StandInCLIP()
    w = build_zero_shot_weights(model.encode_text, CLASSES, ["a photo of a {}."])
    images = w.T[[2, 0, 1]] * 5  # each image points at one class
    probs = hf_clip.classify_images(model, images, CLASSES, batch_size=2)
    assert probs.shape == (3, len(CLASSES))
    assert probs.argmax(1).tolist() == [2, 0, 1]
    torch.testing.assert_close(probs, zero_shot_probabilities(images, w, 100.0))


def test_hashed_text_encoder_is_deterministic_with_varied_norms():
    enc = text.hashed_text_encoder(dim=8, seed=3)
    a = enc(["a red circle", "a blue square", "a red circle"])
    assert a.shape == (3, 8)
    torch.testing.assert_close(a[0], a[2])
    torch.testing.assert_close(
        text.hashed_text_encoder(dim=8, seed=3)(["a red circle"])[0], a[0]
    )
    assert not torch.allclose(
        text.hashed_text_encoder(dim=8, seed=4)(["a red circle"])[0], a[0]
    )
    norms = enc([f"class {i}" for i in range(20)]).norm(dim=1)
    assert norms.max() / norms.min() > 2
    with pytest.raises(ValueError, match="list of strings"):
        enc("a red circle")


def test_k_shot_probe_curve_reuses_chapter_1_probe():

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=g) * 3
    train_labels = torch.arange(4).repeat(20)
    test_labels = torch.arange(4).repeat(10)
    train = centres[train_labels] + torch.randn(80, 8, generator=g)
    test = centres[test_labels] + torch.randn(40, 8, generator=g)
    curve = probe.k_shot_probe_curve(
        train, train_labels, test, test_labels, ks=(1, 4), seeds=(0, 1)
    )
    assert list(curve) == [1, 4]
    for k, acc in curve.items():
        direct = [
            probe.linear_probe(train[i], train_labels[i], test, test_labels)
            for i in (probe.k_shot_indices(train_labels, k, s) for s in (0, 1))
        ]
        assert acc == pytest.approx(np.mean(direct))
    assert curve[4] > 0.8
    with pytest.raises(ValueError, match="seeds"):
        probe.k_shot_probe_curve(train, train_labels, test, test_labels, seeds=())


# -- the Colab path, offline: a tiny transformers CLIPModel saved to a temporary folder ---------
@pytest.fixture(scope="module")
def tiny_hf_clip(tiny_clip_dir):
    from clipcourse.hf_clip import load_pretrained_clip

    return load_pretrained_clip(tiny_clip_dir, device="cpu", local_files_only=True)


def test_classify_skimage_photos_with_a_tiny_pretrained_clip(tiny_hf_clip):
    images, names = hf_clip.skimage_photos()
    classes = sorted(set(names))
    templates = ["a photo of a {}.", "a picture of a {}."]
    probs = hf_clip.classify_images(tiny_hf_clip, images, classes, templates, batch_size=4)
    assert probs.shape == (len(images), len(classes))
    torch.testing.assert_close(probs.sum(1), torch.ones(len(images)))
    # independent computation: every photo encoded on its own, weights by the open_clip loop
    feats = torch.cat([tiny_hf_clip.encode_image([im]) for im in images])
    w = reference_weights(tiny_hf_clip.encode_text, classes, templates).float()
    manual = (tiny_hf_clip.logit_scale.exp() * F.normalize(feats, dim=-1) @ w).softmax(-1)
    torch.testing.assert_close(probs, manual.detach(), atol=1e-4, rtol=1e-3)


def test_classify_dataset_with_a_torchvision_dataset(tiny_hf_clip):
    from torchvision.datasets import FakeData

    data = FakeData(size=7, image_size=(3, 40, 40), num_classes=3, random_offset=0)
    names = ["airplane", "cat", "ship"]
    probs, labels = hf_clip.classify_dataset(tiny_hf_clip, data, names, limit=5, batch_size=2)
    assert probs.shape == (5, 3) and labels.tolist() == [int(data[i][1]) for i in range(5)]
    alone = hf_clip.classify_images(tiny_hf_clip, [data[i][0] for i in range(5)], names)
    torch.testing.assert_close(probs, alone)
    with pytest.raises(ValueError, match="no examples"):
        hf_clip.classify_dataset(tiny_hf_clip, data, names, limit=0)


def test_cached_text_encoder_encodes_each_prompt_once():
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return encode_random(texts)

    cached = text.cached_text_encoder(counting)
    a = cached(["x", "y", "x"])
    torch.testing.assert_close(a, encode_random(["x", "y", "x"]))
    b = cached(["y", "z"])
    torch.testing.assert_close(b, encode_random(["y", "z"]))
    assert calls == [["x", "y"], ["z"]]
    assert text.cached_text_encoder(cached) is cached
    with pytest.raises(ValueError, match="empty"):
        cached([])

    # evaluate_templates encodes every distinct prompt once, and gives the same table as without the cache
    calls.clear()
    feats, labels = _labelled_features(encode_random, CLASSES)
    table = evaluate_templates(counting, feats, labels, CLASSES)
    encoded = [t for call in calls for t in call]
    assert len(encoded) == len(set(encoded))
    plain = [
        top_k_accuracy(
            zero_shot_logits(feats, build_zero_shot_weights(encode_random, CLASSES, ts), 1.0),
            labels,
        )
        for ts in TEMPLATE_FAMILIES.values()
    ]
    assert [r["top1"] for r in table.families] == plain
