"""The interpretability measures on hand-made cases whose answers are known: retrieval
ranks, keyword overlap, genre scores, codebook usage, Jaccard stability, descriptor sets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from facelib.systems.face.interpret.descriptors import (
    descriptor_sentences,
    nearest_words,
    random_descriptors,
    sample_ids,
    table_to_indices,
)
from facelib.systems.face.interpret.genres import (
    average_precision,
    dominant_genre,
    genre_lists,
    genre_matrix,
    genre_metrics,
    genre_names,
    prior_scores,
    top_k,
)
from facelib.systems.face.interpret.keywords import ProfileKeywords, needed_words, profile_words
from facelib.systems.face.interpret.params import InterpretError
from facelib.systems.face.interpret.retrieval import chance_metrics, own_ranks, rank_metrics, retrieval_metrics
from facelib.systems.face.interpret.usage import (
    entropy_bits,
    jaccard_rows,
    pairwise_jaccard,
    top_words,
    usage_stats,
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- retrieval
def test_retrieval_own_profile_first():
    targets = np.eye(6, dtype=np.float32)  # 6 orthogonal profiles
    own = np.array([4, 0, 2])
    queries = unit(targets[own] + 0.1)  # each query nearest its own profile
    m = retrieval_metrics(queries, targets, own)
    assert m["hit@1"] == 1.0 and m["hit@10"] == 1.0 and m["mrr"] == 1.0
    assert m["median_rank"] == 1.0
    assert m["cos_own"] > m["cos_other"]


def test_retrieval_known_ranks():
    targets = np.eye(4, dtype=np.float32)
    # query 0 scores targets [0.1, 0.9, 0.5, 0.0] -> own target 0 ranks 3;
    # query 1 scores [0.2, 0.8, 0.0, 0.0] -> own target 1 ranks 1
    queries = np.array([[0.1, 0.9, 0.5, 0.0], [0.2, 0.8, 0.0, 0.0]], dtype=np.float32)
    ranks, cos_own, cos_other = own_ranks(queries, targets, np.array([0, 1]))
    assert ranks.tolist() == [3, 1]
    assert cos_own == pytest.approx([0.1, 0.8])
    assert cos_other == pytest.approx([(0.9 + 0.5) / 3, 0.2 / 3])
    m = rank_metrics(ranks, ks=(1, 2))
    assert m["hit@1"] == 0.5 and m["hit@2"] == 0.5
    assert m["mrr"] == pytest.approx((1 / 3 + 1) / 2)


def test_retrieval_ties_count_against_the_query():
    targets = np.eye(3, dtype=np.float32)
    queries = np.ones((1, 3), dtype=np.float32)  # equal to every profile
    ranks, _, _ = own_ranks(queries, targets, np.array([1]))
    assert ranks.tolist() == [3]


def test_retrieval_chance():
    c = chance_metrics(4, ks=(1, 10))
    assert c["hit@1"] == 0.25 and c["hit@10"] == 1.0
    assert c["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


# ----------------------------------------------------------------------------- keywords
def test_profile_words_lowercase_content_tokens():
    words = profile_words("A female viewer. Liked 27 movies, mostly Drama and Children's, "
                          "for example Drama!")
    assert words == ["female", "viewer", "liked", "movies", "mostly", "drama", "children",
                     "example"]  # no "a", "and", "for", digits or duplicates
    assert needed_words(["Drama and war", "war movies"]) == ["drama", "movies", "war"]


def test_keyword_overlap_counts_lemma_matches():
    texts = ["Liked movies about children and war.", "A quiet garden."]
    words = needed_words(texts)
    row = {w: i for i, w in enumerate(words)}
    kw = ProfileKeywords.from_texts(texts, row)
    desc = [["movie", "child", "war", "zebra"],   # movies->movie, children->child, war
            ["garden", "quiet", "storm", "ocean"]]
    exact = kw.exact(desc)
    assert exact.tolist() == [[True, True, True, False], [True, True, False, False]]


def test_keyword_synonym_share_with_known_embeddings():
    texts = ["drama war", "comedy"]
    table_words = ["drama", "war", "comedy", "tragedy", "battle", "zebra"]
    row = {w: i for i, w in enumerate(table_words)}
    emb = np.eye(6, dtype=np.float32)
    emb[3] = unit(np.array([0.8, 0, 0, 0.6, 0, 0]))  # tragedy ~ drama, cos 0.8
    emb[4] = unit(np.array([0, 0.5, 0, 0, 0.866, 0]))  # battle ~ war, cos 0.5
    kw = ProfileKeywords.from_texts(texts, row)
    desc_words = [["tragedy", "battle"], ["comedy", "zebra"]]
    desc_rows = np.array([[row[w] for w in ws] for ws in desc_words])
    near = kw.near(desc_rows, emb, threshold=0.7)
    assert near.tolist() == [[True, False], [True, False]]
    m = kw.shares(desc_words, desc_rows, emb, threshold=0.7)
    assert m["keyword_share"] == pytest.approx(1 / 4)  # only "comedy" occurs
    assert m["synonym_share"] == pytest.approx(2 / 4)  # + "tragedy" (0.8 >= 0.7)
    assert m["any_keyword"] == pytest.approx(1 / 2)
    assert kw.shares(desc_words, desc_rows, emb, 0.45)["synonym_share"] == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------- genres
def test_genre_scores_known_values():
    items = pd.DataFrame({"genres": ["Drama|War", "Comedy", "Comedy|Drama", "(no genres listed)"]})
    lists = genre_lists(items)
    names = genre_names(lists)
    assert names == ["Comedy", "Drama", "War"] and lists[3] == []
    truth = genre_matrix(lists, names)
    assert top_k(truth) == 2  # mean genre count (2 + 1 + 2) / 3 = 1.67
    scores = np.array([[0.1, 0.9, 0.5],    # Drama, War ranked 1, 2: AP 1, top-1 right
                       [0.2, 0.9, 0.5],    # Comedy ranked 3: AP 1/3, top-1 wrong
                       [0.9, 0.1, 0.5],    # Comedy 1, Drama 3: AP (1 + 2/3) / 2
                       [0.0, 0.0, 1.0]])   # no genre: left out
    ap = average_precision(scores, truth)
    assert ap[:3] == pytest.approx([1.0, 1 / 3, (1 + 2 / 3) / 2]) and math.isnan(ap[3])
    m = genre_metrics(scores, truth, k=2)
    assert m["p@1"] == pytest.approx(2 / 3)
    assert m["map"] == pytest.approx((1 + 1 / 3 + 5 / 6) / 3)
    # top-2 sets: {Drama, War} F1 1; {Drama, War} vs {Comedy} F1 0; {Comedy, War} vs
    # {Comedy, Drama} F1 1/2
    assert m["f1@2"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_genre_prior_and_dominant():
    lists = [["Comedy"], ["Comedy", "Drama"], ["Animation", "Comedy"], ["Drama"]]
    names = genre_names(lists)
    truth = genre_matrix(lists, names)
    prior = prior_scores(truth, 2)
    assert prior.shape == (2, 3) and prior[0].argmax() == names.index("Comedy")
    m = genre_metrics(prior_scores(truth, 4), truth, 1)
    assert m["p@1"] == pytest.approx(3 / 4)  # the majority guess "Comedy"
    assert dominant_genre(lists, truth, names) == ["Comedy", "Drama", "Animation", "Drama"]
    assert genre_lists(pd.DataFrame({"title": ["x"]})) is None


# ----------------------------------------------------------------------------- usage
def test_entropy_and_perplexity_of_known_distributions():
    assert entropy_bits(np.array([2, 2, 2, 2])) == pytest.approx(2.0)
    assert entropy_bits(np.array([5, 0, 0])) == 0.0
    assert entropy_bits(np.array([1, 1, 2])) == pytest.approx(1.5)
    idx = np.array([[0, 1], [0, 2], [0, 3], [0, 1]])  # slots: 0 x4, 1 x2, 2 x1, 3 x1
    s = usage_stats(idx, vocab_size=10)
    assert s["distinct"] == 4 and s["coverage"] == pytest.approx(0.4)
    assert s["entropy"] == pytest.approx(1.75) and s["perplexity"] == pytest.approx(2 ** 1.75)
    assert s["concept_distinct"] == pytest.approx((1 + 3) / 2)
    assert s["concept_distinct_min"] == 1 and s["concept_distinct_max"] == 3
    assert s["top10_share"] == 1.0
    words = np.array(list("abcdefghij"))
    assert top_words(idx, words, n=2) == {"a": 4, "b": 2}


def test_jaccard():
    a = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    b = np.array([[3, 4, 5, 6], [4, 3, 2, 1], [7, 8, 9, 10]])
    assert jaccard_rows(a, b) == pytest.approx([2 / 6, 1.0, 0.0])
    runs = {"0": a, "1": b, "2": a}
    pw = pairwise_jaccard(runs)
    assert pw["0~2"] == 1.0 and pw["0~1"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert set(pw) == {"0~1", "0~2", "1~2"}


# ----------------------------------------------------------------------------- descriptor sets
def _table(n_users: int, n_items: int, c: int, words: list[str]) -> pd.DataFrame:
    rows = []
    for kind, n in (("user", n_users), ("item", n_items)):
        for e in range(n):
            rows += [(kind, e, k, words[(e + k) % len(words)]) for k in range(c)]
    return pd.DataFrame(rows, columns=["entity", "entity_id", "concept", "word"])


def test_table_to_indices_and_errors():
    words = ["drama", "war", "comedy", "garden", "ocean"]
    index = {w: i for i, w in enumerate(words)}
    table = _table(3, 2, 2, words).sample(frac=1.0, random_state=0)  # any row order
    d = table_to_indices(table, index, {"user": 3, "item": 2})
    assert d["user"].tolist() == [[0, 1], [1, 2], [2, 3]] and d["item"].shape == (2, 2)
    with pytest.raises(InterpretError, match="does not hold 2 words for each of the 4 users"):
        table_to_indices(table, index, {"user": 4, "item": 2})
    bad = table.copy()
    bad.loc[bad.index[0], "word"] = "unknownword"
    with pytest.raises(InterpretError, match="not in the vocabulary"):
        table_to_indices(bad, index, {"user": 3, "item": 2})
    with pytest.raises(InterpretError, match="lacks column"):
        table_to_indices(table.drop(columns="concept"), index, {"user": 3, "item": 2})


def test_random_nearest_sample():
    d = random_descriptors({"user": 50, "item": 20}, 30, 5, np.random.default_rng(0))
    assert d["user"].shape == (50, 5) and d["item"].shape == (20, 5)
    assert all(len(set(r)) == 5 for r in d["user"]) and d["user"].max() < 30
    again = random_descriptors({"user": 50, "item": 20}, 30, 5, np.random.default_rng(0))
    assert np.array_equal(d["user"], again["user"])
    word_emb = np.eye(5, dtype=np.float32)
    profiles = unit(np.array([[0.1, 0.9, 0.0, 0.5, 0.0], [0.05, 0.0, 1.0, 0.0, 0.2]]))
    assert nearest_words(profiles, word_emb, 3, chunk=1).tolist() == [[1, 3, 0], [2, 4, 0]]
    ids = sample_ids(100, 10, np.random.default_rng(0))
    assert len(ids) == 10 and np.all(np.diff(ids) > 0)
    assert sample_ids(5, 0, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4]
    assert sample_ids(5, 9, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4]


def test_descriptor_sentences_are_the_face_prompt():
    words = np.array(["drama", "war", "comedy"])
    user, item = (descriptor_sentences(words, np.array([[0, 2]]), k, "book")[0]
                  for k in ("user", "item"))
    assert user == ("The user and his likes can be described as the following words: "
                    "drama, comedy")
    assert item == ("The book attracts those who can be described as the following words: "
                    "drama, comedy")


def test_sentence_tokens_match_the_embedding_space_prompt():
    """Through the real tokenizer, the text sentence is the align stage's token sequence
    [CLS] P w1 , w2 , w3 [SEP] (tokenizer only; the model is not loaded)."""
    from transformers import AutoTokenizer

    from facelib.systems.face.model.prompt import USER_PROMPT
    from facelib.text.encoder import model_path

    tok = AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)
    words = np.array(["drama", "war", "comedy"])
    text = descriptor_sentences(words, np.array([[0, 1, 2]]), "user")[0]
    ids = tok(text)["input_ids"]

    def piece(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"]

    comma = piece(",")
    expected = [tok.cls_token_id, *piece(USER_PROMPT), *piece("drama"), *comma,
                *piece("war"), *comma, *piece("comedy"), tok.sep_token_id]
    assert ids == expected


# ----------------------------------------------------------------------------- item retrieval
def _fixed_embed(table: dict[str, np.ndarray], calls: list[list[str]] | None = None):
    """An ``embed`` that looks texts up in ``table`` (records each call)."""

    def embed(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(list(texts))
        return np.stack([table[t] for t in texts]).astype(np.float32)

    return embed


def test_encoder_judge_picks_the_highest_cosine():
    table = {"q0": np.array([1.0, 0.0, 0.0]), "q1": np.array([0.0, 1.0, 0.0]),
             "a": np.array([10.0, 0.0, 1.0]),   # cos(q0, a) 0.995: large norm, not what counts
             "b": np.array([0.6, 0.8, 0.0]),    # cos(q0, b) 0.6, cos(q1, b) 0.8
             "c": np.array([0.1, 0.1, 0.0]),    # cos(q1, c) 0.707 despite the small norm
             "d": np.array([0.0, 0.0, 1.0])}
    from facelib.systems.face.interpret.items import EncoderJudge, ItemJudge

    judge = EncoderJudge(_fixed_embed(table))
    assert isinstance(judge, ItemJudge)
    chosen = judge.choose(["q0", "q1"], [["d", "b", "a"], ["c", "d", "b"]])
    assert chosen.tolist() == [2, 2]
    assert judge.choose(["q1"], [["a", "c", "d"]]).tolist() == [1]  # 0.707 beats 0.0995
    with pytest.raises(ValueError, match="same number"):
        judge.choose(["q0", "q1"], [["a", "b"], ["a"]])


def test_encoder_judge_embeds_each_candidate_text_once():
    from facelib.systems.face.interpret.items import EncoderJudge

    rng = np.random.default_rng(0)
    table = {t: rng.standard_normal(4) for t in ["q0", "q1", "a", "b", "c"]}
    calls: list[list[str]] = []
    EncoderJudge(_fixed_embed(table, calls)).choose(["q0", "q1"], [["a", "b", "c"],
                                                                   ["c", "a", "b"]])
    assert calls[0] == ["q0", "q1"] and sorted(calls[1]) == ["a", "b", "c"]


def test_random_judge_scores_chance():
    """Random embeddings: accuracy near 1/N (2,000 questions, seeded)."""
    from facelib.systems.face.interpret.items import EncoderJudge, candidate_sets, retrieval_accuracy

    rng = np.random.default_rng(1)
    n_items, n = 500, 10
    table = {f"t{i}": rng.standard_normal(16) for i in range(n_items)}
    table.update({f"q{i}": rng.standard_normal(16) for i in range(n_items)})
    items = rng.integers(0, n_items, size=2000)
    cands, truth = candidate_sets(items, n_items, n, np.random.default_rng(2))
    chosen = EncoderJudge(_fixed_embed(table)).choose(
        [f"q{i}" for i in items], [[f"t{j}" for j in row] for row in cands])
    assert abs(retrieval_accuracy(chosen, truth) - 1 / n) < 0.03
    aligned = EncoderJudge(_fixed_embed({**table, **{f"q{i}": table[f"t{i}"]
                                                     for i in range(n_items)}}))
    chosen = aligned.choose([f"q{i}" for i in items], [[f"t{j}" for j in row] for row in cands])
    assert retrieval_accuracy(chosen, truth) == 1.0  # the query is the item's own text


def test_candidate_sets_distinct_seeded_true_item_once():
    from facelib.systems.face.interpret.items import candidate_sets

    items = np.array([0, 7, 19, 19, 3])
    cands, truth = candidate_sets(items, 20, 20, np.random.default_rng(5))  # N = all items
    assert cands.shape == (5, 20)
    for row, pos, item in zip(cands, truth, items, strict=True):
        assert sorted(row.tolist()) == list(range(20))  # distinct, all items
        assert row[pos] == item and (row == item).sum() == 1
    cands, truth = candidate_sets(items, 20, 6, np.random.default_rng(5))
    assert all(len(set(r)) == 6 and (r == i).sum() == 1 and r[p] == i
               for r, p, i in zip(cands, truth, items, strict=True))
    again = candidate_sets(items, 20, 6, np.random.default_rng(5))
    assert np.array_equal(cands, again[0]) and np.array_equal(truth, again[1])
    with pytest.raises(InterpretError, match="retrieval_candidates"):
        candidate_sets(items, 20, 21, np.random.default_rng(0))


def test_chance_values():
    from facelib.systems.face.interpret.items import generation_chance, retrieval_chance

    assert retrieval_chance([10, 20, 40, 60]) == pytest.approx(
        {"acc@10": 0.1, "acc@20": 0.05, "acc@40": 0.025, "acc@60": 1 / 60})
    c = generation_chance(100)
    assert c["hit@10"] == pytest.approx(0.1)
    assert c["mrr"] == pytest.approx(sum(1 / r for r in range(1, 101)) / 100)
    assert generation_chance(4)["hit@10"] == 1.0


def test_item_texts_title_year_genres_or_profile():
    from facelib.systems.face.interpret.items import item_texts

    items = pd.DataFrame({"title": ["Heat", "Up"], "year": [1995, None],
                          "genres": ["Action|Crime", "(no genres listed)"]})
    texts, source = item_texts(items, ["p0", "p1"])
    assert texts == ["Heat (1995); Action, Crime", "Up"] and source == "title (year); genres"
    assert item_texts(pd.DataFrame({"raw_id": [1, 2]}), ["p0", "p1"]) == (["p0", "p1"],
                                                                         "profile")


def test_item_retrieval_asks_every_variant_the_same_questions():
    """The study loop: every (backbone, seed, variant) is judged on the same candidates
    (a set shared by runs is judged once), and the accuracy is the judge's."""
    from facelib.data import build_dataset, make_synthetic
    from facelib.systems.face.interpret.descriptors import VARIANTS
    from facelib.systems.face.interpret.inputs import StudyInputs
    from facelib.systems.face.interpret.params import InterpretParams
    from facelib.systems.face.interpret.studies import item_candidates, item_retrieval_records

    ds = build_dataset("synthetic", make_synthetic(30, 25, ratings_per_user=5, seed=0), 4.0, 0)
    words = np.array([f"w{i}" for i in range(12)])
    rng = np.random.default_rng(0)

    def dset() -> dict[str, np.ndarray]:
        return {k: np.stack([rng.choice(12, 3, replace=False) for _ in range(n)])
                for k, n in (("user", ds.n_users), ("item", ds.n_items))}

    p = InterpretParams(dataset="synthetic", backbones=["lightgcn", "mf"], seeds=[0, 1],
                        retrieval_candidates=[5, 10])
    nearest = dset()  # one for every run, as in the stage; random: one per seed
    shared = {"random": {s: dset() for s in p.seeds}, "nearest": dict.fromkeys(p.seeds, nearest)}
    sets = {(b, s, v): (shared[v][s] if v in shared else dset())
            for b in p.backbones for s in p.seeds for v in VARIANTS}
    sample = {"user": np.arange(ds.n_users), "item": np.sort(rng.choice(ds.n_items, 12, False))}
    inp = StudyInputs(ds=ds, art=None, words=words, sets=sets, sample=sample, root=None)

    class FirstJudge:
        name = "first candidate"

        def __init__(self) -> None:
            self.asked: list[tuple[list[str], list[list[str]]]] = []

        def choose(self, descriptor_texts, candidate_texts):
            self.asked.append((list(descriptor_texts), [list(r) for r in candidate_texts]))
            return np.zeros(len(descriptor_texts), dtype=np.int64)

    judge = FirstJudge()
    texts = [f"item {i}" for i in range(ds.n_items)]
    recs = item_retrieval_records(inp, p, judge, texts)
    distinct_sets = 2 * 2 * 2 + 2 + 1  # face, map per (b, s); random per seed; nearest
    assert len(judge.asked) == distinct_sets * 2  # two N each
    for n in (5, 10):
        rows = [c for _, c in judge.asked if len(c[0]) == n]
        assert len(rows) == distinct_sets and all(r == rows[0] for r in rows)
        assert all(len(set(r)) == n for r in rows[0])
    questions = item_candidates(inp, p)
    assert all(np.array_equal(q[0], item_candidates(inp, p)[n][0]) for n, q in questions.items())
    assert {(r.backbone, r.run, r.variant) for r in recs} == {
        (b, str(s), v) for b in p.backbones for s in p.seeds for v in VARIANTS}
    for r in recs:
        n = int(r.metric.split("@")[1])
        assert r.value == pytest.approx(np.mean(questions[n][1] == 0))


# ----------------------------------------------------------------------------- item generation
def _tiny_face(c: int = 2, v: int = 8, d: int = 8):
    import torch

    from facelib.systems.face.model.module import FACE, FACEConfig

    torch.manual_seed(0)
    cfg = FACEConfig(word_num=c, word_dim=v, ffn_dim=16)
    return FACE(cfg, d, torch.eye(v))


def test_decode_words_is_the_decoder_half_in_eval_mode():
    import torch

    face = _tiny_face()
    face.train()
    k = torch.tensor([[0, 3], [5, 1], [2, 7]])
    x_hat = face.decode_words(k)
    assert x_hat.shape == (3, 8) and face.training  # mode restored
    face.eval()
    with torch.no_grad():
        expected = face.head(face.concept_decoder(face.quantizer.codebook()[k]))
    assert torch.allclose(x_hat, expected)
    assert torch.allclose(face.decode_words(k), x_hat)  # no dropout: deterministic
    assert torch.allclose(face.decode_words(k, batch_size=1), x_hat, atol=1e-6)
    with pytest.raises(ValueError, match=r"word indices \[N, 2\]"):
        face.decode_words(torch.tensor([[0, 1, 2]]))


def test_generation_mrr_one_when_words_decode_to_the_item():
    """A decoder that maps each item's words to its own embedding: every item ranks first
    (MRR 1); swapped words rank lower."""
    import torch
    from torch import nn

    from facelib.systems.face.interpret.items import generation_metrics

    face = _tiny_face(c=2, v=8, d=8)
    with torch.no_grad():  # codebook = E_vocab = I, Enc_2 = identity, head sums the one-hots
        face.quantizer.mapping.weight.copy_(torch.eye(8))
        face.quantizer.mapping.bias.zero_()
        face.concept_decoder = nn.Identity()
        face.head.linear.weight.copy_(torch.cat([torch.eye(8), torch.eye(8)], dim=1))
        face.head.linear.bias.zero_()
    words = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])  # item i: words 2i, 2i+1
    item_emb = torch.zeros(4, 8)
    item_emb[torch.arange(4).repeat_interleave(2), words.ravel()] = 1.0
    items = np.array([2, 0, 3])
    x_hat = face.decode_words(words[items]).numpy()
    assert np.allclose(x_hat, item_emb[items].numpy())
    m = generation_metrics(x_hat, item_emb.numpy(), items)
    assert m["mrr"] == 1.0 and m["hit@10"] == 1.0 and m["median_rank"] == 1.0
    wrong = face.decode_words(words[[0, 1, 2]]).numpy()  # every item gets another's words
    m = generation_metrics(wrong, item_emb.numpy(), items)
    assert m["mrr"] < 1.0
    assert m["mrr"] == pytest.approx((1 / 4 + 1 / 4 + 1 / 4) / 3)  # ties count against
