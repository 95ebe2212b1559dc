"""RLMRec-Con and RLMRec-Gen: the losses on hand-computed cases, what a few optimiser
steps do, Gen's node masking, determinism, params errors and a smoke run of the stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import backbone_params, fit_config, run_joint_system
from facelib import paths
from facelib.config import ParamsError, build
from facelib.models import make_backbone
from facelib.seed import seed_everything
from facelib.systems.joint import JointError
from facelib.systems.rlmrec.model.contrastive import RLMRecCon
from facelib.systems.rlmrec.model.generative import RLMRecGen, choose_masked, mask_count
from facelib.systems.rlmrec.model.infonce import info_nce
from facelib.systems.rlmrec.params import RLMRecParams
from facelib.train import Phase, fit

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.tensor


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def _ell(anchor, target, candidates, tau):
    """−log [exp(cos(a, t)/τ) / Σ_c exp(cos(a, c)/τ)], written out with math."""
    return -_cos(anchor, target) / tau + math.log(
        sum(math.exp(_cos(anchor, c) / tau) for c in candidates))


# ------------------------------------------------------------------ losses by hand
def test_info_nce_on_a_hand_computed_case():
    tau = 0.5
    got = info_nce(T([[1.0, 0.0], [1.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]]),
                   T([[1.0, 0.0], [0.0, 1.0]]), tau)
    # e_0 = (1, 0): cos 1 with its own profile, 0 with the other
    assert float(got[0]) == pytest.approx(-1 / tau + math.log(math.exp(1 / tau) + 1.0))
    # e_1 = (1, 1): the same cosine 1/sqrt(2) with both, so the loss is log 2
    assert float(got[1]) == pytest.approx(math.log(2.0))


def test_con_loss_on_a_hand_computed_case():
    """2 users, 3 items, d = d_s = 2, σ↓ the identity: the three InfoNCE terms (users
    against all users' profiles, positives and negatives against the in-batch ones), summed,
    divided by B = 2, times kd_weight."""
    tau, kd = 0.5, 0.1
    s_u = [[1.0, 0.0], [0.0, 1.0]]
    s_i = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    con = RLMRecCon(T(s_u), T(s_i), dim=2, kd_weight=kd, tau=tau)
    con.mlp = nn.Identity()
    e_u, e_pos, e_neg = [[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, -1.0]], [[3.0, 4.0]] * 2
    users, pos, neg = T([0, 1]), T([0, 1]), T([2, 2])
    got = con.contrastive_loss(T(e_u), T(e_pos), T(e_neg), users, pos, neg)
    pos_prf, neg_prf = [s_i[0], s_i[1]], [s_i[2], s_i[2]]
    want = (_ell(e_u[0], s_u[0], s_u, tau) + _ell(e_u[1], s_u[1], s_u, tau)
            + _ell(e_pos[0], pos_prf[0], pos_prf, tau) + _ell(e_pos[1], pos_prf[1], pos_prf, tau)
            + _ell(e_neg[0], neg_prf[0], neg_prf, tau) + _ell(e_neg[1], neg_prf[1], neg_prf, tau)
            ) / 2
    assert float(got) == pytest.approx(want, rel=1e-6)
    # the users' terms by themselves: log(e^2 + 1) - 2 and log 2
    assert _ell(e_u[1], s_u[1], s_u, tau) == pytest.approx(math.log(2.0))

    class Out:
        user_emb, pos_emb, neg_emb = T(e_u), T(e_pos), T(e_neg)
    terms = con.losses(Out, users, pos, neg)
    assert set(terms) == {"con"} and float(terms["con"]) == pytest.approx(kd * want, rel=1e-6)


def test_gen_loss_on_a_hand_computed_case():
    """3 nodes (2 users, 1 item), nodes 0 and 2 masked, σ↑ the identity: each masked
    node's propagated embedding against its own profile among the masked nodes'."""
    tau, w = 0.5, 0.1
    s = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    gen = RLMRecGen(T(s[:2]), T(s[2:]), dim=2, mask_ratio=0.5, recon_weight=w, tau=tau)
    gen.mlp = nn.Identity()
    e = [[2.0, 1.0], [5.0, 5.0], [0.0, 3.0]]
    got = gen.reconstruction_loss(T(e), T([0, 2]))
    cand = [s[0], s[2]]
    want = (_ell(e[0], s[0], cand, tau) + _ell(e[2], s[2], cand, tau)) / 2
    assert float(got) == pytest.approx(want, rel=1e-6)

    gen.masked = T([0, 2])

    class Out:
        all_user_emb, all_item_emb = T(e[:2]), T(e[2:])
    terms = gen.losses(Out, T([0]), T([0]), T([0]))
    assert set(terms) == {"gen"} and float(terms["gen"]) == pytest.approx(w * want, rel=1e-6)


def test_l2_term_covers_the_regularizers_own_parameters():
    con = RLMRecCon(torch.randn(4, 6), torch.randn(3, 6), dim=2, kd_weight=1.0, tau=0.2,
                    reg=1e-3)

    class Out:
        user_emb, pos_emb, neg_emb = torch.randn(2, 2), torch.randn(2, 2), torch.randn(2, 2)
    terms = con.losses(Out, T([0, 1]), T([0, 1]), T([1, 2]))
    want = 1e-3 * sum(float(p.detach().pow(2).sum()) for p in con.mlp.parameters())
    assert float(terms["l2"].detach()) == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------------ a few optimiser steps
def test_con_steps_raise_each_users_cosine_to_its_projected_profile():
    torch.manual_seed(0)
    U, I, d, ds_ = 12, 10, 4, 16
    con = RLMRecCon(torch.randn(U, ds_), torch.randn(I, ds_), d, kd_weight=1.0, tau=0.2)
    users_e = nn.Parameter(torch.randn(U, d))
    items_e = nn.Parameter(torch.randn(I, d))
    opt = torch.optim.Adam([users_e, items_e, *con.parameters()], lr=0.05)
    gen = torch.Generator().manual_seed(0)

    def mean_cos():
        return float(con.profile_cosine(users_e.detach()).mean())
    before = mean_cos()
    for _ in range(30):
        users = torch.randint(0, U, (8,), generator=gen)
        pos, neg = torch.randint(0, I, (8,), generator=gen), torch.randint(0, I, (8,), generator=gen)
        loss = con.contrastive_loss(users_e[users], items_e[pos], items_e[neg], users, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mean_cos() > before + 0.3


def test_gen_steps_raise_each_nodes_cosine_to_its_profile(synthetic_ds):
    """On LightGCN: σ↑ of every node's (unmasked) propagated embedding moves towards its
    own profile when the reconstruction loss alone is minimised."""
    ds = synthetic_ds
    rng = seed_everything(0)
    model = make_backbone("lightgcn", ds.n_users, ds.n_items,
                          backbone_params(dim=8, layers=2, keep_rate=1.0), ds.matrix("train"))
    prf = torch.nn.functional.normalize(torch.randn(ds.n_users + ds.n_items, 16), dim=1)
    gen = RLMRecGen(prf[:ds.n_users], prf[ds.n_users:], 8, mask_ratio=0.2, recon_weight=1.0,
                    tau=0.5)
    opt = torch.optim.Adam([*model.parameters(), *gen.parameters()], lr=0.01)

    def mean_cos():
        with torch.no_grad():
            u, i = model.propagate(stochastic=False)
            pred = gen.mlp(torch.cat([u, i]))
            return float(torch.nn.functional.cosine_similarity(pred, prf, dim=1).mean())
    before = mean_cos()
    gen.on_epoch_start(model, 1, rng)
    z = torch.zeros(1, dtype=torch.long)
    for _ in range(40):
        ego = gen.before_forward(model, z, z, z)
        out = model.forward_batch(z, z, z, ego=ego)
        loss = gen.losses(out, z, z, z)["gen"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mean_cos() > before + 0.05


# ------------------------------------------------------------------ masking
@pytest.mark.parametrize("n, ratio", [(500, 0.15), (7, 0.5), (10, 0.01), (3, 1.0)])
def test_mask_count_is_round_ratio_times_nodes(n, ratio):
    want = min(n, max(1, int(round(ratio * n))))
    ids = choose_masked(n, ratio, np.random.default_rng(0))
    assert mask_count(n, ratio) == want == len(ids) == len(set(ids.tolist()))
    assert ids.min() >= 0 and ids.max() < n


def test_masking_replaces_exactly_the_chosen_ego_rows_over_users_and_items(synthetic_ds):
    ds = synthetic_ds
    model = make_backbone("lightgcn", ds.n_users, ds.n_items, backbone_params(dim=8),
                          ds.matrix("train"))
    n = ds.n_users + ds.n_items
    gen = RLMRecGen(torch.randn(ds.n_users, 6), torch.randn(ds.n_items, 6), 8,
                    mask_ratio=0.15, recon_weight=1.0, tau=0.5)
    assert torch.count_nonzero(gen.mask_token) == 0  # zero-initialised
    with torch.no_grad():
        gen.mask_token.copy_(torch.arange(8.0) + 100)
    gen.on_epoch_start(model, 1, np.random.default_rng(0))
    ego = model.ego_embeddings().detach()
    z = torch.zeros(1, dtype=torch.long)
    seen_users = seen_items = 0
    for _ in range(5):
        out = gen.before_forward(model, z, z, z)
        masked = gen.masked.numpy()
        assert len(masked) == round(0.15 * n) == len(set(masked.tolist()))
        rows = np.zeros(n, dtype=bool)
        rows[masked] = True
        assert torch.equal(out[~rows], ego[~rows])
        assert torch.equal(out[rows], gen.mask_token.detach().expand(len(masked), 8))
        seen_users += int((masked < ds.n_users).sum())
        seen_items += int((masked >= ds.n_users).sum())
    assert seen_users > 0 and seen_items > 0  # drawn over the whole graph


def test_masks_follow_the_loops_generator():
    model_nodes = (torch.zeros(30, 6), torch.zeros(20, 6))
    draws = []
    for seed in (1, 1, 2):
        gen = RLMRecGen(*model_nodes, 4, mask_ratio=0.3, recon_weight=1.0, tau=0.5)
        gen.on_epoch_start(None, 1, np.random.default_rng(seed))
        draws.append(choose_masked(50, 0.3, gen._gen))
    assert np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])


# ------------------------------------------------------------------ training in the loop
def _fit(ds, variant, seed=0):
    rng = seed_everything(seed)
    model = make_backbone("lightgcn", ds.n_users, ds.n_items,
                          backbone_params(dim=8, layers=2), ds.matrix("train"))
    g = torch.Generator().manual_seed(seed)
    u, i = torch.randn(ds.n_users, 12, generator=g), torch.randn(ds.n_items, 12, generator=g)
    reg = (RLMRecCon(u, i, 8, kd_weight=0.1, tau=0.2, reg=1e-4) if variant == "con"
           else RLMRecGen(u, i, 8, mask_ratio=0.15, recon_weight=0.1, tau=0.5, reg=1e-4))
    res = fit(model, ds, fit_config(lr=0.01, max_epochs=2, reg=1e-4), rng,
              phases=[Phase(variant, 2, (reg,))])
    return res, model


@pytest.mark.parametrize("variant", ["con", "gen"])
def test_a_fixed_seed_gives_the_same_run(synthetic_ds, variant):
    a, ma = _fit(synthetic_ds, variant)
    b, mb = _fit(synthetic_ds, variant)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa
    assert strip(a.history) == strip(b.history) and a.test == b.test
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(),
                                                  mb.state_dict().values()))
    assert {f"loss_{variant}", "loss_l2", "loss_bpr"} <= set(a.history[0])


# ------------------------------------------------------------------ params
@pytest.mark.parametrize("values, words", [
    ({"variants": []}, "rlmrec.variants"),
    ({"variants": ["con", "con"]}, "rlmrec.variants"),
    ({"variants": ["plus"]}, "unknown value 'plus'"),
    ({"kd_tau": 0.0}, "rlmrec.kd_tau"),
    ({"mask_ratio": 1.5}, "rlmrec.mask_ratio"),
    ({"mask_ratio": 0.0}, "rlmrec.mask_ratio"),
    ({"recon_weight": -1.0}, "rlmrec.recon_weight"),
    ({"backbone": "bert"}, "rlmrec.backbone"),
    ({"kd_weigth": 0.1}, "unknown key(s) kd_weigth"),
])
def test_bad_params_are_one_line_errors(values, words):
    with pytest.raises(ParamsError) as exc:
        build(RLMRecParams, values, "rlmrec")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_defaults_are_rlmrecs_amazon_values():
    p = build(RLMRecParams, {}, "rlmrec")
    assert (p.kd_weight, p.kd_tau, p.mask_ratio, p.recon_weight, p.recon_tau) == (
        1e-2, 0.2, 0.15, 0.1, 0.5)
    assert p.variants == ["con", "gen"]


# ------------------------------------------------------------------ the stage
def _run(joint_root, **values):
    from facelib.systems.rlmrec.stage import run_rlmrec

    return run_joint_system(joint_root, run_rlmrec, RLMRecParams, "rlmrec", **values)


def test_stage_smoke_run_writes_every_output(joint_root):
    m = _run(joint_root, backbone="lightgcn")
    fp = m["paths"]
    for path in (*fp.checkpoints.values(), *fp.logs.values(), fp.metrics, fp.per_user):
        assert path.is_file(), path
    assert str(fp.metrics).startswith(str(joint_root / "build" / "smoke"))
    written = json.loads(fp.metrics.read_text())
    assert written["stopped_by"] in ("early_stopping", "cap")
    for v in ("con", "gen"):
        assert written[v]["stopped_by"] in ("early_stopping", "cap")
        assert set(written[v]["test"]) >= {"recall@20", "ndcg@20"}
    base = json.loads((joint_root / "build/smoke/reports/metrics/cf/lightgcn-0.json").read_text())
    assert written["base"]["test"] == base["test"]
    assert written["profile_builder"] == "test" and written["skipped"] == {}
    with np.load(fp.per_user) as npz:
        for v in ("con", "gen"):
            assert float(npz[f"rlmrec_{v}.recall@20"].mean()) == pytest.approx(
                written[v]["test"]["recall@20"], abs=1e-9)
    ck = torch.load(fp.checkpoints["gen"], weights_only=False)
    assert ck["variant"] == "gen" and "mask_token" in ck["regularizer"]


@pytest.mark.parametrize("backbone", ["mf", "lightgcn"])
def test_con_with_zero_weight_reproduces_the_base_run(joint_root, backbone):
    """The variant mirrors the train_cf run exactly (same init, schedule, negatives and
    edge dropout): with its loss weighted 0 it gives the base run's numbers."""
    m = _run(joint_root, backbone=backbone, variants=["con"], kd_weight=0.0)
    base = json.loads((joint_root / f"build/smoke/reports/metrics/cf/{backbone}-0.json").read_text())
    assert m["con"]["test"] == base["test"] and m["con"]["best_epoch"] == base["best_epoch"]


def test_gen_is_skipped_on_mf_and_said(joint_root):
    m = _run(joint_root, backbone="mf", variants=["con", "gen"])
    assert m["gen"] is None and "no propagation" in m["skipped"]["gen"]
    assert not m["paths"].checkpoints["gen"].exists()
    with pytest.raises(JointError, match="nothing to run"):
        _run(joint_root, backbone="mf", variants=["gen"])


def test_missing_base_run_names_train_cf(joint_root):
    with pytest.raises(JointError, match="run the train_cf stage first"):
        _run(joint_root, backbone="simgcl")


# ------------------------------------------------------------------ the results table
def test_results_tables_split_the_study_from_the_related_systems():
    """The study's table has no RLMRec row (its runs are the related pipeline's); the
    related table reads the floor, the base model, the control run and FACE beside RLMRec,
    and tests each RLMRec row against the base model and against FACE."""
    from facelib.pipeline import stage_params

    study = stage_params("results", params={})
    assert study.table == "study" and not any(s.startswith("rlmrec") for s in study.systems)
    related = stage_params("results", overrides={"table": "related"}, params={})
    assert related.systems[:4] == ["most_popular", "base", "control", "face"]
    assert {"rlmrec_con", "rlmrec_gen"} <= set(related.systems)
    for row in ("rlmrec_con", "rlmrec_gen"):
        assert [row, "base"] in related.comparisons and [row, "face"] in related.comparisons
    assert ["face", "control"] in related.comparisons  # FACE against its control, as in the study
    given = stage_params("results", params={"results": {"systems": ["base", "face"],
                                                        "comparisons": [["face", "base"]]}})
    assert given.systems == ["base", "face"]  # the section's own keys win


def test_results_table_reads_the_stage_outputs(joint_root):
    """The rows of rows.py find the smoke run's metrics JSON and per-user arrays."""
    from facelib.results import ResultsParams, compute_results

    _run(joint_root, backbone="lightgcn")
    rows = ["base", "rlmrec_con", "rlmrec_gen"]
    p = build(ResultsParams, {"dataset": "synthetic", "backbones": ["lightgcn"], "seeds": [0],
                              "systems": rows, "comparisons": [[r, "base"] for r in rows[1:]]},
              "results")
    res = compute_results(p, joint_root / "build" / "smoke")
    assert set(res.summary.system) == set(rows)
    assert set(res.significance.treatment) == {"rlmrec_con", "rlmrec_gen"}
    assert res.agreement < 1e-9
