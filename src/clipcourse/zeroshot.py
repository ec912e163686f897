"""Zero-shot classification: a classifier built from class names and prompt templates.

A zero-shot classifier is retrieval over class prompts. Every class name is
written into a few templates ("a photo of a {}."), the text encoder embeds
them, and the class's weight vector is the normalised mean of those
embeddings (open_clip's ``build_zero_shot_classifier``). An image is assigned
to the class whose weight vector has the highest cosine with the image
embedding, and the model's learned logit scale turns those cosines into
sensible probabilities.

Everything here takes ``encode_text: Callable[[list[str]], Tensor]`` rather
than a model, so it works with the course's mini CLIP, a pretrained CLIP from
``transformers`` and the stand-in encoders the tests use.
"""

from __future__ import annotations

import math
import string
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CONTRASTS",
    "ENSEMBLE_FAMILIES",
    "PHOTO_TEMPLATES",
    "SKIMAGE_PHOTOS",
    "TEMPLATE_FAMILIES",
    "TemplateTable",
    "attribute_binding_accuracy",
    "build_zero_shot_weights",
    "classify_dataset",
    "cached_text_encoder",
    "classify_images",
    "evaluate_templates",
    "fill_template",
    "hashed_text_encoder",
    "k_shot_probe_curve",
    "nearest_other_class",
    "select_templates",
    "skimage_photos",
    "swapped_caption",
    "template_slots",
    "top_k_accuracy",
    "top_k_predictions",
    "zero_shot_logits",
    "zero_shot_probabilities",
]

EncodeText = Callable[[list[str]], torch.Tensor]

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


def hashed_text_encoder(dim: int = 16, seed: int = 0) -> EncodeText:
    """A stand-in text encoder for tests and exercises: each string -> a fixed random vector.

    The vectors are deterministic (a hash of the text and ``seed``) and their
    norms vary from text to text, as real unnormalised text features do, so a
    classifier that forgets to normalise gives a visibly different answer.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")

    def encode_text(texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise ValueError(f"encode_text takes a list of strings, got the string {texts!r}")
        rows = []
        for text in texts:
            h = zlib.crc32(f"{seed}:{text}".encode())
            g = torch.Generator().manual_seed(h)
            rows.append(torch.randn(dim, generator=g) * (0.5 + (h % 8) / 2))
        return torch.stack(rows) if rows else torch.empty(0, dim)

    return encode_text


def cached_text_encoder(encode_text: EncodeText) -> EncodeText:
    """Wrap ``encode_text`` so every distinct string is encoded once (a cache of hot prompts).

    Comparing template families re-encodes the same prompts many times (each
    family, each single template, the ensemble); with the cache each prompt
    costs one pass of the text encoder. Only the missing texts of a call are
    sent to ``encode_text``, in one batch. The cache holds detached CPU tensors.
    """
    if hasattr(encode_text, "cache"):
        return encode_text  # already cached
    cache: dict[str, torch.Tensor] = {}

    def encode(texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise ValueError(f"encode_text takes a list of strings, got the string {texts!r}")
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty: nothing to encode")
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            feats = encode_text(missing)
            if (
                not isinstance(feats, torch.Tensor)
                or feats.dim() != 2
                or feats.shape[0] != len(missing)
            ):
                got = (
                    tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
                )
                raise ValueError(
                    f"encode_text must return a [n, D] tensor for n texts; got {got} for n={len(missing)}"
                )
            for text, row in zip(missing, feats.detach().cpu(), strict=True):
                cache[text] = row
        return torch.stack([cache[t] for t in texts])

    encode.cache = cache  # type: ignore[attr-defined]
    return encode


# -- templates ------------------------------------------------------------------------
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


def _check_classnames(classnames: Sequence[str]) -> list[str]:
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


def _check_templates(templates: Sequence[str]) -> list[str]:
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


def _encode(encode_text: EncodeText, texts: list[str], batch_size: int) -> torch.Tensor:
    """Encode in batches; every feature L2-normalised in float32."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        feats = encode_text(batch)
        if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] != len(batch):
            got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(
                f"encode_text must return a [n, D] tensor for n texts; got {got} for n={len(batch)}"
            )
        chunks.append(F.normalize(feats.detach().float().cpu(), dim=-1))
    return torch.cat(chunks)


def nearest_other_class(
    encode_text: EncodeText, classnames: Sequence[str], batch_size: int = 256
) -> list[int]:
    """For each class, the index of the other class whose bare name embeds closest to it."""
    names = _check_classnames(classnames)
    if len(names) < 2:
        raise ValueError("a contrastive template needs at least two classes")
    emb = _encode(encode_text, names, batch_size)
    sims = emb @ emb.T
    sims.fill_diagonal_(-math.inf)
    return sims.argmax(dim=1).tolist()


@torch.no_grad()
def build_zero_shot_weights(
    encode_text: EncodeText,
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    contrast: str = "nearest",
    batch_size: int = 256,
) -> torch.Tensor:
    """Zero-shot classifier weights ``[D, C]``: one unit column per class.

    For each class, each template's embedding is L2-normalised, the template
    embeddings are averaged, and the mean is normalised again (so every
    template counts equally whatever its norm, and the column is a unit
    vector for cosine scoring). Averaging embeddings, not probabilities, is
    what CLIP calls ensembling "in embedding space": one classifier, the cost
    of a single template at test time.

    Two-slot templates ("a photo of a {}, not a {}.") have their second slot
    filled as ``contrast`` says (see :data:`CONTRASTS`); with ``"all"`` the
    C-1 filled prompts are normalised, averaged and normalised into one
    template embedding, so the template still counts once.
    """
    names = _check_classnames(classnames)
    templates = _check_templates(templates)
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    two_slot = [t for t in templates if template_slots(t) == 2]
    if two_slot and len(names) < 2:
        raise ValueError(f"contrastive template {two_slot[0]!r} needs at least two classes")
    nearest = (
        nearest_other_class(encode_text, names, batch_size)
        if two_slot and contrast == "nearest"
        else None
    )

    # Every prompt once, in one batched pass; `owner[i]` = (class, template) of prompt i.
    texts: list[str] = []
    owner: list[tuple[int, int]] = []
    for c, name in enumerate(names):
        for t, template in enumerate(templates):
            if template_slots(template) == 1:
                others = [None]
            elif nearest is not None:
                others = [names[nearest[c]]]
            else:
                others = [o for o in names if o != name]
            for other in others:
                texts.append(fill_template(template, name, other))
                owner.append((c, t))
    emb = _encode(encode_text, texts, batch_size)  # [P, D], unit rows

    C, T, D = len(names), len(templates), emb.shape[1]
    sums = torch.zeros(C, T, D)
    index = torch.tensor([c * T + t for c, t in owner])
    sums.view(C * T, D).index_add_(0, index, emb)
    per_template = F.normalize(sums, dim=-1)  # mean of fills, renormalised: [C, T, D]
    weights = F.normalize(per_template.mean(dim=1), dim=-1)  # [C, D]
    return weights.T.contiguous()  # [D, C]


# -- prediction -------------------------------------------------------------------
def _scale_value(logit_scale: float | torch.Tensor) -> torch.Tensor:
    scale = torch.as_tensor(logit_scale).detach().float()
    if scale.numel() != 1:
        raise ValueError(f"logit_scale must be a single number, got shape {tuple(scale.shape)}")
    if not torch.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"logit_scale must be a positive number (already exponentiated), got {scale.item()}"
        )
    return scale.reshape(())


def zero_shot_logits(
    image_features: torch.Tensor, class_weights: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """Scaled cosines ``[N, C]`` between images ``[N, D]`` and class weights ``[D, C]``.

    ``logit_scale`` is the multiplier itself (``model.logit_scale.exp()``), not its log.
    Image features are normalised here; the class weights are used as given
    (they come normalised from :func:`build_zero_shot_weights`).
    """
    if image_features.dim() != 2:
        raise ValueError(f"image_features must be [N, D], got shape {tuple(image_features.shape)}")
    if class_weights.dim() != 2:
        raise ValueError(f"class_weights must be [D, C], got shape {tuple(class_weights.shape)}")
    if image_features.shape[1] != class_weights.shape[0]:
        hint = (
            " (class_weights looks like [C, D]: transpose it)"
            if class_weights.shape[1] == image_features.shape[1]
            else ""
        )
        raise ValueError(
            f"feature dimensions differ: image_features {tuple(image_features.shape)} is [N, D] with "
            f"D={image_features.shape[1]}, class_weights {tuple(class_weights.shape)} must be [D, C]{hint}"
        )
    scale = _scale_value(logit_scale)
    image = F.normalize(image_features.float(), dim=-1)
    return scale.to(image.device) * image @ class_weights.float().to(image.device)


def zero_shot_probabilities(
    image_features: torch.Tensor, class_weights: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """Class probabilities ``[N, C]``: softmax over classes of the scaled cosines.

    Without the scale (``logit_scale=1``) cosines within ±1 give nearly uniform
    probabilities; CLIP's learned scale (up to 100) is what makes them sharp.
    """
    return zero_shot_logits(image_features, class_weights, logit_scale).softmax(dim=-1)


def _check_logits_labels(
    logits: torch.Tensor, labels: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels)
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, C], got shape {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be [N] with N={logits.shape[0]} to match logits, got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    n_classes = logits.shape[1]
    if k > n_classes:
        raise ValueError(
            f"k={k} is larger than the number of classes ({n_classes}): top-{k} is undefined"
        )
    if logits.shape[0] == 0:
        raise ValueError("logits is empty: accuracy of zero examples is undefined")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes - 1}], got values in [{labels.min()}, {labels.max()}]"
        )
    return logits, labels


def top_k_predictions(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices ``[N, k]`` of the k highest-scoring classes, best first."""
    logits = torch.as_tensor(logits)
    _check_logits_labels(
        logits, torch.zeros(logits.shape[0] if logits.dim() else 0, dtype=torch.long), k
    )
    return logits.topk(k, dim=1).indices


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose label is among the k highest scores (a float in [0, 1]).

    ``torch.topk`` would raise a cryptic RuntimeError for k > C; we raise a ValueError instead.
    Scores may be logits or probabilities: the ranking is the same.
    """
    logits, labels = _check_logits_labels(logits, labels, k)
    top = logits.topk(k, dim=1).indices
    hits = (top == labels.to(top.device).unsqueeze(1)).any(dim=1)
    return float(hits.float().mean().item())


# -- template families -------------------------------------------------------------
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
        from html import escape

        head = "".join(
            f"<th>{h}</th>" for h in ("family", "templates", "top-1", "top-5", "example")
        )
        rows = [
            f"<tr><td>{escape(r['family'])}</td><td>{r['templates']}</td><td>{r['top1']:.{digits}f}</td>"
            f"<td>{r['top5']:.{digits}f}</td><td><code>{escape(r['example'])}</code></td></tr>"
            for r in self.families
        ]
        return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'

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
    logit_scale: float | torch.Tensor = 100.0,
    contrast: str = "nearest",
    batch_size: int = 256,
) -> TemplateTable:
    """Zero-shot top-1/top-5 of every template family (ensembled) and every single template.

    The ranking of classes does not depend on the logit scale (a positive
    multiplier), so accuracies are the same for any scale; it is accepted so
    callers can report calibrated probabilities with the same helper.
    """
    families = dict(TEMPLATE_FAMILIES if families is None else families)
    if not families:
        raise ValueError("families is empty: pass a mapping family -> list of templates")
    names = _check_classnames(classnames)
    encode_text = cached_text_encoder(encode_text)  # families share prompts: encode each once
    k5 = min(5, len(names))
    table = TemplateTable()
    cache: dict[str, torch.Tensor] = {}

    def score(templates: list[str]) -> tuple[float, float]:
        weights = build_zero_shot_weights(
            encode_text, names, templates, contrast=contrast, batch_size=batch_size
        )
        logits = zero_shot_logits(image_features, weights, logit_scale)
        return top_k_accuracy(logits, labels, 1), top_k_accuracy(logits, labels, k5)

    for family, templates in families.items():
        templates = _check_templates(templates)
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
    templates = _check_templates(templates)
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


# -- k-shot linear probe ------------------------------------------------------------
def k_shot_probe_curve(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Iterable[int] = (1, 2, 4, 8, 16),
    *,
    seeds: Iterable[int] = (0,),
    **probe_kwargs,
) -> dict[int, float]:
    """Top-1 of a linear probe trained on k labelled examples per class, for each k.

    Uses :mod:`clipcourse.probe` (chapter 1's probe on frozen features); the
    accuracy for each k is averaged over ``seeds`` (different k-shot draws).
    """
    from clipcourse import probe

    train_labels = torch.as_tensor(train_labels)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    curve: dict[int, float] = {}
    for k in ks:
        accs = []
        for seed in seeds:
            idx = torch.as_tensor(probe.k_shot_indices(train_labels, k, seed))
            # 1-shot probes have as many classes as samples, which sklearn warns about; that is the point.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The number of unique classes is greater")
                accs.append(
                    probe.linear_probe(
                        train_features[idx],
                        train_labels[idx],
                        test_features,
                        test_labels,
                        **probe_kwargs,
                    )
                )
        curve[int(k)] = float(np.mean(accs))
    return curve


# -- attribute binding ------------------------------------------------------------
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
    t = _encode(encode_text, list(true), batch_size)
    s = _encode(encode_text, list(swapped), batch_size)
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


# -- pretrained models and real photos (Colab path) ----------------------------------
#: scikit-image's bundled colour photos and a class name for each (no download needed).
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",
    "coffee": "cup of coffee",
    "chelsea": "cat",
    "rocket": "rocket",
    "hubble_deep_field": "galaxy",
    "immunohistochemistry": "microscope slide",
}


def skimage_photos(names: Iterable[str] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's bundled photos as HxWx3 uint8 arrays, with their class names.

    They ship inside the scikit-image wheel, so they load offline.
    """
    import skimage.data

    names = list(SKIMAGE_PHOTOS if names is None else names)
    images, labels = [], []
    for name in names:
        if name not in SKIMAGE_PHOTOS:
            raise ValueError(f"unknown photo {name!r}; choose from {sorted(SKIMAGE_PHOTOS)}")
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        images.append(image[..., :3].astype(np.uint8))
        labels.append(SKIMAGE_PHOTOS[name])
    return images, labels


@torch.no_grad()
def classify_images(
    model,
    images,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    *,
    batch_size: int = 64,
) -> torch.Tensor:
    """Zero-shot class probabilities ``[N, C]`` for ``images`` with any CLIP-like ``model``.

    ``model`` needs ``encode_text(list[str])``, ``encode_image(images)`` and a
    ``logit_scale`` holding the LOG of the scale (as in CLIP and
    :func:`clipcourse.hf_clip.load_pretrained_clip`). ``images`` is whatever
    ``encode_image`` accepts (a list of photos, or a batch tensor); it is fed in
    slices of ``batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    weights = build_zero_shot_weights(model.encode_text, classnames, templates)
    n = len(images)
    if n == 0:
        raise ValueError("images is empty")
    feats = torch.cat(
        [
            model.encode_image(images[i : i + batch_size]).detach().float()
            for i in range(0, n, batch_size)
        ]
    )
    scale = torch.as_tensor(model.logit_scale).detach().float().exp()
    return zero_shot_probabilities(feats.cpu(), weights.cpu(), scale)


def classify_dataset(
    model,
    dataset,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    *,
    limit: int | None = None,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot probabilities and labels for a labelled dataset of ``(image, label)`` pairs.

    Works with any torchvision classification dataset (CIFAR-10 yields PIL
    images and int labels); ``limit`` keeps only the first examples, for a quick look.
    Returns ``(probabilities [N, C], labels [N])``.
    """
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise ValueError(f"no examples to classify (dataset of {len(dataset)}, limit={limit})")
    images, labels = [], []
    for i in range(n):
        image, label = dataset[i]
        images.append(image)
        labels.append(int(label))
    probs = classify_images(model, images, classnames, templates, batch_size=batch_size)
    return probs, torch.tensor(labels, dtype=torch.long)
