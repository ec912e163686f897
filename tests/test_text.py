"""The Shapes-world WordPiece tokenizer: vocabulary, padding, masks, truncation, save/load."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from clipcourse.models import MiniCLIPConfig
from clipcourse.text import (
    CONTEXT_LENGTH,
    shapes_corpus,
    shapes_tokenizer,
    tokenize,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return shapes_tokenizer()


def test_is_a_fast_hf_tokenizer_with_bert_specials(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.pad_token_id == 0 == MiniCLIPConfig().pad_token_id
    assert len(tok) <= MiniCLIPConfig().vocab_size
    ids = tok("a red circle")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_every_world_word_is_one_token(tok):
    from clipcourse.data.shapes import SYNONYMS

    words = {w for values in SYNONYMS.values() for phrases in values.values() for p in phrases for w in p.split()}
    # Held-out combinations' words too: only the pairing is new, never the word.
    words |= {"blue", "circle", "yellow", "square", "photo", "drawing", "something", "and"}
    for w in sorted(words):
        assert tok.tokenize(w) == [w], w


def test_unknown_words_split_into_pieces_not_unk(tok):
    pieces = tok.tokenize("a close-up painting")
    assert "[UNK]" not in pieces and "painting" not in pieces
    assert tok.convert_tokens_to_string(pieces).replace(" ", "") == "aclose-uppainting"


def test_lowercases(tok):
    assert tok.tokenize("A RED Circle") == ["a", "red", "circle"]


def test_tokenize_pads_and_masks(tok):
    enc = tokenize(["a red circle", "a small blue square in the top left"], context_length=16, tokenizer=tok)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == mask.shape == (2, 16) and ids.dtype == torch.long
    assert mask[0].sum() == 5 and mask[1].sum() == 10  # [CLS] a red circle [SEP]
    assert (ids[mask == 0] == tok.pad_token_id).all()
    longest = tokenize(["a red circle", "a small blue square"], padding="longest", tokenizer=tok)
    assert longest["input_ids"].shape == (2, 6)


def test_single_string_and_default_context(tok):
    assert tokenize("a red circle", tokenizer=tok)["input_ids"].shape == (1, CONTEXT_LENGTH)


def test_truncation_warns_and_keeps_sep(tok):
    long = "a small red circle in the upper left corner and a big blue square in the lower right corner"
    with pytest.warns(UserWarning, match="truncated"):
        enc = tokenize([long, "a red circle"], context_length=8, tokenizer=tok)
    assert enc["input_ids"].shape == (2, 8)
    assert enc["input_ids"][0, -1] == tok.sep_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(["a red circle"], context_length=8, tokenizer=tok)  # no warning when it fits


def test_every_world_caption_fits_the_default_context(tok):
    lengths = [len(ids) for ids in tok(shapes_corpus(captions_per_image=3))["input_ids"]]
    assert max(lengths) <= CONTEXT_LENGTH


def test_empty_and_bad_input(tok):
    with pytest.raises(ValueError, match="empty"):
        tokenize([], tokenizer=tok)
    with pytest.raises(ValueError, match="strings"):
        tokenize(["a red circle", 3], tokenizer=tok)
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([])


def test_save_and_load_round_trip(tok, tmp_path):
    tok.save_pretrained(str(tmp_path))
    again = shapes_tokenizer(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    texts = ["a tiny crimson plus sign at the centre", "something golden"]
    assert torch.equal(tokenize(texts, tokenizer=again)["input_ids"], tokenize(texts, tokenizer=tok)["input_ids"])


def test_training_is_deterministic(tok):
    """tokenizers' trainer breaks ties in hash-map order; our ids must not depend on it."""
    assert shapes_tokenizer().get_vocab() == tok.get_vocab()
    assert train_tokenizer(["b a", "a b"]).get_vocab() == train_tokenizer(["a b", "b a"]).get_vocab()


def test_default_tokenizer_is_the_shapes_tokenizer(tok):
    assert torch.equal(tokenize(["a red circle"])["input_ids"], tokenize(["a red circle"], tokenizer=tok)["input_ids"])
