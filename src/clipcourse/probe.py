"""Linear probes: how much a frozen encoder's features already know.

A linear probe fits a multinomial logistic regression on frozen features and
reports test accuracy. It is the standard way to compare self-supervised
encoders (SimCLR, CLIP): a representation is good if a *linear* classifier on
top of it does well. :func:`k_shot_indices` picks ``k`` training examples per
class for few-shot probes (chapter 3 compares them with zero-shot CLIP).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from clipcourse.encoding import as_float_images, encode_in_batches

__all__ = ["extract_features", "k_shot_indices", "k_shot_probe_curve", "linear_probe"]


@torch.no_grad()
def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run a frozen ``encoder`` over ``images`` in batches; returns float32 features on the CPU.

    ``images`` is ``[N, 3, H, W]``, uint8 or float in [0, 1]. The encoder is put
    in eval mode for the pass and restored afterwards, and no gradients are
    kept. Pass ``model.features`` instead of ``model`` to probe the
    representation before a projection head (SimCLR found it linearly richer).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a [N, 3, H, W] tensor, got {getattr(images, 'shape', type(images))}"
        )
    if len(images) == 0:
        raise ValueError("images is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device is None:
        params = getattr(encoder, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        device = first.device if first is not None else torch.device("cpu")
    was_training = getattr(encoder, "training", None)
    if was_training is not None:
        encoder.eval()
    try:
        return encode_in_batches(
            lambda batch: encoder(as_float_images(batch).to(device)).float().flatten(1).cpu(),
            images,
            batch_size,
        )
    finally:
        if was_training:
            encoder.train()


def _labels_array(labels: torch.Tensor | np.ndarray | list[int], name: str) -> np.ndarray:
    array = (
        labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    )
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one class index per example), got shape {array.shape}"
        )
    return array


def _features_array(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = (
        features.detach().cpu().numpy()
        if isinstance(features, torch.Tensor)
        else np.asarray(features)
    )
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D [N, D] array, got shape {array.shape}")
    return array.astype(np.float64)


def linear_probe(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray | list[int],
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray | list[int],
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Test accuracy (in [0, 1]) of a logistic regression fitted on frozen training features.

    Features are standardised (fitted on the training set only), so the
    regularisation strength ``C`` means the same for every encoder. Works with
    as few as one example per class (k-shot probes); needs at least two classes.
    """
    x_train, x_test = (
        _features_array(train_feats, "train_feats"),
        _features_array(test_feats, "test_feats"),
    )
    y_train, y_test = (
        _labels_array(train_labels, "train_labels"),
        _labels_array(test_labels, "test_labels"),
    )
    if len(x_train) != len(y_train):
        raise ValueError(f"train_feats has {len(x_train)} rows but train_labels has {len(y_train)}")
    if len(x_test) != len(y_test):
        raise ValueError(f"test_feats has {len(x_test)} rows but test_labels has {len(y_test)}")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train and test features differ in width: {x_train.shape[1]} vs {x_test.shape[1]}"
        )
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels must contain at least two classes")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # One BLAS thread: these problems are small, and on a busy 2-core machine thread
    # hand-offs made a one-second fit take twenty.
    with threadpool_limits(limits=1):
        classifier.fit(x_train, y_train)
        predictions = classifier.predict(x_test)
    return float((predictions == y_test).mean())


def k_shot_indices(
    labels: torch.Tensor | np.ndarray | list[int], k: int, seed: int = 0
) -> torch.Tensor:
    """Indices of ``k`` examples of every class present in ``labels``, drawn at random (sorted).

    Deterministic for a ``seed``. A class with fewer than ``k`` examples raises
    a ``ValueError``, since a k-shot comparison needs the same ``k`` everywhere.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    array = _labels_array(labels, "labels")
    if len(array) == 0:
        raise ValueError("labels is empty")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(array):
        members = np.flatnonzero(array == cls)
        if len(members) < k:
            raise ValueError(f"class {cls} has only {len(members)} examples, fewer than k={k}")
        chosen.append(rng.choice(members, size=k, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()


def k_shot_probe_curve(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Iterable[int] = (1, 2, 4, 8, 16),
    *,
    seeds: Iterable[int] = (0,),
    **probe_kwargs,
) -> dict[int, float]:
    """Top-1 of a linear probe trained on k labelled examples per class, for each k.

    Chapter 1's probe on frozen features, with :func:`k_shot_indices`; the
    accuracy for each k is averaged over ``seeds`` (different k-shot draws).
    """
    train_labels = torch.as_tensor(train_labels)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    curve: dict[int, float] = {}
    for k in ks:
        accs = []
        for seed in seeds:
            idx = torch.as_tensor(k_shot_indices(train_labels, k, seed))
            # 1-shot probes have as many classes as samples, which sklearn warns about; that is the point.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The number of unique classes is greater")
                accs.append(
                    linear_probe(
                        train_features[idx],
                        train_labels[idx],
                        test_features,
                        test_labels,
                        **probe_kwargs,
                    )
                )
        curve[int(k)] = float(np.mean(accs))
    return curve
