"""Chapter 3 (zero-shot classification): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch``, ``F`` (``torch.nn.functional``) and ``math`` are in scope. The visible checks
of ``solutions/ch03/ch03_exercises.ipynb`` carry these outputs on fixed inputs, so each
hint is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import answers

_w = answers("build_zero_shot_weights", "encode_text, classnames, templates")
_p = answers("zero_shot_probabilities", "image_features, class_weights, scale")
_k = answers("top_k_accuracy", "logits, labels, k=1")


_PER_CLASS = "embeddings = encode_text([t.format(name) for t in templates])"

WEIGHTS = [
    _w(
        "no_template_normalisation",
        "L2-normalise each template embedding before averaging",
        f"""
columns = []
for name in classnames:
    {_PER_CLASS}
    columns.append(F.normalize(embeddings.mean(dim=0), dim=0))
return torch.stack(columns, dim=1)
""",
    ),
    _w(
        "no_renormalisation",
        "normalise the averaged embedding again",
        f"""
columns = []
for name in classnames:
    {_PER_CLASS}
    columns.append(F.normalize(embeddings, dim=-1).mean(dim=0))
return torch.stack(columns, dim=1)
""",
    ),
    _w(
        "classes_by_features",
        "did you return [C, D]? transpose it",
        f"""
rows = []
for name in classnames:
    {_PER_CLASS}
    rows.append(F.normalize(F.normalize(embeddings, dim=-1).mean(dim=0), dim=0))
return torch.stack(rows)
""",
    ),
    _w(
        "first_template_only",
        "use every template, not only the first one",
        """
embeddings = encode_text([templates[0].format(name) for name in classnames])
return F.normalize(embeddings, dim=-1).T
""",
    ),
    _w(
        "normalise_across_templates",
        "normalise each embedding along the feature dimension (dim=-1), not across templates",
        f"""
columns = []
for name in classnames:
    {_PER_CLASS}
    columns.append(F.normalize(F.normalize(embeddings, dim=0).mean(dim=0), dim=0))
return torch.stack(columns, dim=1)
""",
    ),
    _w(
        "sum_not_mean",
        "a plain sum is T times too long",
        f"""
columns = []
for name in classnames:
    {_PER_CLASS}
    columns.append(F.normalize(embeddings, dim=-1).sum(dim=0))
return torch.stack(columns, dim=1)
""",
    ),
]

PROBABILITIES = [
    _p(
        "no_scale",
        "multiply the cosines by scale before the softmax",
        "return (F.normalize(image_features, dim=-1) @ class_weights).softmax(dim=-1)",
    ),
    _p(
        "no_image_normalisation",
        "L2-normalise the image features",
        "return (scale * image_features @ class_weights).softmax(dim=-1)",
    ),
    _p(
        "softmax_over_batch",
        "softmax over the classes (dim=-1), not over the images",
        "return (scale * F.normalize(image_features, dim=-1) @ class_weights).softmax(dim=0)",
    ),
    _p(
        "scale_exponentiated_again",
        "scale is already exponentiated: do not exp() it again",
        "return (math.exp(scale) * F.normalize(image_features, dim=-1) @ class_weights).softmax(dim=-1)",
    ),
    _p(
        "divide_by_scale",
        "multiply by scale, do not divide by it",
        "return (F.normalize(image_features, dim=-1) @ class_weights / scale).softmax(dim=-1)",
    ),
    _p(
        "normalise_weight_rows",
        "do not normalise their rows",
        """
image_features = F.normalize(image_features, dim=-1)
class_weights = F.normalize(class_weights, dim=-1)
return (scale * image_features @ class_weights).softmax(dim=-1)
""",
    ),
    _p(
        "logits_not_probabilities",
        "return probabilities: apply the softmax",
        "return scale * F.normalize(image_features, dim=-1) @ class_weights",
    ),
    _p(
        "log_softmax",
        "return probabilities, not log-probabilities",
        "return (scale * F.normalize(image_features, dim=-1) @ class_weights).log_softmax(dim=-1)",
    ),
]

TOP_K = [
    _k(
        "topk_over_images",
        "take the top k along the class dimension (dim=1)",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.topk(k, dim=0).indices.T
return (top == labels[:, None]).any(dim=1).float().mean().item()
""",
    ),
    _k(
        "off_by_one",
        "use exactly k predictions per row",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.topk(min(k + 1, logits.shape[1]), dim=1).indices
return (top == labels[:, None]).any(dim=1).float().mean().item()
""",
    ),
    _k(
        "count_not_fraction",
        "divide the number of hits by the number of rows",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.topk(k, dim=1).indices
return (top == labels[:, None]).any(dim=1).float().sum().item()
""",
    ),
    _k(
        "smallest_scores",
        "the top k are the largest scores, not the smallest",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.argsort(dim=1)[:, :k]
return (top == labels[:, None]).any(dim=1).float().mean().item()
""",
    ),
    _k(
        "only_rank_k",
        "anywhere in the top k, not only at rank k",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.topk(k, dim=1).indices
return (top[:, -1] == labels).float().mean().item()
""",
    ),
    _k(
        "no_value_error",
        "compare k with logits.shape[1] and raise a ValueError",
        """
top = logits.topk(k, dim=1).indices
return (top == labels[:, None]).any(dim=1).float().mean().item()
""",
    ),
    _k(
        "returns_tensor",
        "return a Python float",
        """
if k > logits.shape[1]:
    raise ValueError("k is larger than the number of classes")
top = logits.topk(k, dim=1).indices
return (top == labels[:, None]).any(dim=1).float().mean()
""",
    ),
]

MISTAKES = WEIGHTS + PROBABILITIES + TOP_K
