"""Chapter 4 (distillation and compression): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``) and ``math`` are in scope. The visible checks
of ``solutions/ch04/ch04_exercises.ipynb`` carry these outputs on fixed inputs, so each
hint is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake


def _m(function: str, name: str, hint: str, body: str, args: str) -> Mistake:
    lines = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
    return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")


KD_ARGS = "student_logits, teacher_logits, labels=None, alpha=0.5, temperature=2.0"
CLIP_ARGS = "student_logits_per_image, teacher_logits_per_image, temperature=1.0"
FEATURE_ARGS = "student_features, teacher_features"

_KD_TAIL = """
if labels is None:
    return soft
return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)
"""


def _kd(name: str, hint: str, soft: str, tail: str = _KD_TAIL) -> Mistake:
    return _m("kd_loss", name, hint, soft.strip("\n") + "\n" + tail.strip("\n"), KD_ARGS)


_T = "T = temperature\nteacher_logits = teacher_logits.detach()\n"

KD = [
    _kd("kl_wrong_direction", "KL in the wrong direction",
        _T + "soft = T * T * F.kl_div(F.log_softmax(teacher_logits / T, 1), F.softmax(student_logits / T, 1), "
        "reduction='batchmean')"),
    _kd("softmax_for_student", "F.kl_div expects log-probabilities",
        _T + "soft = T * T * F.kl_div(F.softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')"),
    _kd("no_t_squared", "multiply the soft term by T",
        _T + "soft = F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')"),
    _kd("t_squared_on_hard", "only the soft term is multiplied by T",
        _T + "soft = F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')",
        """
if labels is None:
    return T * T * soft
return T * T * (alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels))
"""),
    _kd("temperature_student_only", "divide both the student and the teacher logits by T",
        _T + "soft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits, 1), "
        "reduction='batchmean')"),
    _kd("reduction_mean", "reduction=batchmean",
        _T + "soft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='mean')"),
    _kd("alpha_swapped", "alpha weights the soft (teacher) term",
        _T + "soft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')",
        """
if labels is None:
    return soft
return (1 - alpha) * soft + alpha * F.cross_entropy(student_logits, labels)
"""),
    _kd("alpha_without_labels", "without labels the loss is the soft term alone",
        _T + "soft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')",
        """
if labels is None:
    return alpha * soft
return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)
"""),
    _kd("hard_loss_softened", "the hard-label loss uses the raw student logits",
        _T + "soft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1), "
        "reduction='batchmean')",
        """
if labels is None:
    return soft
return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits / T, labels)
"""),
    _kd("teacher_not_detached", "detach the teacher",
        "T = temperature\nsoft = T * T * F.kl_div(F.log_softmax(student_logits / T, 1), "
        "F.softmax(teacher_logits / T, 1), reduction='batchmean')"),
]


def _affinity(student: str, teacher: str, reduction: str = "batchmean") -> str:
    return f"F.kl_div(F.log_softmax({student}, 1), F.softmax({teacher}, 1), reduction='{reduction}')"


_C = "T = temperature\ns, t = student_logits_per_image, teacher_logits_per_image.detach()\n"

CLIP = [
    _m("clip_distillation_loss", "one_direction", "only the image to text direction",
       _C + "return T * T * " + _affinity("s / T", "t / T"), CLIP_ARGS),
    _m("clip_distillation_loss", "kl_wrong_direction", "KL in the wrong direction",
       _C + "return T * T * (" + _affinity("t / T", "s / T") + " + " + _affinity("t.T / T", "s.T / T") + ") / 2",
       CLIP_ARGS),
    _m("clip_distillation_loss", "no_t_squared", "multiply by T",
       _C + "return (" + _affinity("s / T", "t / T") + " + " + _affinity("s.T / T", "t.T / T") + ") / 2",
       CLIP_ARGS),
    _m("clip_distillation_loss", "sum_of_directions", "average the two directions",
       _C + "return T * T * (" + _affinity("s / T", "t / T") + " + " + _affinity("s.T / T", "t.T / T") + ")",
       CLIP_ARGS),
    _m("clip_distillation_loss", "reduction_mean", "reduction=batchmean",
       _C + "return T * T * (" + _affinity("s / T", "t / T", "mean") + " + "
       + _affinity("s.T / T", "t.T / T", "mean") + ") / 2", CLIP_ARGS),
    _m("clip_distillation_loss", "temperature_student_only", "divide both the student and the teacher logits by T",
       _C + "return T * T * (" + _affinity("s / T", "t") + " + " + _affinity("s.T / T", "t.T") + ") / 2",
       CLIP_ARGS),
    _m("clip_distillation_loss", "hard_teacher_labels", "match the teacher's whole softmax",
       _C + "return T * T * (F.cross_entropy(s / T, t.argmax(1)) + F.cross_entropy(s.T / T, t.T.argmax(1))) / 2",
       CLIP_ARGS),
    _m("clip_distillation_loss", "teacher_not_detached", "detach the teacher",
       "T = temperature\ns, t = student_logits_per_image, teacher_logits_per_image\nreturn T * T * ("
       + _affinity("s / T", "t / T") + " + " + _affinity("s.T / T", "t.T / T") + ") / 2", CLIP_ARGS),
]

_N = "s = F.normalize(student_features, dim=-1)\nt = F.normalize(teacher_features.detach(), dim=-1)\n"

FEATURE = [
    _m("feature_distillation_loss", "not_normalised", "L2-normalise both",
       "t = teacher_features.detach()\nreturn ((student_features - t) ** 2).sum(dim=-1).mean()", FEATURE_ARGS),
    _m("feature_distillation_loss", "student_only_normalised", "normalise the teacher features too",
       "s = F.normalize(student_features, dim=-1)\nreturn ((s - teacher_features.detach()) ** 2).sum(dim=-1).mean()",
       FEATURE_ARGS),
    _m("feature_distillation_loss", "mse_over_elements", "sum the squares over the feature dimension",
       _N + "return F.mse_loss(s, t)", FEATURE_ARGS),
    _m("feature_distillation_loss", "one_minus_cosine", "the squared distance of unit vectors is 2 - 2 cos",
       _N + "return (1 - (s * t).sum(dim=-1)).mean()", FEATURE_ARGS),
    _m("feature_distillation_loss", "normalise_batch_dim", "normalise each row",
       "s = F.normalize(student_features, dim=0)\nt = F.normalize(teacher_features.detach(), dim=0)\n"
       "return ((s - t) ** 2).sum(dim=-1).mean()", FEATURE_ARGS),
    _m("feature_distillation_loss", "not_squared", "square the distance",
       _N + "return (s - t).norm(dim=-1).mean()", FEATURE_ARGS),
    _m("feature_distillation_loss", "sum_over_batch", "average over the batch",
       _N + "return ((s - t) ** 2).sum()", FEATURE_ARGS),
    _m("feature_distillation_loss", "teacher_not_detached", "detach the teacher",
       "s = F.normalize(student_features, dim=-1)\nt = F.normalize(teacher_features, dim=-1)\n"
       "return ((s - t) ** 2).sum(dim=-1).mean()", FEATURE_ARGS),
]

_CHECK = """if weight.dim() != 2:
    raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
"""


def _q(name: str, hint: str, body: str) -> Mistake:
    return _m("quantize_int8", name, hint, _CHECK + body, "weight")


QUANT = [
    _q("per_tensor_scale", "one scale per row",
       "scale = (weight.abs().max() / 127).expand(weight.shape[0], 1).clone()\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8), scale"),
    _q("truncation", "alone truncates toward zero",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 127\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(weight / scale, -127, 127).to(torch.int8), scale"),
    _q("range_128", "divide the largest magnitude by 127",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 128\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -128, 127).to(torch.int8), scale"),
    _q("zero_row_division", "an all-zero row",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 127\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8), scale"),
    _q("per_column_scale", "per output row",
       "scale = weight.abs().amax(dim=0, keepdim=True) / 127\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8), scale.T.contiguous()"),
    _q("unsigned_range", "symmetric int8 uses 127",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 255\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8), scale"),
    _q("floor", "with torch.round, not floor",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 127\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.floor(weight / scale), -127, 127).to(torch.int8), scale"),
    _q("not_int8", "store q as torch.int8",
       "scale = weight.abs().amax(dim=1, keepdim=True) / 127\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127), scale"),
    _q("max_not_abs", "the largest magnitude, abs()",
       "scale = weight.amax(dim=1, keepdim=True) / 127\n"
       "scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
       "return torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8), scale"),
]
# The catalogue's own ValueError check is part of every wrong quantiser above, so the error is not what they miss.
QUANT.append(Mistake(
    function="quantize_int8", name="no_shape_check", hint="raise a ValueError naming the shape",
    code="def quantize_int8(weight):\n"
         "    w = weight.reshape(weight.shape[0], -1) if weight.dim() > 2 else weight.reshape(1, -1)\n"
         "    scale = w.abs().amax(dim=1, keepdim=True) / 127\n"
         "    scale = torch.where(scale == 0, torch.ones_like(scale), scale)\n"
         "    return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale\n",
))

MISTAKES = KD + CLIP + FEATURE + QUANT
