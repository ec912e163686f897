"""Knowledge distillation for CLIP: the three losses, a small student, and its trainer.

* :func:`kd_loss` -- Hinton et al. (2015): match the teacher's temperature-softened
  class distribution, ``T² · KL(p_teacher ‖ p_student)``, mixed with the hard-label
  cross-entropy. The ``T²`` keeps the soft term's gradients the same size whatever
  the temperature (they shrink as ``1/T²`` otherwise).
* :func:`clip_distillation_loss` -- TinyCLIP's affinity mimicking: the student's
  image→text and text→image softmaxes over the batch match the teacher's.
* :func:`feature_distillation_loss` -- CLIP-KD's feature distillation, its strongest
  single loss: L2-normalised student embeddings regress onto the teacher's.

:func:`student_config` gives a MiniCLIP with at most a quarter of the teacher's
parameters, :func:`inherit_weights` copies the teacher's weights into it where the
shapes allow (TinyCLIP's weight inheritance), and :func:`train_distilled` trains it
with chapter 2's loop (:func:`clipcourse.train.train_clip`), the teacher's
embeddings of every training image and caption computed once before the first step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from clipcourse.clip import clip_logits, clip_loss
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.train import Batch, History, TrainConfig, train_clip

__all__ = [
    "DistillConfig",
    "TeacherTargets",
    "clip_distillation_loss",
    "distill_model",
    "distilled_student",
    "feature_distillation_loss",
    "inherit_weights",
    "kd_loss",
    "lesson_student",
    "student_config",
    "teacher_targets",
    "train_distilled",
]


def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
        raise ValueError(f"student and teacher {what} must be tensors")
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher {what} have different shapes: {tuple(student.shape)} vs {tuple(teacher.shape)}"
        )
    if student.dim() != 2:
        raise ValueError(f"{what} must be 2-D [batch, classes], got shape {tuple(student.shape)}")


def _soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over the rows (batchmean)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    # The teacher is a fixed target: no gradient flows into it (it is frozen, or another model).
    log_p_teacher = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature**2 * kl


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Hinton's distillation loss: ``[B, C]`` logits (+ ``[B]`` labels) -> scalar.

    ``alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − alpha) · CE(student, labels)``,
    the KL averaged over the batch; without ``labels``, the soft term alone, ``T² · KL``.
    The teacher's logits are a fixed target: they are detached, no gradient reaches them.
    """
    _check_pair(student_logits, teacher_logits, "logits")
    _check_temperature(temperature)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft = _soft_kl(student_logits, teacher_logits, temperature)
    if labels is None:
        return soft
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must be [B] = [{student_logits.shape[0]}], got {tuple(labels.shape)}")
    n_classes = student_logits.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from {int(labels.min())} to {int(labels.max())}")
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


def clip_distillation_loss(
    student_logits_per_image: torch.Tensor, teacher_logits_per_image: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """TinyCLIP's affinity mimicking: ``[B, B]`` student and teacher logits -> scalar.

    The mean over the two directions (rows: image→text; rows of the transposes:
    text→image) of ``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, batch-averaged.
    """
    _check_pair(student_logits_per_image, teacher_logits_per_image, "logits_per_image")
    _check_temperature(temperature)
    image_to_text = _soft_kl(student_logits_per_image, teacher_logits_per_image, temperature)
    text_to_image = _soft_kl(student_logits_per_image.t(), teacher_logits_per_image.t(), temperature)
    return (image_to_text + text_to_image) / 2


def feature_distillation_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """CLIP-KD's feature distillation: ``[B, D]`` and ``[B, D]`` -> scalar.

    The batch mean of ``‖ s/‖s‖ − t/‖t‖ ‖²`` (which equals ``2 − 2 cos(s, t)``): only the
    direction of an embedding matters to CLIP, so only the direction is matched.
    """
    _check_pair(student_features, teacher_features, "features")
    student = F.normalize(student_features, dim=-1)
    teacher = F.normalize(teacher_features.detach().to(student.dtype), dim=-1)
    return (student - teacher).pow(2).sum(dim=-1).mean()


# ---------------------------------------------------------------------------------------------
# The student and its initialisation
# ---------------------------------------------------------------------------------------------


def student_config(teacher: MiniCLIPConfig | None = None, *, image_width: int = 8, text_width: int = 32,
                   text_layers: int = 1, text_heads: int = 2) -> MiniCLIPConfig:
    """The teacher's config with narrower encoders (same embedding size, so features can be distilled).

    The default (SmallCNN width 8, one 32-wide transformer layer) has about 42k parameters
    against the chapter-2 teacher's 189k: 22 %.
    """
    teacher = teacher or MiniCLIPConfig()
    return replace(teacher, image_width=image_width, text_width=text_width, text_layers=text_layers,
                   text_heads=text_heads)


@torch.no_grad()
def inherit_weights(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy the teacher's weights into the student where the shapes allow; returns the names copied.

    A tensor of the same name and shape is copied whole; one with the same number of
    dimensions but smaller sizes gets the teacher's leading slice (the first channels,
    rows and columns), TinyCLIP's "manual inheritance" with the simplest choice of what
    to keep. Layers the teacher has and the student lacks are dropped (the student keeps
    the first ones). ``logit_scale`` is copied too.
    """
    teacher_state = teacher.state_dict()
    copied = []
    for name, tensor in student.state_dict().items():
        source = teacher_state.get(name)
        if source is None or source.dim() != tensor.dim():
            continue
        if any(s < t for s, t in zip(source.shape, tensor.shape)):
            continue
        tensor.copy_(source[tuple(slice(0, n) for n in tensor.shape)])
        copied.append(name)
    return copied


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillConfig:
    """Weights of the loss terms a student is trained with (all part of its cache key).

    ``clip`` weights the ordinary CLIP loss on the pairs (the "hard labels"),
    ``affinity`` :func:`clip_distillation_loss`, ``feature`` :func:`feature_distillation_loss`
    on both the image and the text embeddings. All zero but ``clip``: training from scratch.
    """

    clip: float = 1.0
    affinity: float = 1.0
    feature: float = 1.0
    temperature: float = 1.0
    inherit: bool = False  #: start from the teacher's weights where shapes allow

    def __post_init__(self) -> None:
        for name in ("clip", "affinity", "feature"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")
        _check_temperature(self.temperature)
        if self.clip + self.affinity + self.feature == 0:
            raise ValueError("every loss weight is 0: nothing to train")

    @property
    def uses_teacher(self) -> bool:
        return self.affinity > 0 or self.feature > 0 or self.inherit

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TeacherTargets:
    """The teacher's normalised embeddings of every training image (colour and grey) and caption."""

    image: torch.Tensor  #: ``[N, D]``
    grey_image: torch.Tensor  #: ``[N, D]``
    text: torch.Tensor  #: ``[N, K, D]``
    scale: float  #: the teacher's logit scale (the multiplier, not its log)


@torch.no_grad()
def teacher_targets(teacher: MiniCLIP, images: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor, batch_size: int = 1000) -> TeacherTargets:
    """Encode the training set with the teacher once (eval mode, no gradients, on the CPU)."""
    teacher = teacher.eval()
    device = next(teacher.parameters()).device
    n, k, t = input_ids.shape

    def encode(fn, *tensors):
        out = [fn(*(x[i : i + batch_size].to(device) for x in tensors)) for i in range(0, len(tensors[0]), batch_size)]
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()

    grey = images.mean(1, keepdim=True).expand_as(images)
    # Shapes-world captions repeat a lot: encode each distinct (ids, mask) row once.
    rows = torch.cat([input_ids.reshape(n * k, t), attention_mask.reshape(n * k, t)], dim=1)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    text = encode(teacher.encode_text, unique[:, :t], unique[:, t:])[inverse]
    return TeacherTargets(
        image=encode(teacher.encode_image, images),
        grey_image=encode(teacher.encode_image, grey),
        text=text.view(n, k, -1),
        scale=float(teacher.logit_scale.detach().exp().clamp(max=100)),
    )


def distillation_batch_loss(targets: TeacherTargets, weights: DistillConfig):
    """The ``loss_fn`` for :func:`~clipcourse.train.train_clip`: CLIP loss plus the teacher's terms."""

    def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
        image_features = model.encode_image(batch.images).float()
        text_features = model.encode_text(batch.input_ids, batch.attention_mask).float()
        logits, _ = clip_logits(image_features, text_features, model.logit_scale.float())
        loss = weights.clip * clip_loss(logits) if weights.clip else logits.new_zeros(())
        device = logits.device
        teacher_image = targets.image[batch.index]
        if batch.grey is not None:
            teacher_image = torch.where(batch.grey[:, None], targets.grey_image[batch.index], teacher_image)
        teacher_image = teacher_image.to(device)
        teacher_text = targets.text[batch.index, batch.caption].to(device)
        if weights.affinity:
            teacher_logits = targets.scale * teacher_image @ teacher_text.t()
            loss = loss + weights.affinity * clip_distillation_loss(logits, teacher_logits, weights.temperature)
        if weights.feature:
            features = feature_distillation_loss(image_features, teacher_image)
            features = features + feature_distillation_loss(text_features, teacher_text)
            loss = loss + weights.feature * features / 2
        return loss

    return loss_fn


def train_distilled(
    student: MiniCLIP,
    teacher: MiniCLIP | None,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    train_config: TrainConfig,
    weights: DistillConfig,
    *,
    colour_free: torch.Tensor | None = None,
    targets: TeacherTargets | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    evaluate=None,
    eval_every: int = 0,
) -> History:
    """Train ``student`` in place with chapter 2's loop and ``weights``' mix of losses.

    ``teacher`` may be None only when ``weights`` does not use it (training from scratch).
    ``targets`` (from :func:`teacher_targets`) lets several students share one encoding of
    the training set; otherwise it is computed here once, before the first step.
    ``History.train_s`` is the loop's time only; the teacher's encoding is not in it.
    ``evaluate``/``eval_every`` are passed to :func:`~clipcourse.train.train_clip`.
    """
    if weights.uses_teacher and teacher is None:
        raise ValueError("these loss weights use the teacher, but teacher is None")
    if teacher is not None and teacher.config.embed_dim != student.config.embed_dim:
        raise ValueError(
            f"feature distillation needs equal embedding sizes: teacher {teacher.config.embed_dim}, "
            f"student {student.config.embed_dim}"
        )
    if weights.inherit:
        inherit_weights(student, teacher)
    if not (weights.affinity or weights.feature):
        return train_clip(student, images, input_ids, attention_mask, train_config, colour_free=colour_free,
                          device=device, progress=progress, desc="training the student",
                          evaluate=evaluate, eval_every=eval_every)
    if targets is None:
        targets = teacher_targets(teacher, images, input_ids, attention_mask)
    return train_clip(
        student, images, input_ids, attention_mask, train_config, colour_free=colour_free, device=device,
        progress=progress, loss_fn=distillation_batch_loss(targets, weights), desc="distilling the student",
        evaluate=evaluate, eval_every=eval_every,
    )


_TARGETS_MEMO: dict[tuple, TeacherTargets] = {}
_DATA_MEMO: dict[tuple, tuple] = {}  # training_data(...) per (student config, data recipe): students share it


def distill_model(student: MiniCLIP, teacher, train_config: TrainConfig, weights: DistillConfig, *,
                  progress: bool = True, eval_every: int = 0) -> History:
    """Train an existing ``student`` (fresh, inherited or pruned) from ``teacher`` on Shapes world's train split.

    ``teacher`` is a :class:`~clipcourse.course_model.TrainedMiniCLIP` (its tokenizer is used).
    The teacher's embeddings of the training set are computed once per process and
    shared by every student trained on the same data. ``eval_every > 0`` records the
    unseen zero-shot top-1 every so many steps in ``history.evals``.
    """
    from clipcourse.course_model import training_data

    data_key = (student.config.hash(), train_config.world_seed, train_config.n_train, train_config.seed,
                train_config.full_stop_p)
    if data_key not in _DATA_MEMO:
        _DATA_MEMO.clear()  # keep one entry: a few MB of images, not one copy per seed
        _DATA_MEMO[data_key] = training_data(student.config, train_config, teacher.tokenizer)
    images, ids, mask, colour_free = _DATA_MEMO[data_key]
    targets = None
    if weights.affinity or weights.feature:
        memo = (str(teacher.path), id(teacher.model), train_config.world_seed, train_config.n_train,
                train_config.seed, train_config.full_stop_p)
        if memo not in _TARGETS_MEMO:
            _TARGETS_MEMO[memo] = teacher_targets(teacher.model, images, ids, mask)
        targets = _TARGETS_MEMO[memo]
    evaluate = None
    if eval_every:
        from clipcourse.model_report import unseen_evaluator

        evaluate = unseen_evaluator(teacher.tokenizer, world_seed=train_config.world_seed)
    history = train_distilled(student, teacher.model if weights.uses_teacher else None, images, ids, mask,
                              train_config, weights, colour_free=colour_free, targets=targets,
                              progress=progress, evaluate=evaluate, eval_every=eval_every)
    student.cpu().eval()
    return history


def distilled_student(
    weights: DistillConfig,
    train_config: TrainConfig,
    config: MiniCLIPConfig | None = None,
    *,
    teacher=None,
    cache_dir=None,
    retrain: bool = False,
    progress: bool = True,
    eval_every: int = 0,
):
    """A fresh student trained with ``weights`` (from scratch when they use no teacher), cached by its recipe.

    Returns a :class:`~clipcourse.course_model.TrainedMiniCLIP`. ``teacher`` defaults to
    the chapter-2 model (:func:`~clipcourse.course_model.mini_clip`); its cache folder name
    is part of the key, so a retrained teacher gives new students. See :func:`distill_model`.
    """
    from clipcourse.course_model import cached_model, mini_clip

    teacher = teacher or mini_clip(progress=progress)
    config = config or student_config(teacher.config)
    uses_teacher = weights.uses_teacher
    extra = {"distill": weights.to_dict(), "teacher": teacher.path.name if (uses_teacher and teacher.path) else None,
             "eval_every": eval_every}

    def train(tokenizer):
        torch.manual_seed(train_config.seed)
        student = MiniCLIP(config)
        history = distill_model(student, teacher, train_config, weights, progress=progress, eval_every=eval_every)
        return student, history

    name = "student-distilled" if uses_teacher else "student-scratch"
    return cached_model(name, config, train_config, train, extra=extra, cache_dir=cache_dir, retrain=retrain)


def lesson_student(teacher=None, *, steps: int = 100, seed: int = 0, progress: bool = False):
    """The distilled student of chapter 4's lesson (inherited weights, every loss), from the cache.

    Chapter 6 plugs it into the search engine beside its teacher; the recipe is the
    lesson's, so after the chapter 4 lesson has run this only loads it.
    """
    train_config = TrainConfig(steps=steps, warmup_steps=steps // 10, seed=seed)
    return distilled_student(DistillConfig(inherit=True), train_config, teacher=teacher, eval_every=20, progress=progress)
