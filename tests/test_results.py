"""The results stage: aggregation over seeds, paired tests with known answers, missing
control runs, honest sentences, outputs, and one-line errors for missing inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from facelib.config import ParamsError, build
from facelib.data.errors import DataError
from facelib.io import write_json
from facelib.results import (METRICS, ResultsError, ResultsParams, Run, compute_results,
                             paired_test, summarize, write_results)
from facelib.results.tables import backbone_sentence, provenance_line, summary_markdown

USERS = np.arange(0, 120, 3, dtype=np.int64)  # 40 evaluated test users


def per_user_base(seed: int) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    return {m: gen.uniform(0.05, 0.5, len(USERS)) for m in METRICS}


def make_tree(root, backbones=("lightgcn",), seeds=(0, 1, 2), shift=0.01, control=True,
              dataset="ml-1m", capped=None):
    """Metrics JSON + per-user arrays in the real layout. FACE = base + ``shift`` on every
    user; map = base; control = base (or absent: ``control: null``, no arrays)."""
    write_json({"dataset": dataset, "test": {m: 0.05 for m in METRICS}},
               root / "reports/metrics/cf/most_popular.json")
    for b in backbones:
        for s in seeds:
            base = per_user_base(s)
            systems = {"base": base, "map": base,
                       "face": {m: v + shift for m, v in base.items()}}
            if control:
                systems["control"] = base
            mean = {k: {m: float(v.mean()) for m, v in a.items()} for k, a in systems.items()}
            write_json({"dataset": dataset, "test": mean["base"],
                        "stopped_by": "cap" if (b, s) == capped else "early_stopping"},
                       root / f"reports/metrics/cf/{b}-{s}.json")
            write_json({"dataset": dataset, "base": {"test": mean["base"]},
                        "stopped_by": "early_stopping",
                        "face": {"test": mean["face"], "map": {"test": mean["map"]}},
                        "control": {"test": mean["control"]} if control else None,
                        "bounds": {"map_steps_per_epoch": 5, "word_num": 16},
                        "profile_builder": "template", "device": "cpu", "emb_dim": 64},
                       root / f"reports/metrics/systems/face/{b}-{s}.json")
            for rel, names in ((f"data/cf/{dataset}/per_user-{b}-{s}.npz", ("base",)),
                               (f"data/systems/face/{dataset}/{b}-{s}/per_user.npz",
                                ("map", "face", "control"))):
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, users=USERS, **{f"{k}.{m}": v for k, a in systems.items()
                                               if k in names for m, v in a.items()})
    return root


def params(**kw) -> ResultsParams:
    return build(ResultsParams, {"backbones": ["lightgcn"], "dataset": "ml-1m", **kw}, "results")


# ------------------------------------------------------------------ paired tests
def test_constant_gain_is_exact_and_highly_significant():
    base = np.random.default_rng(0).uniform(0.0, 0.5, 500)
    t = paired_test(base + 0.02, base)
    assert t.n_users == 500 and t.n_nonzero == 500
    assert t.mean_diff == pytest.approx(0.02, abs=1e-12)
    assert t.ci_low == pytest.approx(0.02, abs=1e-9) and t.ci_high == pytest.approx(0.02, abs=1e-9)
    assert t.rel_pct == pytest.approx(100 * 0.02 / base.mean(), rel=1e-9)
    assert t.p_wilcoxon < 1e-50 and t.p_ttest < 1e-50


def test_identical_arrays_give_no_difference_and_p_one():
    base = np.random.default_rng(1).uniform(0.0, 0.5, 50)
    t = paired_test(base.copy(), base)
    assert (t.mean_diff, t.n_nonzero, t.p_wilcoxon, t.p_ttest) == (0.0, 0, 1.0, 1.0)
    assert t.ci_low == t.ci_high == 0.0


def test_pure_noise_is_not_significant_and_the_ci_covers_zero():
    gen = np.random.default_rng(2)
    base = gen.uniform(0.0, 0.5, 2000)
    t = paired_test(base + gen.normal(0.0, 0.01, 2000), base)
    assert t.ci_low < 0 < t.ci_high
    assert t.p_wilcoxon > 0.01 and t.p_ttest > 0.01


def test_paired_test_rejects_unaligned_arrays():
    with pytest.raises(ValueError, match="aligned"):
        paired_test(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------ summary over seeds
def _run(system, backbone, seed, r20):
    return Run(system, backbone, seed, {m: r20 for m in METRICS}, None, {})


def test_mean_std_over_seeds_and_relative_change():
    runs = [_run("most_popular", None, None, 0.05),
            *[_run("base", "mf", s, v) for s, v in enumerate((0.1, 0.2, 0.3))],
            *[_run("face", "mf", s, 0.22) for s in range(3)]]
    out = summarize(runs, ["most_popular", "base", "face"], ["recall@20"]).set_index("system")
    assert out.loc["base", "mean"] == pytest.approx(0.2)
    assert out.loc["base", "std"] == pytest.approx(0.1)       # sample std, ddof=1
    assert out.loc["face", "std"] == pytest.approx(0.0)
    assert out.loc["face", "rel_base_pct"] == pytest.approx(10.0)
    assert math.isnan(out.loc["base", "rel_base_pct"])
    pop = out.loc["most_popular"]
    assert (pop["backbone"], pop["n_seeds"]) == ("", 0)
    assert math.isnan(pop["std"]) and math.isnan(pop["rel_base_pct"])
    table = summary_markdown(out.reset_index(), ["recall@20"])
    assert "| all | Most popular | – | 0.0500 |" in table            # single value, no std
    assert "| MF | FACE (map + align) | 3 | 0.2200 ± 0.0000 (+10.0%) |" in table


# ------------------------------------------------------------------ the whole stage
def test_stage_on_a_hand_made_tree(tmp_path):
    make_tree(tmp_path, backbones=("lightgcn", "mf"))
    p = params(backbones=["lightgcn", "mf"])
    res = compute_results(p, tmp_path, produced="2025-01-02")
    sig = res.significance.set_index(["backbone", "reference", "metric"])
    row = sig.loc[("mf", "base", "recall@20")]
    assert row.mean_diff == pytest.approx(0.01, abs=1e-12) and row.n_users == len(USERS)
    assert row.p_wilcoxon < 1e-6 and row.p_ttest < 1e-6
    assert sig.loc[("mf", "control", "ndcg@5")].p_wilcoxon < 1e-6
    assert res.agreement < 1e-12
    assert (res.significance.seeds_higher == 3).all()  # FACE above in every seed
    assert "higher in 3 of 3 seeds" in res.sentences[1]
    face = res.summary.query("system == 'face' and backbone == 'mf' and metric == 'recall@20'")
    base = res.summary.query("system == 'base' and backbone == 'mf' and metric == 'recall@20'")
    assert face["mean"].item() - base["mean"].item() == pytest.approx(0.01)
    assert "On MF (3 seeds, 40 test users), FACE beats the base model (+0.0100 Recall@20" \
        in res.sentences[1]
    written = write_results(res, tmp_path)
    head = json.loads(written["json"].read_text())           # strict JSON: no NaN
    assert head["table"]["all"]["most_popular"]["recall@20"]["std"] is None
    assert head["significance"]["lightgcn"]["face_vs_control"]["recall@20"]["n_users"] == 40
    assert head["provenance"]["produced"] == "2025-01-02"
    assert "profiles: template;" in head["provenance_line"]  # no text record in this tree
    write_json({"dataset": "ml-1m", "builder": "template", "encoder": "enc/MiniLM"},
               tmp_path / "reports/metrics/text.json")
    prov = compute_results(p, tmp_path, produced="2025-01-02").provenance
    assert prov["profile_encoder"] == "enc/MiniLM"
    assert "profiles: template, embedded by enc/MiniLM;" in provenance_line(prov)
    csv = pd.read_csv(written["csv"])
    assert set(csv.system) == {"most_popular", "base", "control", "face_map", "face"}
    md = written["md"].read_text()
    assert md.startswith("# Results") and "## Verdicts" in md and "step-bounded runs" in md
    assert not list(tmp_path.rglob(".*-*"))                   # no temporary file left


def test_no_gain_is_reported_as_such(tmp_path):
    make_tree(tmp_path, shift=0.0)
    res = compute_results(params(), tmp_path)
    assert len(res.sentences) == 2 and "early stopping" in res.sentences[1]
    assert "FACE is identical on every user to the base model (+0.0000 Recall@20" \
        in res.sentences[0]
    assert (res.significance.p_wilcoxon == 1.0).all()
    assert (res.significance.seeds_higher == 0).all()


def test_missing_control_is_skipped_not_an_error(tmp_path):
    make_tree(tmp_path, control=False)
    res = compute_results(params(), tmp_path)
    assert set(res.significance.reference) == {"base", "face_map"}
    assert "control" not in set(res.summary.system)
    assert "no comparison of FACE with the control run (not run)" in res.sentences[0]


def test_sentences_follow_the_numbers():
    rows = pd.DataFrame([
        {"backbone": "lightgcn", "treatment": "face", "reference": "base", "metric": "recall@20",
         "n_seeds": 3, "n_users": 6035, "n_nonzero": 900, "mean_diff": 0.0021, "ci_low": 0.001,
         "ci_high": 0.003, "rel_pct": 1.0, "p_wilcoxon": 1e-4, "p_ttest": 2e-4},
        {"backbone": "lightgcn", "treatment": "face", "reference": "control",
         "metric": "recall@20", "n_seeds": 3, "n_users": 6035, "n_nonzero": 800,
         "mean_diff": 0.0002, "ci_low": -0.0003, "ci_high": 0.0007, "rel_pct": 0.1,
         "p_wilcoxon": 0.41, "p_ttest": 0.39}])
    s = backbone_sentence("lightgcn", rows, [["face", "base"], ["face", "control"]],
                          "recall@20", 0.05)
    assert s == ("On LightGCN (3 seeds, 6,035 test users), FACE beats the base model "
                 "(+0.0021 Recall@20, +1.0%, 95% CI [+0.0010, +0.0030], Wilcoxon p = 1.0e-04) "
                 "but does not beat the control run (+0.0002 Recall@20, +0.1%, 95% CI "
                 "[-0.0003, +0.0007], Wilcoxon p = 0.410).")
    worse = rows.assign(mean_diff=-0.002, p_wilcoxon=0.001, p_ttest=0.001)
    assert "FACE is worse than the base model" in backbone_sentence(
        "lightgcn", worse, [["face", "base"]], "recall@20", 0.05)
    one_test = rows.assign(p_ttest=0.2)  # both tests must agree before "beats"
    assert "FACE does not beat the base model" in backbone_sentence(
        "lightgcn", one_test, [["face", "base"]], "recall@20", 0.05)


# ------------------------------------------------------------------ errors
def test_no_metrics_is_a_one_line_error_naming_the_stage(tmp_path):
    with pytest.raises(ResultsError) as exc:
        compute_results(params(), tmp_path)
    msg = str(exc.value)
    assert isinstance(exc.value, DataError) and "\n" not in msg
    assert "most_popular.json is missing; run its stage first: dvc repro train_cf_floor" in msg


def test_a_missing_seed_names_the_file_and_the_stage(tmp_path):
    make_tree(tmp_path, seeds=(0, 1))
    with pytest.raises(ResultsError, match=r"cf/lightgcn-2\.json is missing; run its stage first: "
                                           r"dvc repro train_cf"):
        compute_results(params(), tmp_path)
    make_tree(tmp_path)
    (tmp_path / "reports/metrics/systems/face/lightgcn-2.json").unlink()
    with pytest.raises(ResultsError, match=r"face/lightgcn-2\.json is missing; run its "
                                           r"stage first: dvc repro regularize"):
        compute_results(params(), tmp_path)


def test_missing_per_user_file_is_an_error(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "data/systems/face/ml-1m/lightgcn-1/per_user.npz").unlink()
    with pytest.raises(ResultsError, match="per-user test metrics missing: .*dvc repro regularize"):
        compute_results(params(), tmp_path)


def test_users_must_match_across_seeds(tmp_path):
    make_tree(tmp_path)
    path = tmp_path / "data/systems/face/ml-1m/lightgcn-2/per_user.npz"
    arrays = dict(np.load(path))
    arrays["users"] = arrays["users"] + 1
    np.savez(path, **arrays)
    with pytest.raises(ResultsError, match="test users differ"):
        compute_results(params(), tmp_path)


def test_metrics_of_another_dataset_are_refused(tmp_path):
    make_tree(tmp_path, dataset="ml-100k")
    with pytest.raises(ResultsError, match="is for dataset 'ml-100k', not 'ml-1m'"):
        compute_results(params(), tmp_path)


@pytest.mark.parametrize("values, words", [
    ({"comparisons": [["face", "face"]]}, "results.comparisons"),
    ({"comparisons": [["face", "most_popular"]]}, "per-user metrics"),
    ({"systems": ["base", "rlmrec"]}, "unknown value 'rlmrec'"),
    ({"headline": ["recall@20"], "metrics": ["ndcg@20"]}, "results.headline"),
    ({"seeds": []}, "at least one seed"),
    ({"alpha": 1.5}, "results.alpha"),
])
def test_bad_params_are_one_line_errors(values, words):
    with pytest.raises(ParamsError) as exc:
        build(ResultsParams, values, "results")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_sentences_say_whether_every_run_converged(tmp_path):
    make_tree(tmp_path)
    res = compute_results(params(), tmp_path)
    assert "All 6 trained runs in this table ended by early stopping" in res.sentences[-1]
    make_tree(tmp_path, capped=("lightgcn", 1))
    res = compute_results(params(), tmp_path)
    assert res.sentences[-1].startswith("1 of 6 trained runs ended at an epoch or step cap")
    assert "lightgcn-1.json" in res.sentences[-1]


def test_flagged_runs_and_unreadable_per_user_files_are_said(tmp_path):
    make_tree(tmp_path)
    path = tmp_path / "reports/metrics/cf/lightgcn-0.json"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "flags": ["below_most_popular"]}))
    res = compute_results(params(), tmp_path)
    assert "Flagged runs: lightgcn-0.json (below_most_popular)" in res.sentences[-1]
    (tmp_path / "data/cf/ml-1m/per_user-lightgcn-1.npz").write_bytes(b"truncated")
    with pytest.raises(ResultsError, match=r"per_user-lightgcn-1\.npz are unreadable "
                                           r"\(\w+\); re-run: dvc repro train_cf"):
        compute_results(params(), tmp_path)


def test_warning_flags_catch_an_exploding_loss():
    from facelib.train.loop import warning_flags

    rows = [{"phase": "train", "loss": v} for v in (1.0, 0.5, 0.4, 0.45)]
    assert warning_flags(rows) == []
    assert warning_flags(rows + [{"phase": "train", "loss": 1e12}]) == ["diverging"]


def test_a_system_not_run_on_a_backbone_is_skipped_but_a_lost_seed_is_an_error(tmp_path):
    from facelib.results import load_per_user
    from facelib.results.systems import SYSTEMS

    darec = SYSTEMS["darec"]  # optional row: make related runs it on study.regularized only
    assert not darec.required
    assert load_per_user(tmp_path, darec, "lightgcl", [0, 1], "ml-1m", ["recall@20"]) is None
    path = tmp_path / darec.per_user[0].format(dataset="ml-1m", backbone="lightgcl", seed=0)
    path.parent.mkdir(parents=True)
    np.savez(path, users=USERS, **{f"{darec.per_user[1]}.recall@20": np.zeros(len(USERS))})
    with pytest.raises(ResultsError, match="per-user test metrics missing"):
        load_per_user(tmp_path, darec, "lightgcl", [0, 1], "ml-1m", ["recall@20"])
