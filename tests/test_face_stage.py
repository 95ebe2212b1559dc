"""The face stage: outputs, checkpoints without encoder weights, descriptors, the control
run, input errors, and a frozen encoder that stays frozen through the align stage.

One tiny run (60 users x 40 items, 120-word vocabulary, the real MiniLM for the align
stage, random unit profile embeddings) is shared by the module's tests.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch

from conftest_text import _encoder
from facelib import paths
from facelib.config import ParamsError, build
from facelib.data import build_dataset, load_dataset, make_synthetic, save_dataset
from facelib.systems.face.stage import FaceError, FaceParams, load_face_checkpoint, run_face
from facelib.text import FrozenEncoder, build_vocabulary, codebook
from facelib.train import TrainCFParams, run_train_cf

V = 120
TINY = dict(dataset="synthetic", backbone="lightgcn", seed=0, word_num=4, word_dim=16,
            ffn_dim=32, lr=0.01, map_max_epochs=2, align_max_epochs=2, patience=2,
            batch_size=64, map_steps_per_epoch=2, align_steps_per_epoch=2, align_entities=12,
            device="cpu", num_threads=1)


def write_text_artifacts(ds, encoder, folder) -> None:
    """Text artifacts in the text stage's format: a V-word vocabulary and its codebook from
    the real encoder, random unit profile embeddings (fast; the stage only needs shapes)."""
    folder.mkdir(parents=True)
    vocab = build_vocabulary(encoder.tokenizer).iloc[:V].reset_index(drop=True)
    gen = np.random.default_rng(0)
    emb = {}
    for kind, n in (("user", ds.n_users), ("item", ds.n_items)):
        x = gen.standard_normal((n, encoder.dim)).astype(np.float32)
        emb[kind] = x / np.linalg.norm(x, axis=1, keepdims=True)
        np.save(folder / f"{kind}_emb.npy", emb[kind])
    vocab.to_csv(folder / "vocabulary.csv", index=False)
    np.save(folder / "codebook.npy", codebook(encoder, vocab).numpy())
    words = gen.standard_normal((V, encoder.dim)).astype(np.float32)
    np.save(folder / "word_emb.npy", words / np.linalg.norm(words, axis=1, keepdims=True))
    (folder / "profiles.json").write_text(json.dumps(
        {"builder": "test", "user": ["u"] * ds.n_users, "item": ["i"] * ds.n_items}))
    (folder / "meta.json").write_text(json.dumps(
        {"format": 2, "dim": encoder.dim, "n_users": ds.n_users, "n_items": ds.n_items,
         "vocabulary_size": V, "builder": "test"}))


@contextmanager
def tiny_root(tmp_path_factory):
    """A throw-away root (FACELIB_ROOT) with a 60 x 40 synthetic dataset, text artifacts
    and a pretrained LightGCN; the shared encoder stands in for FrozenEncoder.load.
    Yields (root, encoder)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("root")
    mp.setenv("FACELIB_ROOT", str(root))
    encoder = _encoder()
    mp.setattr(FrozenEncoder, "load", classmethod(lambda cls, device="cpu": encoder))
    threads = torch.get_num_threads()
    try:
        ds = build_dataset("synthetic", make_synthetic(60, 40, ratings_per_user=15, seed=1),
                           4.0, 0)
        save_dataset(ds, paths.processed_dir("synthetic"))
        write_text_artifacts(ds, encoder, paths.text_dir("synthetic"))
        run_train_cf(build(TrainCFParams, {"dataset": "synthetic", "backbone": "lightgcn",
                                           "dim": 16, "layers": 2, "lr": 0.01, "batch_size": 64,
                                           "max_epochs": 3, "device": "cpu", "num_threads": 1},
                           "train_cf"), publish=False)
        yield root, encoder
    finally:
        mp.undo()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run_face in :func:`tiny_root`; the shared encoder's weights before it."""
    with tiny_root(tmp_path_factory) as (root, encoder):
        before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
        metrics = run_face(build(FaceParams, TINY, "face"), publish=False)
        yield {"root": root, "ds": load_dataset(paths.processed_dir("synthetic")),
               "metrics": metrics, "encoder": encoder, "before": before}


def test_outputs_written(run):
    fp = run["metrics"]["paths"]
    smoke = run["root"] / "build" / "smoke"
    for path in [*fp.checkpoints.values(), fp.metrics, *fp.logs.values(),
                 *fp.descriptors.values(), fp.per_user]:
        assert path.is_file() and smoke in path.parents, path
    saved = json.loads(fp.metrics.read_text())
    for block in ("base", "face", "control"):
        assert set(saved[block]["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg")
                                             for k in (5, 10, 20)}
    assert saved["face"]["map"]["steps"] <= 2 * 2 and saved["face"]["align"]["epochs_run"] <= 2
    assert saved["bounds"]["align_entities"] == 12
    assert saved["switches"] == dict.fromkeys(
        ("reference_vq_weights", "reference_prompt_order", "encoder_dropout", "pinv_words",
         "reference_init"), False)


def test_checkpoints_hold_no_encoder_and_round_trip(run):
    fp, ds = run["metrics"]["paths"], run["ds"]
    cb = torch.from_numpy(np.load(paths.text_dir("synthetic") / "codebook.npy"))
    for stage, path in fp.checkpoints.items():
        ck = torch.load(path, weights_only=False)
        tensors = {**ck["backbone"], **(ck["face"] or {})}
        assert not any("word_embeddings" in k or "text_encoder" in k for k in tensors)
        assert sum(t.numel() for t in tensors.values()) < 1_000_000  # MiniLM: 22M
        model, face = load_face_checkpoint(path, ds, cb)
        assert (face is None) == (stage == "control")
    model, face = load_face_checkpoint(fp.checkpoints["align"], ds, cb)
    words = pd.read_csv(paths.text_dir("synthetic") / "vocabulary.csv")["word"].to_numpy()
    table = pd.read_csv(fp.descriptors["align"], keep_default_na=False)
    idx = face.describe(model.embeddings_for_eval()[0]).numpy()  # [U, C]
    users = table[table.entity == "user"].sort_values(["entity_id", "concept"])
    assert (users["word"].to_numpy() == words[idx.ravel()]).all()


@pytest.mark.parametrize("stage", ["map", "align"])
def test_descriptors_are_c_distinct_vocabulary_words(run, stage):
    table = pd.read_csv(run["metrics"]["paths"].descriptors[stage], keep_default_na=False)
    vocab = set(pd.read_csv(paths.text_dir("synthetic") / "vocabulary.csv")["word"])
    ds = run["ds"]
    assert list(table.columns) == ["entity", "entity_id", "split", "concept", "word"]
    assert set(table.split) == {"train"}  # no held-out entities in this run
    for kind, n in (("user", ds.n_users), ("item", ds.n_items)):
        part = table[table.entity == kind]
        assert sorted(part.entity_id.unique()) == list(range(n))
        per = part.groupby("entity_id")["word"]
        assert (per.size() == TINY["word_num"]).all() and (per.nunique() == TINY["word_num"]).all()
    assert set(table.word) <= vocab


def test_per_user_metrics_average_to_the_reported_test_metrics(run):
    saved = json.loads(run["metrics"]["paths"].metrics.read_text())
    arrays = np.load(run["metrics"]["paths"].per_user)
    users = arrays["users"]
    assert len(users) == len(np.unique(users)) > 0
    blocks = {"map": saved["face"]["map"]["test"], "face": saved["face"]["test"],
              "control": saved["control"]["test"]}
    assert not any(k.startswith("base.") for k in arrays)  # the base run's file has them
    for system, test in blocks.items():
        for metric, value in test.items():
            per = arrays[f"{system}.{metric}"]
            assert per.shape == users.shape and per.dtype == np.float64
            assert per.mean() == pytest.approx(value, abs=1e-12)
    base = np.load(run["root"] / "build" / "smoke" / "data" / "cf" / "synthetic"
                   / "per_user-lightgcn-0.npz")
    assert np.array_equal(base["users"], users)
    for metric, value in saved["base"]["test"].items():
        assert base[f"base.{metric}"].mean() == pytest.approx(value, abs=1e-12)


def test_tagged_variant_without_control_writes_under_ablations(run):
    out = _run_with(run, tag="c2", word_num=2, control=False)
    fp = out["paths"]
    assert fp.metrics.parent.name == "ablations" and fp.metrics.name == "lightgcn-0-c2.json"
    assert fp.checkpoints["align"].parent.name == "lightgcn-0-c2"
    saved = json.loads(fp.metrics.read_text())
    assert saved["control"] is None and saved["params"]["tag"] == "c2"
    assert not fp.checkpoints["control"].exists()
    assert "control.recall@20" not in np.load(fp.per_user)
    assert pd.read_csv(fp.descriptors["align"]).groupby(["entity", "entity_id"]).size().eq(2).all()


def test_control_has_no_face_losses_and_align_has_alignment(run):
    fp = run["metrics"]["paths"]
    control = pd.read_csv(fp.logs["control"])
    assert [c for c in control.columns if c.startswith("loss_")] == ["loss_bpr"]
    assert torch.load(fp.checkpoints["control"], weights_only=False)["face"] is None
    face = pd.read_csv(fp.logs["face"])
    assert face.loc[face.phase == "map", "loss_align"].isna().all()
    assert (face.loc[face.phase == "align", "loss_align"] > 0).all()
    assert face.loc[face.phase == "map", ["loss_vq", "loss_rec"]].notna().all().all()


def test_align_trains_face_but_not_the_encoder(run):
    after = run["encoder"].model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in run["before"].items())
    fp = run["metrics"]["paths"]
    m = torch.load(fp.checkpoints["map"], weights_only=False)["face"]
    a = torch.load(fp.checkpoints["align"], weights_only=False)["face"]
    assert m.keys() == a.keys()
    assert any(not torch.equal(m[k], a[k]) for k in m)


def _run_with(run, **kw):
    mp = pytest.MonkeyPatch()
    mp.setenv("FACELIB_ROOT", str(run["root"]))
    try:
        return run_face(build(FaceParams, {**TINY, **kw}, "face"), publish=False)
    finally:
        mp.undo()


def test_face_on_rlmrec_con_starts_from_it_and_keeps_its_term(run):
    """start: rlmrec_con -- FACE's base is RLMRec-Con's best model (same test metrics), its
    contrastive term stays on in both phases, outputs go under related/; a missing
    RLMRec-Con run names the rlmrec stage."""
    from facelib.systems.rlmrec.params import RLMRecParams
    from facelib.systems.rlmrec.stage import run_rlmrec

    mp = pytest.MonkeyPatch()
    mp.setenv("FACELIB_ROOT", str(run["root"]))
    try:
        con = run_rlmrec(build(RLMRecParams, {"dataset": "synthetic", "variants": ["con"],
                                              "device": "cpu", "num_threads": 1}, "rlmrec"))
    finally:
        mp.undo()
    m = _run_with(run, start="rlmrec_con", control=False)
    assert m["base"]["test"] == con["con"]["test"] and m["start"] == "rlmrec_con"
    assert "related/face_on_rlmrec_con" in m["paths"].metrics.as_posix()
    assert all("loss_con" in row for row in m["history"]["face"])
    with pytest.raises(FaceError, match="run the rlmrec stage first"):
        _run_with(run, start="rlmrec_con", seed=7)


def test_word_num_larger_than_vocabulary(run):
    with pytest.raises(ParamsError, match=rf"larger than the vocabulary \({V} words"):
        _run_with(run, word_num=V + 1)


def test_missing_checkpoint_names_train_cf(run):
    with pytest.raises(FaceError, match="run the train_cf stage first"):
        _run_with(run, seed=7)


def test_a_stale_or_unfinished_pretrained_checkpoint_is_refused(run, monkeypatch):
    """A train_cf checkpoint whose test metrics differ from the metrics JSON beside it (a
    mixed output) or that is not marked finished (a half-trained run) names train_cf."""
    from facelib.systems.face.params import face_paths
    from facelib.train.checkpoint import CheckpointError

    monkeypatch.setenv("FACELIB_ROOT", str(run["root"]))
    files = face_paths(build(FaceParams, TINY, "face"), publish=False)
    ck_path, metrics_path = files.pretrained, files.pretrained_metrics
    assert ck_path.is_file() and metrics_path.is_file()
    saved = {p: p.read_bytes() for p in (ck_path, metrics_path)}
    try:
        metrics = json.loads(metrics_path.read_text())
        metrics["test"] = {k: v + 0.1 for k, v in metrics["test"].items()}
        metrics_path.write_text(json.dumps(metrics))
        with pytest.raises(FaceError, match="does not belong to the run.*rerun the train_cf"):
            _run_with(run)
        metrics_path.write_bytes(saved[metrics_path])
        ck = torch.load(ck_path, weights_only=False)
        torch.save({**ck, "finished": False}, ck_path)
        with pytest.raises(CheckpointError, match="not of a finished run"):
            _run_with(run)
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


def test_dimension_mismatch(run):
    with pytest.raises(FaceError, match="dimension mismatch.*16.*999"):
        _run_with(run, dim=999)


def test_params_validation():
    with pytest.raises(ParamsError, match="face.backbone"):
        build(FaceParams, {"backbone": "gru"}, "face")
    with pytest.raises(ParamsError, match="align_entities"):
        build(FaceParams, {"align_entities": 1}, "face")
    with pytest.raises(ParamsError, match="face.tag"):
        build(FaceParams, {"tag": "../x"}, "face")


def _strip(history):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in history]


def test_interrupted_in_align_resumes_to_the_same_result(run):
    """Crash after the first align epoch (its state saved), resume: same metrics, same
    per-epoch log as the uninterrupted run of the fixture."""
    import functools

    from facelib.systems.face import stage

    class Crash(Exception):
        pass

    def crash(row):
        if row["phase"] == "align" and row["phase_epoch"] == 1:
            raise Crash

    fp = run["metrics"]["paths"]
    published = [*fp.checkpoints.values(), fp.metrics, *fp.logs.values(),
                 *fp.descriptors.values(), fp.per_user]
    before = {p: p.read_bytes() for p in published}
    mp = pytest.MonkeyPatch()
    mp.setattr(stage, "fit", functools.partial(stage.fit, callback=crash))
    try:
        with pytest.raises(Crash):
            _run_with(run, seed=0)
    finally:
        mp.undo()
    assert {p: p.read_bytes() for p in published} == before  # nothing mixed in
    resumed = _run_with(run, resume=True)
    full = run["metrics"]
    for block in ("face", "control"):
        assert resumed[block]["test"] == full[block]["test"]
    assert resumed["face"]["map"]["test"] == full["face"]["map"]["test"]
    assert _strip(resumed["history"]["face"]) == _strip(full["history"]["face"])


def test_entity_batches_with_held_out_entities(run):
    """align_batch entities: an align epoch is one pass over the aligned users and items;
    held-out validation entities give align_mrr, on which the align phase stops; the
    descriptors say which entities were held out; the control's align epochs take as many
    steps."""
    out = _run_with(run, align_batch="entities", align_batch_size=16, align_holdout=0.2,
                    align_select="align_mrr", align_entities=0, align_steps_per_epoch=0,
                    tag="ent")
    ds = run["ds"]
    ent = out["entities"]
    assert ent["users_valid"] == ent["users_test"] == round(0.2 * ds.n_users)
    aligned = ent["users_train"] + ent["items_train"]
    assert out["align_steps_per_epoch"] == -(-aligned // 16)
    log = pd.DataFrame(out["history"]["face"])
    align = log[log.phase == "align"]
    assert align["valid_align_mrr"].between(0, 1).all() and align["valid_align_loss"].gt(0).all()
    assert log.loc[log.phase == "map", "valid_align_mrr"].isna().all()
    assert out["face"]["align"]["steps"] == out["align_steps_per_epoch"] * len(align)
    ctl = pd.DataFrame(out["history"]["control"])
    assert out["control"]["align"]["steps"] == out["align_steps_per_epoch"] * \
        (ctl.phase == "align").sum()
    table = pd.read_csv(out["paths"].descriptors["align"], keep_default_na=False)
    users = table[table.entity == "user"].drop_duplicates("entity_id")
    assert (users.split == "valid").sum() == ent["users_valid"]
    assert (users.split == "test").sum() == ent["users_test"]


def test_align_mrr_needs_held_out_entities():
    with pytest.raises(ParamsError, match="align_mrr needs held-out entities"):
        build(FaceParams, {"align_select": "align_mrr"}, "face")


def test_a_run_without_control_removes_the_older_control_outputs(run):
    """Last in the module (it replaces the fixture's outputs): the files on disk belong to
    one run, so an older run's control checkpoint and log do not survive a control-less
    rerun."""
    fp = run["metrics"]["paths"]
    assert fp.checkpoints["control"].is_file() and fp.logs["control"].is_file()
    _run_with(run, control=False)
    assert not fp.checkpoints["control"].exists() and not fp.logs["control"].exists()
    assert json.loads(fp.metrics.read_text())["control"] is None
