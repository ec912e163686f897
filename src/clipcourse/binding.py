"""Attribute binding: does a model know which colour goes with which shape? (chapters 3 and 7)

"a red circle and a blue square" and "a blue circle and a red square" hold the
same words; a text encoder that only counts words cannot tell them apart
(Yuksekgonul et al. 2023, "When and why vision-language models behave like
bags-of-words"). :func:`attribute_binding_accuracy` scores each image against its
true caption and the colour-swapped twin; chapter 3 finds the chapter-2 model at
chance.

Two things are missing from that model's training: it never saw two-object
scenes, and no batch ever asked it to reject a caption with the same words in a
different binding. :func:`fine_tune_binding` (chapter 7) fixes both by fine-tuning
it on a mix of single-object images and two-object scenes with NegCLIP's loss
(:mod:`clipcourse.hard_negatives`), through the chapter-2 loop's ``loss_fn`` hook,
cached by configuration like ``mini_clip()``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clipcourse.course_model import TrainedMiniCLIP, cached_model, mini_clip
from clipcourse.encoding import encode_in_batches, encode_normalized
from clipcourse.hard_negatives import hard_negative_tokens, negclip_batch_loss
from clipcourse.models import MiniCLIP
from clipcourse.text import EncodeText, tokenize
from clipcourse.train import History, TrainConfig, train_clip

__all__ = [
    "BindingConfig",
    "attribute_binding_accuracy",
    "binding_accuracy",
    "binding_curve",
    "binding_training_data",
    "fine_tune_binding",
    "swapped_caption",
    "unseen_top1",
]


def swapped_caption(colours: Sequence[str], shapes: Sequence[str]) -> tuple[str, str]:
    """("a red circle and a blue square", "a blue circle and a red square") for two objects.

    The swapped caption has exactly the same words, so a bag-of-words model
    cannot tell them apart; only a model that binds colour to shape can.
    """
    if len(colours) != 2 or len(shapes) != 2:
        raise ValueError(f"need two colours and two shapes, got {list(colours)} and {list(shapes)}")
    if colours[0] == colours[1] or shapes[0] == shapes[1]:
        raise ValueError(
            f"swapping needs two different colours and two different shapes, got {colours}, {shapes}"
        )
    true = f"a {colours[0]} {shapes[0]} and a {colours[1]} {shapes[1]}"
    swapped = f"a {colours[1]} {shapes[0]} and a {colours[0]} {shapes[1]}"
    return true, swapped


@torch.no_grad()
def attribute_binding_accuracy(
    image_features: torch.Tensor,
    encode_text: EncodeText,
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    batch_size: int = 256,
) -> dict[str, float]:
    """How often the true two-object caption beats its colour-swapped twin.

    ``pairs[i]`` = (colours, shapes) of image i's two objects. Returns the win
    rate (0.5 is chance: a bag of words), the tie rate, the mean cosine margin
    and every image's margin (cosine with the true caption minus the swapped one).
    """
    if len(pairs) != image_features.shape[0]:
        raise ValueError(
            f"{len(pairs)} (colours, shapes) pairs for {image_features.shape[0]} images"
        )
    if len(pairs) == 0:
        raise ValueError("no images to test")
    true, swapped = zip(*(swapped_caption(c, s) for c, s in pairs), strict=True)
    t = encode_normalized(encode_text, list(true), batch_size)
    s = encode_normalized(encode_text, list(swapped), batch_size)
    if t.shape[1] != image_features.shape[1]:
        raise ValueError(
            f"text features have D={t.shape[1]} but image features D={image_features.shape[1]}"
        )
    img = F.normalize(image_features.float(), dim=-1)
    margin = (img * t).sum(-1) - (img * s).sum(-1)
    return {
        "true_wins": float((margin > 0).float().mean()),
        "ties": float((margin == 0).float().mean()),
        "mean_margin": float(margin.mean()),
        "n": len(pairs),
        "margins": margin.tolist(),
    }


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


def binding_training_data(base: TrainedMiniCLIP, config: BindingConfig):
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


def _probe_scenes(base: TrainedMiniCLIP, n: int = 200):
    """Held-out scenes (seed offset 2: neither the training scenes nor the test scenes) for the curve."""
    from clipcourse.data import ShapesWorld

    scenes = ShapesWorld(seed=0).scene_split(n, n_objects=2, seed_offset=2)
    pairs = [([o.colour for o in objs], [o.shape for o in objs]) for objs in scenes.attributes]
    return scenes.float_images(), pairs


@torch.no_grad()
def _binding_of(model, base: TrainedMiniCLIP, probe) -> float:
    images, pairs = probe
    device = next(model.parameters()).device
    wrapped = TrainedMiniCLIP(model, base.tokenizer, base.history, base.config, base.train_config, 0, False)
    features = model.encode_image(images.to(device)).float().cpu()
    return attribute_binding_accuracy(features, lambda t: wrapped.encode_text(t).cpu(), pairs)["true_wins"]


def binding_curve(history: History) -> list[list[float]]:
    """``[[step, binding], ...]`` recorded while :func:`fine_tune_binding` trained (step 0: before)."""
    return [[row["step"], row["binding"]] for row in history.evals if "binding" in row]


def fine_tune_binding(
    config: BindingConfig | None = None,
    base: TrainedMiniCLIP | None = None,
    *,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> TrainedMiniCLIP:
    """The chapter-2 model fine-tuned on single objects + two-object scenes, cached by configuration.

    With ``config.hard_negatives`` every training caption brings its :func:`hard_negative`
    (colours swapped between the two objects of a scene, or one attribute replaced) into
    the image→text softmax via :func:`negclip_loss`; without it the same data is trained
    with CLIP's loss, which isolates what the negatives add. ``history.train_s`` is the
    fine-tuning time (recorded when it was trained).
    """
    config = config or BindingConfig()
    base = base or mini_clip(progress=progress, cache_dir=cache_dir)

    def train(tokenizer) -> tuple[torch.nn.Module, History]:
        images, ids, mask, free, texts = binding_training_data(base, config)
        hook = None
        if config.hard_negatives:
            hook = negclip_batch_loss(*hard_negative_tokens(texts, base.tokenizer, base.config.context_length, config.seed))
        if config.from_scratch:
            torch.manual_seed(config.seed)
            model = MiniCLIP(base.config)
        else:
            model = copy.deepcopy(base.model)
        probe = _probe_scenes(base) if config.eval_every else None
        before = _binding_of(model, base, probe) if probe is not None else None
        history = train_clip(
            model, images, ids, mask, config.train_config(), colour_free=free, device=device,
            progress=progress, loss_fn=hook, desc="fine-tuning for binding",
            evaluate=(lambda m: {"binding": _binding_of(m, base, probe)}) if probe is not None else None,
            eval_every=config.eval_every,
        )  # fmt: skip
        if before is not None:
            history.evals.insert(0, {"step": 0, "binding": before})
        return model.cpu().eval(), history

    base_id = base.path.name if base.path is not None else base.config.hash()
    return cached_model(
        "binding" if config.hard_negatives else "scenes", base.config, config.train_config(), train,
        extra={"base": base_id, "binding": config.to_dict()}, cache_dir=cache_dir, retrain=retrain,
    )


def binding_accuracy(clip, n: int = 500, seed_offset: int = 1, world_seed: int = 0, combos: str = "seen") -> float:
    """Share of held-out two-object scenes whose true caption beats the colour-swapped one.

    ``seed_offset=1`` draws scenes never used in training (training uses offset 0); any
    model with ``encode_image``/``encode_text`` works.
    """
    from clipcourse.data import ShapesWorld

    scenes = ShapesWorld(seed=world_seed).scene_split(n, n_objects=2, seed_offset=seed_offset, combos=combos)
    pairs = [([o.colour for o in objs], [o.shape for o in objs]) for objs in scenes.attributes]
    features = encode_in_batches(clip.encode_image, scenes.float_images(), 256)
    return attribute_binding_accuracy(features, clip.encode_text, pairs)["true_wins"]


def unseen_top1(clip, world_seed: int = 0, template: str = "a photo of a {}.") -> float:
    """Zero-shot top-1 on the held-out colour×shape combinations, among all 30 classes (chapter 3)."""
    from clipcourse import zeroshot
    from clipcourse.data import ALL_CLASSES, ShapesWorld, class_name
    from clipcourse.metrics import top_k_accuracy

    unseen = ShapesWorld(seed=world_seed).split("test_unseen")
    features = encode_in_batches(clip.encode_image, unseen.float_images(), 256)
    weights = zeroshot.build_zero_shot_weights(clip.encode_text, [class_name(c, s) for c, s in ALL_CLASSES], [template])
    return top_k_accuracy(zeroshot.zero_shot_logits(features, weights, 1.0), unseen.labels(), k=1)
