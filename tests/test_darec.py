"""DaRec (reconstructed): each loss on a hand-computed case, what optimiser steps do to the
CF embeddings, the switches, the deterministic clustering, params errors and the stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import run_joint_system
from facelib.config import ParamsError, build
from facelib.systems.darec.model.darec import DaRec
from facelib.systems.darec.model.structure import (centres, global_alignment, local_alignment,
                                                   match, orthogonality, spherical_kmeans,
                                                   uniformity)
from facelib.systems.darec.params import DaRecParams

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.tensor


# ------------------------------------------------------------------ losses by hand
def test_orthogonality_on_a_hand_computed_case():
    """Rows (1, 0), (0, 1): shared = specific gives ‖I‖² / 2 = 1; swapped columns (each
    row's parts orthogonal, yet the columns correlate across rows) gives 2 / 2 = 1 too;
    specific columns uncorrelated with the shared ones over the batch give 0."""
    h = T([[1.0, 0.0], [0.0, 1.0]])
    assert float(orthogonality(h, h)) == pytest.approx(1.0)
    assert float(orthogonality(h, T([[0.0, 1.0], [1.0, 0.0]]))) == pytest.approx(1.0)
    h3, p3 = T([[1.0, 0.0], [2.0, 0.0]]), T([[1.0, 0.0], [-3.0, 0.0]])
    assert float(orthogonality(h3, p3)) == pytest.approx(0.0)
    # (1, 1)/√2 against (1, 0): Ĥᵀ P̂ = [[1/√2, 0], [1/√2, 0]] for one row, n = 1
    got = orthogonality(T([[1.0, 1.0]]), T([[1.0, 0.0]]))
    assert float(got) == pytest.approx(0.5 + 0.5)


def test_uniformity_on_a_hand_computed_case():
    """Two opposite unit rows: ‖x̂_0 − x̂_1‖² = 4, so log exp(−2 · 4) = −8; three rows
    with distances² 2, 2, 4 (two orthogonal, one opposite): log mean(e^-4, e^-4, e^-8)."""
    assert float(uniformity(T([[1.0, 0.0], [-3.0, 0.0]]))) == pytest.approx(-8.0)
    got = uniformity(T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    assert float(got) == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3),
                                       rel=1e-6)


def test_global_alignment_on_a_hand_computed_case():
    """Ŝ^C of rows (1, 0), (0, 1) is I; Ŝ^L of (1, 0), (1, 1) has off-diagonal 1/√2:
    ‖Ŝ^C − Ŝ^L‖² / n² = 2 · (1/√2)² / 4 = 1/4. Identical geometry (up to a rotation and
    scale) gives 0."""
    cf, prf = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [1.0, 1.0]])
    assert float(global_alignment(cf, prf)) == pytest.approx(0.25)
    rotated = T([[0.0, 2.0], [-5.0, 0.0]])
    assert float(global_alignment(cf, rotated)) == pytest.approx(0.0, abs=1e-7)


def test_kmeans_matching_and_centre_loss_on_a_hand_computed_case():
    """Two tight groups on each side; the profile side lists them in the other order.
    K-means finds the groups, the Hungarian step pairs group with group, and the centre
    loss is mean(1 − cos) of the matched centres."""
    cf = T([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    prf = T([[0.0, 1.0], [0.1, 0.99], [1.0, 0.0], [0.99, 0.1]])
    a_cf, a_prf = spherical_kmeans(cf, 2), spherical_kmeans(prf, 2)
    assert a_cf.tolist() == [0, 0, 1, 1] and a_prf.tolist() == [0, 0, 1, 1]
    c_cf, c_prf = centres(cf, a_cf, 2), centres(prf, a_prf, 2)
    assert match(c_cf, c_prf).tolist() == [1, 0]  # CF group 0 is the profiles' group 1
    # the two sides hold the same points: matched centres coincide, loss 0
    assert float(local_alignment(cf, prf, 2, "center_match")) == pytest.approx(0.0, abs=1e-6)
    # rotate the profile side by 90 degrees: x-group -> y-group, y-group -> (-1, 0) group;
    # the best matching pairs x with y (cos 0.0...) and y with -x: loss by hand
    rot = prf @ T([[0.0, 1.0], [-1.0, 0.0]])
    c_rot = centres(rot, spherical_kmeans(rot, 2), 2)
    pi = match(c_cf, c_rot)
    want = float(np.mean([1 - float(c_cf[k] @ c_rot[pi[k]]) for k in range(2)]))
    assert float(local_alignment(cf, rot, 2, "center_match")) == pytest.approx(want, rel=1e-6)
    assert float(local_alignment(cf, rot, 2, "off")) == 0.0


def test_assign_kl_is_zero_for_identical_sides_and_positive_otherwise():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    assert float(local_alignment(x, x.clone(), 3, "assign_kl")) == pytest.approx(0.0, abs=1e-6)
    assert float(local_alignment(x, torch.randn(16, 4), 3, "assign_kl")) > 1e-3


def test_kmeans_is_deterministic_and_handles_fewer_rows_than_clusters():
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(spherical_kmeans(x, 4), spherical_kmeans(x.clone(), 4))
    assert sorted(spherical_kmeans(x[:3], 8).tolist()) == [0, 1, 2]


# ------------------------------------------------------------------ the regulariser
def _darec(**kw) -> DaRec:
    torch.manual_seed(0)
    return DaRec(torch.randn(6, 12), torch.randn(5, 12), dim=4, shared_dim=3, **kw)


class _Out:
    def __init__(self, u, p):
        self.user_emb, self.pos_emb, self.neg_emb = u, p, p


def test_weighted_terms_follow_the_switches():
    users, pos = T([0, 1, 2]), T([0, 1, 2])
    out = _Out(torch.randn(3, 4), torch.randn(3, 4))
    d = _darec(alpha=0.5, beta=2.0, clusters=2, reg=1e-3)
    raw = d.terms(torch.cat([out.user_emb, out.pos_emb]),
                  torch.cat([d.user_profiles[users], d.item_profiles[pos]]))
    got = d.losses(out, users, pos, pos)
    assert set(got) == {"dis", "align", "l2"}
    got = {k: float(v.detach()) for k, v in got.items()}
    assert got["dis"] == pytest.approx(0.5 * float(raw["dis"].detach()), rel=1e-6)
    assert got["align"] == pytest.approx(2.0 * float((raw["global"] + raw["local"]).detach()),
                                         rel=1e-6)
    off = _darec(ortho=False, uniformity=False, global_align=False, local="off")
    assert set(off.losses(out, users, pos, pos)) == set()
    only_local = _darec(ortho=False, uniformity=False, global_align=False, clusters=2)
    assert set(only_local.terms(torch.randn(4, 4), torch.randn(4, 12))) == {"local"}
    with pytest.raises(ValueError, match="unknown local alignment"):
        _darec(local="kmeans")


def test_steps_bring_the_cf_similarity_structure_towards_the_profiles():
    """Minimising DaRec's structure terms moves the CF embeddings so that their shared
    parts' similarity matrix approaches the profiles' (the global gap shrinks)."""
    torch.manual_seed(0)
    n_u, n_i, d = 16, 12, 8
    d_ = DaRec(torch.randn(n_u, 24), torch.randn(n_i, 24), dim=d, shared_dim=6, alpha=0.0,
               beta=1.0, clusters=3)
    users_e, items_e = torch.nn.Parameter(torch.randn(n_u, d)), torch.nn.Parameter(
        torch.randn(n_i, d))
    users, pos = torch.arange(n_u), torch.arange(n_u) % n_i
    opt = torch.optim.Adam([users_e, items_e, *d_.parameters()], lr=0.02)

    def gap():
        with torch.no_grad():
            h = d_.parts(torch.cat([users_e[users], items_e[pos]]),
                         torch.cat([d_.user_profiles[users], d_.item_profiles[pos]]))
            return float(global_alignment(h["cf_sh"], h["prf_sh"]))
    before = gap()
    for _ in range(60):
        loss = sum(d_.losses(_Out(users_e[users], items_e[pos]), users, pos, pos).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() < 0.5 * before
    assert users_e.grad is not None and float(users_e.grad.abs().sum()) > 0


# ------------------------------------------------------------------ params
@pytest.mark.parametrize("values, words", [
    ({"local": "kmeans"}, "unknown value 'kmeans'"),
    ({"clusters": 0}, "darec.clusters"),
    ({"alpha": -1.0}, "darec.alpha"),
    ({"tau": 0.0}, "darec.tau"),
    ({"shared_dim": 0}, "darec.shared_dim"),
    ({"backbone": "bert"}, "darec.backbone"),
])
def test_bad_params_are_one_line_errors(values, words):
    with pytest.raises(ParamsError) as exc:
        build(DaRecParams, values, "darec")
    assert words in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------ the stage
def _run(root, **values):
    from facelib.systems.darec.stage import run_darec

    return run_joint_system(root, run_darec, DaRecParams, "darec", **values)


def test_stage_smoke_run_writes_every_output_and_says_it_is_reconstructed(joint_root):
    m = _run(joint_root, backbone="lightgcn", clusters=3)
    fp = m["paths"]
    for path in (fp.checkpoints["full"], fp.logs["full"], fp.metrics, fp.per_user):
        assert path.is_file(), path
    written = json.loads(fp.metrics.read_text())
    assert written["full"]["stopped_by"] in ("early_stopping", "cap")
    assert "reconstructed" in written["reconstructed"]["what"]
    assert written["reconstructed"]["switches"] == {"ortho": True, "uniformity": True,
                                                    "global_align": True, "local": "center_match"}
    with np.load(fp.per_user) as npz:
        assert float(npz["darec_full.recall@20"].mean()) == pytest.approx(
            written["full"]["test"]["recall@20"], abs=1e-9)
    log = fp.logs["full"].read_text().splitlines()[0]
    assert "loss_dis" in log and "loss_align" in log


def test_everything_switched_off_reproduces_the_base_run(joint_root):
    """With every part off DaRec adds nothing: the run is the train_cf run again."""
    m = _run(joint_root, backbone="mf", ortho=False, uniformity=False, global_align=False,
             local="off")
    base = json.loads((joint_root / "build/smoke/reports/metrics/cf/mf-0.json").read_text())
    assert m["full"]["test"] == base["test"] and m["full"]["best_epoch"] == base["best_epoch"]


def test_related_table_reads_darec_beside_rlmrec(joint_root):
    from facelib.results import ResultsParams, compute_results

    _run(joint_root, backbone="lightgcn", clusters=3)
    p = build(ResultsParams, {"dataset": "synthetic", "backbones": ["lightgcn"], "seeds": [0],
                              "systems": ["base", "darec"]}, "results")
    assert p.comparisons == [["darec", "base"]]  # own references among the rows
    res = compute_results(p, joint_root / "build" / "smoke")
    assert set(res.summary.system) == {"base", "darec"}
    assert "DaRec (reconstructed)" in res.markdown


# ------------------------------------------------------------------ the validation grid
def test_grid_selects_the_best_mean_validation_and_writes_its_table():
    from facelib.systems.darec.grid import grid_markdown, select

    pts = [{"backbone": b, "alpha": a, "beta": 0.1, "valid_recall@20": v}
           for a, vals in ((0.01, (0.30, 0.20)), (0.1, (0.28, 0.25))) for b, v in
           zip(("lightgcn", "mf"), vals)]
    chosen = select(pts)
    assert (chosen["alpha"], chosen["beta"]) == (0.1, 0.1)  # mean 0.265 beats 0.25
    assert chosen["mean_valid_recall@20"] == pytest.approx(0.265)
    md = grid_markdown(pts, chosen)
    assert "| 0.01 | 0.1 | 0.3000 | 0.2000 | 0.2500 |" in md and "test split was not read" in md


def test_empty_grid_is_a_one_line_error():
    with pytest.raises(ParamsError, match=r"darec.grid_beta"):
        build(DaRecParams, {"grid_beta": []}, "darec")


def test_grid_without_study_backbones_is_a_one_line_error(monkeypatch):
    from facelib.systems.darec import grid

    monkeypatch.setattr(grid, "read_params_file", lambda: {"study": {"seeds": [0]}})
    with pytest.raises(ParamsError, match=r"study.regularized"):
        grid.main([])


def test_params_hold_the_weights_the_committed_grid_selected():
    """params.yaml's darec.alpha / beta are the committed grid's choice (the grid is a DVC
    stage of related/dvc.yaml; skipped before it has run)."""
    from pathlib import Path

    from facelib.pipeline import stage_params

    root = Path(__file__).resolve().parents[1]
    grid = root / "reports" / "related" / "darec_grid.json"
    if not grid.is_file():
        pytest.skip("reports/related/darec_grid.json absent: `make related` writes it")
    import yaml

    chosen = json.loads(grid.read_text())["selected"]
    p = stage_params("darec", params=yaml.safe_load((root / "params.yaml").read_text()))
    assert (p.alpha, p.beta) == (chosen["alpha"], chosen["beta"]), (
        "params.yaml darec.alpha/beta differ from the grid's selection; copy them over")


def test_grid_runs_every_point_and_selects_on_validation(joint_root):
    """The darec_grid stage's function on the synthetic root: one point per (alpha, beta,
    backbone), the selection the best mean validation metric, both outputs written."""
    from conftest import TINY_CF
    from facelib.systems.darec.grid import KEY, OUTPUTS, run_grid
    from facelib.train import TrainCFParams, run_train_cf

    for backbone in ("lightgcn", "mf"):  # the grid reads published base runs
        run_train_cf(build(TrainCFParams, {**TINY_CF, "backbone": backbone}, "train_cf"),
                     publish=True)
    p = build(DaRecParams, {"dataset": "synthetic", "clusters": 3, "grid_alpha": [1e-3, 1e-1],
                            "grid_beta": [1e-3]}, "darec")
    out = run_grid(p, ["lightgcn", "mf"])
    assert {(pt["alpha"], pt["backbone"]) for pt in out["points"]} == {
        (a, b) for a in (1e-3, 1e-1) for b in ("lightgcn", "mf")}
    means = {a: np.mean([pt[f"valid_{KEY}"] for pt in out["points"] if pt["alpha"] == a])
             for a in (1e-3, 1e-1)}
    assert out["selected"]["alpha"] == max(means, key=means.get)
    assert all((joint_root / rel).is_file() for rel in OUTPUTS.values())
