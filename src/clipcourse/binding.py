"""Teaching MiniCLIP to bind colours to shapes: hard-negative fine-tuning and its measurements.

Chapter 3 found the chapter-2 model at chance on two-object scenes: it prefers
"a red circle and a blue square" over "a blue circle and a red square" about half
the time. Two things are missing from its training: it never saw two-object
scenes, and no batch ever asked it to reject a caption with the same words in a
different binding. :func:`fine_tune_binding` fixes both by fine-tuning the cached
model on a mix of single-object images and two-object scenes with NegCLIP's loss
(:mod:`clipcourse.hard_negatives`), reusing the chapter-2 loop through its
``batch_loss`` hook. Models are cached by configuration like ``mini_clip()``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from clipcourse import __version__
from clipcourse.hard_negatives import hard_negative_tokens, negclip_batch_loss
from clipcourse.models import MiniCLIP
from clipcourse.pretrained import PretrainedMiniCLIP, _vocab_digest, load_or_train, mini_clip
from clipcourse.text import tokenize
from clipcourse.train import History, TrainConfig, train_clip

__all__ = [
    "BindingConfig",
    "binding_accuracy",
    "binding_training_data",
    "fine_tune_binding",
    "unseen_top1",
]


@dataclass(frozen=True)
class BindingConfig:
    """How the chapter-2 model is fine-tuned for binding; part of the cache key."""

    steps: int = 800
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 20
    n_single: int = 1000  #: single-object training images (seen combinations)
    n_scenes: int = 3000  #: two-object training scenes (seen combinations)
    hard_negatives: bool = True  #: False: the same data and steps with CLIP's loss (the control)
    grayscale_p: float = 0.5  #: as in chapter 2, keeps shape features colour-blind
    seed: int = 0
    world_seed: int = 0
    num_threads: int = 2
    from_scratch: bool = False  #: True: train a fresh MiniCLIP (same architecture) instead of fine-tuning
    eval_every: int = 50  #: record binding on 200 held-out scenes every this many steps (0: never)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_single < 0 or self.n_scenes < 0 or self.n_single + self.n_scenes < self.batch_size:
            raise ValueError(
                f"need n_single + n_scenes >= batch_size, got {self.n_single} + {self.n_scenes} < {self.batch_size}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            seed=self.seed, world_seed=self.world_seed, n_train=self.n_single + self.n_scenes,
            num_threads=self.num_threads, grayscale_p=self.grayscale_p, full_stop_p=0.0,
        )  # fmt: skip


def binding_training_data(base: PretrainedMiniCLIP, config: BindingConfig):
    """Images ``[N, 3, H, W]``, token ids/masks ``[N, K, T]``, colour-free flags ``[N, K]`` and texts.

    The first ``n_single`` images are single objects (the chapter-2 train split), the rest
    two-object scenes with their five captions; all use seen combinations only.
    """
    from clipcourse.data import ShapesWorld

    world = ShapesWorld(seed=config.world_seed, image_size=base.config.image_size)
    parts = []
    if config.n_single:
        parts.append(world.split("train", n=config.n_single))
    if config.n_scenes:
        parts.append(world.scene_split(config.n_scenes, n_objects=2))
    images = torch.cat([p.float_images() for p in parts])
    texts = [[c.text for c in caps] for p in parts for caps in p.captions]
    free = torch.tensor([["colour" not in c.mentioned for c in caps] for p in parts for caps in p.captions])
    enc = tokenize([t for caps in texts for t in caps], context_length=base.config.context_length, tokenizer=base.tokenizer)
    n, k = len(texts), len(texts[0])
    return images, enc["input_ids"].view(n, k, -1), enc["attention_mask"].view(n, k, -1), free, texts


def _key(base: PretrainedMiniCLIP, config: BindingConfig) -> str:
    payload = {
        "base": base.path.name if base.path is not None else base.config.hash(),
        "binding": config.to_dict(),
        "vocab": _vocab_digest(base.tokenizer),
        "version": __version__,
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _probe_scenes(base: PretrainedMiniCLIP, n: int = 200):
    """Held-out scenes (seed offset 2: neither the training scenes nor the test scenes) for the curve."""
    from clipcourse.data import ShapesWorld

    scenes = ShapesWorld(seed=0).scene_split(n, n_objects=2, seed_offset=2)
    pairs = [([o.colour for o in objs], [o.shape for o in objs]) for objs in scenes.attributes]
    return scenes.float_images(), pairs


@torch.no_grad()
def _binding_of(model, base: PretrainedMiniCLIP, probe) -> float:
    from clipcourse.zeroshot import attribute_binding_accuracy

    images, pairs = probe
    device = next(model.parameters()).device
    wrapped = PretrainedMiniCLIP(model, base.tokenizer, base.history, base.config, base.train_config, 0, False)
    features = model.encode_image(images.to(device)).float().cpu()
    return attribute_binding_accuracy(features, lambda t: wrapped.encode_text(t).cpu(), pairs)["true_wins"]


def _evaluating(hook, curve: list, base: PretrainedMiniCLIP, every: int):
    """Wrap a batch-loss hook (None: CLIP's loss) so binding is recorded every ``every`` steps."""
    from clipcourse.clip import clip_loss

    if not every:
        return hook
    probe = _probe_scenes(base)

    def loss(model, images, input_ids, attention_mask, image_index, caption_index):
        if len(curve) * every <= curve_step[0]:
            curve.append([curve_step[0], _binding_of(model, base, probe)])
        curve_step[0] += 1
        if hook is not None:
            return hook(model, images, input_ids, attention_mask, image_index, caption_index)
        return clip_loss(model(images, input_ids, attention_mask)[0].float())

    curve_step = [0]
    return loss


def fine_tune_binding(
    config: BindingConfig | None = None,
    base: PretrainedMiniCLIP | None = None,
    *,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> PretrainedMiniCLIP:
    """The chapter-2 model fine-tuned on single objects + two-object scenes, cached by configuration.

    With ``config.hard_negatives`` every training caption brings its :func:`hard_negative`
    (colours swapped between the two objects of a scene, or one attribute replaced) into
    the image→text softmax via :func:`negclip_loss`; without it the same data is trained
    with CLIP's loss, which isolates what the negatives add. ``history.train_s`` is the
    fine-tuning time (recorded when it was trained).
    """
    config = config or BindingConfig()
    base = base or mini_clip(progress=progress, cache_dir=cache_dir)

    def train() -> tuple[torch.nn.Module, History]:
        images, ids, mask, free, texts = binding_training_data(base, config)
        hook = None
        if config.hard_negatives:
            hook = negclip_batch_loss(*hard_negative_tokens(texts, base.tokenizer, base.config.context_length, config.seed))
        if config.from_scratch:
            torch.manual_seed(config.seed)
            model = MiniCLIP(base.config)
        else:
            model = copy.deepcopy(base.model)
        curve: list[list[float]] = []
        history = train_clip(
            model, images, ids, mask, config.train_config(), colour_free=free,
            device=device, progress=progress, batch_loss=_evaluating(hook, curve, base, config.eval_every),
        )  # fmt: skip
        model.cpu().eval()
        if config.eval_every:
            curve.append([config.steps, _binding_of(model, base, _probe_scenes(base))])
            history.metrics["binding"] = curve
        return model, history

    prefix = "binding" if config.hard_negatives else "scenes"
    model, history, tokenizer, from_cache, folder = load_or_train(
        prefix, _key(base, config), train, base.tokenizer, config, cache_dir=cache_dir, retrain=retrain
    )
    return PretrainedMiniCLIP(model, tokenizer, history, base.config, base.train_config, config.world_seed, from_cache, folder)


def binding_accuracy(clip, n: int = 500, seed_offset: int = 1, world_seed: int = 0, combos: str = "seen") -> float:
    """Share of held-out two-object scenes whose true caption beats the colour-swapped one.

    ``seed_offset=1`` draws scenes never used in training (training uses offset 0); any
    model with ``encode_image``/``encode_text`` works.
    """
    from clipcourse.data import ShapesWorld
    from clipcourse.encoding import encode_in_batches
    from clipcourse.zeroshot import attribute_binding_accuracy

    scenes = ShapesWorld(seed=world_seed).scene_split(n, n_objects=2, seed_offset=seed_offset, combos=combos)
    pairs = [([o.colour for o in objs], [o.shape for o in objs]) for objs in scenes.attributes]
    features = encode_in_batches(clip.encode_image, scenes.float_images(), 256)
    return attribute_binding_accuracy(features, clip.encode_text, pairs)["true_wins"]


def unseen_top1(clip, world_seed: int = 0, template: str = "a photo of a {}.") -> float:
    """Zero-shot top-1 on the held-out colour×shape combinations, among all 30 classes (chapter 3)."""
    from clipcourse import zeroshot
    from clipcourse.data import ALL_CLASSES, ShapesWorld, class_name
    from clipcourse.encoding import encode_in_batches

    unseen = ShapesWorld(seed=world_seed).split("test_unseen")
    features = encode_in_batches(clip.encode_image, unseen.float_images(), 256)
    weights = zeroshot.build_zero_shot_weights(clip.encode_text, [class_name(c, s) for c, s in ALL_CLASSES], [template])
    return zeroshot.top_k_accuracy(zeroshot.zero_shot_logits(features, weights, 1.0), unseen.labels(), k=1)
