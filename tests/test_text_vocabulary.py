"""Descriptor vocabulary: whole lowercase words, noun/adjective lemmas, ids, codebook."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest_text import encoder  # noqa: F401  (fixture)
from facelib.text.vocabulary import build_vocabulary, codebook, is_noun_or_adjective_lemma


@pytest.fixture()
def vocab(encoder):
    return build_vocabulary(encoder.tokenizer, min_zipf=3.0, min_len=3)


def test_only_whole_lowercase_alphabetic_words_with_matching_ids(vocab, encoder):
    tok = encoder.tokenizer
    assert list(vocab.columns) == ["word", "token_id"]
    assert all(re.fullmatch(r"[a-z]{3,}", w) for w in vocab["word"])
    assert vocab["token_id"].is_monotonic_increasing and vocab["token_id"].is_unique
    assert tok.convert_tokens_to_ids(vocab["word"].tolist()) == vocab["token_id"].tolist()
    for w in vocab["word"].sample(50, random_state=0):  # each word is one whole token
        assert tok.tokenize(w) == [w]


def test_size_and_typical_members(vocab):
    words = set(vocab["word"])
    assert 5_000 < len(vocab) < 12_000  # the reference's MiniLM codebook has ~9k words
    assert {"movie", "comedy", "romantic", "dark", "family", "horror"} <= words
    # function words, verbs-only, inflected forms, pieces and specials are out
    out = {"the", "and", "that", "his", "many", "about", "quickly", "movies", "children", "cls"}
    assert not out & words
    assert not any(w.startswith("##") or w.startswith("[") for w in words)


def test_parameters_tighten_the_filter(encoder, vocab):
    strict = build_vocabulary(encoder.tokenizer, min_zipf=4.5, min_len=6)
    assert 0 < len(strict) < len(vocab)
    assert set(strict["word"]) <= set(vocab["word"])
    assert strict["word"].str.len().min() >= 6
    with pytest.raises(ValueError, match="min_len"):
        build_vocabulary(encoder.tokenizer, min_len=0)


def test_pos_lexicon():
    assert is_noun_or_adjective_lemma("movie") and is_noun_or_adjective_lemma("beautiful")
    assert not is_noun_or_adjective_lemma("movies")  # plural: not a lemma form
    assert not is_noun_or_adjective_lemma("quickly")  # adverb
    assert not is_noun_or_adjective_lemma("the")


def test_codebook_rows_are_token_embeddings(encoder, vocab):
    cb = codebook(encoder, vocab)
    assert cb.shape == (len(vocab), 384) and cb.dtype == torch.float32
    assert not cb.requires_grad
    ids = vocab["token_id"].to_numpy()
    np.testing.assert_array_equal(cb.numpy()[[0, -1]],
                                  encoder.token_embeddings[ids[[0, -1]]].numpy())
    cb[0] += 1.0  # a copy: the encoder's embedding matrix is untouched
    assert not torch.equal(cb[0], encoder.token_embeddings[ids[0]])
