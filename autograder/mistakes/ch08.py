"""Chapter 8 (training on many workers): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``) and ``math`` are in scope. The visible checks of
``solutions/ch08/ch08_exercises.ipynb`` carry these outputs on fixed inputs, so each hint
is printed when its mistake is made; the hidden tests (two real gloo workers among them)
fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake

_LOSS_ARGS = "local_image_features, local_text_features, all_image_features, all_text_features, logit_scale, rank"

#: The contract's input checks, shared by every loss mistake but one (so each mistake fails for its own reason).
_VALIDATE = """
n = local_image_features.shape[0]
if all_image_features.shape[0] % n or all_text_features.shape[0] % n:
    raise ValueError("the gathered rows are not a multiple of the local batch")
world = all_image_features.shape[0] // n
if not 0 <= rank < world:
    raise ValueError("rank out of range")
"""

_BODY = """
scale = logit_scale.exp().clamp(max=100)
labels = torch.arange(n, device=local_image_features.device) + n * rank
image_to_text = F.cross_entropy(scale * local_image_features @ all_text_features.T, labels)
text_to_image = F.cross_entropy(scale * local_text_features @ all_image_features.T, labels)
return (image_to_text + text_to_image) / 2
"""


def _m(function: str, name: str, hint: str, body: str, args: str) -> Mistake:
    lines = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
    return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")


def _loss(name: str, hint: str, body: str, validate: bool = True) -> Mistake:
    return _m("gathered_clip_loss", name, hint, (_VALIDATE if validate else "") + body, _LOSS_ARGS)


def _multiplier(name: str, hint: str, body: str) -> Mistake:
    return _m("ddp_loss_multiplier", name, hint, body, "world_size, local_loss, gather_with_grad")


LOSS = [
    _loss("no_rank_offset", "targets are arange(n) + n * rank",
          _BODY.replace("labels = torch.arange(n, device=local_image_features.device) + n * rank",
                        "labels = torch.arange(n, device=local_image_features.device)")),
    _loss("offset_times_world", "the offset is n * rank", _BODY.replace("+ n * rank", "+ world * rank")),
    _loss("local_by_local", "contrast the local rows with all gathered rows", """
scale = logit_scale.exp().clamp(max=100)
labels = torch.arange(n, device=local_image_features.device)
image_to_text = F.cross_entropy(scale * local_image_features @ local_text_features.T, labels)
text_to_image = F.cross_entropy(scale * local_text_features @ local_image_features.T, labels)
return (image_to_text + text_to_image) / 2
"""),
    _loss("image_to_text_only", "add the text to image direction", """
scale = logit_scale.exp().clamp(max=100)
labels = torch.arange(n, device=local_image_features.device) + n * rank
return F.cross_entropy(scale * local_image_features @ all_text_features.T, labels)
"""),
    _loss("scale_not_exponentiated", "logit_scale holds the log of the scale",
          _BODY.replace("logit_scale.exp().clamp(max=100)", "logit_scale.clamp(max=100)")),
    _loss("scale_not_clamped", "clamp the scale at 100", _BODY.replace("logit_scale.exp().clamp(max=100)", "logit_scale.exp()")),
    _loss("sum_of_directions", "average the two directions", _BODY.replace("(image_to_text + text_to_image) / 2",
                                                                          "image_to_text + text_to_image")),
    _loss("no_validation", "raise a ValueError", "n = local_image_features.shape[0]\n" + _BODY, validate=False),
]

MULTIPLIER = [
    _multiplier("always_one", "without gradients through the gather, each rank", """
if world_size < 1:
    raise ValueError("world_size must be at least 1")
return 1.0
"""),
    _multiplier("global_with_grad_divided", "the gather already sends back", """
if world_size < 1:
    raise ValueError("world_size must be at least 1")
if world_size == 1:
    return 1.0
if not local_loss:
    return 1.0 / world_size if gather_with_grad else float(world_size)
if not gather_with_grad:
    raise ValueError("no constant fixes the local loss without gradients through the gather")
return 1.0
"""),
    _multiplier("inverted", "multiply by W, do not divide", """
if world_size < 1:
    raise ValueError("world_size must be at least 1")
if world_size == 1:
    return 1.0
if not gather_with_grad:
    if local_loss:
        raise ValueError("no constant fixes the local loss without gradients through the gather")
    return 1.0 / world_size
return 1.0
"""),
    _multiplier("local_no_grad_constant", "no constant makes the local loss without gradients", """
if world_size < 1:
    raise ValueError("world_size must be at least 1")
return 1.0 if gather_with_grad else float(world_size)
"""),
    _multiplier("one_worker_raises", "with one worker nothing is gathered", """
if world_size < 1:
    raise ValueError("world_size must be at least 1")
if not gather_with_grad:
    if local_loss:
        raise ValueError("no constant fixes the local loss without gradients through the gather")
    return float(world_size)
return 1.0
"""),
    _multiplier("no_world_size_check", "a world size below 1", """
if world_size == 1 or gather_with_grad:
    return 1.0
if local_loss:
    raise ValueError("no constant fixes the local loss without gradients through the gather")
return float(world_size)
"""),
]

MISTAKES = LOSS + MULTIPLIER
