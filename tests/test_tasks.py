"""Instruction-task builders (LC-Rec, Semantic Convergence) on a hand-made split."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from facelib.generative.codes import CODE_PATTERN, index_string, parse_index
from facelib.generative.leave_one_out import LeaveOneOut
from facelib.generative.tasks import (
    LCREC_TASKS,
    SC_TASKS,
    SEQ_TEMPLATES,
    ItemTexts,
    asy_examples,
    build_lcrec_examples,
    build_semconv_examples,
    intention_query,
    mut_examples,
    preference_text,
    sample_negatives,
    seq_examples,
    seq_prompt,
    train_histories,
)

N_ITEMS = 10
HELD_OUT = (8, 9)  # occur only as validation / test targets
# training parts: u0 [0, 1, 2, 3], u1 [2, 0, 1, 4, 5], u2 [4, 5, 6, 7], u3 [3]
SEQUENCES = ([0, 1, 2, 3, 8, 9], [2, 0, 1, 4, 5, 9, 8], [4, 5, 6, 7, 8, 9], [3, 8, 9])
CODES = np.array([[i % 3, i] for i in range(N_ITEMS)])  # distinct 2-level indices
ITEM_OF = {tuple(c): i for i, c in enumerate(CODES.tolist())}
TITLES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel",
          "India", "Juliett")
RUN = re.compile(r"(?:<[a-h]_\d+>)+(?:, (?:<[a-h]_\d+>)+)*")
GENRES = ("Comedy|Romance", "Drama", "Drama|Thriller", "Comedy", "Action|Sci-Fi",
          "Drama|War", "Horror", "Comedy|Drama", "Western", "Film-Noir")


def _split() -> LeaveOneOut:
    return LeaveOneOut(np.arange(len(SEQUENCES)), np.arange(100, 100 + N_ITEMS),
                       tuple(np.array(s, dtype=np.int64) for s in SEQUENCES))


def _texts() -> ItemTexts:
    frame = pd.DataFrame({"item_id": np.arange(100, 100 + N_ITEMS), "title": TITLES,
                          "year": [1995, 1987, 0, 1999, 2001, 1994, 1975, 1996, 1950, 1946],
                          "genres": GENRES})
    return ItemTexts.from_frame(frame, np.arange(100, 100 + N_ITEMS))


def _items_in(text: str) -> list[int]:
    """The items whose indices are written in ``text``, in order."""
    codes = [int(c) for _, c in CODE_PATTERN.findall(text)]
    return [ITEM_OF[tuple(codes[j:j + 2])] for j in range(0, len(codes), 2)]


def _runs(text: str) -> list[list[int]]:
    """The items of each run of indices written with ", " between them (a history, a
    candidate list), in order."""
    return [_items_in(run) for run in RUN.findall(text)]


def test_seq_gives_every_prefix_of_the_training_part_only():
    examples = seq_examples(_split().histories("valid"), CODES, np.random.default_rng(0))
    got = [(_items_in(e.prompt), ITEM_OF[parse_index(e.response)]) for e in examples]
    assert got == [([0], 1), ([0, 1], 2), ([0, 1, 2], 3),
                   ([2], 0), ([2, 0], 1), ([2, 0, 1], 4), ([2, 0, 1, 4], 5),
                   ([4], 5), ([4, 5], 6), ([4, 5, 6], 7)]
    assert {e.task for e in examples} == {"seq"}
    for e in examples:  # history written with ", " between indices, in a known template
        history = ", ".join(index_string(CODES[i]) for i in _items_in(e.prompt))
        assert e.prompt in {t.format(history=history) for t in SEQ_TEMPLATES}


def test_seq_history_is_capped_and_keeps_the_most_recent():
    examples = seq_examples(_split().histories("valid"), CODES, np.random.default_rng(0),
                            max_history=2)
    got = [(_items_in(e.prompt), ITEM_OF[parse_index(e.response)]) for e in examples]
    assert got[:3] == [([0], 1), ([0, 1], 2), ([1, 2], 3)]
    assert got[6] == ([1, 4], 5)
    assert max(len(h) for h, _ in got) == 2


def test_seq_prompt_is_the_first_training_template():
    history = CODES[[0, 1]]
    expected = SEQ_TEMPLATES[0].format(history=f"{index_string(CODES[0])}, "
                                                f"{index_string(CODES[1])}")
    assert seq_prompt(history) == expected
    assert seq_prompt([list(c) for c in history]) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_training_example_leaks_a_held_out_target(seed):
    texts = _texts()
    lcrec = build_lcrec_examples(_split(), texts, CODES, ("seq", "asy", "ite", "per"),
                                 np.random.default_rng(seed))
    sc = build_semconv_examples(_split(), texts, CODES, ("seq", "query", "negative"),
                                np.random.default_rng(seed), n_negatives=3)
    hidden = [index_string(CODES[i]) for i in HELD_OUT] + [TITLES[i] for i in HELD_OUT]
    for e in lcrec + sc:
        assert not any(h in e.prompt or h in e.response for h in hidden), e
    # item-level tasks cover every item, held-out ones included (no interaction in them)
    mut = build_lcrec_examples(_split(), texts, CODES, ("mut",), np.random.default_rng(0))
    assert len(mut) == 2 * N_ITEMS


def test_index_responses_parse_back_to_the_item_codes():
    texts = _texts()
    examples = (build_lcrec_examples(_split(), texts, CODES, LCREC_TASKS,
                                     np.random.default_rng(0))
                + build_semconv_examples(_split(), texts, CODES, SC_TASKS,
                                         np.random.default_rng(0), n_negatives=2))
    n_index = 0
    for e in examples:
        if "<" in e.response:
            assert tuple(CODES[ITEM_OF[parse_index(e.response)]]) == parse_index(e.response)
            assert e.response == index_string(CODES[ITEM_OF[parse_index(e.response)]])
            n_index += 1
    assert n_index > 20
    # item2index responses are that very item's index
    for e in mut_examples(texts, CODES, np.random.default_rng(3)):
        if "<" in e.response:
            item = ITEM_OF[parse_index(e.response)]
            assert TITLES[item] in e.prompt or ", ".join(texts.genres[item]) in \
                e.prompt.replace(" and ", ", ")


def test_template_draws_are_deterministic_per_seed_and_vary_across_seeds():
    texts = _texts()

    def build(seed: int) -> list:
        return (build_lcrec_examples(_split(), texts, CODES, LCREC_TASKS,
                                     np.random.default_rng(seed))
                + build_semconv_examples(_split(), texts, CODES, SC_TASKS,
                                         np.random.default_rng(seed)))

    assert build(0) == build(0)
    assert [e.prompt for e in build(0)] != [e.prompt for e in build(1)]
    prompts = {e.prompt for seed in range(20)
               for e in seq_examples([np.array([0, 1])], CODES, np.random.default_rng(seed))}
    assert len(prompts) >= 4  # several templates are in use


def test_negatives_are_never_positives_and_follow_popularity():
    rng = np.random.default_rng(0)
    counts = np.array([50, 0, 5, 5, 5, 5])
    draws = np.concatenate([sample_negatives(counts, np.array([2]), 1, rng)
                            for _ in range(2000)])
    assert not np.isin(draws, [1, 2]).any()  # positives and untrained items never drawn
    freq = np.bincount(draws, minlength=6)
    assert freq[0] > 5 * freq[3] and freq[3] > 0
    many = sample_negatives(counts, np.array([0]), 10, rng)
    assert sorted(many.tolist()) == [2, 3, 4, 5]  # distinct, fewer when fewer eligible


def test_sc_negative_examples_respect_each_users_positives():
    train = {0: [0, 1, 2, 3], 2: [2, 0, 1, 4, 5], 4: [4, 5, 6, 7]}  # first item -> user
    n = {"yes": 0, "no": 0, "choice": 0}
    for seed in range(10):
        examples = build_semconv_examples(_split(), _texts(), CODES, ("negative",),
                                          np.random.default_rng(seed), n_negatives=2)
        for e in examples:
            history, candidates = _runs(e.prompt)
            positives = train[history[0]]
            t = len(history)
            assert history == positives[:t]  # the history: a training prefix of the user
            if e.response in ("yes", "no"):
                (candidate,) = candidates
                assert (candidate == positives[t]) == (e.response == "yes")
                assert e.response == "yes" or candidate not in positives
                n[e.response] += 1
            else:
                answer = ITEM_OF[parse_index(e.response)]
                assert answer in candidates and 2 <= len(candidates) <= 3
                rejected = "not" in e.prompt or "skip" in e.prompt
                assert (answer not in positives) == rejected
                others = [i for i in candidates if i != answer]
                assert all((i in positives) == rejected for i in others)
                if rejected:  # the positives offered are not shown in the history
                    assert not set(others) & set(history)
                else:
                    assert answer == positives[t]
                n["choice"] += 1
    assert n["yes"] == 30 and n["no"] == 60 and n["choice"] > 0


def test_unknown_task_is_a_one_line_error_listing_the_choices():
    with pytest.raises(ValueError) as err:
        build_lcrec_examples(_split(), _texts(), CODES, ("seq", "bogus"),
                             np.random.default_rng(0))
    assert "\n" not in str(err.value) and "bogus" in str(err.value)
    assert all(name in str(err.value) for name in LCREC_TASKS)
    with pytest.raises(ValueError, match="choose from seq, text, query, negative"):
        build_semconv_examples(_split(), _texts(), CODES, ("mut",), np.random.default_rng(0))


def test_task_counts_and_asy_limit():
    texts, rng = _texts(), np.random.default_rng(0)
    split = _split()
    examples = build_lcrec_examples(split, texts, CODES, LCREC_TASKS, rng)
    count = {task: sum(e.task == task for e in examples) for task in LCREC_TASKS}
    assert count == {"seq": 10, "mut": 20, "asy": 10, "ite": 3, "per": 4}
    limited = asy_examples(split.histories("valid"), texts, CODES, rng, limit=4)
    assert len(limited) == 4
    sc = build_semconv_examples(split, texts, CODES, SC_TASKS, rng, n_negatives=1)
    count = {task: sum(e.task == task for e in sc) for task in SC_TASKS}
    assert count["seq"] == 10 and count["text"] == 20 and count["query"] == 3
    assert 6 <= count["negative"] <= 9


def test_builders_accept_the_3_1_1_training_histories():
    pairs = np.array([(1, 4), (0, 2), (1, 3), (0, 1), (0, 0), (1, 5)])
    times = np.array([10, 5, 10, 5, 1, 3])
    histories = train_histories(pairs, times, n_users=3)
    # user 0: 0 (t1), then 1 and 2 tie at t5 (1 first); user 1: 5, then 3 and 4 tie; user 2
    assert [h.tolist() for h in histories] == [[0, 1, 2], [5, 3, 4], []]
    assert all(h.dtype == np.int64 for h in histories)
    examples = build_lcrec_examples(histories, _texts(), CODES, ("seq",),
                                    np.random.default_rng(0))
    assert [(_items_in(e.prompt), ITEM_OF[parse_index(e.response)]) for e in examples] == \
        [([0], 1), ([0, 1], 2), ([5], 3), ([5, 3], 4)]
    with pytest.raises(ValueError):
        train_histories(pairs, times[:-1], n_users=3)


def test_item_texts_from_frame_and_text():
    texts = _texts()
    assert len(texts) == N_ITEMS
    assert texts.text(0) == "Alpha (1995). Genres: Comedy, Romance."
    assert texts.text(2) == "Charlie. Genres: Drama, Thriller."  # year 0 = unknown
    frame = pd.DataFrame({"title": ["X", "Y"], "year": [1990, 2000], "genres": ["", "Drama"]},
                         index=pd.Index([7, 3], name="item_id"))
    other = ItemTexts.from_frame(frame, np.array([3, 7]))
    assert other.title == ("Y", "X") and other.genres == (("Drama",), ())
    assert other.text(1) == "X (1990)."
    with pytest.raises(ValueError, match="not in the items table"):
        ItemTexts.from_frame(frame, np.array([3, 4]))


def test_intention_and_preference_texts_come_from_the_metadata():
    texts, rng = _texts(), np.random.default_rng(0)
    query = intention_query(texts, 0, rng)
    assert "Comedy and Romance" in query
    preference = preference_text(texts, np.array([1, 2, 5, 7, 0]), rng)
    # Drama 4x, then Comedy 2x (ties by name: Comedy before Romance / Thriller / War)
    assert "Drama and Comedy" in preference and "1990s" in preference
