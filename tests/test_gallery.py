"""The cached Shapes-world gallery and its index (a toy encoder keeps it fast)."""

from __future__ import annotations

import warnings

import torch

from clipcourse.gallery import caption_index, gallery_index, shapes_gallery
from clipcourse.index import IndexConfig


class _PixelEncoder:
    fingerprint = "pixels-v1"

    def __init__(self) -> None:
        self.image_calls = 0

    def encode_image(self, images):
        self.image_calls += 1
        return images.float().mean(dim=(2, 3)) + torch.arange(3.0)

    def encode_text(self, texts):
        return torch.tensor([[len(t), t.count("a"), 1.0] for t in texts])


def test_gallery_embeddings_and_index_are_cached(tmp_path):
    enc = _PixelEncoder()
    g1 = shapes_gallery(enc, 120, batch_size=50, cache_dir=tmp_path)
    assert not g1.from_cache and enc.image_calls == 3 and g1.features.shape == (120, 3)
    g2 = shapes_gallery(enc, 120, batch_size=50, cache_dir=tmp_path)
    assert g2.from_cache and enc.image_calls == 3 and torch.equal(g1.features, g2.features)
    index = gallery_index(g2, IndexConfig("hnsw"), cache_dir=tmp_path)
    again = gallery_index(g2, IndexConfig("hnsw"), cache_dir=tmp_path)
    assert again.metadata == index.metadata == [{"caption": c} for c in g2.captions]
    # a corrupt embeddings file is re-encoded with a warning, not a crash
    (next((tmp_path / "search").glob("gallery-*.pt"))).write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g3 = shapes_gallery(enc, 120, batch_size=50, cache_dir=tmp_path)
    assert not g3.from_cache and any("re-encoding" in str(w.message) for w in caught)
    texts = caption_index(enc, g3)
    assert sorted(m["caption"] for m in texts.metadata) == sorted(set(g3.captions))
