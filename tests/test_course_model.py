"""mini_clip(): train once, cache, reload; recover from corrupt or stale caches; unwritable caches."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

from clipcourse import course_model
from clipcourse.course_model import cache_key, default_cache_dir, mini_clip
from clipcourse.models import MiniCLIPConfig
from clipcourse.text import shapes_tokenizer
from clipcourse.train import TrainConfig

CFG = MiniCLIPConfig.tiny()
TRAIN = TrainConfig(steps=2, batch_size=8, n_train=16, warmup_steps=1, num_threads=1, grayscale_p=0.5)


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture()
def trained(tmp_path):
    first = mini_clip(CFG, train_config=TRAIN, cache_dir=tmp_path, progress=False)
    return first, tmp_path


def test_trains_then_loads_from_cache(trained):
    first, cache = trained
    assert not first.from_cache and first.path is not None and first.path.parent == cache
    assert len(first.history) == TRAIN.steps and not first.model.training
    second = mini_clip(CFG, train_config=TRAIN, cache_dir=cache, progress=False)
    assert second.from_cache and second.history == first.history and _same_weights(first.model, second.model)
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()
    assert second.config == CFG and second.world_seed == TRAIN.world_seed
    assert second.encode_text(["a red circle"]).shape == (1, CFG.embed_dim)
    assert second.encode_image(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, CFG.embed_dim)


def test_training_is_deterministic_and_retrain_replaces(trained):
    first, cache = trained
    again = mini_clip(CFG, train_config=TRAIN, cache_dir=cache, retrain=True, progress=False)
    assert not again.from_cache and _same_weights(first.model, again.model)


def test_key_depends_on_both_configs_and_version(monkeypatch):
    tok = shapes_tokenizer()
    key = cache_key(CFG, TRAIN, tok)
    assert key == cache_key(CFG, TRAIN, tok)
    assert key != cache_key(MiniCLIPConfig(), TRAIN, tok)
    assert key != cache_key(CFG, TrainConfig(steps=3), tok)
    monkeypatch.setattr(course_model, "__version__", "999")
    assert key != cache_key(CFG, TRAIN, tok)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip_byte", "delete_meta", "bad_meta", "wrong_key",
                                    "delete_tokenizer"])
def test_corrupt_cache_is_retrained_with_a_warning(trained, damage):
    first, cache = trained
    folder = first.path
    weights = folder / "model.pt"
    if damage == "garbage":
        weights.write_bytes(b"\x80\x04not a pickle")
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip_byte":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "delete_meta":
        (folder / "meta.json").unlink()
    elif damage == "bad_meta":
        (folder / "meta.json").write_text("{not json")
    elif damage == "wrong_key":
        meta = json.loads((folder / "meta.json").read_text())
        meta["key"] = "0" * 16
        (folder / "meta.json").write_text(json.dumps(meta))
    elif damage == "delete_tokenizer":
        for f in (folder / "tokenizer").iterdir():
            f.unlink()
    with pytest.warns(UserWarning, match="retraining"):
        again = mini_clip(CFG, train_config=TRAIN, cache_dir=cache, progress=False)
    assert not again.from_cache and _same_weights(first.model, again.model)
    # ... and the repaired entry loads cleanly next time.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mini_clip(CFG, train_config=TRAIN, cache_dir=cache, progress=False).from_cache


def test_pickled_code_is_never_executed(trained):
    """weights_only=True: a checkpoint that smuggles a callable is refused, then retrained."""
    first, cache = trained
    import hashlib

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {}, "config": CFG.to_dict(), "evil": Evil()}, first.path / "model.pt")
    meta = json.loads((first.path / "meta.json").read_text())
    meta["sha256"] = hashlib.sha256((first.path / "model.pt").read_bytes()).hexdigest()  # checksum passes
    (first.path / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="retraining"):
        assert not mini_clip(CFG, train_config=TRAIN, cache_dir=cache, progress=False).from_cache


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache_trains_in_memory_with_a_warning(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.warns(UserWarning, match="in memory"):
            result = mini_clip(CFG, train_config=TRAIN, cache_dir=locked / "cache", progress=False)
        assert result.path is None and not result.from_cache
    finally:
        locked.chmod(0o700)


def test_cache_path_that_is_a_file_trains_in_memory_with_a_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="in memory"):
        result = mini_clip(CFG, train_config=TRAIN, cache_dir=blocker, progress=False)
    assert result.path is None and len(result.history) == TRAIN.steps


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPCOURSE_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CLIPCOURSE_CACHE")
    assert default_cache_dir().name == "clipcourse"


def test_vocab_larger_than_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        mini_clip(MiniCLIPConfig.tiny(vocab_size=50),
                  train_config=TRAIN, cache_dir=tmp_path, progress=False)


def test_training_data_full_stops_and_colour_free_captions():
    from clipcourse.course_model import training_data
    from clipcourse.data import ShapesWorld

    tok = shapes_tokenizer()
    period = tok.convert_tokens_to_ids(".")
    for p, want in [(0.0, 0), (1.0, 1)]:
        images, ids, mask, free = training_data(CFG, TrainConfig(n_train=12, full_stop_p=p), tok)
        assert images.shape == (12, 3, 32, 32) and images.dtype == torch.float32
        assert ids.shape[:2] == mask.shape[:2] == free.shape == (12, 5)
        last = ids.gather(2, (mask.sum(2, keepdim=True) - 2)).squeeze(2)  # the token before [SEP]
        assert ((last == period).float().mean() == want), p
    split = ShapesWorld(seed=0).split("train", n=12)
    assert free.tolist() == [["colour" not in c.mentioned for c in caps] for caps in split.captions]
    _, ids_half, _, _ = training_data(CFG, TrainConfig(n_train=12, full_stop_p=0.5), tok)
    _, again, _, _ = training_data(CFG, TrainConfig(n_train=12, full_stop_p=0.5), tok)
    assert torch.equal(ids_half, again)  # seeded
