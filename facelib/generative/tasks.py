"""Instruction examples for the generative recommenders (LC-Rec, Semantic Convergence).

Every builder turns training interactions, item metadata (:class:`ItemTexts`) and item
indices (``codes`` [I, L], written with :func:`~facelib.generative.codes.index_string`)
into :class:`~facelib.generative.codes.Example` lists. Each family has several templates,
written for this project (none copied from LC-Rec); one is drawn per example and per call
(= per epoch) with the given ``np.random.Generator``, so a seed fixes an epoch's text.

**Substitutions.** No LLM is available: LC-Rec's GPT-3.5 texts are replaced by template
text built from item metadata. ITE's "user intention" becomes a query from the target's
genres and decade ("Something in Comedy and Romance, ideally from the 1990s"); PER's
"explicit preference" becomes a profile from the history's most frequent genres and decade
("Enjoys mostly Drama and Thriller, with some Comedy ..."); LC-Rec's item descriptions
are replaced by genres (MovieLens has no descriptions).

**Training data.** Builders see only training sequences (:func:`training_sequences`): for
a :class:`~facelib.generative.leave_one_out.LeaveOneOut` the items before the validation
target (LC-Rec's ``items[:-2]``), so no validation or test target is ever a response, in
a history, a candidate or a negative; for the study's 3:1:1 split, each user's training
items in time order (:func:`train_histories`). A prefix example at position ``t`` shows
the ``max_history`` most recent items before ``t`` (oldest first, separator ``", "``).

**LC-Rec** (:data:`LCREC_TASKS`, :func:`build_lcrec_examples`), per epoch:

- ``seq``: every prefix (``t >= 1``) of every training sequence, index history -> next
  index; :func:`seq_prompt` is the fixed first template used at validation and test.
- ``mut``: every item once per direction: title / genres / both -> index (item2index)
  and index -> title / genres / both (index2item), the field drawn per example.
- ``asy``: every prefix (or ``limit`` of them, drawn without replacement), one of index
  history -> target title, index history -> target genres, title history -> target index.
- ``ite``: one example per user: a training target drawn at random, its intention query,
  with (half the time) or without its index history -> target index.
- ``per``: one example per user: the most recent ``max_history`` training items ->
  template preference text.

**Semantic Convergence, reconstructed** (:data:`SC_TASKS`, :func:`build_semconv_examples`;
no public code, see the reference notes §4), per epoch:

- ``seq``: as LC-Rec's ``seq`` (same templates, so :func:`seq_prompt` serves both).
- ``text``: every item once per direction, title -> index and index -> title.
- ``query``: one example per user: a training target drawn at random, index history +
  template query -> target index.
- ``negative``: per user, a random training position ``t``: "history + candidate ->
  yes/no" with the true next item (yes) and ``n_negatives`` negatives (no); and one
  multiple-choice example with :data:`CHOICES` candidates, drawn half the time as "which
  would the user not choose" (one negative among positives not shown in the history) or
  "which would the user choose" (the true next item among negatives). Negatives are drawn
  without replacement with probability proportional to the item's training count
  (:func:`sample_negatives`), never among the user's training items (held-out targets
  are unknown to the builder, as in the study's BPR sampling).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from facelib.generative.codes import Example, index_string
from facelib.generative.leave_one_out import LeaveOneOut

LCREC_TASKS = ("seq", "mut", "asy", "ite", "per")
SC_TASKS = ("seq", "text", "query", "negative")
CHOICES = 3  # candidates in a Semantic Convergence multiple-choice example
SEPARATOR = ", "

# ---------------------------------------------------------------------------- templates
# Placeholders: {history} index history, {titles} quoted title history, {index} an item
# index, {title}, {genres}, {text} (ItemTexts.text), {query}, {candidate}, {candidates}.

SEQ_TEMPLATES = (
    "A user interacted with these items in order: {history}. Predict the next item.",
    "Interaction history, oldest first: {history}. Which item comes next?",
    "Given the sequence {history}, recommend the item the user will pick next.",
    "The user went through {history}, in this order. What will they choose next?",
    "Recent items of a user: {history}. Name the next item for this user.",
    ("Here is what a user engaged with, in chronological order: {history}. "
     "Suggest the item that follows."),
)

ITEM2INDEX_TEMPLATES = {
    "title": ('Which item is titled "{title}"?',
              'Give the index of the item called "{title}".',
              'Item title: "{title}". What is its index?',
              'Find the index of "{title}".'),
    "genres": ("Which item belongs to the genres {genres}?",
               "Give the index of an item in {genres}.",
               "Genres: {genres}. Which item is this?",
               "Name an item whose genres are {genres}."),
    "both": ("Item: {text} What is its index?",
             "Give the index of this item: {text}",
             "Which index does this item have? {text}",
             "Description: {text} Return the item index."),
}

INDEX2ITEM_TEMPLATES = {
    "title": ("What is the title of item {index}?",
              "Item {index} is called what?",
              "Name the item {index}.",
              "Tell me the title of {index}."),
    "genres": ("Which genres does item {index} belong to?",
               "List the genres of {index}.",
               "What kind of item is {index}? Give its genres.",
               "Genres of item {index}?"),
    "both": ("Describe item {index}.",
             "Give the title, year and genres of {index}.",
             "What do you know about item {index}?",
             "Write the description of {index}."),
}

ASY_TEMPLATES = {
    "index2title": (("The user interacted with {history}, in this order. "
                     "What is the title of the next item they will choose?"),
                    "History: {history}. Give the title of the item that comes next.",
                    "Based on {history}, name the title of the user's next item.",
                    "After {history}, which title will the user pick?"),
    "index2genres": (("The user interacted with {history}, in this order. "
                      "Which genres will the next item have?"),
                     "History: {history}. Predict the genres of the next item.",
                     "Given {history}, what kind of item comes next? Answer with genres.",
                     "After {history}, the next item belongs to which genres?"),
    "title2index": (("The user interacted with the items titled {titles}, in this order. "
                     "Give the index of the next item."),
                    "Titles seen so far: {titles}. Which item index comes next?",
                    "A user enjoyed {titles}. Recommend the next item by its index.",
                    "Past items by title, oldest first: {titles}. Predict the next item."),
}

INTENTION_TEMPLATES = (
    "Something in {genres}{when}",
    "I am in the mood for {genres}{when}",
    "Looking for a {genres} pick{when}",
    "Can you find me some {genres}{when}",
    "I would like to try {genres}{when}",
    "Show me {genres}{when}",
)
WHEN_TEMPLATES = (", ideally from the {decade}", " from the {decade}",
                  ", preferably released in the {decade}", "")

ITE_TEMPLATES = {
    "history": (('The user has interacted with {history}. Their request: "{query}". '
                 "Which item fits?"),
                'History: {history}. The user now asks: "{query}". Recommend an item.',
                ('Knowing the user chose {history}, answer the request "{query}" '
                 "with one item."),
                'Previous items: {history}. Query: "{query}". Give the best item.'),
    "alone": ('Request: "{query}". Which item matches?',
              'A user asks: "{query}". Recommend one item.',
              'Find the item for this request: "{query}".',
              'Query: "{query}". Give the best item.'),
}

PER_TEMPLATES = (
    "The user interacted with {history}. Describe the user's preferences.",
    "Based on {history}, what does this user like?",
    "Summarise the taste of a user who chose {history}.",
    "History: {history}. Write the user's preference profile.",
)
PREFERENCE_TEMPLATES = (
    "Enjoys mostly {top}{some}{when}.",
    "Prefers {top}{some}{when}.",
    "A fan of {top}{some}{when}.",
    "Tends to choose {top}{some}{when}.",
)
PREFERENCE_SOME = (", with some {genre}", ", and now and then {genre}")
PREFERENCE_WHEN = ("; many picks are from the {decade}", ", mostly from the {decade}")

TEXT_TEMPLATES = {  # Semantic Convergence ``text``: title <-> index
    "title2index": ('Which item is "{title}"?',
                    'Return the code of the item titled "{title}".',
                    'Title: "{title}". Give its item code.',
                    'Map "{title}" to its item code.'),
    "index2title": ("Which title does item {index} have?",
                    "Return the title of the item coded {index}.",
                    "Code: {index}. Give its title.",
                    "Map {index} to its title."),
}

QUERY_TEMPLATES = (  # Semantic Convergence ``query``: history + query -> index
    'The user chose {history}. Search: "{query}". Which item?',
    'History: {history}. Find an item for "{query}".',
    'Given the past items {history}, answer the query "{query}" with one item.',
    'Earlier items: {history}. The user searches for "{query}". Recommend one.',
)

JUDGE_TEMPLATES = (  # history + candidate -> yes / no
    ("The user interacted with {history}. Would they choose {candidate} next? "
     "Answer yes or no."),
    "History: {history}. Is {candidate} a good next item for this user? Yes or no?",
    "Given {history}, will the user pick {candidate}? Answer yes or no.",
    "After {history}, does {candidate} match the user? Yes or no?",
)
REJECT_TEMPLATES = (  # one negative among positives -> the negative
    ("The user interacted with {history}. Among {candidates}, which one would the user "
     "not choose?"),
    "History: {history}. Candidates: {candidates}. Which candidate does not fit the user?",
    "Given {history}, pick the item the user would skip from {candidates}.",
    "After {history}, one of {candidates} is not for this user. Which one?",
)
CHOOSE_TEMPLATES = (  # one positive among negatives -> the positive
    ("The user interacted with {history}. Among {candidates}, which one would the user "
     "choose?"),
    "History: {history}. Candidates: {candidates}. Which candidate fits the user?",
    "Given {history}, pick the item the user would take from {candidates}.",
    "After {history}, one of {candidates} is for this user. Which one?",
)


# ---------------------------------------------------------------------------- item texts

@dataclass(frozen=True)
class ItemTexts:
    """Item metadata per contiguous item id ``0..I-1``.

    Attributes:
        title: [I] titles.
        year: [I] release years, None when unknown (MovieLens writes 0).
        genres: [I] genre names per item, () when none.
    """

    title: tuple[str, ...]
    year: tuple[int | None, ...]
    genres: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not len(self.title) == len(self.year) == len(self.genres):
            raise ValueError(f"ItemTexts fields differ in length: {len(self.title)} titles, "
                             f"{len(self.year)} years, {len(self.genres)} genre tuples")

    def __len__(self) -> int:
        return len(self.title)

    @classmethod
    def from_frame(cls, items: pd.DataFrame, item_ids: np.ndarray) -> ItemTexts:
        """Texts of the processed dataset's ``item_id`` values ``item_ids``, in that order
        (a LeaveOneOut's ``item_ids``). ``items`` has columns title, year, genres (``|``
        separated) and ``item_id`` as a column or as the index. ValueError when an id is
        missing."""
        table = items.set_index("item_id") if "item_id" in items.columns else items
        ids = np.asarray(item_ids, dtype=np.int64)
        missing = ~np.isin(ids, table.index.to_numpy())
        if missing.any():
            raise ValueError(f"{int(missing.sum())} item id(s) not in the items table, "
                             f"e.g. {int(ids[missing][0])}")
        rows = table.loc[ids]
        titles = tuple("" if pd.isna(t) else str(t) for t in rows["title"])
        years = tuple(None if pd.isna(y) or int(y) <= 0 else int(y)
                      for y in pd.to_numeric(rows["year"], errors="coerce"))
        genres = tuple(tuple(g for g in str(value).split("|") if g)
                       if isinstance(value, str) else () for value in rows["genres"])
        return cls(titles, years, genres)

    def text(self, i: int) -> str:
        """"Title (year). Genres: A, B." (year or genres left out when unknown): the
        string the frozen text encoder embeds for the RQ-VAE."""
        year = f" ({self.year[i]})" if self.year[i] is not None else ""
        genres = f" Genres: {', '.join(self.genres[i])}." if self.genres[i] else ""
        return f"{self.title[i]}{year}.{genres}"


# ---------------------------------------------------------------------------- sequences

def train_histories(pairs: np.ndarray, times: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Per user ``0..n_users-1``, its items of the (user, item) ``pairs`` [N, 2] in order
    of ``times`` [N], ties by item id ascending (int64, empty for a user without pairs):
    the history a generative model sees on the study's 3:1:1 split."""
    pairs = np.asarray(pairs, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or times.shape != (len(pairs),):
        raise ValueError(f"pairs must be [N, 2] and times [N], got {pairs.shape} and "
                         f"{times.shape}")
    if len(pairs) and (pairs[:, 0].min() < 0 or pairs[:, 0].max() >= n_users):
        raise ValueError(f"user ids must lie in 0..{n_users - 1}")
    order = np.lexsort((pairs[:, 1], times, pairs[:, 0]))
    users, items = pairs[order, 0], pairs[order, 1]
    counts = np.bincount(users, minlength=n_users)
    return [part.copy() for part in np.split(items, np.cumsum(counts)[:-1])]


def training_sequences(split: LeaveOneOut | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per user, the items a builder may train on, oldest first: a LeaveOneOut's items
    before the validation target, or given sequences (:func:`train_histories`) as is."""
    if isinstance(split, LeaveOneOut):
        return split.histories("valid")
    return [np.asarray(seq, dtype=np.int64) for seq in split]


def item_popularity(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """[n_items] int64: how often each item occurs in the training ``sequences``."""
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or
                          [np.zeros(0, dtype=np.int64)])
    return np.bincount(flat, minlength=n_items).astype(np.int64)


def sample_negatives(counts: np.ndarray, positives: np.ndarray, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct items, none in ``positives``, drawn without replacement with
    probability proportional to ``counts`` [I] (items never trained on are never drawn);
    fewer when fewer items are eligible."""
    weights = np.asarray(counts, dtype=np.float64).copy()
    weights[np.asarray(positives, dtype=np.int64)] = 0.0
    n = min(n, int(np.count_nonzero(weights)))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return rng.choice(len(weights), size=n, replace=False, p=weights / weights.sum())


# ---------------------------------------------------------------------------- text pieces

def _indices(codes: np.ndarray) -> list[str]:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [I, L], got shape {codes.shape}")
    return [index_string(row) for row in codes]


def _join_history(items: np.ndarray, index: list[str]) -> str:
    return SEPARATOR.join(index[i] for i in items)


def _join_titles(items: np.ndarray, texts: ItemTexts) -> str:
    return SEPARATOR.join(f'"{texts.title[i]}"' for i in items)


def _phrase(words: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def _decade(year: int | None) -> str | None:
    return None if year is None else f"{year // 10 * 10}s"


def _genre_text(texts: ItemTexts, i: int) -> str:
    return SEPARATOR.join(texts.genres[i])


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def intention_query(texts: ItemTexts, i: int, rng: np.random.Generator) -> str:
    """A template search intention for item ``i`` from its genres and decade, e.g.
    "Something in Comedy and Romance, ideally from the 1990s" (LC-Rec's GPT-written
    intention, substituted)."""
    genres = _phrase(texts.genres[i]) or "anything"
    decade = _decade(texts.year[i])
    when = _pick(WHEN_TEMPLATES, rng).format(decade=decade) if decade else ""
    return _pick(INTENTION_TEMPLATES, rng).format(genres=genres, when=when)


def preference_text(texts: ItemTexts, items: np.ndarray, rng: np.random.Generator) -> str:
    """A template preference profile of a user who chose ``items``: the two most frequent
    genres, the third as "some", and the most frequent decade (ties by name), e.g.
    "Enjoys mostly Drama and Thriller, with some Comedy; many picks are from the 1990s"
    (LC-Rec's GPT-written explicit preference, substituted)."""
    genre_counts = Counter(g for i in items for g in texts.genres[i])
    ranked = [g for g, _ in sorted(genre_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    decades = Counter(d for i in items if (d := _decade(texts.year[i])) is not None)
    top = _phrase(ranked[:2]) or "all kinds of items"
    some = _pick(PREFERENCE_SOME, rng).format(genre=ranked[2]) if len(ranked) > 2 else ""
    decade = min(decades, key=lambda d: (-decades[d], d)) if decades else None
    when = _pick(PREFERENCE_WHEN, rng).format(decade=decade) if decade else ""
    return _pick(PREFERENCE_TEMPLATES, rng).format(top=top, some=some, when=when)


def seq_prompt(history_codes: Sequence[Sequence[int]] | np.ndarray) -> str:
    """The fixed SEQ prompt (first template) for a history of item indices [H, L], oldest
    first, as used at validation and test; the caller caps it to ``max_history`` (a
    LeaveOneOut's ``histories(split, max_history)``)."""
    history = SEPARATOR.join(index_string(c) for c in history_codes)
    return SEQ_TEMPLATES[0].format(history=history)


def _prefixes(sequences: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(user, t) of every training prefix with at least one history item."""
    return [(u, t) for u, seq in enumerate(sequences) for t in range(1, len(seq))]


def _history(seq: np.ndarray, t: int, max_history: int) -> np.ndarray:
    return seq[max(0, t - max_history):t]


def _check(texts: ItemTexts | None, index: list[str], sequences: Sequence[np.ndarray]) -> None:
    if texts is not None and len(texts) != len(index):
        raise ValueError(f"{len(texts)} item texts but {len(index)} item indices")
    top = max((int(s.max()) for s in sequences if len(s)), default=-1)
    if top >= len(index):
        raise ValueError(f"item id {top} in the sequences has no index ({len(index)} items)")


# ---------------------------------------------------------------------------- LC-Rec tasks

def seq_examples(sequences: Sequence[np.ndarray], codes: np.ndarray,
                 rng: np.random.Generator, max_history: int = 20) -> list[Example]:
    """SEQ: every training prefix, index history (``max_history`` most recent) -> next
    item's index."""
    index = _indices(codes)
    _check(None, index, sequences)
    prefixes = _prefixes(sequences)
    picks = rng.integers(len(SEQ_TEMPLATES), size=len(prefixes))
    out = []
    for (u, t), k in zip(prefixes, picks):
        seq = sequences[u]
        history = _join_history(_history(seq, t, max_history), index)
        out.append(Example("seq", SEQ_TEMPLATES[k].format(history=history), index[seq[t]]))
    return out


def _item_fields(texts: ItemTexts, i: int) -> tuple[str, ...]:
    return ("title", "genres", "both") if texts.genres[i] else ("title", "both")


def mut_examples(texts: ItemTexts, codes: np.ndarray,
                 rng: np.random.Generator) -> list[Example]:
    """MUT: every item once as item2index (title / genres / both -> index) and once as
    index2item (index -> title / genres / both), the field drawn per example (genres only
    for items that have some)."""
    index = _indices(codes)
    _check(texts, index, [])
    out = []
    for i in range(len(index)):
        values = {"title": texts.title[i], "genres": _genre_text(texts, i),
                  "both": texts.text(i)}
        field = _pick(_item_fields(texts, i), rng)
        prompt = _pick(ITEM2INDEX_TEMPLATES[field], rng).format(
            title=texts.title[i], genres=_phrase(texts.genres[i]), text=texts.text(i))
        out.append(Example("mut", prompt, index[i]))
        field = _pick(_item_fields(texts, i), rng)
        prompt = _pick(INDEX2ITEM_TEMPLATES[field], rng).format(index=index[i])
        out.append(Example("mut", prompt, values[field]))
    return out


def asy_examples(sequences: Sequence[np.ndarray], texts: ItemTexts, codes: np.ndarray,
                 rng: np.random.Generator, max_history: int = 20,
                 limit: int | None = None) -> list[Example]:
    """ASY: every training prefix (or ``limit`` of them drawn without replacement, kept in
    order), one of: index history -> target title; index history -> target genres (title
    when it has none); title history -> target index."""
    index = _indices(codes)
    _check(texts, index, sequences)
    prefixes = _prefixes(sequences)
    if limit is not None and limit < len(prefixes):
        keep = np.sort(rng.choice(len(prefixes), size=max(limit, 0), replace=False))
        prefixes = [prefixes[j] for j in keep]
    out = []
    for u, t in prefixes:
        seq = sequences[u]
        history, target = _history(seq, t, max_history), int(seq[t])
        kind = _pick(tuple(ASY_TEMPLATES), rng)
        if kind == "index2genres" and not texts.genres[target]:
            kind = "index2title"
        template = _pick(ASY_TEMPLATES[kind], rng)
        if kind == "title2index":
            prompt = template.format(titles=_join_titles(history, texts))
            response = index[target]
        else:
            prompt = template.format(history=_join_history(history, index))
            response = (texts.title[target] if kind == "index2title"
                        else _genre_text(texts, target))
        out.append(Example("asy", prompt, response))
    return out


def _random_position(seq: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.integers(1, len(seq)))


def ite_examples(sequences: Sequence[np.ndarray], texts: ItemTexts, codes: np.ndarray,
                 rng: np.random.Generator, max_history: int = 20) -> list[Example]:
    """ITE: per user with at least two training items, a training target drawn at random
    (not the first), its template intention query, with its index history (half the
    time) or alone -> target index."""
    index = _indices(codes)
    _check(texts, index, sequences)
    out = []
    for seq in sequences:
        if len(seq) < 2:
            continue
        t = _random_position(seq, rng)
        query = intention_query(texts, int(seq[t]), rng)
        if rng.random() < 0.5:
            history = _join_history(_history(seq, t, max_history), index)
            prompt = _pick(ITE_TEMPLATES["history"], rng).format(history=history, query=query)
        else:
            prompt = _pick(ITE_TEMPLATES["alone"], rng).format(query=query)
        out.append(Example("ite", prompt, index[seq[t]]))
    return out


def per_examples(sequences: Sequence[np.ndarray], texts: ItemTexts, codes: np.ndarray,
                 rng: np.random.Generator, max_history: int = 20) -> list[Example]:
    """PER: per user with training items, its ``max_history`` most recent training items
    as an index history -> template preference text (:func:`preference_text`)."""
    index = _indices(codes)
    _check(texts, index, sequences)
    out = []
    for seq in sequences:
        if not len(seq):
            continue
        history = seq[-max_history:]
        prompt = _pick(PER_TEMPLATES, rng).format(history=_join_history(history, index))
        out.append(Example("per", prompt, preference_text(texts, history, rng)))
    return out


def _unknown(name: str, family: str, choices: tuple[str, ...]) -> ValueError:
    return ValueError(f"unknown {family} task {name!r}; choose from {', '.join(choices)}")


def build_lcrec_examples(split: LeaveOneOut | Sequence[np.ndarray], texts: ItemTexts,
                         codes: np.ndarray, tasks: Sequence[str], rng: np.random.Generator,
                         max_history: int = 20,
                         asy_limit: int | None = None) -> list[Example]:
    """One epoch of LC-Rec examples for ``tasks`` (names in :data:`LCREC_TASKS`), task by
    task in the given order, from ``split``'s training sequences
    (:func:`training_sequences`). ValueError on an unknown name, before anything is
    built."""
    for name in tasks:
        if name not in LCREC_TASKS:
            raise _unknown(name, "LC-Rec", LCREC_TASKS)
    sequences = training_sequences(split)
    builders: dict[str, Callable[[], list[Example]]] = {
        "seq": lambda: seq_examples(sequences, codes, rng, max_history),
        "mut": lambda: mut_examples(texts, codes, rng),
        "asy": lambda: asy_examples(sequences, texts, codes, rng, max_history, asy_limit),
        "ite": lambda: ite_examples(sequences, texts, codes, rng, max_history),
        "per": lambda: per_examples(sequences, texts, codes, rng, max_history),
    }
    return [example for name in tasks for example in builders[name]()]


# ---------------------------------------------------------------------------- SC tasks

def sc_text_examples(texts: ItemTexts, codes: np.ndarray,
                     rng: np.random.Generator) -> list[Example]:
    """SC ``text``: every item once as title -> index and once as index -> title."""
    index = _indices(codes)
    _check(texts, index, [])
    out = []
    for i in range(len(index)):
        prompt = _pick(TEXT_TEMPLATES["title2index"], rng).format(title=texts.title[i])
        out.append(Example("text", prompt, index[i]))
        prompt = _pick(TEXT_TEMPLATES["index2title"], rng).format(index=index[i])
        out.append(Example("text", prompt, texts.title[i]))
    return out


def sc_query_examples(sequences: Sequence[np.ndarray], texts: ItemTexts, codes: np.ndarray,
                      rng: np.random.Generator, max_history: int = 20) -> list[Example]:
    """SC ``query``: per user with at least two training items, a training target drawn
    at random (not the first), index history + template query -> target index."""
    index = _indices(codes)
    _check(texts, index, sequences)
    out = []
    for seq in sequences:
        if len(seq) < 2:
            continue
        t = _random_position(seq, rng)
        query = intention_query(texts, int(seq[t]), rng)
        history = _join_history(_history(seq, t, max_history), index)
        prompt = _pick(QUERY_TEMPLATES, rng).format(history=history, query=query)
        out.append(Example("query", prompt, index[seq[t]]))
    return out


def _candidates(items: Sequence[int], index: list[str]) -> str:
    return SEPARATOR.join(index[i] for i in items)


def _choice_example(seq: np.ndarray, t: int, history: np.ndarray, index: list[str],
                    counts: np.ndarray, rng: np.random.Generator) -> Example | None:
    """"which would the user not choose" or (half the time) "which would the user
    choose"; None when there are too few negatives or hidden positives."""
    if rng.random() < 0.5:
        hidden = np.setdiff1d(seq, history)  # the user's training items not shown
        if not len(hidden):
            return None
        positives = rng.choice(hidden, size=min(CHOICES - 1, len(hidden)), replace=False)
        negative = sample_negatives(counts, seq, 1, rng)
        if not len(negative):
            return None
        answer, items, templates = int(negative[0]), [*positives, *negative], REJECT_TEMPLATES
    else:
        negatives = sample_negatives(counts, seq, CHOICES - 1, rng)
        if not len(negatives):
            return None
        answer, items, templates = int(seq[t]), [seq[t], *negatives], CHOOSE_TEMPLATES
    order = rng.permutation(len(items))
    prompt = _pick(templates, rng).format(history=_join_history(history, index),
                                          candidates=_candidates([items[j] for j in order],
                                                                 index))
    return Example("negative", prompt, index[answer])


def sc_negative_examples(sequences: Sequence[np.ndarray], codes: np.ndarray,
                         rng: np.random.Generator, max_history: int = 20,
                         n_negatives: int = 1) -> list[Example]:
    """SC ``negative``: per user with at least two training items, at a random training
    position ``t``: history + the true next item -> "yes", history + each of
    ``n_negatives`` popularity-sampled negatives -> "no", and one multiple-choice example
    (:data:`CHOICES` candidates) whose response is the odd item's index."""
    index = _indices(codes)
    _check(None, index, sequences)
    counts = item_popularity(sequences, len(index))
    out = []
    for seq in sequences:
        if len(seq) < 2:
            continue
        t = _random_position(seq, rng)
        history = _history(seq, t, max_history)
        shown = _join_history(history, index)
        labelled = [(int(seq[t]), "yes")] + [
            (int(j), "no") for j in sample_negatives(counts, seq, n_negatives, rng)]
        for item, answer in labelled:
            prompt = _pick(JUDGE_TEMPLATES, rng).format(history=shown, candidate=index[item])
            out.append(Example("negative", prompt, answer))
        choice = _choice_example(seq, t, history, index, counts, rng)
        if choice is not None:
            out.append(choice)
    return out


def build_semconv_examples(split: LeaveOneOut | Sequence[np.ndarray], texts: ItemTexts,
                           codes: np.ndarray, tasks: Sequence[str], rng: np.random.Generator,
                           max_history: int = 20, n_negatives: int = 1) -> list[Example]:
    """One epoch of (reconstructed) Semantic Convergence examples for ``tasks`` (names in
    :data:`SC_TASKS`), task by task in the given order, from ``split``'s training
    sequences. ValueError on an unknown name, before anything is built."""
    for name in tasks:
        if name not in SC_TASKS:
            raise _unknown(name, "Semantic Convergence", SC_TASKS)
    sequences = training_sequences(split)
    builders: dict[str, Callable[[], list[Example]]] = {
        "seq": lambda: seq_examples(sequences, codes, rng, max_history),
        "text": lambda: sc_text_examples(texts, codes, rng),
        "query": lambda: sc_query_examples(sequences, texts, codes, rng, max_history),
        "negative": lambda: sc_negative_examples(sequences, codes, rng, max_history,
                                                 n_negatives),
    }
    return [example for name in tasks for example in builders[name]()]
