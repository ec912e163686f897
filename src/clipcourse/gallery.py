"""The Shapes-world gallery a search engine serves: images, captions, embeddings, indexes, cached.

Encoding 100,000 images takes over a minute on a laptop CPU, so the embeddings
are cached under the course cache folder (``$CLIPCOURSE_CACHE``, see
:func:`clipcourse.course_model.default_cache_dir`) in a file named by a hash of
the encoder's fingerprint and the gallery's configuration; built indexes are
cached the same way, keyed by the gallery and the index configuration. A
corrupt cache file is rebuilt with a warning, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clipcourse import __version__
from clipcourse.course_model import default_cache_dir
from clipcourse.encoding import encode_in_batches
from clipcourse.index import (
    IndexConfig,
    IndexFileError,
    IndexMismatchError,
    VectorIndex,
    faiss_threads,
)
from clipcourse.search import encoder_fingerprint

__all__ = ["Gallery", "caption_index", "gallery_index", "index_fingerprint", "shapes_gallery"]


@dataclass
class Gallery:
    """``images [N, 3, H, W]`` uint8, one caption per image, normalised ``features [N, D]``."""

    images: torch.Tensor
    captions: list[str]  #: the full description (caption 0) of each image
    all_captions: list[list[str]]  #: every caption of every image
    features: torch.Tensor
    key: str  #: hash of encoder fingerprint + configuration (names the cache files)
    fingerprint: str  #: the encoder's
    from_cache: bool

    def __len__(self) -> int:
        return len(self.captions)

    def metadata(self) -> list[dict[str, Any]]:
        """One JSON-able entry per image, aligned with the ids of an index over ``features``."""
        return [{"caption": c} for c in self.captions]


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cache_root(cache_dir: str | Path | None) -> Path:
    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "search"


def _save_tensor(path: Path, tensor: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    os.close(fd)
    torch.save({"features": tensor, "sha": hashlib.sha256(tensor.numpy().tobytes()).hexdigest()}, tmp)
    os.replace(tmp, path)


def _load_tensor(path: Path) -> torch.Tensor:
    blob = torch.load(path, weights_only=True)
    if hashlib.sha256(blob["features"].numpy().tobytes()).hexdigest() != blob["sha"]:
        raise ValueError("checksum mismatch")
    return blob["features"]


def shapes_gallery(
    encoder: Any, n: int = 10_000, *, seed: int = 0, image_size: int = 32, batch_size: int = 1000,
    cache_dir: str | Path | None = None,
) -> Gallery:
    """``n`` images of Shapes world's ``test`` split (all colour×shape combinations) with cached embeddings."""
    from clipcourse.data import ShapesWorld

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    fingerprint = encoder_fingerprint(encoder)
    key = _key({"encoder": fingerprint, "n": n, "seed": seed, "size": image_size, "split": "test", "v": __version__})
    split = ShapesWorld(seed=seed, image_size=image_size).split("test", n=n)
    path = _cache_root(cache_dir) / f"gallery-{key}.pt"
    features = None
    if path.exists():
        try:
            features = _load_tensor(path)
            if features.shape[0] != n:
                raise ValueError(f"{features.shape[0]} rows, expected {n}")
        except Exception as exc:  # corrupt or stale: rebuild
            warnings.warn(f"ignoring the cached gallery embeddings {path} ({exc}); re-encoding", stacklevel=2)
            features = None
    from_cache = features is not None
    if features is None:
        with torch.inference_mode():
            features = F.normalize(encode_in_batches(encoder.encode_image, split.images, batch_size).float().cpu(), dim=-1)
        try:
            _save_tensor(path, features)
        except OSError as exc:
            warnings.warn(f"could not cache the gallery embeddings in {path.parent} ({exc})", stacklevel=2)
    return Gallery(
        split.images, split.texts(0), [[c.text for c in caps] for caps in split.captions],
        features, key, fingerprint, from_cache,
    )


def index_fingerprint(gallery: Gallery, config: IndexConfig) -> str:
    """What an index over ``gallery`` with ``config`` is named by, and checked against when loaded."""
    return _key({"gallery": gallery.key, "index": config.to_dict()})


def gallery_index(
    gallery: Gallery, config: IndexConfig | None = None, *, cache_dir: str | Path | None = None, cache: bool = True,
) -> VectorIndex:
    """An index over the gallery's image embeddings (metadata: captions), loaded from the cache when there."""
    config = config or IndexConfig()
    fingerprint = index_fingerprint(gallery, config)
    path = _cache_root(cache_dir) / f"index-{fingerprint}"
    if cache and path.exists():
        try:
            return VectorIndex.load(path, fingerprint=fingerprint)
        except (IndexFileError, IndexMismatchError) as exc:
            warnings.warn(f"rebuilding the index in {path} ({exc})", stacklevel=2)
    index = VectorIndex(gallery.features.shape[1], config, fingerprint=fingerprint)
    with faiss_threads(torch.get_num_threads()):  # building is offline work: as many threads as torch uses
        index.train(gallery.features)
        index.add(gallery.features, gallery.metadata())
    if cache:
        try:
            index.save(path)
        except OSError as exc:
            warnings.warn(f"could not cache the index in {path.parent} ({exc})", stacklevel=2)
    return index


def caption_index(encoder: Any, gallery: Gallery, *, batch_size: int = 256) -> VectorIndex:
    """An exact index over the gallery's distinct full descriptions (caption 0 of each image), for image→text search."""
    texts = sorted(set(gallery.captions))
    with torch.inference_mode():
        features = encode_in_batches(encoder.encode_text, texts, batch_size).float().cpu()
    index = VectorIndex(features.shape[1], IndexConfig("flat"), fingerprint=gallery.fingerprint)
    index.add(features, [{"caption": t} for t in texts])
    return index
