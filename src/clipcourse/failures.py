"""Chapter 7's measurements: each failure of CLIP produced on purpose, with its remedy.

Every function takes a trained model with ``encode_image``/``encode_text`` (the
course's ``mini_clip()``), measures one challenge before and after its remedy on
a Shapes-world variant (:mod:`clipcourse.data.variants`), and returns a row of
the chapter's table: ``{"challenge", "metric", "before", "after", "remedy", ...}``
plus details. All are seeded and take seconds on a CPU: the remedies that need
training are linear probes on frozen features or post-hoc corrections. The
binding row, which fine-tunes the model, is :mod:`clipcourse.binding`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clipcourse.class_metrics import balanced_accuracy, logit_adjust, per_class_accuracy
from clipcourse.data import ALL_CLASSES, SHAPES, SYNONYMS, ShapesWorld, class_name, variants

__all__ = [
    "adversarial_row",
    "ambiguity_row",
    "bias_row",
    "domain_shift_row",
    "long_tail_row",
    "privacy_row",
    "zero_shot_predict",
]

_TEMPLATE = "a photo of a {}."


def _features(clip, images: torch.Tensor) -> torch.Tensor:
    from clipcourse.encoding import as_float_images, encode_in_batches

    return F.normalize(encode_in_batches(clip.encode_image, as_float_images(images), 256).float(), dim=-1).cpu()


def _class_weights(clip, names: list[list[str]] | list[str]) -> torch.Tensor:
    """Unit text embeddings ``[C, D]``; a class given as several names averages them (an ensemble)."""
    groups = [[n] if isinstance(n, str) else list(n) for n in names]
    flat = [_TEMPLATE.format(n) for g in groups for n in g]
    text = F.normalize(clip.encode_text(flat).float(), dim=-1).cpu()
    out, start = [], 0
    for g in groups:
        out.append(F.normalize(text[start : start + len(g)].mean(0), dim=-1))
        start += len(g)
    return torch.stack(out)


def zero_shot_predict(clip, images: torch.Tensor, names: list[str] | list[list[str]] | None = None) -> torch.Tensor:
    """Zero-shot class indices ``[N]`` among ``names`` (default: the 30 colour×shape classes)."""
    names = names or [class_name(c, s) for c, s in ALL_CLASSES]
    return (_features(clip, images) @ _class_weights(clip, names).t()).argmax(1)


def _probe(train_x, train_y, test_x, sample_weight=None, C: float = 0.1):
    """Logistic regression on standardised frozen features; returns test logits ``[N, C]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    scaler = StandardScaler().fit(train_x.numpy())
    model = LogisticRegression(C=C, max_iter=2000)
    with threadpool_limits(limits=1):
        model.fit(scaler.transform(train_x.numpy()), train_y.numpy(), sample_weight=sample_weight)
        logits = model.decision_function(scaler.transform(test_x.numpy()))
    full = np.full((len(test_x), int(train_y.max()) + 1), -np.inf)
    full[:, model.classes_] = logits
    return torch.from_numpy(full).float()


def _row(challenge: str, metric: str, before: float, after: float, remedy: str, **details) -> dict:
    return {"challenge": challenge, "metric": metric, "before": float(before), "after": float(after), "remedy": remedy, **details}


def bias_row(clip, world_seed: int = 0, correlation: float = 0.97, n: int = 1500) -> dict:
    """A shape probe trained where colour predicts shape, tested where it never does.

    Remedy: reweight the training examples so every (shape, colour) group counts the same
    (the simplest group-robust training; Sagawa et al. 2020 go further with group DRO).
    """
    world = ShapesWorld(seed=world_seed)
    train = variants.spurious_split(world, n, correlation, seed=world_seed)
    test = variants.counter_split(world, 500, seed=world_seed)
    x_train, x_test = _features(clip, train.images), _features(clip, test.images)
    y_train = torch.tensor([SHAPES.index(o[0].shape) for o in train.attributes])
    y_test = torch.tensor([SHAPES.index(o[0].shape) for o in test.attributes])
    groups = [(o[0].shape, o[0].colour) for o in train.attributes]
    count = {g: groups.count(g) for g in set(groups)}
    weights = np.array([len(groups) / (len(count) * count[g]) for g in groups])
    before = (_probe(x_train, y_train, x_test).argmax(1) == y_test).float().mean()
    after = (_probe(x_train, y_train, x_test, sample_weight=weights).argmax(1) == y_test).float().mean()
    return _row("data bias (spurious colour)", "shape accuracy, counter-examples", before, after,
                "reweight groups (shape × colour) equally", correlation=correlation)  # fmt: skip


def domain_shift_row(clip, world_seed: int = 0, style: str = "sketch", k: int = 4) -> dict:
    """Zero-shot top-1 on test images redrawn as outlines (``"sketch"``) or on stripes (``"texture"``).

    ``before``: zero-shot on the shifted images; ``after``: a linear probe on ``k`` labelled
    shifted images per class (few-shot adaptation to the new domain). ``clean`` is the
    zero-shot accuracy on the unshifted images.
    """
    from clipcourse.probe import k_shot_indices

    world = ShapesWorld(seed=world_seed)
    test = world.split("test")
    shift = {"sketch": variants.sketch, "texture": variants.textured_background}[style]
    shifted = shift(test.images)
    labels = test.labels()
    clean = (zero_shot_predict(clip, test.images) == labels).float().mean()
    before = (zero_shot_predict(clip, shifted) == labels).float().mean()
    pool = world.split("val", n=1000)  # seen classes only: adapt on what we can label
    pool_shifted = shift(pool.images)
    pool_labels = pool.labels()
    idx = k_shot_indices(pool_labels, k, seed=world_seed)
    logits = _probe(_features(clip, pool_shifted[idx]), pool_labels[idx], _features(clip, shifted), C=1.0)
    seen = torch.tensor([world.is_held_out(o[0]) is False for o in test.attributes])
    after = (logits.argmax(1) == labels)[seen].float().mean()
    before_seen = (zero_shot_predict(clip, shifted) == labels)[seen].float().mean()
    return _row(f"domain shift ({style})", "top-1, seen classes", before_seen, after,
                f"{k}-shot probe on shifted images", clean=float(clean), all_classes_before=float(before))  # fmt: skip


def long_tail_row(clip, world_seed: int = 0, n_max: int = 100, imbalance: float = 100.0) -> dict:
    """A probe trained on long-tailed data: accuracy of the rarest third of the classes.

    Remedy: post-hoc logit adjustment by the training class priors (Menon et al. 2021).
    The zero-shot classifier, which needs no examples at all, is reported too.
    """
    world = ShapesWorld(seed=world_seed)
    classes = list(world.seen)
    order = torch.randperm(len(classes), generator=torch.Generator().manual_seed(world_seed)).tolist()
    classes = [classes[i] for i in order]  # which classes are rare is random
    train = variants.long_tail_split(world, classes, n_max, imbalance, seed=world_seed)
    test = world.split("val", n=1500)
    y_train, y_test = train.labels(classes), test.labels(classes)
    logits = _probe(_features(clip, train.images), y_train, _features(clip, test.images), C=1.0)
    counts = torch.bincount(y_train, minlength=len(classes))
    tail = slice(2 * len(classes) // 3, None)  # classes are ordered head first
    before = per_class_accuracy(logits.argmax(1), y_test, len(classes))
    after = per_class_accuracy(logit_adjust(logits, counts).argmax(1), y_test, len(classes))
    zero = zero_shot_predict(clip, test.images, [class_name(c, s) for c, s in classes])
    return _row("long tail", "accuracy, rarest third of classes", before[tail].nanmean(), after[tail].nanmean(),
                "logit adjustment by class priors",
                balanced_before=balanced_accuracy(logits.argmax(1), y_test, len(classes)),
                balanced_after=balanced_accuracy(logit_adjust(logits, counts).argmax(1), y_test, len(classes)),
                zero_shot_tail=float(per_class_accuracy(zero, y_test, len(classes))[tail].nanmean()),
                head_before=float(before[: len(classes) // 3].nanmean()))  # fmt: skip


def ambiguity_row(clip, world_seed: int = 0) -> dict:
    """Zero-shot top-1 (unseen combinations) when the query names the class in other words.

    ``before``: vague words the captions never contain ("reddish round one");
    ``after``: the same queries rewritten by a small thesaurus into the captions' words,
    then every synonym's embedding averaged (a name ensemble, as CLIP's prompt ensembles).
    ``synonym`` names each class by one random synonym ("scarlet wedge"), ``canonical``
    by the captions' first words.
    """
    world = ShapesWorld(seed=world_seed)
    test = world.split("test_unseen")
    labels = test.labels()
    rng = np.random.default_rng(world_seed)
    single = []
    for c, s in ALL_CLASSES:
        colours, shapes = SYNONYMS["colour"][c], SYNONYMS["shape"][s]
        single.append(f"{colours[rng.integers(1, len(colours))]} {shapes[rng.integers(1, len(shapes))]}")
    vague = variants.vague_names()
    rewritten = [variants.rewrite_vague(q).split(" ", 1) for q in vague]
    ensemble = [[f"{a} {b}" for a in SYNONYMS["colour"][c] for b in SYNONYMS["shape"][s]] for c, s in rewritten]
    top1 = lambda names: float((zero_shot_predict(clip, test.images, names) == labels).float().mean())  # noqa: E731
    return _row("ambiguous words", "top-1, unseen, vague queries", top1(vague), top1(ensemble),
                "rewrite with a thesaurus, average synonyms",
                canonical=top1([class_name(c, s) for c, s in ALL_CLASSES]), synonym=top1(single))  # fmt: skip


def adversarial_row(clip, world_seed: int = 0, eps: float = 2 / 255, steps: int = 10, bits: int = 4, n: int = 300) -> dict:
    """Zero-shot top-1 under a PGD attack of ``eps`` per pixel; remedy: colour-depth squeezing.

    The squeeze is applied after the attack, which the attacker did not know about; an
    attacker who differentiates through it (BPDA, Athalye et al. 2018) undoes it.
    """
    from clipcourse import adversarial

    model = getattr(clip, "model", clip)
    test = ShapesWorld(seed=world_seed).split("test_unseen", n=n)
    images, labels = test.float_images(), test.labels()
    weights = _class_weights(clip, [class_name(c, s) for c, s in ALL_CLASSES])
    was_training = model.training
    model.eval()
    attacked = adversarial.pgd(model.encode_image, images, labels, weights, eps=eps, steps=steps, seed=world_seed)
    model.train(was_training)
    acc = lambda x: float((zero_shot_predict(clip, x) == labels).float().mean())  # noqa: E731
    return _row("adversarial pixels", f"top-1, unseen, PGD ε={eps * 255:.0f}/255", acc(attacked),
                acc(adversarial.squeeze(attacked, bits)), f"squeeze to {bits} bits (non-adaptive attacker)",
                clean=acc(images), clean_squeezed=acc(adversarial.squeeze(images, bits)))  # fmt: skip


def privacy_row(clip, world_seed: int = 0, n: int = 1000) -> dict:
    """Membership AUC of the similarity attack on training pairs against fresh pairs.

    ``before``: the course model's own training pairs; there is no remedy to apply when the
    attack is at chance, so ``after`` repeats it on a model that never saw them (the base rate).
    """
    from clipcourse.privacy import membership_auc

    world = ShapesWorld(seed=world_seed)
    members = world.split("train", n=n)  # the first n training images (train splits are prefix-stable)
    fresh = world.split("val", n=n)
    auc = membership_auc(clip, (members.float_images(), members.texts(0)), (fresh.float_images(), fresh.texts(0)))
    other = ShapesWorld(seed=world_seed + 1).split("train", n=n)
    base = membership_auc(clip, (other.float_images(), other.texts(0)), (fresh.float_images(), fresh.texts(0)))
    return _row("privacy (membership)", "attack AUC (0.5 = no leak)", auc, base,
                "none needed at this scale; DP-SGD, deduplication at web scale")  # fmt: skip
