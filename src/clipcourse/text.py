"""A WordPiece tokenizer for Shapes-world captions, trained offline with ``tokenizers``.

CLIP's text encoder reads token ids, not strings. Rather than downloading a
pretrained vocabulary, we train a small WordPiece vocabulary on every word the
Shapes world can say (a few seconds' work, deterministic), and wrap it as a
``transformers.PreTrainedTokenizerFast`` so it pads, truncates, builds
attention masks and saves/loads like any Hugging Face tokenizer.

The full ASCII alphabet is part of the vocabulary, so a word the world never
says ("painting", "close-up") splits into known sub-word pieces instead of
becoming ``[UNK]``.

:data:`EncodeText` is the text side of any CLIP-like model (a list of strings
in, ``[n, D]`` features out); :func:`hashed_text_encoder` is a stand-in for
checks and tests, :func:`cached_text_encoder` encodes each distinct prompt once.
"""

from __future__ import annotations

import string
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import torch
from transformers import BatchEncoding, PreTrainedTokenizerFast

__all__ = [
    "CONTEXT_LENGTH",
    "SPECIAL_TOKENS",
    "VOCAB_SIZE",
    "EncodeText",
    "cached_text_encoder",
    "hashed_text_encoder",
    "load_tokenizer",
    "shapes_corpus",
    "shapes_tokenizer",
    "tokenize",
    "train_tokenizer",
]

#: BERT-style special tokens; ``[PAD]`` is id 0 (MiniCLIPConfig.pad_token_id).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: Upper bound on the vocabulary (MiniCLIPConfig.vocab_size must be at least ``len(tokenizer)``).
VOCAB_SIZE = 256
#: Merge budget of the WordPiece trainer: enough for every Shapes-world word to become one token.
_TRAINER_BUDGET = 512
#: Default tokens per caption, [CLS] and [SEP] included (the longest two-object caption needs 23).
CONTEXT_LENGTH = 24

#: A text encoder: ``n`` strings -> ``[n, D]`` features (``model.encode_text`` of any CLIP here).
EncodeText = Callable[[list[str]], torch.Tensor]

_ALPHABET = list(string.ascii_lowercase + string.digits + string.punctuation)
_CONTINUATIONS = ["##" + c for c in string.ascii_lowercase + string.digits]  # punctuation is always split off


def shapes_corpus(captions_per_image: int = 10, seed: int = 0) -> list[str]:
    """Captions covering every template and synonym, for every colour×shape combination.

    Held-out combinations are included on purpose: their *words* are all seen in
    training captions (only the pairing is new), so the vocabulary must know them.
    """
    import numpy as np

    from clipcourse.data import (
        ATTRIBUTE_VALUES,
        SYNONYMS,
        ShapesWorld,
        captions_for,
    )

    world = ShapesWorld(seed=seed, held_out=[])
    rng = np.random.default_rng(seed)
    objects = world.sample_attributes(300, rng, combos="all")
    texts = [c.text for obj in objects for c in captions_for(obj, rng, n=captions_per_image)]
    for i in range(0, 200, 2):  # two-object scene captions add "and" and ","
        pair = objects[i : i + 2]
        if pair[0].position != pair[1].position:
            texts += [c.text for c in captions_for(pair, rng, n=captions_per_image)]
    # Every synonym, even if the sampling above happened to miss one.
    texts += [w for attribute in ATTRIBUTE_VALUES for words in SYNONYMS[attribute].values() for w in words]
    return texts


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = VOCAB_SIZE, context_length: int = CONTEXT_LENGTH
) -> PreTrainedTokenizerFast:
    """Train a lower-casing WordPiece tokenizer on ``texts``; adds [CLS] … [SEP] around each caption.

    ``tokenizers``' WordPiece trainer learns which whole words earn their own
    token. Its intermediate pieces depend on how ties are broken in a hash
    map, which changes from one process to the next, so we keep the whole
    words it learned plus every single character (as a word start and as a
    ``##`` continuation) and number them in a fixed order: the same texts give
    the same ids in every run, which keeps training deterministic.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty list of texts")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    learner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    learner.normalizer, learner.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.WordPieceTrainer(
        vocab_size=max(_TRAINER_BUDGET, vocab_size),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=_ALPHABET,
        show_progress=False,
    )
    learner.train_from_iterator(sorted(set(texts)), trainer=trainer)
    words = {w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(" ".join(set(texts))))}
    learned = sorted((set(learner.get_vocab()) & words) - set(_ALPHABET))
    tokens = [*SPECIAL_TOKENS, *_ALPHABET, *_CONTINUATIONS, *learned]
    if len(tokens) > vocab_size:
        raise ValueError(
            f"the texts hold {len(learned)} distinct words: {len(tokens)} tokens exceed vocab_size={vocab_size}"
        )

    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return _wrap(tok, context_length)


def _wrap(tok, context_length: int) -> PreTrainedTokenizerFast:
    """A ``tokenizers.Tokenizer`` as a transformers tokenizer (padding, masks, save_pretrained)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=context_length,
    )


@lru_cache(maxsize=1)
def _shapes_tokenizer_json() -> str:
    return train_tokenizer(shapes_corpus()).backend_tokenizer.to_str()


def shapes_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """The course tokenizer: loaded from ``path`` if it holds one, else trained (and saved there).

    Training takes about a second and is done once per process; every call returns a fresh object.
    """
    if path is not None and (Path(path) / "tokenizer.json").is_file():
        return load_tokenizer(path)
    from tokenizers import Tokenizer

    tokenizer = _wrap(Tokenizer.from_str(_shapes_tokenizer_json()), CONTEXT_LENGTH)
    if path is not None:
        tokenizer.save_pretrained(str(path))
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained`` from a local folder (never downloads)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}: save one with tokenizer.save_pretrained(path)")
    return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)


def tokenize(
    texts: str | Sequence[str],
    context_length: int = CONTEXT_LENGTH,
    *,
    tokenizer: PreTrainedTokenizerFast | None = None,
    padding: str = "max_length",
) -> BatchEncoding:
    """Token ids and attention masks as ``[N, context_length]`` int64 tensors.

    Like open_clip's ``tokenize``, every row is padded to ``context_length``
    (``padding="longest"`` pads to the longest caption instead). Captions
    longer than the context are truncated, with a warning, never silently:
    a truncated caption may lose the very word that matters. ``tokenizer``
    defaults to :func:`shapes_tokenizer`.
    """
    if tokenizer is None:
        tokenizer = shapes_tokenizer()
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: tokenize needs at least one caption")
    if not all(isinstance(t, str) for t in texts):
        bad = next(t for t in texts if not isinstance(t, str))
        raise ValueError(f"texts must be strings, got {type(bad).__name__}: {bad!r}")
    if context_length < 2:
        raise ValueError(f"context_length must leave room for [CLS] and [SEP], got {context_length}")
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    too_long = [i for i, n in enumerate(lengths) if n > context_length]
    if too_long:
        i = too_long[0]
        warnings.warn(
            f"{len(too_long)} caption(s) longer than context_length={context_length} tokens were truncated, "
            f"e.g. {texts[i]!r} ({lengths[i]} tokens)",
            UserWarning,
            stacklevel=2,
        )
    return tokenizer(
        texts,
        padding=padding,
        truncation=True,
        max_length=context_length,
        return_tensors="pt",
        return_token_type_ids=False,
    )


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
