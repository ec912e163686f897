"""The course's trained MiniCLIP: trained once on Shapes world, then loaded from a local cache.

``mini_clip()`` is what later chapters call. The first call trains the model
(about a minute on a laptop CPU) and saves it under ``$CLIPCOURSE_CACHE``
(default ``~/.cache/clipcourse``) in a folder named by a hash of everything
that determines the weights: the model config, the training config, the
tokenizer's vocabulary and the library version. Later calls load it.

Nothing here ever crashes a lesson because of the cache: a corrupt, truncated
or stale cache entry is detected (checksum and metadata) and retrained with a
warning, and a cache folder that cannot be written is skipped with a warning
(the model is then trained in memory and not saved).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from clipcourse import __version__
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.text import load_tokenizer, shapes_tokenizer, tokenize
from clipcourse.train import History, TrainConfig, load_checkpoint, save_checkpoint, train_clip

__all__ = [
    "PretrainedMiniCLIP",
    "cache_key",
    "default_cache_dir",
    "load_or_train",
    "mini_clip",
    "train_shapes_clip",
    "training_data",
]

_MODEL_FILE = "model.pt"
_META_FILE = "meta.json"
_TOKENIZER_DIR = "tokenizer"


@dataclass
class PretrainedMiniCLIP:
    """A trained MiniCLIP with everything needed to use it."""

    model: MiniCLIP  #: in eval mode
    tokenizer: PreTrainedTokenizerFast
    history: History  #: per-step loss, logit scale and learning rate of its training
    config: MiniCLIPConfig
    train_config: TrainConfig
    world_seed: int  #: ShapesWorld(seed=world_seed) it was trained on
    from_cache: bool  #: True when loaded rather than trained by this call
    path: Path | None = None  #: its cache folder (None when trained in memory only)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised text features ``[M, D]`` (the ``encode_text`` callable chapter 3 expects)."""
        device = next(self.model.parameters()).device
        enc = tokenize(texts, context_length=self.config.context_length, tokenizer=self.tokenizer)
        return self.model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device))

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features ``[N, D]``; uint8 images are scaled to [0, 1]."""
        if images.dtype == torch.uint8:
            images = images.float() / 255
        device = next(self.model.parameters()).device
        return self.model.encode_image(images.to(device))


def default_cache_dir() -> Path:
    """``$CLIPCOURSE_CACHE`` if set, else ``~/.cache/clipcourse``."""
    env = os.environ.get("CLIPCOURSE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clipcourse"


def _vocab_digest(tokenizer: PreTrainedTokenizerFast) -> str:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def cache_key(config: MiniCLIPConfig, train_config: TrainConfig, tokenizer: PreTrainedTokenizerFast) -> str:
    """Hash of everything that determines the trained weights (and the library version)."""
    payload = {
        "model": config.to_dict(),
        "train": train_config.to_dict(),
        "vocab": _vocab_digest(tokenizer),
        "version": __version__,
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def training_data(
    config: MiniCLIPConfig, train_config: TrainConfig, tokenizer: PreTrainedTokenizerFast
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapes world's train split, ready for :func:`~clipcourse.train.train_clip`.

    Returns float images ``[N, 3, H, W]``, token ids and attention masks ``[N, K, T]``
    for the K captions of every image (a seeded share ending with a full stop), and
    ``colour_free`` ``[N, K]``: which captions name no colour (for grey images).
    """
    from clipcourse.data import ShapesWorld

    world = ShapesWorld(seed=train_config.world_seed, image_size=config.image_size)
    split = world.split("train", n=train_config.n_train)
    k = len(split.captions[0])
    texts = [c.text for caps in split.captions for c in caps]
    generator = torch.Generator().manual_seed(train_config.seed)
    stops = (torch.rand(len(texts), generator=generator) < train_config.full_stop_p).tolist()
    texts = [t + "." if stop else t for t, stop in zip(texts, stops)]
    enc = tokenize(texts, context_length=config.context_length, tokenizer=tokenizer)
    input_ids = enc["input_ids"].view(len(split), k, -1)
    attention_mask = enc["attention_mask"].view(len(split), k, -1)
    colour_free = torch.tensor([["colour" not in c.mentioned for c in caps] for caps in split.captions])
    return split.float_images(), input_ids, attention_mask, colour_free


def train_shapes_clip(
    config: MiniCLIPConfig, train_config: TrainConfig, tokenizer: PreTrainedTokenizerFast,
    *, progress: bool = True, device: torch.device | str | None = None,
) -> tuple[MiniCLIP, History]:
    """Train a fresh MiniCLIP on Shapes world's train split (seeded: the same weights on every CPU run)."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but config.vocab_size={config.vocab_size}")
    images, input_ids, attention_mask, colour_free = training_data(config, train_config, tokenizer)
    torch.manual_seed(train_config.seed)
    model = MiniCLIP(config)
    history = train_clip(
        model, images, input_ids, attention_mask, train_config,
        colour_free=colour_free, device=device, progress=progress,
    )
    return model.cpu().eval(), history


def _load(folder: Path, key: str) -> tuple[MiniCLIP, History, PreTrainedTokenizerFast]:
    """Load a cache entry, raising on anything suspicious (the caller retrains)."""
    meta = json.loads((folder / _META_FILE).read_text())
    if meta.get("key") != key or meta.get("version") != __version__:
        raise ValueError(f"stale cache entry (key {meta.get('key')}, version {meta.get('version')})")
    if _sha256(folder / _MODEL_FILE) != meta.get("sha256"):
        raise ValueError("checksum mismatch: the weights file is corrupt or was modified")
    model, history, _ = load_checkpoint(folder / _MODEL_FILE)
    tokenizer = load_tokenizer(folder / _TOKENIZER_DIR)
    if history is None:
        raise ValueError("the checkpoint has no training history")
    return model, history, tokenizer


def _save(folder: Path, key: str, model: MiniCLIP, history: History, tokenizer, train_config) -> None:
    """Write to a temporary folder, then rename: readers never see a half-written entry."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        save_checkpoint(tmp / _MODEL_FILE, model, history)
        tokenizer.save_pretrained(str(tmp / _TOKENIZER_DIR))
        meta = {
            "key": key,
            "version": __version__,
            "sha256": _sha256(tmp / _MODEL_FILE),
            "config": model.config.to_dict(),
            "train_config": train_config.to_dict(),
        }
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process just wrote the same entry: keep theirs
            if not (folder / _META_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def mini_clip(
    config: MiniCLIPConfig | None = None,
    *,
    train_config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> PretrainedMiniCLIP:
    """The MiniCLIP trained on Shapes world: loaded from the cache, or trained and cached.

    ``retrain=True`` ignores (and replaces) the cache entry. The model is
    returned on the CPU in eval mode; move it with ``.model.to(device)``.
    ``device`` only chooses where a (re)training runs.
    """
    config = config or MiniCLIPConfig()
    train_config = train_config or TrainConfig()
    tokenizer = shapes_tokenizer()
    key = cache_key(config, train_config, tokenizer)
    model, history, tokenizer, from_cache, folder = load_or_train(
        "mini_clip", key,
        lambda: train_shapes_clip(config, train_config, tokenizer, progress=progress, device=device),
        tokenizer, train_config, cache_dir=cache_dir, retrain=retrain,
    )  # fmt: skip
    return PretrainedMiniCLIP(
        model, tokenizer, history, config, train_config, train_config.world_seed, from_cache, folder
    )


def load_or_train(
    prefix: str,
    key: str,
    train: Callable[[], tuple[MiniCLIP, History]],
    tokenizer: PreTrainedTokenizerFast,
    train_config,
    *,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
) -> tuple[MiniCLIP, History, PreTrainedTokenizerFast, bool, Path | None]:
    """Load the cache entry ``<prefix>-<key>``, or call ``train()`` and cache what it returns.

    The cache helper every trained course model goes through (chapter 7's fine-tuned
    models too): ``key`` must hash everything that determines the weights;
    ``train_config`` (anything with ``to_dict()``) is recorded in the entry's metadata.
    Returns ``(model, history, tokenizer, from_cache, folder)``; ``folder`` is None when
    the cache could not be written (the model is then kept in memory only).
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / f"{prefix}-{key}"
    if not retrain and folder.exists():
        try:
            model, history, cached_tokenizer = _load(folder, key)
            return model, history, cached_tokenizer, True, folder
        except Exception as exc:  # corrupt, truncated, stale, unpicklable: never crash a lesson
            warnings.warn(f"ignoring the cached model in {folder} ({exc}); retraining it", stacklevel=3)

    model, history = train()
    try:
        _save(folder, key, model, history, tokenizer, train_config)
        saved: Path | None = folder
    except OSError as exc:
        warnings.warn(
            f"could not write the model cache in {root} ({exc}); the trained model is kept in memory only. "
            "Set CLIPCOURSE_CACHE to a writable folder to train it once for all chapters.",
            stacklevel=3,
        )
        saved = None
    return model, history, tokenizer, False, saved
