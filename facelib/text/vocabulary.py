"""The descriptor vocabulary: the encoder's tokens that can describe a user or an item.

FACE quantizes concept vectors onto a codebook of frozen token embeddings. The reference
keeps whole-word WordPiece tokens that are among the 20,000 most frequent noun/adjective
lemmas of a COCA list (§4 of the method notes). That list is not redistributable, so this
module rebuilds the same filter from offline, pinned packages:

1. whole words: the token fully matches ``^[a-z]+$`` (drops ``##`` pieces, ``[unused*]``,
   specials, digits, punctuation), and has at least ``min_len`` letters;
2. noun or adjective lemma: ``lemminflect.getAllLemmas(word)`` has a NOUN or ADJ entry
   whose first lemma is the word itself (lemma forms, like COCA's lemma list: "movie"
   stays, "movies" goes), and the word is not a closed-class word (:data:`FUNCTION_WORDS`:
   the lexicon lists "that" or "many" as nouns too);
3. frequent: ``wordfreq.zipf_frequency(word, "en") >= min_zipf`` (3.0 = once per
   million words).

The codebook is the matching rows of the encoder's input embeddings, [V, 384].
Unlike COCA's dominant-PoS filter, the lexicon has no frequencies per part of speech, so
words used mostly as verbs but also as nouns ("make", "love") stay in.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import torch
from torch import Tensor

WORD = re.compile(r"^[a-z]+$")
POS = ("NOUN", "ADJ")
# Closed-class words that the lexicon also lists as nouns or adjectives ("that", "his",
# "many", "about"): pronouns, determiners, quantifiers, prepositions, conjunctions,
# auxiliaries, numerals and a few adverbs. COCA tags them with their own parts of speech.
FUNCTION_WORDS = frozenset("""
i me my mine myself you your yours yourself yourselves he him his himself she her hers
herself it its itself we us our ours ourselves they them their theirs themselves oneself
anyone anybody anything everyone everybody everything someone somebody something nobody
nothing none whoever whatever whichever whomever
the this that these those all any some each every either neither both few many much more
most less least several such other another own same enough half lot lots plenty
what which who whom whose where when why how whether
about above across after against along among around before behind below beneath beside
besides between beyond but despite down during except for from inside into like near off
onto out outside over since than through throughout till toward towards under underneath
unlike until upon versus via with within without
and because if nor or so though although unless while yet
can could may might must shall should will would ought need dare be being been am are is
was were do does did doing done have has had having get got getting going
also just only very too quite rather here there then now not yes well still even ever
never always often again back away
zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty
fifty hundred thousand million billion first second third fourth fifth sixth seventh
eighth ninth tenth
""".split())


def is_noun_or_adjective_lemma(word: str) -> bool:
    """True when ``word`` is its own lemma as a noun or an adjective (offline lexicon)."""
    import lemminflect

    lemmas = lemminflect.getAllLemmas(word)
    return word not in FUNCTION_WORDS and any(pos in lemmas and lemmas[pos][0] == word
                                              for pos in POS)


def build_vocabulary(tokenizer: Any, min_zipf: float = 3.0, min_len: int = 3) -> pd.DataFrame:
    """Filter the tokenizer's vocabulary to frequent whole-word noun/adjective lemmas.

    Returns a DataFrame with columns ``word`` (str) and ``token_id`` (int64), sorted by
    ``token_id``; ``token_id`` indexes the encoder's input-embedding matrix.
    """
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    from wordfreq import zipf_frequency

    special = set(getattr(tokenizer, "all_special_tokens", []))
    rows = [
        (tok, int(tid)) for tok, tid in tokenizer.get_vocab().items()
        if tok not in special and len(tok) >= min_len and WORD.fullmatch(tok)
        and zipf_frequency(tok, "en") >= min_zipf and is_noun_or_adjective_lemma(tok)
    ]
    vocab = pd.DataFrame(rows, columns=["word", "token_id"])
    vocab["token_id"] = vocab["token_id"].astype("int64")
    return vocab.sort_values("token_id", ignore_index=True)


def codebook(encoder: Any, vocab: pd.DataFrame) -> Tensor:
    """Token-embedding rows of the vocabulary: [V, 384] float32 (a copy, on CPU)."""
    table = encoder.token_embeddings  # [30522, 384]
    ids = torch.tensor(vocab["token_id"].to_numpy(), dtype=torch.long, device=table.device)
    return table[ids].float().cpu().clone()
