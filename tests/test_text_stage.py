"""The text stage: parameters, all files written, atomic on failure, clear loader errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest_text import _encoder, small_ds  # noqa: F401  (fixture)
from facelib import paths
from facelib.config import ParamsError, build
from facelib.data import save_dataset
from facelib.text import stage
from facelib.text.encoder import FrozenEncoder, TextError
from facelib.text.stage import TextParams, load_text_artifacts, run_text_stage


@pytest.fixture()
def root(tmp_path, monkeypatch, small_ds):
    """A throw-away repository root holding the small synthetic dataset; the stage loads
    the session's cached encoder."""
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    save_dataset(small_ds, paths.processed_dir("synthetic"))
    enc = _encoder()  # loaded before the patch, or the patched load would call itself
    monkeypatch.setattr(FrozenEncoder, "load", classmethod(lambda cls, device="cpu": enc))
    return tmp_path


def _params(**kw) -> TextParams:
    return build(TextParams, {"dataset": "synthetic", "batch_size": 32, **kw}, "text")


@pytest.mark.parametrize("values, match", [
    ({"builder": "gpt"}, r"\[text.builder\]: unknown value 'gpt'"),
    ({"batch_size": 0}, r"\[text.batch_size\]: 0 is out of range"),
    ({"max_length": 4}, r"\[text.max_length\]"),
    ({"min_zipf": -1}, r"\[text.min_zipf\]"),
    ({"device": "gpu"}, r"\[text.device\]: unknown value"),
    ({"dataset": "../etc"}, r"\[text.dataset\]: '../etc' is not a file-name-safe name"),
    ({"batch_size": "64"}, r"expected int"),
    ({"seed": 1}, r"unknown key\(s\) seed"),
])
def test_bad_params_raise_one_line_errors(values, match):
    with pytest.raises(ParamsError, match=match) as err:
        build(TextParams, values, "text")
    assert "\n" not in str(err.value)


def test_defaults_are_valid():
    p = build(TextParams, {}, "text")
    assert p.dataset == "ml-100k" and p.builder == "auto" and p.device == "cpu"


def test_stage_writes_every_file_and_loads_back(root, small_ds):
    metrics = run_text_stage(_params(), progress=False)
    out = paths.text_dir("synthetic")
    assert sorted(x.name for x in out.iterdir()) == sorted(stage.FILES)
    art = load_text_artifacts("synthetic")
    assert art.user_emb.shape == (small_ds.n_users, 384) and art.user_emb.dtype == np.float32
    assert art.item_emb.shape == (small_ds.n_items, 384)
    np.testing.assert_allclose(np.linalg.norm(art.item_emb, axis=1), 1.0, atol=1e-5)
    assert art.codebook.shape == (len(art.vocabulary), 384)
    assert art.profiles.builder == "template" == art.meta["builder"] == metrics["builder"]
    assert art.meta["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metrics["vocabulary_size"] == len(art.vocabulary) > 1000
    assert metrics["n_user_profiles"] == small_ds.n_users
    assert 10 < metrics["mean_profile_tokens"] < 120
    assert set(metrics["seconds"]) >= {"profiles", "encode", "vocabulary", "total"}
    assert metrics["peak_rss_mb"] > 0
    json.dumps(metrics)  # publishable as reports/metrics/text.json
    assert not [x for x in out.parent.iterdir() if x.name.startswith(".")]  # no leftovers


def test_failure_midway_leaves_nothing_that_looks_valid(root, monkeypatch):
    calls = {"n": 0}
    real = FrozenEncoder.encode_texts

    def fail_second_time(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FrozenEncoder, "encode_texts", fail_second_time)
    with pytest.raises(RuntimeError, match="injected"):
        run_text_stage(_params())
    assert not paths.text_dir("synthetic").exists()
    assert not any(paths.text_dir("synthetic").parent.glob("*/meta.json"))
    with pytest.raises(TextError, match="run the text stage first"):
        load_text_artifacts("synthetic")


def test_failed_rerun_keeps_the_previous_complete_output(root, monkeypatch):
    run_text_stage(_params())
    before = load_text_artifacts("synthetic").user_emb

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(stage, "build_vocabulary", boom)
    with pytest.raises(RuntimeError):
        run_text_stage(_params())
    np.testing.assert_array_equal(load_text_artifacts("synthetic").user_emb, before)


def test_loader_reports_corrupt_or_inconsistent_artifacts(root):
    run_text_stage(_params())
    out = paths.text_dir("synthetic")
    np.save(out / "codebook.npy", np.zeros((3, 384), np.float32))
    with pytest.raises(TextError, match="inconsistent.*run the text stage again"):
        load_text_artifacts("synthetic")
    (out / "user_emb.npy").write_bytes(b"not numpy")
    with pytest.raises(TextError, match="corrupt.*run the text stage again"):
        load_text_artifacts("synthetic")


def test_given_builder_on_a_dataset_without_profiles_fails_before_encoding(root):
    from facelib.data import DataError

    with pytest.raises(DataError, match="has no given profiles"):
        run_text_stage(_params(builder="given"))
    assert not paths.text_dir("synthetic").exists()


def test_degenerate_profiles_stop_or_warn_with_counts():
    import warnings

    from facelib.text.stage import profile_health

    one = np.ones((3, 4), np.float32)
    with pytest.raises(TextError, match=r"all 3 user profiles encode to one embedding \(2 empty\)"):
        profile_health({"user": (["", " ", "x"], one)})
    emb = np.eye(3, dtype=np.float32)
    emb[2] = emb[1]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = profile_health({"item": (["a", "", "b"], emb)})
    assert out == {"item": {"empty": 1, "shared_embedding": 1}}
    assert "1 of 3 item profiles are empty and 1 share an embedding" in str(seen[0].message)
