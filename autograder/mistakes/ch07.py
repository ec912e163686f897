"""Chapter 7 (when CLIP fails): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``), ``math`` and ``re`` are in scope. The visible
checks of ``solutions/ch07/ch07_exercises.ipynb`` carry these outputs on fixed inputs, so
each hint is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake


def _m(function: str, name: str, hint: str, body: str, args: str) -> Mistake:
    lines = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
    return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")


def _swap(name: str, hint: str, body: str) -> Mistake:
    return _m("swap_colours", name, hint, body, "caption, colours")


def _neg(name: str, hint: str, body: str) -> Mistake:
    return _m("negclip_loss", name, hint, body, "image_features, text_features, hard_negative_features, logit_scale")


def _acc(name: str, hint: str, body: str) -> Mistake:
    return _m("per_class_accuracy", name, hint, body, "predictions, labels, num_classes")


SWAP = [
    _swap(
        "swap_every_occurrence",
        "not every occurrence",
        """
found = [w for w in re.findall(r"\\w+", caption) if w in colours]
if len(found) < 2:
    raise ValueError("need two colours")
a, b = found[0], found[1]
return re.sub(r"\\b(%s|%s)\\b" % (a, b), lambda m: b if m.group() == a else a, caption)
""",
    ),
    _swap(
        "split_and_join",
        "splitting and joining on spaces loses double spaces",
        """
words = caption.split()
idx = [i for i, w in enumerate(words) if w.strip(",.!?") in colours]
if len(idx) < 2:
    raise ValueError("need two colours")
i, j = idx[0], idx[1]
a, b = words[i].strip(",.!?"), words[j].strip(",.!?")
words[i], words[j] = words[i].replace(a, b), words[j].replace(b, a)
return " ".join(words)
""",
    ),
    _swap(
        "substrings",
        "not substrings",
        """
hits = sorted((caption.find(c), c) for c in colours if c in caption)
if len(hits) < 2:
    raise ValueError("need two colours")
(i, a), (j, b) = hits[0], hits[1]
return caption[:i] + b + caption[i + len(a) : j] + a + caption[j + len(b) :]
""",
    ),
    _swap(
        "order_of_colours",
        "not in the order of colours",
        """
present = [c for c in colours if re.search(r"\\b%s\\b" % c, caption)]
if len(present) < 2:
    raise ValueError("need two colours")
a, b = present[0], present[1]
return re.sub(r"\\b(%s|%s)\\b" % (a, b), lambda m: b if m.group() == a else a, caption, count=2)
""",
    ),
    _swap(
        "swap_shapes",
        "not the shape words",
        """
words = re.findall(r"\\w+", caption)
hits = [m for m in re.finditer(r"\\w+", caption) if m.group() in colours]
if len(hits) < 2:
    raise ValueError("need two colours")
spans = []
for m in hits[:2]:
    nxt = re.compile(r"\\w+").search(caption, m.end())
    spans.append(nxt)
a, b = spans
return caption[: a.start()] + b.group() + caption[a.end() : b.start()] + a.group() + caption[b.end() :]
""",
    ),
    _swap(
        "lower_case",
        "do not lower-case the caption",
        """
caption = caption.lower()
hits = [m for m in re.finditer(r"\\w+", caption) if m.group() in colours]
if len(hits) < 2:
    raise ValueError("need two colours")
a, b = hits[0], hits[1]
return caption[: a.start()] + b.group() + caption[a.end() : b.start()] + a.group() + caption[b.end() :]
""",
    ),
    _swap(
        "no_error",
        "raise ValueError",
        """
hits = [m for m in re.finditer(r"\\w+", caption) if m.group() in colours]
if len(hits) < 2:
    return caption
a, b = hits[0], hits[1]
return caption[: a.start()] + b.group() + caption[a.end() : b.start()] + a.group() + caption[b.end() :]
""",
    ),
]

_NORM = """
images = F.normalize(image_features, dim=-1)
texts = F.normalize(text_features, dim=-1)
negatives = F.normalize(hard_negative_features, dim=-1)
scale = logit_scale.exp().clamp(max=100)
labels = torch.arange(images.shape[0], device=images.device)
"""

NEG = [
    _neg(
        "negatives_in_both_directions",
        "do not add the hard negatives to that direction",
        _NORM
        + """
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * torch.cat([texts, negatives]) @ images.T
both = torch.cat([labels, labels])
return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, both)) / 2
""",
    ),
    _neg(
        "negatives_as_targets",
        "not its hard negative",
        _NORM
        + """
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * texts @ images.T
return (F.cross_entropy(image_to_text, labels + images.shape[0]) + F.cross_entropy(text_to_image, labels)) / 2
""",
    ),
    _neg(
        "no_normalisation",
        "L2-normalise all three",
        """
images, texts, negatives = image_features, text_features, hard_negative_features
scale = logit_scale.exp().clamp(max=100)
labels = torch.arange(images.shape[0], device=images.device)
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * texts @ images.T
return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2
""",
    ),
    _neg(
        "no_exp",
        "multiply by logit_scale.exp()",
        _NORM
        + """
scale = logit_scale.clamp(max=100)
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * texts @ images.T
return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2
""",
    ),
    _neg(
        "no_clamp",
        "clamp the scale at 100",
        _NORM
        + """
scale = logit_scale.exp()
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * texts @ images.T
return (F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)) / 2
""",
    ),
    _neg(
        "image_to_text_only",
        "add the text to image direction",
        _NORM
        + """
image_to_text = scale * images @ torch.cat([texts, negatives]).T
return F.cross_entropy(image_to_text, labels)
""",
    ),
    _neg(
        "sum_not_mean",
        "divide their sum by 2",
        _NORM
        + """
image_to_text = scale * images @ torch.cat([texts, negatives]).T
text_to_image = scale * texts @ images.T
return F.cross_entropy(image_to_text, labels) + F.cross_entropy(text_to_image, labels)
""",
    ),
    _neg(
        "negatives_instead_of_batch",
        "added to them, not instead of them",
        _NORM
        + """
pair = torch.stack([(images * texts).sum(-1), (images * negatives).sum(-1)], dim=1)
text_to_image = scale * texts @ images.T
return (F.cross_entropy(scale * pair, torch.zeros_like(labels)) + F.cross_entropy(text_to_image, labels)) / 2
""",
    ),
]

ACC = [
    _acc(
        "overall_accuracy",
        "that is the overall accuracy in every entry",
        """
if int(predictions.min()) < 0 or int(predictions.max()) >= num_classes or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
return torch.full((num_classes,), (predictions == labels).float().mean().item())
""",
    ),
    _acc(
        "zero_for_empty",
        "return NaN there, not 0",
        """
if int(predictions.min()) < 0 or int(predictions.max()) >= num_classes or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
total = torch.bincount(labels, minlength=num_classes).float()
correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
return correct / total.clamp(min=1)
""",
    ),
    _acc(
        "precision",
        "that is precision",
        """
if int(predictions.min()) < 0 or int(predictions.max()) >= num_classes or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
total = torch.bincount(predictions, minlength=num_classes).float()
correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
return torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, float("nan")))
""",
    ),
    _acc(
        "divide_by_n",
        "not by all N examples",
        """
if int(predictions.min()) < 0 or int(predictions.max()) >= num_classes or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
return correct / len(labels)
""",
    ),
    _acc(
        "integer_division",
        "integer division turns 1/3 into 0",
        """
if int(predictions.min()) < 0 or int(predictions.max()) >= num_classes or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
total = torch.bincount(labels, minlength=num_classes)
correct = torch.bincount(labels[predictions == labels], minlength=num_classes)
return correct // total.clamp(min=1)
""",
    ),
    _acc(
        "no_range_check",
        "any value below 0 or at least num_classes is an error",
        """
total = torch.bincount(labels, minlength=num_classes).float()[:num_classes]
correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()[:num_classes]
return torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, float("nan")))
""",
    ),
    _acc(
        "labels_only_checked",
        "check predictions and labels",
        """
if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
    raise ValueError("out of range")
total = torch.bincount(labels, minlength=num_classes).float()
correct = torch.bincount(labels[predictions == labels], minlength=num_classes).float()
return torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, float("nan")))
""",
    ),
]

MISTAKES = SWAP + NEG + ACC
