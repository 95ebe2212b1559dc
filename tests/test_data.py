"""Data layer: split invariants, importer round-trip, clear errors, atomic outputs."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from facelib.data import (
    DataError,
    build_dataset,
    import_rlmrec,
    load_dataset,
    make_synthetic,
    obtain_raw,
    read_movielens,
    save_dataset,
    split_interactions,
)
from facelib.data import acquire
from facelib.data.acquire import SOURCES, source_for


def _keys(pairs: np.ndarray, n_items: int) -> set[int]:
    return set((pairs[:, 0] * n_items + pairs[:, 1]).tolist())


# ---------------------------------------------------------------- split invariants


def test_split_is_disjoint_and_complete(synthetic_ds):
    ds = synthetic_ds
    tr, va, te = (_keys(ds.split(s), ds.n_items) for s in ("train", "valid", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    raw = make_synthetic(300, 200, seed=0).ratings
    n_pos = len(raw.loc[raw.rating >= 4, ["user", "item"]].drop_duplicates())
    assert len(tr) + len(va) + len(te) == n_pos


def test_every_user_and_item_is_in_training(synthetic_ds):
    ds = synthetic_ds
    assert set(np.unique(ds.train[:, 0])) == set(range(ds.n_users))
    assert set(np.unique(ds.train[:, 1])) == set(range(ds.n_items))


def test_split_ratio_is_close_to_3_1_1(synthetic_ds):
    n = np.array([len(synthetic_ds.split(s)) for s in ("train", "valid", "test")], float)
    np.testing.assert_allclose(n / n.sum(), [0.6, 0.2, 0.2], atol=0.03)


def test_users_with_three_or_more_positives_have_all_three_splits():
    rng = np.random.default_rng(1)
    # 20 items liked by everyone's neighbours: no item is left without training data
    pairs = np.array([(u, i) for u in range(60) for i in rng.choice(20, 3 + u % 9, replace=False)])
    tr, va, te = split_interactions(pairs, 60, 20, seed=3)
    for u in range(60):
        n = [(a[:, 0] == u).sum() for a in (tr, va, te)]
        assert min(n) >= 1, (u, n)
        total = sum(n)
        assert abs(n[1] - round(total * 0.2)) <= 1 and abs(n[2] - round(total * 0.2)) <= 1


def test_users_with_fewer_than_three_positives_keep_them_in_training():
    pairs = np.array([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4)])
    tr, va, te = split_interactions(pairs, 2, 5, seed=0)
    assert (tr[:, 0] == 0).sum() == 2


def test_split_is_deterministic_per_seed_and_differs_across_seeds():
    raw = make_synthetic(200, 150, seed=5)
    a = build_dataset("s", raw, 4.0, seed=7)
    b = build_dataset("s", raw, 4.0, seed=7)
    c = build_dataset("s", raw, 4.0, seed=8)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.split(s), b.split(s))
    assert not np.array_equal(a.test, c.test)


def test_heldout_interactions_of_items_unseen_in_training_move_to_training():
    # item 9 has one positive only: whatever the split, it must end up in training
    pairs = np.array([(u, i) for u in range(10) for i in range(5)] + [(0, 9)])
    for seed in range(20):
        tr, va, te = split_interactions(pairs, 10, 10, seed=seed)
        assert (tr[:, 1] == 9).any()
        assert not (va[:, 1] == 9).any() and not (te[:, 1] == 9).any()


def test_min_rating_binarises(synthetic_ds):
    raw = make_synthetic(300, 200, seed=0)
    strict = build_dataset("s", raw, 5.0, 0)
    assert strict.stats()["interactions"] < synthetic_ds.stats()["interactions"]


def test_no_positive_is_a_clear_error():
    raw = make_synthetic(20, 20, ratings_per_user=5, seed=0)
    raw.ratings["rating"] = 1.0
    with pytest.raises(DataError, match="lower data.min_rating"):
        build_dataset("s", raw, 4.0, 0)


# ---------------------------------------------------------------- storage


def test_save_load_round_trip(tmp_path, synthetic_ds):
    out = save_dataset(synthetic_ds, tmp_path / "synthetic")
    back = load_dataset(out)
    assert back.stats() == synthetic_ds.stats()
    assert list(back.items["title"]) == list(synthetic_ds.items["title"])
    assert back.item_noun == "movie"


def test_failed_save_leaves_previous_output_untouched(tmp_path, synthetic_ds, monkeypatch):
    out = save_dataset(synthetic_ds, tmp_path / "synthetic")
    before = sorted(p.name for p in out.iterdir())

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        save_dataset(synthetic_ds, tmp_path / "synthetic")
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no temp folder left
    load_dataset(out)


def test_missing_processed_dataset_names_the_stage(tmp_path):
    with pytest.raises(DataError, match="run the data stage first"):
        load_dataset(tmp_path / "nothing")


def test_corrupt_processed_dataset(tmp_path, synthetic_ds):
    out = save_dataset(synthetic_ds, tmp_path / "s")
    (out / "interactions.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_dataset(out)


# ---------------------------------------------------------------- raw files and wheels


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="unknown dataset 'netflix'"):
        source_for("netflix")


def test_missing_raw_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_movielens("ml-100k", tmp_path)


def test_corrupt_raw_file(tmp_path):
    for name in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        (tmp_path / name).write_text("what\tever\n1\t2\n")
    with pytest.raises(DataError, match="lacks column"):
        read_movielens("ml-100k", tmp_path)
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\tfive\t3\n"
    )
    with pytest.raises(DataError, match="non-numeric rating"):
        read_movielens("ml-100k", tmp_path)


def test_checksum_mismatch_of_a_wheel_is_refused(tmp_path):
    src = SOURCES["ml-100k"]
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / src.wheel).write_bytes(b"not the wheel")
    with pytest.raises(DataError, match="checksum mismatch"):
        obtain_raw("ml-100k", tmp_path / "raw", tmp_path / "dl")
    assert not (tmp_path / "raw").exists()


def test_wheel_with_tampered_member_leaves_no_raw_folder(tmp_path, monkeypatch):
    src = SOURCES["ml-100k"]
    wheel = tmp_path / "dl" / src.wheel
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        for _, (member, _) in src.members.items():
            zf.writestr(member, "tampered\n")
    monkeypatch.setattr(acquire, "sha256_of",
                        lambda p, chunk=0: src.sha256 if p == wheel else "0" * 64)
    with pytest.raises(DataError, match="unexpected checksum"):
        obtain_raw("ml-100k", tmp_path / "raw", tmp_path / "dl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl"]


def test_download_failure_names_the_fix(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stderr = "ERROR: No matching distribution found"

    monkeypatch.setattr(acquire.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataError, match="could not download recbole==1.2.1"):
        obtain_raw("ml-100k", tmp_path / "raw", tmp_path / "dl")


@pytest.fixture(scope="module")
def ml100k_raw(tmp_path_factory):
    """The real MovieLens-100k files from the pinned recbole wheel (skips offline)."""
    from facelib import paths

    try:
        return obtain_raw("ml-100k", paths.raw_dir("ml-100k"), paths.data_dir() / "downloads")
    except DataError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"package index unreachable: {exc}")
        raise


@pytest.mark.slow
def test_real_movielens_100k(ml100k_raw):
    raw = read_movielens("ml-100k", ml100k_raw)
    assert len(raw.ratings) == 100_000 and len(raw.users) == 943 and len(raw.items) == 1682
    ds = build_dataset("ml-100k", raw, 4.0, 2023)
    ds.validate()
    st = ds.stats()
    assert st["interactions"] == 55_375  # ratings >= 4 of MovieLens-100k
    assert set(ds.users.columns) >= {"age", "gender", "occupation"}
    assert ds.items["title"].str.len().min() > 0
    assert (ds.items["genres"].str.len() > 0).mean() > 0.99  # a few are "unknown" only


# ---------------------------------------------------------------- RLMRec importer


def _write_rlmrec(folder, ds, corrupt: str | None = None):
    folder.mkdir()
    shape = (ds.n_users, ds.n_items)
    for fname, split in (("trn_mat.pkl", "train"), ("val_mat.pkl", "valid"), ("tst_mat.pkl", "test")):
        p = ds.split(split)
        mat = sp.coo_matrix((np.ones(len(p)), (p[:, 0], p[:, 1])), shape=shape)
        with open(folder / fname, "wb") as fh:
            pickle.dump(mat, fh)
    usr = {u: {"profile": f"user {u} likes things", "reasoning": "r"} for u in range(ds.n_users)}
    itm = {i: {"profile": f"item {i} attracts people", "reasoning": "r"} for i in range(ds.n_items)}
    for fname, obj in (("usr_prf.pkl", usr), ("itm_prf.pkl", itm)):
        with open(folder / fname, "wb") as fh:
            pickle.dump(obj, fh)
    if corrupt:
        (folder / corrupt).write_bytes(b"\x80\x04not a pickle")


def test_rlmrec_import_round_trip(tmp_path, synthetic_ds):
    _write_rlmrec(tmp_path / "amazon", synthetic_ds)
    ds = import_rlmrec(tmp_path / "amazon", "amazon")
    assert ds.item_noun == "book"
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(ds.split(s), synthetic_ds.split(s))
    assert ds.profiles["user"][3] == "user 3 likes things"
    back = load_dataset(save_dataset(ds, tmp_path / "processed"))
    assert back.profiles == ds.profiles and back.stats() == ds.stats()


@pytest.mark.parametrize("victim", ["trn_mat.pkl", "tst_mat.pkl", "itm_prf.pkl"])
def test_corrupt_rlmrec_pickle_is_named(tmp_path, synthetic_ds, victim):
    _write_rlmrec(tmp_path / "yelp", synthetic_ds, corrupt=victim)
    with pytest.raises(DataError, match=f"{victim} is corrupt"):
        import_rlmrec(tmp_path / "yelp", "yelp")


def test_rlmrec_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        import_rlmrec(tmp_path / "nope", "steam")


def test_timestamps_follow_their_interactions(tmp_path):
    """Every kept (user, item) carries the time of its rating (the earliest when repeated),
    aligned with its split's pairs, and survives save/load."""
    from facelib.data import build_dataset, load_dataset, make_synthetic, save_dataset

    raw = make_synthetic(80, 60, seed=3)
    r = raw.ratings
    r = pd.concat([r, r.iloc[:5].assign(timestamp=r.iloc[:5]["timestamp"] + 10)])  # repeats
    raw = type(raw)(ratings=r, users=raw.users, items=raw.items)
    ds = build_dataset("synthetic", raw, 4.0, 0)
    pos = r[r.rating >= 4.0].groupby(["user", "item"])["timestamp"].min()
    users = ds.users["raw_id"].to_numpy()
    items = ds.items["raw_id"].to_numpy()
    for split in ("train", "valid", "test"):
        pairs, when = ds.split(split), ds.times(split)
        assert when.dtype == np.int64 and len(when) == len(pairs)
        want = pos.loc[list(zip(users[pairs[:, 0]], items[pairs[:, 1]]))].to_numpy()
        assert np.array_equal(when, want)
    back = load_dataset(save_dataset(ds, tmp_path / "ds"))
    for split in ("train", "valid", "test"):
        assert np.array_equal(back.times(split), ds.times(split))
