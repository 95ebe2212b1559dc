"""The generative pipeline's glue: ranked lists from generation on both protocols, the top-K
cache, the per-protocol tables, and the stages' params."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from facelib.config import ParamsError, build
from facelib.generative.beam import IndexTrie
from facelib.generative.cache import TopKCache, build_cache
from facelib.generative.leave_one_out import leave_one_out
from facelib.generative.recommend import evaluate_loo, evaluate_ratio, generate_top


class ScriptedBackend:
    """Generates, for every prompt, the items of ``order`` that the trie holds, in that
    order (a stand-in for a trained language model)."""

    description = "scripted"

    def __init__(self, order: list[int]) -> None:
        self.order = order
        self.prompts: list[str] = []

    def generate_items(self, prompts, trie, beam):
        self.prompts.extend(prompts)
        return [[(i, -float(r)) for r, i in enumerate(self.order[:beam])] for _ in prompts]


CODES = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]])


def prompt(history_codes):
    return " ".join(str(tuple(int(x) for x in c)) for c in history_codes)


def test_generate_top_pads_drops_and_builds_prompts():
    backend = ScriptedBackend([3, 1, 4, 0])
    top = generate_top(backend, [np.array([2, 5]), np.array([1])], CODES, prompt,
                       IndexTrie(CODES), beam=4, drop=[np.array([], int), np.array([1, 4])],
                       width=4)
    assert top.tolist() == [[3, 1, 4, 0], [3, 0, -1, -1]]  # training items 1 and 4 dropped
    assert backend.prompts == ["(1, 0) (2, 1)", "(0, 1)"]    # oldest first, as codes


def test_evaluate_loo_scores_the_test_target():
    pairs = np.array([[u, i] for u in range(3) for i in range(5)])
    times = np.tile(np.arange(5), 3)
    split = leave_one_out(pairs, times, k=3)  # each user's test target is item 4
    codes = np.array([[i // 3, i % 3] for i in range(5)])
    got = evaluate_loo(ScriptedBackend([4, 0, 1]), split, "test", codes, prompt,
                       IndexTrie(codes), beam=3, max_history=20)
    assert got["hr@1"] == 1.0 and got["ndcg@10"] == 1.0
    got = evaluate_loo(ScriptedBackend([0, 4, 1]), split, "test", codes, prompt,
                       IndexTrie(codes), beam=3, max_history=20)
    assert got["hr@1"] == 0.0 and got["hr@5"] == 1.0
    assert got["ndcg@5"] == pytest.approx(1 / np.log2(3))


def test_evaluate_ratio_needs_a_wide_beam_and_skips_users_without_truth():
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    histories = [np.array([0]), np.array([1])]
    with pytest.raises(ValueError, match="at least 50"):
        evaluate_ratio(ScriptedBackend([2]), histories, truth, CODES, prompt,
                       IndexTrie(CODES), beam=20, max_history=20)
    got = evaluate_ratio(ScriptedBackend([0, 2, 1]), histories, truth, CODES, prompt,
                         IndexTrie(CODES), beam=50, max_history=20)
    assert got["recall@5"] == 1.0  # item 0 (training) dropped: the target ranks first
    assert got["ndcg@5"] == 1.0


def test_validation_examples_hold_each_held_out_target_once():
    from facelib.generative.recommend import ProtocolView

    pairs = np.array([[u, i] for u in range(3) for i in range(5)])
    split = leave_one_out(pairs, np.tile(np.arange(5), 3), k=3)  # valid target: item 3
    codes = np.array([[i // 3, i % 3] for i in range(5)])
    loo = ProtocolView("leave_one_out", split.item_ids, split.histories("valid"), "ndcg@10",
                       split=split)
    got = loo.next_item_examples("valid", codes, prompt)
    assert [(e.prompt, e.response) for e in got] == [("(0, 0) (0, 1) (0, 2)", "<a_1><b_0>")] * 3
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0]]))
    ratio = ProtocolView("ratio", np.arange(6), [np.array([5, 0]), np.array([1])],
                         "recall@20", truth={"valid": truth, "test": truth})
    got = ratio.next_item_examples("valid", CODES, prompt)
    assert [(e.prompt, e.response) for e in got] == [("(2, 1) (0, 0)", "<a_1><b_0>"),
                                                     ("(2, 1) (0, 0)", "<a_2><b_0>")]


def test_cache_serves_what_generation_gave(tmp_path):
    cache = build_cache(ScriptedBackend([5, 2, 0]), [np.array([1])] * 3, CODES, prompt,
                        IndexTrie(CODES), beam=3, k=2)
    assert cache.serve(1).tolist() == [5, 2]
    assert TopKCache.load(cache.save(tmp_path / "c.npz")).items.tolist() == cache.items.tolist()
    with pytest.raises(IndexError, match="not in the cache"):
        cache.serve(3)
    with pytest.raises(ValueError, match="beam"):
        build_cache(ScriptedBackend([0]), [np.array([1])], CODES, prompt, IndexTrie(CODES),
                    beam=2, k=3)


def _write_run(root, system, run, protocol, seed, test, stopped_by="early_stopping"):
    group = "loo_baselines" if system in ("sasrec", "mf", "lightgcn") else system
    path = root / "reports" / "metrics" / "generative" / group / f"{run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"system": system, "protocol": protocol, "seed": seed,
                                "stopped_by": stopped_by, "test": test}))


def test_tables_keep_protocols_apart_and_flag_capped_runs(tmp_path):
    from facelib.generative.table import GenerativeParams, markdown, runs, summarise

    loo = {"hr@1": 0.1, "hr@5": 0.2, "hr@10": 0.3, "ndcg@5": 0.15, "ndcg@10": 0.2}
    ratio = {f"{m}@{k}": 0.1 for m in ("recall", "ndcg") for k in (5, 10, 20)}
    for seed, hr10 in ((0, 0.3), (1, 0.5)):
        _write_run(tmp_path, "sasrec", f"sasrec-{seed}", "leave_one_out", seed,
                   {**loo, "hr@10": hr10})
        _write_run(tmp_path, "lcrec", f"leave_one_out-{seed}", "leave_one_out", seed, loo,
                   stopped_by="cap" if seed else "early_stopping")
        _write_run(tmp_path, "lcrec", f"ratio-{seed}", "ratio", seed, ratio)
        _write_run(tmp_path, "semconv", f"{seed}", "leave_one_out", seed, loo)
    p = build(GenerativeParams, {"dataset": "synthetic", "baselines": ["sasrec"],
                                 "seeds": [0, 1]}, "generative")
    df, missing = runs(p, tmp_path)
    assert not missing and len(df) == 8
    loo_table = summarise(df, "leave_one_out")
    assert loo_table.loc["sasrec", "hr@10"] == pytest.approx(0.4)
    assert loo_table.loc["sasrec", "hr@10_sd"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert loo_table.loc["lcrec", "capped"] == 1 and "ratio" not in df[
        df.protocol == "leave_one_out"]["protocol"].tolist()
    assert list(summarise(df, "ratio").index) == ["lcrec"]
    study = pd.DataFrame({"recall@5": [0.2], "recall@5_sd": [0.01]},
                         index=["lightgcn face (study)"])
    beside = markdown(pd.concat([summarise(df, "ratio"), study]), ("recall@5",))
    assert "| LC-Rec | 0.1000 ± 0.0000 | 2 |" in beside
    assert "| lightgcn face (study) | 0.2000 ± 0.0100 | – |" in beside
    text = markdown(loo_table, ("hr@10",))
    assert "| SASRec | 0.4000 ± 0.1414 | 2 |" in text
    assert "LC-Rec (⚠ 1 run(s) ended at a cap)" in text


def test_findings_are_written_from_the_numbers(tmp_path):
    from facelib.generative.table import GenerativeParams, findings, runs, summarise

    loo = {"hr@1": 0.0, "hr@5": 0.0, "ndcg@5": 0.0, "ndcg@10": 0.0}
    for seed, (sas, lc) in enumerate(((0.10, 0.06), (0.05, 0.08))):
        _write_run(tmp_path, "sasrec", f"sasrec-{seed}", "leave_one_out", seed,
                   {**loo, "hr@10": sas})
        _write_run(tmp_path, "lcrec", f"leave_one_out-{seed}", "leave_one_out", seed,
                   {**loo, "hr@10": lc})
    p = build(GenerativeParams, {"dataset": "synthetic", "baselines": ["sasrec"], "seeds": [0, 1],
                                 "protocols": ["leave_one_out"]}, "generative")
    df, missing = runs(p, tmp_path, missing_ok=True)
    assert missing == ["semconv/0", "semconv/1"]
    df["n_items"] = [200.0, 200.0, np.nan, np.nan]
    df["backend"] = [None, None, "tiny", "tiny"]
    ratio = pd.DataFrame({"recall@20": [0.02, 0.08]}, index=["lcrec", "lightgcn face (study)"])
    said = findings(df, summarise(df, "leave_one_out"), ratio)
    assert said[0] == ("On leave-one-out, HR@10 (mean over seeds) ranks SASRec 0.0750, "
                       "LC-Rec 0.0700.")
    assert said[1] == "LC-Rec's HR@10 is 0.93x SASRec's (above it in 1 of 2 seeds)."
    assert "HR@10 0.0500: every system here is 1.4x to 1.5x that" in said[2]
    assert "Recall@20 is 0.0200, 0.25x lightgcn face (study)'s (0.0800)" in said[3]
    assert "tiny backend" in said[4] and len(said) == 5
    df["backend"] = [None, None, "hf", "hf"]
    assert not any("tiny" in line for line in findings(df, summarise(df, "leave_one_out"),
                                                        ratio))


def test_a_missing_run_names_the_stage(tmp_path):
    from facelib.data.errors import DataError
    from facelib.generative.table import GenerativeParams, runs

    p = build(GenerativeParams, {"dataset": "synthetic", "seeds": [0]}, "generative")
    with pytest.raises(DataError, match="run the loo_baselines stage"):
        runs(p, tmp_path)
    _, missing = runs(p, tmp_path, missing_ok=True)
    assert "lcrec/ratio-0" in missing


def test_stage_params_are_checked():
    from facelib.generative.baselines import BaselineParams
    from facelib.generative.lcrec import LCRecParams
    from facelib.generative.semconv import SemConvParams

    with pytest.raises(ParamsError, match="protocol"):
        build(LCRecParams, {"dataset": "synthetic", "protocol": "random"}, "lcrec")
    with pytest.raises(ParamsError, match="ratio_beam"):
        build(LCRecParams, {"dataset": "synthetic", "ratio_beam": 20}, "lcrec")
    with pytest.raises(ParamsError, match="model"):
        build(BaselineParams, {"dataset": "synthetic", "model": "gru4rec"}, "loo_baselines")
    with pytest.raises(ParamsError, match="heads"):
        build(BaselineParams, {"dataset": "synthetic", "dim": 30, "heads": 4},
              "loo_baselines").sasrec_config()
    with pytest.raises(ParamsError, match="mode"):
        build(SemConvParams, {"dataset": "synthetic", "mode": "soft"}, "semconv")
    p = build(LCRecParams, {"dataset": "synthetic", "levels": 3, "codebook_size": 16},
              "lcrec")
    assert (p.rqvae_config().levels, p.rqvae_config().codebook_size) == (3, 16)


def test_committed_generative_tables_match_their_runs():
    """reports/generative/results.md is what the table code makes of the committed run
    metrics (skipped until `make generative` has run and its files are committed)."""
    from pathlib import Path

    from facelib.config import read_params_file
    from facelib.generative.table import (LOO_METRICS, GenerativeParams, findings, markdown,
                                          runs, tables)

    root = Path(__file__).resolve().parents[1]
    md = root / "reports" / "generative" / "results.md"
    if not md.is_file():
        pytest.skip("make generative has not published its tables yet")
    section = read_params_file().get("generative") or {}
    p = build(GenerativeParams, {"dataset": read_params_file()["data"]["dataset"], **section},
              "generative")
    df, _ = runs(p, root)
    text = md.read_text()
    loo, ratio = tables(df, p.dataset, root)
    assert markdown(loo, LOO_METRICS) in text
    assert all(f"- {line}" in text for line in findings(df, loo, ratio))


def test_a_resumed_lcrec_run_reports_the_same_numbers_and_whole_times(tmp_path, monkeypatch,
                                                                      one_thread):
    """Finishing a run from its saved states (resume) gives the same test metrics, and every
    part's seconds are non-negative, training parts counting the first process's time."""
    from facelib.generative.lcrec import LCRecParams, run_lcrec
    from facelib.generative.run import prepare_smoke_inputs

    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    prepare_smoke_inputs("synthetic")
    values = {"dataset": "synthetic", "levels": 3, "codebook_size": 8, "rqvae_max_epochs": 20,
              "rqvae_eval_every": 5, "rqvae_patience": 2, "rqvae_select": "-recon_loss",
              "resolve": "nearest_unused", "lm_layers": 1, "lm_dim": 32, "lm_max_epochs": 2,
              "seq_limit": 100, "asy_limit": 50, "eval_users": 10, "beam": 10,
              "device": "cpu", "num_threads": 1}
    first = run_lcrec(build(LCRecParams, values, "lcrec"), publish=True)
    again = run_lcrec(build(LCRecParams, {**values, "resume": True}, "lcrec"), publish=True)
    assert again["test"] == first["test"]
    assert again["seconds"]["lm"] == first["seconds"]["lm"]  # the log's training time
    for run in (first, again):
        parts = {k: v for k, v in run["seconds"].items() if k != "total"}
        assert min(parts.values()) >= 0
        assert run["seconds"]["total"] == pytest.approx(sum(parts.values()), abs=0.05)
