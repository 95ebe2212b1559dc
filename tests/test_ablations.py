"""Ablation summaries on hand-made metrics files whose answers are known."""

from __future__ import annotations

import json

import pytest

from facelib.systems.face import ablations
from facelib.systems.face.ablations import AblationError, AblationsParams
from facelib.config import ParamsError, build

TAGS = ("c4", "c8", "c32", "align_weight_0p01", "align_weight_1", "ref_vq_weights",
        "ref_prompt_order", "encoder_dropout", "pinv_words", "ref_init")


def _metrics(face: float, map_: float, base: float = 0.2) -> dict:
    def block(v: float) -> dict:
        return {"recall@20": v, "ndcg@20": v + 0.01}

    return {"backbone": "lightgcn", "seed": 0, "base": {"test": block(base)},
            "face": {"test": block(face), "valid": block(face),
                     "map": {"test": block(map_)}},
            "seconds": {"map": 10.0, "align": 20.0}}


@pytest.fixture()
def root(tmp_path):
    """Main runs lightgcn-{0,1,2} (FACE 0.210, 0.212, 0.214: sd 0.002) and mf-0, and one
    ablation file per tag: FACE = 0.210 + 0.001 * (index of the tag)."""
    face_dir = tmp_path / "metrics" / "systems" / "face"
    abl_dir = tmp_path / "metrics" / "ablations"
    face_dir.mkdir(parents=True)
    abl_dir.mkdir(parents=True)
    for seed, v in enumerate((0.210, 0.212, 0.214)):
        m = _metrics(v, v - 0.001 * (seed - 1))  # map-only: 0.211, 0.212, 0.213
        m["seed"] = seed
        (face_dir / f"lightgcn-{seed}.json").write_text(json.dumps(m))
    mf = _metrics(0.19, 0.195)
    mf["backbone"] = "mf"
    (face_dir / "mf-0.json").write_text(json.dumps(mf))
    for i, tag in enumerate(TAGS):
        (abl_dir / f"lightgcn-0-{tag}.json").write_text(
            json.dumps(_metrics(0.210 + 0.001 * i, 0.205)))
    return tmp_path


P = AblationsParams(dataset="ml-1m", backbone="lightgcn", seed=0)


def test_question_table_orders_variants_and_differences(root):
    q = ablations.questions()[0]  # C
    table = ablations.question_table(P, q, root)
    assert list(table.index) == ["4", "8", "16", "32"]
    assert table["FACE recall@20"].tolist() == pytest.approx([0.210, 0.211, 0.210, 0.212])
    assert table["Δ recall@20 vs default"].tolist() == pytest.approx([0, 0.001, 0, 0.002])
    assert table.loc["16", "map-only recall@20"] == pytest.approx(0.211)
    assert table["seconds"].eq(30.0).all()


def test_seed_spread_is_sample_sd_over_main_runs(root):
    spread = ablations.seed_spread("lightgcn", root)
    assert spread["recall@20"] == pytest.approx(0.002)
    assert ablations.seed_spread("simgcl", root)["recall@20"] != ablations.seed_spread(
        "simgcl", root)["recall@20"]  # nan: no runs


def test_verdict_within_and_beyond_noise(root):
    q = ablations.questions()[0]
    table = ablations.question_table(P, q, root)
    text = ablations.verdict(table, q, {"recall@20": 0.002})
    assert "from 0.2100" in text and "to 0.2120 (32)" in text and "no measurable" in text
    text = ablations.verdict(table, q, {"recall@20": 0.0005})
    assert "32 is best" in text


def test_map_vs_align_pairs_by_seed(root):
    ma = ablations.map_vs_align(root)
    light = ma[ma.backbone == "lightgcn"].sort_values("seed")
    assert light["Δ recall@20"].tolist() == pytest.approx([-0.001, 0.0, 0.001])
    text = ablations.map_align_verdict(ma)
    assert "lightgcn +0.0000 on average (1 of 3 seeds improve)" in text
    assert "mf -0.0050 on average (0 of 1 seeds improve)" in text


def test_write_summary(root, tmp_path):
    out = tmp_path / "out"
    summary = ablations.write_summary(P, out, root)
    assert (out / "summary.md").is_file() and (out / "word_num.png").stat().st_size > 0
    saved = json.loads((out / "summary.json").read_text())
    assert saved["switch"]["variants"]["pinv_words"]["recall@20"] == pytest.approx(0.218)
    assert saved == json.loads(json.dumps(summary))


def test_missing_variant_names_the_command(root):
    (root / "metrics" / "ablations" / "lightgcn-0-c8.json").unlink()
    with pytest.raises(AblationError, match="make ablations"):
        ablations.question_table(P, ablations.questions()[0], root)


def test_variant_overrides_are_validated():
    build(AblationsParams, {"variants": {"c4": "--set word_num=4"}}, "ablations")
    with pytest.raises(ParamsError, match="ablations.variants.c4"):
        build(AblationsParams, {"variants": {"c4": "word_num 4; rm -rf"}}, "ablations")


def test_variant_overrides_are_read_as_set_does():
    from facelib.systems.face.ablations import overrides

    from facelib.config import build
    from facelib.systems.face.params import FaceParams

    values = overrides("--set word_num=4 --set pinv_words=true --set align_weight=1e-2")
    assert values == {"word_num": 4, "pinv_words": True, "align_weight": "1e-2"}  # YAML 1.1
    p = build(FaceParams, values, "face")
    assert (p.word_num, p.pinv_words, p.align_weight) == (4, True, 0.01)
