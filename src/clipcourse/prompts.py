"""Prompt templates: the families as data, filling them, and choosing among them.

A zero-shot classifier (:mod:`clipcourse.zeroshot`) is only as good as the
sentences it embeds. This module holds the templates ("a photo of a {}."),
grouped into families the way open_clip keeps its ``zero_shot_metadata``
apart from the classifier, fills their slots, and measures which family
or single template classifies best (chapter 3).

Everything here takes ``encode_text: Callable[[list[str]], Tensor]`` rather
than a model, so it works with the course's mini CLIP, a pretrained CLIP from
``transformers`` and the stand-in encoders of :mod:`clipcourse.text`.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from clipcourse.encoding import encode_normalized
from clipcourse.text import EncodeText, cached_text_encoder

__all__ = [
    "CONTRASTS",
    "ENSEMBLE_FAMILIES",
    "PHOTO_TEMPLATES",
    "TEMPLATE_FAMILIES",
    "TemplateTable",
    "check_classnames",
    "check_templates",
    "evaluate_templates",
    "fill_template",
    "nearest_other_class",
    "select_templates",
    "template_slots",
]

#: Prompt-template families, as data. Each family is a list of templates; a family's
#: classifier averages its templates in embedding space. Shapes-world class names are
#: "red circle", "blue square", ..., so "in the wild" becomes "on a plain background".
TEMPLATE_FAMILIES: dict[str, list[str]] = {
    "bare": ["{}"],
    "basic": ["a photo of a {}."],
    "detail": ["a close-up photo of a {}."],
    "context": ["a {} on a plain background."],
    "style": ["a painting of a {}.", "a drawing of a {}."],
    "domain": ["a synthetic image of a {}.", "a rendered {} shape."],
    "task": ["is this a {}? yes or no."],
    "contrastive": ["a photo of a {}, not a {}."],
}

#: The families pooled into the "ensemble" family (every single-slot template above).
ENSEMBLE_FAMILIES: tuple[str, ...] = (
    "bare",
    "basic",
    "detail",
    "context",
    "style",
    "domain",
    "task",
)
TEMPLATE_FAMILIES["ensemble"] = [t for f in ENSEMBLE_FAMILIES for t in TEMPLATE_FAMILIES[f]]

#: The 18 CIFAR-10 templates of CLIP's evaluation (as in open_clip's ``zero_shot_metadata``),
#: for the optional pretrained-CLIP path on real photos.
PHOTO_TEMPLATES: list[str] = [
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
]

#: How the second slot of a two-slot (contrastive) template is filled:
#: "nearest" -- the other class whose bare name embeds closest to this class's name
#: (the one most easily confused, as in "a wolf, not a husky");
#: "all" -- every other class, each filled prompt normalised and averaged.
CONTRASTS = ("nearest", "all")


def template_slots(template: str) -> int:
    """Number of ``{}`` slots in ``template`` (1, or 2 for contrastive templates).

    Raises ``ValueError`` for a template with no slot, more than two, or a named or
    numbered field such as ``{label}`` (we fill slots positionally).
    """
    if not isinstance(template, str):
        raise ValueError(
            f"a template must be a string, got {type(template).__name__}: {template!r}"
        )
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"template {template!r} is not a valid format string: {exc}") from None
    if any(f != "" for f in fields):
        raise ValueError(f"template {template!r} has a named field; use bare '{{}}' slots")
    if not fields:
        raise ValueError(f"template {template!r} has no '{{}}' slot for the class name")
    if len(fields) > 2:
        raise ValueError(
            f"template {template!r} has {len(fields)} slots; at most 2 (class, other class)"
        )
    return len(fields)


def fill_template(template: str, classname: str, other: str | None = None) -> str:
    """``template`` with the class name (and for two-slot templates, the other class) filled in."""
    slots = template_slots(template)
    if slots == 2:
        if other is None:
            raise ValueError(f"template {template!r} has two slots: pass the other class name")
        return template.format(classname, other)
    return template.format(classname)


def check_classnames(classnames: Sequence[str]) -> list[str]:
    """``classnames`` as a list; ``ValueError`` for a string, an empty list, a blank or a repeated name."""
    if isinstance(classnames, str):
        raise ValueError(f"classnames must be a list of names, got the string {classnames!r}")
    names = list(classnames)
    if not names:
        raise ValueError("classnames is empty: a classifier needs at least one class")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"every class name must be a non-empty string, got {name!r}")
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})
    if dupes:
        raise ValueError(f"duplicate class names {dupes}: each class needs a distinct name")
    return names


def check_templates(templates: Sequence[str]) -> list[str]:
    """``templates`` as a list; ``ValueError`` for a string, an empty list or a template without a valid slot."""
    if isinstance(templates, str):
        raise ValueError(f"templates must be a list of templates, got the string {templates!r}")
    templates = list(templates)
    if not templates:
        raise ValueError(
            "templates is empty: pass at least one template such as 'a photo of a {}.'"
        )
    for template in templates:
        template_slots(template)
    return templates

def nearest_other_class(
    encode_text: EncodeText, classnames: Sequence[str], batch_size: int = 256
) -> list[int]:
    """For each class, the index of the other class whose bare name embeds closest to it."""
    names = check_classnames(classnames)
    if len(names) < 2:
        raise ValueError("a contrastive template needs at least two classes")
    emb = encode_normalized(encode_text, names, batch_size)
    sims = emb @ emb.T
    sims.fill_diagonal_(-math.inf)
    return sims.argmax(dim=1).tolist()

@dataclass
class TemplateTable:
    """Accuracies of each template family and of each single template.

    ``families`` rows: family, templates (count), top1, top5. ``singles`` rows:
    family, template, top1, top5 (each template alone).
    """

    families: list[dict] = field(default_factory=list)
    singles: list[dict] = field(default_factory=list)

    def family(self, name: str) -> dict:
        for row in self.families:
            if row["family"] == name:
                return row
        raise KeyError(name)

    @property
    def best_single(self) -> dict:
        """The single template with the highest top-1 (ties: the first listed)."""
        return max(self.singles, key=lambda r: r["top1"])

    def ensemble_gain(self, family: str = "ensemble") -> float:
        """Top-1 of the ensembled family minus the best single template's top-1."""
        return self.family(family)["top1"] - self.best_single["top1"]

    def to_html(self, digits: int = 3) -> str:
        """An HTML table (it survives being pasted into another page of the book, unlike Markdown)."""
        from clipcourse.plots import html_table

        rows = [
            [r["family"], r["templates"], f"{r['top1']:.{digits}f}", f"{r['top5']:.{digits}f}", r["example"]]
            for r in self.families
        ]
        return html_table(("family", "templates", "top-1", "top-5", "example"), rows)

    def to_markdown(self, digits: int = 3) -> str:
        lines = ["| family | templates | top-1 | top-5 | example |", "|---|---|---|---|---|"]
        for row in self.families:
            example = row["example"].replace("|", "\\|")
            lines.append(
                f"| {row['family']} | {row['templates']} | {row['top1']:.{digits}f} | {row['top5']:.{digits}f} | `{example}` |"
            )
        return "\n".join(lines)


@torch.no_grad()
def evaluate_templates(
    encode_text: EncodeText,
    image_features: torch.Tensor,
    labels: torch.Tensor,
    classnames: Sequence[str],
    families: Mapping[str, Sequence[str]] | None = None,
    *,
    scale: float | torch.Tensor = 100.0,
    contrast: str = "nearest",
    batch_size: int = 256,
) -> TemplateTable:
    """Zero-shot top-1/top-5 of every template family (ensembled) and every single template.

    The ranking of classes does not depend on ``scale`` (a positive multiplier,
    ``model.logit_scale.exp()``), so accuracies are the same for any scale; it is
    accepted so callers can report calibrated probabilities with the same helper.
    """
    from clipcourse.metrics import top_k_accuracy
    from clipcourse.zeroshot import build_zero_shot_weights, zero_shot_logits

    families = dict(TEMPLATE_FAMILIES if families is None else families)
    if not families:
        raise ValueError("families is empty: pass a mapping family -> list of templates")
    names = check_classnames(classnames)
    encode_text = cached_text_encoder(encode_text)  # families share prompts: encode each once
    k5 = min(5, len(names))
    table = TemplateTable()
    cache: dict[str, torch.Tensor] = {}

    def score(templates: list[str]) -> tuple[float, float]:
        weights = build_zero_shot_weights(
            encode_text, names, templates, contrast=contrast, batch_size=batch_size
        )
        logits = zero_shot_logits(image_features, weights, scale)
        return top_k_accuracy(logits, labels, 1), top_k_accuracy(logits, labels, k5)

    for family, templates in families.items():
        templates = check_templates(templates)
        top1, top5 = score(templates)
        example = fill_template(templates[0], names[0], names[1] if len(names) > 1 else names[0])
        table.families.append(
            {
                "family": family,
                "templates": len(templates),
                "top1": top1,
                "top5": top5,
                "example": example,
            }
        )
        for template in templates:
            if template not in cache:
                cache[template] = torch.tensor(score([template]))
            top1_t, top5_t = cache[template].tolist()
            if not any(r["template"] == template for r in table.singles):
                table.singles.append(
                    {"family": family, "template": template, "top1": top1_t, "top5": top5_t}
                )
    return table


@torch.no_grad()
def select_templates(
    encode_text: EncodeText,
    image_features: torch.Tensor,
    labels: torch.Tensor,
    classnames: Sequence[str],
    templates: Sequence[str],
    top: int,
    *,
    contrast: str = "nearest",
) -> list[str]:
    """The ``top`` templates with the best zero-shot top-1 on a *validation* set, best first.

    Choosing prompts on the test images would report an optimistic accuracy
    (the CLIP authors flag the same risk for their own prompt engineering); choose
    them on held-out labelled data, then evaluate the chosen ensemble on the test set.
    Ties keep the order of ``templates``.
    """
    from clipcourse.metrics import top_k_accuracy
    from clipcourse.zeroshot import build_zero_shot_weights, zero_shot_logits

    templates = check_templates(templates)
    encode_text = cached_text_encoder(encode_text)
    if not 1 <= top <= len(templates):
        raise ValueError(
            f"top must be between 1 and {len(templates)} (the number of templates), got {top}"
        )
    scores = []
    for template in templates:
        weights = build_zero_shot_weights(encode_text, classnames, [template], contrast=contrast)
        scores.append(top_k_accuracy(zero_shot_logits(image_features, weights, 1.0), labels, 1))
    order = sorted(range(len(templates)), key=lambda i: (-scores[i], i))
    return [templates[i] for i in order[:top]]
