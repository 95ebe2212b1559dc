"""Profiles: train-only facts, no validation/test leakage, builders and their names."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest_text import small_ds  # noqa: F401  (fixture)
from facelib.data import DataError, RecDataset
from facelib.text.profiles import (
    GeneratedProfileBuilder,
    GivenProfileBuilder,
    ProfileBuilder,
    TemplateProfileBuilder,
    select_builder,
    top_coliked,
)


def _mentions(text: str, title: str) -> bool:
    """``title`` appears as a whole title (synthetic titles end in a number: "... 1" must
    not match "... 12")."""
    return re.search(re.escape(title) + r"(?!\d)", text) is not None


def test_user_profiles_never_mention_held_out_items(small_ds):
    ds = small_ds
    prof = TemplateProfileBuilder(n_examples=50).build(ds)  # quote every liked title
    titles = ds.items["title"].tolist()
    assert len(set(titles)) == len(titles)
    train = [set(x.tolist()) for x in ds.user_items("train")]
    checked = 0
    for split in ("valid", "test"):
        for u, i in ds.split(split):
            if i in train[u]:
                continue
            assert not _mentions(prof.user[u], titles[i]), (u, titles[i], prof.user[u])
            checked += 1
    assert checked > 20
    # and the profile does quote the user's training titles (the check can fail)
    u = int(ds.train[0, 0])
    assert any(_mentions(prof.user[u], titles[i]) for i in train[u])


def test_profiles_depend_on_training_split_only(small_ds):
    ds = small_ds
    shuffled = dataclasses.replace(ds, valid=ds.valid[:0], test=ds.test[:0])
    a, b = TemplateProfileBuilder().build(ds), TemplateProfileBuilder().build(shuffled)
    assert a.user == b.user and a.item == b.item
    moved = dataclasses.replace(ds, train=np.concatenate([ds.train, ds.valid]))
    c = TemplateProfileBuilder().build(moved)
    assert c.user != a.user  # so the builder does read interactions


def test_item_profile_counts_only_training_audience(small_ds):
    ds = small_ds
    prof = TemplateProfileBuilder().build(ds)
    pop = np.bincount(ds.train[:, 1], minlength=ds.n_items)
    for i in range(ds.n_items):
        who = re.search(r"Liked by (\d+) viewers?, (\d+)% (female|male)", prof.item[i])
        assert who and int(who[1]) == pop[i], prof.item[i]
        audience = ds.users["gender"].to_numpy()[ds.train[ds.train[:, 1] == i, 0]]
        assert int(who[2]) == round(100 * (audience == who[3]).mean())


def test_item_profile_reads_like_the_template(small_ds):
    prof = TemplateProfileBuilder().build(small_ds)
    row = small_ds.items.iloc[0]
    assert prof.builder == "template"
    assert prof.item[0].startswith(f"{row['title']} ({row['year']}), "
                                   f"{row['genres'].replace('|', ', ')}.")
    assert re.search(r"mostly aged [\w -]+, often [\w/ -]+\.", prof.item[0]), prof.item[0]
    assert len(prof.user) == small_ds.n_users and len(prof.item) == small_ds.n_items
    assert all(p.startswith("A ") and "Liked " in p for p in prof.user)


def test_top_coliked_ranks_by_cosine_with_min_support():
    # users 0-2 like items 0 and 1; users 0-1 also like 2; user 3 likes 0 and 3 (support 1)
    r = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]],
                               dtype=np.float32))
    out = top_coliked(r, k=2, block=3)
    assert out[0].tolist() == [1, 2]
    assert out[2].tolist() == [1, 0]  # cos(2,1) = 2/sqrt(6) > cos(2,0) = 2/sqrt(8)
    assert out[3].tolist() == []


def test_builder_without_metadata_degrades_to_ids(small_ds):
    bare = dataclasses.replace(small_ds, users=small_ds.users[["raw_id"]],
                               items=small_ds.items[["raw_id"]], item_noun="book")
    prof = TemplateProfileBuilder().build(bare)
    assert prof.item[0].startswith(f"book {bare.items['raw_id'].iloc[0]}. Liked by ")
    assert prof.user[0].startswith("A reader. Liked ")


def test_given_builder_and_auto_choice(small_ds):
    given = {"user": [f"user {u}" for u in range(small_ds.n_users)],
             "item": [f"item {i}" for i in range(small_ds.n_items)]}
    ds = dataclasses.replace(small_ds, profiles=given)
    b = select_builder("auto", ds)
    assert isinstance(b, GivenProfileBuilder) and b.name == "rlmrec-given"
    prof = b.build(ds)
    assert prof.user == given["user"] and prof.builder == "rlmrec-given"
    assert isinstance(select_builder("auto", small_ds), TemplateProfileBuilder)
    assert isinstance(select_builder("template", ds), TemplateProfileBuilder)
    with pytest.raises(DataError, match="has no given profiles; set text.builder"):
        select_builder("given", small_ds).build(small_ds)
    short = dataclasses.replace(ds, profiles={"user": given["user"][:3], "item": given["item"]})
    with pytest.raises(DataError, match="run the data stage again"):
        GivenProfileBuilder().build(short)
    with pytest.raises(DataError, match="unknown profile builder"):
        select_builder("llm", ds)


def test_generated_builder_with_a_fake_llm(small_ds):
    seen: list[str] = []

    def fake_generate(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return [f"  generated {len(p)}  " for p in prompts]

    b = GeneratedProfileBuilder(fake_generate, name="fake-llm", batch_size=7)
    assert isinstance(b, ProfileBuilder)
    prof = b.build(small_ds)
    facts = TemplateProfileBuilder().build(small_ds)
    assert prof.builder == "fake-llm"
    assert len(prof.user) == small_ds.n_users and len(prof.item) == small_ds.n_items
    assert prof.user[0] == f"generated {len(seen[0])}"
    assert facts.user[0] in seen[0] and "describe what this user likes" in seen[0]
    assert facts.item[0] in seen[small_ds.n_users]
    with pytest.raises(DataError, match="fix the generate callable"):
        GeneratedProfileBuilder(lambda ps: ps[:-1]).build(small_ds)


def test_template_builder_is_fast_enough_for_ml1m_scale():
    rng = np.random.default_rng(0)
    n_users, n_items = 2000, 1500
    pairs = np.unique(np.stack([rng.integers(0, n_users, 60_000),
                                rng.zipf(1.3, 60_000) % n_items], 1), axis=0)
    users = pd.DataFrame({"raw_id": range(n_users), "gender": rng.choice(["male", "female"],
                                                                          n_users)})
    items = pd.DataFrame({"raw_id": range(n_items), "title": [f"T{i}" for i in range(n_items)],
                          "year": 1990, "genres": "Drama|Comedy"})
    ds = RecDataset("bench", n_users, n_items, pairs, pairs[:0], pairs[:0], users, items)
    import time

    t = time.perf_counter()
    TemplateProfileBuilder().build(ds)
    assert time.perf_counter() - t < 10
