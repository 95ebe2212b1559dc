"""The interpret stage's outputs and plumbing: a whole stage run on a tiny synthetic FACE
run (metrics keys, item retrieval and generation, figures), the explorer page (data
embedded, parses, script valid), the metrics tree and the sentences written from it,
parameters, the pipeline registration and the one-line error for missing descriptors."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facelib.config import ParamsError, build
from facelib.data import build_dataset, make_synthetic
from facelib.systems.face.interpret import InterpretError, InterpretParams, study_table, verdicts
from facelib.systems.face.interpret.explorer import embed_json, explorer_html, explorer_payload, write_explorer
from facelib.systems.face.interpret.params import input_root
from facelib.systems.face.interpret.summary import Record, aggregate, records_for

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- stage run
@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """A throw-away root with a 60 x 40 synthetic dataset, text artifacts, a pretrained
    LightGCN and one tiny face run (as in test_face_stage); then the interpret stage."""
    from facelib import paths
    from facelib.data import load_dataset
    from facelib.systems.face.interpret import run_interpret
    from facelib.systems.face.stage import FaceParams, run_face
    from test_face_stage import TINY, tiny_root

    with tiny_root(tmp_path_factory) as (root, _):
        ds = load_dataset(paths.processed_dir("synthetic"))
        run_face(build(FaceParams, {**TINY, "control": False}, "face"), publish=False)
        p = build(InterpretParams, {"dataset": "synthetic", "backbones": ["lightgcn"],
                                    "seeds": [0], "max_entities": 30,
                                    "retrieval_candidates": [20, 10], "tsne_items": 0,
                                    "case_studies": 2, "num_threads": 1}, "interpret")
        result = run_interpret(p)
        yield {"root": root, "ds": ds, "p": p, "result": result}


def test_stage_metrics_hold_item_retrieval_and_generation(stage_run):
    from facelib.systems.face.interpret.descriptors import VARIANTS

    result, ds = stage_run["result"], stage_run["ds"]
    saved = json.loads(result.paths.metrics.read_text())
    assert stage_run["root"] / "build" / "smoke" in result.paths.metrics.parents
    for m in (result.metrics, saved):
        for v in VARIANTS:
            ret = m["item_retrieval"]["lightgcn"][v]["item"]
            assert set(ret) == {"acc@10", "acc@20"}
            assert all(0.0 <= ret[k]["mean"] <= 1.0 and set(ret[k]["runs"]) == {"0"}
                       for k in ret)
            gen = m["item_generation"]["lightgcn"][v]["item"]
            assert set(gen) == {"hit@10", "mrr", "median_rank"}
            assert 1 / ds.n_items <= gen["mrr"]["mean"] <= 1.0
            assert 1 <= gen["median_rank"]["mean"] <= ds.n_items
        assert m["chance"]["item_retrieval"] == pytest.approx({"acc@10": 0.1, "acc@20": 0.05})
        assert m["chance"]["item_generation"]["hit@10"] == pytest.approx(10 / ds.n_items)
        info = m["item_retrieval_info"]
        assert info["judge"].startswith("frozen encoder") and info["candidates"] == [10, 20]
        assert info["sampled_items"] == 30 and info["candidate_text"] == "title (year); genres"
        assert 0 < info["texts_encoded"] <= ds.n_items  # each candidate text at most once
        gen_info = m["item_generation_info"]
        assert gen_info["sampled_items"] == 30 and gen_info["items_ranked"] == ds.n_items
        assert gen_info["decoder_checkpoint"]["map"] == "map"
        assert "item_retrieval" in m["seconds"] and "item_generation" in m["seconds"]
    text = "\n".join(result.metrics["verdicts"])
    assert "Item retrieval among 10 candidates by frozen encoder" in text
    assert "FACE item-retrieval accuracy by number of candidates, lightgcn: N=10" in text
    assert "Item generation through FACE's decoder, true item among 40 items (MRR" in text
    assert result.paths.figures["items"].is_file()


def test_stage_item_generation_is_the_decoders(stage_run):
    """The FACE variant's item generation equals decoding the descriptor file's words with
    the align checkpoint's FACE and ranking by its own item embeddings."""
    import torch

    from facelib.systems.face.interpret.descriptors import sample_ids
    from facelib.systems.face.interpret.items import generation_metrics
    from facelib.systems.face.interpret.params import checkpoint_path, descriptor_path
    from facelib.systems.face.stage import load_face_checkpoint

    root, ds, result = stage_run["root"] / "build" / "smoke", stage_run["ds"], stage_run["result"]
    vocab = pd.read_csv(stage_run["root"] / "data" / "text" / "synthetic" / "vocabulary.csv")
    codebook = torch.from_numpy(np.load(stage_run["root"] / "data" / "text" / "synthetic"
                                        / "codebook.npy"))
    backbone, face = load_face_checkpoint(checkpoint_path(root, "synthetic", "lightgcn", 0),
                                          ds, codebook)
    table = pd.read_csv(descriptor_path(root, "synthetic", "lightgcn", 0, "face"))
    row = {w: i for i, w in enumerate(vocab["word"].astype(str))}
    items = table[table["entity"] == "item"].sort_values(["entity_id", "concept"])
    idx = items["word"].map(row).to_numpy().reshape(ds.n_items, -1)
    rng = np.random.default_rng(0)  # the stage's sample: users first, then items
    sample_ids(ds.n_users, 30, rng)
    sample = sample_ids(ds.n_items, 30, rng)
    with torch.no_grad():
        item_emb = backbone.embeddings_for_eval()[1].numpy()
    expected = generation_metrics(face.decode_words(torch.from_numpy(idx[sample])).numpy(),
                                  item_emb, sample)
    got = result.metrics["item_generation"]["lightgcn"]["face"]["item"]
    assert got["mrr"]["mean"] == pytest.approx(expected["mrr"])
    assert got["hit@10"]["mean"] == pytest.approx(expected["hit@10"])


def test_retrieval_candidates_beyond_the_items_is_a_one_line_error(stage_run, monkeypatch):
    from facelib.systems.face.interpret import run_interpret

    monkeypatch.setenv("FACELIB_ROOT", str(stage_run["root"]))
    p = build(InterpretParams, {"dataset": "synthetic", "backbones": ["lightgcn"],
                                "seeds": [0], "retrieval_candidates": [10, 60]}, "interpret")
    with pytest.raises(InterpretError, match=r"\[60\] exceed the 40 items") as exc:
        run_interpret(p)
    assert "\n" not in str(exc.value)


class _Scripts(HTMLParser):
    """Collects <script> contents by type, and whether any tag loads an external resource."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in = a.get("type", "text/javascript")
            self.external += [a["src"]] if "src" in a else []
        for key in ("src", "href"):
            if key in a and tag != "a" and not str(a[key]).startswith("data:"):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            self.scripts.append((self._in, data))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    ds = build_dataset("synthetic", make_synthetic(12, 8, ratings_per_user=6, seed=3), 4.0, 0)
    words = np.array(["drama", "war", "comedy", "garden", "ocean", "night"])
    rng = np.random.default_rng(0)
    sets = {"FACE (lightgcn, seed 0)": {
        "user": np.stack([rng.choice(6, 3, replace=False) for _ in range(ds.n_users)]),
        "item": np.stack([rng.choice(6, 3, replace=False) for _ in range(ds.n_items)])}}
    sets["map-only"] = {k: v[:, ::-1].copy() for k, v in sets["FACE (lightgcn, seed 0)"].items()}
    profiles = {"user": [f"user {u} likes </script><b>tricky</b> & \"quotes\""
                         for u in range(ds.n_users)],
                "item": [f"item {i} profile" for i in range(ds.n_items)]}
    payload = explorer_payload(ds, profiles, sets, words, "explorer <test>", "a note")
    path = write_explorer(payload, tmp_path_factory.mktemp("explorer") / "explorer.html")
    return ds, payload, path


def test_explorer_embeds_every_entity_and_parses(page):
    ds, payload, path = page
    html = path.read_text(encoding="utf-8")
    parser = _Scripts()
    parser.feed(html)
    data = [s for t, s in parser.scripts if t == "application/json"]
    assert len(data) == 1, "the </script> inside a profile must not end the data block"
    loaded = json.loads(data[0])
    assert loaded == json.loads(embed_json(payload))
    assert len(loaded["users"]) == ds.n_users and len(loaded["items"]) == ds.n_items
    assert loaded["sets"] == ["FACE (lightgcn, seed 0)", "map-only"]
    u3 = loaded["users"][3]
    assert u3[0] == 3 and "</script>" in u3[2] and len(u3[1]) == 2 and len(u3[1][0]) == 3
    assert [loaded["words"][i] for i in u3[1][0]] == list(payload["words"][j]
                                                          for j in payload["users"][3][1][0])
    assert loaded["titles"][0] == ds.items["title"].iloc[0]
    assert all(set(r[3]) <= set(ds.user_items("train")[r[0]].tolist()) for r in loaded["users"])
    assert not parser.external, f"external resources: {parser.external}"
    assert "<title>explorer &lt;test&gt;</title>" in html


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_explorer_script_is_valid_javascript(page, tmp_path):
    _, _, path = page
    parser = _Scripts()
    parser.feed(path.read_text(encoding="utf-8"))
    code = [s for t, s in parser.scripts if t == "text/javascript"]
    assert len(code) == 1
    js = tmp_path / "explorer.js"
    js.write_text(code[0])
    res = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_explorer_html_escapes_title():
    html = explorer_html({"title": "a<b", "note": "", "sets": [], "words": [], "titles": [],
                          "users": [], "items": []})
    assert "<title>a&lt;b</title>" in html and "__DATA__" not in html


# ----------------------------------------------------------------------------- summary
def _metrics(face: list[float], map_: list[float], rnd: list[float], ref: float) -> dict:
    recs: list[Record] = []
    for s in range(len(face)):
        for var, vals in (("face", face), ("map", map_), ("random", rnd),
                          ("nearest", [ref] * len(face))):
            recs += records_for("retrieval", "lightgcn", var, "user", s, {"mrr": vals[s]})
    return {"backbones": ["lightgcn"], **aggregate(recs)}


def test_aggregate_mean_std_runs():
    m = _metrics([0.2, 0.4], [0.1, 0.1], [0.0, 0.0], 1.0)
    leaf = m["retrieval"]["lightgcn"]["face"]["user"]["mrr"]
    assert leaf["mean"] == pytest.approx(0.3) and leaf["std"] == pytest.approx(np.std(
        [0.2, 0.4], ddof=1)) and leaf["runs"] == {"0": 0.2, "1": 0.4}
    table = study_table(m, "retrieval", "lightgcn")
    assert list(table.index) == ["FACE (align)", "map-only", "random words",
                                 "nearest words (reference)"]
    assert table.loc["FACE (align)", ("user", "mrr")].startswith("0.3 ±")


def test_verdicts_follow_the_numbers():
    plain, s = verdicts(_metrics([0.2, 0.4], [0.1, 0.1], [0.0, 0.0], 1.0))
    assert plain.startswith("In plain words, lightgcn: FACE's descriptors beat random words "
                            "on 1 of 1 text measures")
    assert "FACE 0.300" in s and "beats map-only 0.100 (higher on 2 of 2 seeds)" in s
    assert "beats random words" in s and "covers 30% of the way" in s
    _, s = verdicts(_metrics([0.2, 0.05], [0.1, 0.1], [0.0, 0.0], 1.0))
    assert "is higher on average than map-only 0.100 (higher on 1 of 2 seeds)" in s
    plain, s = verdicts(_metrics([0.05, 0.05], [0.1, 0.1], [0.08, 0.08], 1.0))
    assert "does not beat map-only" in s and "below random words" in s
    assert "no better than random words on any of the 1 text measures" in plain


def test_item_verdicts_follow_the_numbers():
    recs: list[Record] = []
    for s in range(2):
        for var, acc, mrr in (("face", (0.3, 0.5), (0.2, 0.4)), ("map", (0.1, 0.1), (0.3, 0.3)),
                              ("random", (0.1, 0.1), (0.01, 0.01)),
                              ("nearest", (0.6, 0.6), (0.05, 0.05))):
            recs += records_for("item_retrieval", "lightgcn", var, "item", s,
                                {"acc@10": acc[s], "acc@20": acc[s] / 2})
            recs += records_for("item_generation", "lightgcn", var, "item", s,
                                {"mrr": mrr[s], "hit@10": mrr[s]})
    m = {"backbones": ["lightgcn"], **aggregate(recs),
         "chance": {"item_retrieval": {"acc@20": 0.05, "acc@10": 0.1},
                    "item_generation": {"mrr": 0.002, "hit@10": 0.003}},
         "item_retrieval_info": {"judge": "judge X"},
         "item_generation_info": {"items_ranked": 3706}}
    plain, ret, by_n, mrr, hit = verdicts(m)
    assert "on 1 of 1 text measures (item retrieval among 10)" in plain
    assert ret.startswith("Item retrieval among 10 candidates by judge X (accuracy, chance "
                          "0.100), lightgcn: FACE 0.400; beats map-only 0.100 (higher on 2 of "
                          "2 seeds)") and "covers 60% of the way" in ret
    assert by_n == ("FACE item-retrieval accuracy by number of candidates, lightgcn: "
                    "N=10 0.400 (4.0x chance), N=20 0.200 (4.0x chance).")
    assert "true item among 3,706 items (MRR, chance 0.0020)" in mrr
    assert "is higher on average than map-only 0.300 (higher on 1 of 2 seeds)" in mrr
    assert "Nearest words through the same decoder: 0.050" in mrr and "hit@10" in hit


# ----------------------------------------------------------------------------- params, errors
def test_params_validation():
    p = build(InterpretParams, {"backbones": ["mf"], "seeds": [1, 2]}, "interpret")
    assert p.backbones == ["mf"] and p.max_entities == 300
    with pytest.raises(ParamsError, match=r"interpret.backbones.*unknown value 'bert'"):
        build(InterpretParams, {"backbones": ["lightgcn", "bert"]}, "interpret")
    with pytest.raises(ParamsError, match=r"interpret.seeds.*empty"):
        build(InterpretParams, {"seeds": []}, "interpret")
    with pytest.raises(ParamsError, match=r"interpret.seeds.*repeats"):
        build(InterpretParams, {"seeds": [0, 0]}, "interpret")
    with pytest.raises(ParamsError, match=r"interpret.synonym_threshold"):
        build(InterpretParams, {"synonym_threshold": 1.5}, "interpret")
    assert p.retrieval_candidates == [10, 20, 40, 60]
    with pytest.raises(ParamsError, match=r"interpret.retrieval_candidates"):
        build(InterpretParams, {"retrieval_candidates": [1, 10]}, "interpret")
    with pytest.raises(ParamsError, match=r"interpret.retrieval_candidates.*repeats"):
        build(InterpretParams, {"retrieval_candidates": [10, 10]}, "interpret")


def test_registered_in_the_pipeline():
    from facelib import pipeline

    assert pipeline.STAGES["interpret"] == ("70_interpret.ipynb",
                                            "facelib.systems.face.interpret:InterpretParams")
    assert pipeline.params_class("interpret") is InterpretParams
    assert (ROOT / "notebooks" / "70_interpret.ipynb").is_file()


def test_missing_descriptors_say_run_the_face_stage(tmp_path, monkeypatch):
    for name in ("params.yaml", "pyproject.toml"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    p = build(InterpretParams, {"dataset": "synthetic", "backbones": ["mf"], "seeds": [0]},
              "interpret")
    with pytest.raises(InterpretError) as exc:
        input_root(p, publish=True)
    msg = str(exc.value)
    assert "run the face stage first: dvc repro face" in msg and "\n" not in msg
    folder = tmp_path / "data" / "systems" / "face" / "synthetic" / "mf-0"
    folder.mkdir(parents=True)
    empty = pd.DataFrame(columns=["entity", "entity_id", "concept", "word"])
    for name in ("descriptors.csv", "descriptors-map.csv"):
        empty.to_csv(folder / name, index=False)
    assert input_root(p, publish=True) == tmp_path
    assert input_root(p, publish=False) == tmp_path  # no build/smoke set: the repository's


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed")
def test_explorer_renders_and_filters_in_chromium(page):
    """The script runs in a real browser: 25 rows on the first page, and a search in the
    address (#kind=items&q=...) filters to the matching items."""
    ds, payload, path = page

    def dom(fragment: str = "") -> str:
        res = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                              "--dump-dom", path.as_uri() + fragment],
                             capture_output=True, text=True, timeout=60)
        return res.stdout

    first = dom()
    n_users = len(payload["users"])
    assert f"{n_users} users · page 1 of {-(-n_users // 25)}" in first
    assert first.count('<td class="id">') == min(25, n_users)
    word = payload["words"][payload["items"][0][1][0][0]]
    expected = sum(word in " ".join([payload["words"][i] for ids in r[1] for i in ids])
                   or word in (r[2] + r[3] + payload["titles"][r[0]]).lower()
                   for r in payload["items"])
    filtered = dom(f"#kind=items&q={word}")
    assert f"{expected} items · page 1 of 1" in filtered
    assert filtered.count('<td class="id">') == expected


def test_missing_map_checkpoint_is_a_one_line_error_before_the_encoder(stage_run, monkeypatch):
    from facelib.systems.face.interpret import run_interpret
    from facelib.systems.face.interpret.params import checkpoint_path
    from facelib.text import FrozenEncoder

    monkeypatch.setenv("FACELIB_ROOT", str(stage_run["root"]))
    path = checkpoint_path(stage_run["root"] / "build" / "smoke", "synthetic", "lightgcn", 0,
                           "map")
    moved = path.with_suffix(".moved")
    path.rename(moved)

    def no_encoder(cls, device="cpu"):
        raise AssertionError("the encoder was loaded before the inputs were checked")

    monkeypatch.setattr(FrozenEncoder, "load", classmethod(no_encoder))
    try:
        p = build(InterpretParams, {"dataset": "synthetic", "backbones": ["lightgcn"],
                                    "seeds": [0], "retrieval_candidates": [10]}, "interpret")
        with pytest.raises(InterpretError, match="no FACE map checkpoint at .*dvc repro face"):
            run_interpret(p)
    finally:
        moved.rename(path)


def test_scope_sentence_names_the_entities_and_the_capped_runs():
    from facelib.systems.face.interpret.summary import scope_sentence

    m = {"sample_from": "test entities held out of the alignment",
         "stopped_by": {"lightgcn-0": "early_stopping", "lightgcn-1": "cap"}}
    s = scope_sentence(m)
    assert s.startswith("The studies read test entities held out of the alignment")
    assert "1 of 2 FACE runs ended at an epoch or step cap (lightgcn-1)" in s
    m["stopped_by"]["lightgcn-1"] = None
    assert "1 of 2 FACE runs do not say how they ended (lightgcn-1" in scope_sentence(m)
    m["stopped_by"]["lightgcn-1"] = "early_stopping"
    assert "all 2 FACE runs ended by early stopping" in scope_sentence(m)


def test_plain_sentence_counts_the_text_measures_that_beat_random_words():
    from facelib.systems.face.interpret.summary import plain_sentence

    def node(*runs):
        return {"mean": sum(runs) / len(runs), "std": 0.0,
                "runs": {str(i): v for i, v in enumerate(runs)}}

    def study(face, rnd, ref, entity="user", metric="mrr"):
        return {"lightgcn": {"face": {entity: {metric: face}}, "random": {entity: {metric: rnd}},
                             "nearest": {entity: {metric: ref}}}}

    m = {"retrieval": study(node(0.2, 0.3), node(0.1, 0.1), node(0.6, 0.6)),
         "genre": study(node(0.30, 0.10), node(0.2, 0.2), node(0.4, 0.4), "item", "map")}
    s = plain_sentence(m, "lightgcn")
    # retrieval: higher on both seeds; genre: higher mean (0.2 = 0.2) is not, and seed 1 loses
    assert s.startswith("In plain words, lightgcn: FACE's descriptors beat random words on 1 of "
                        "2 text measures (profile retrieval of users (MRR)) and not on the other 1")
    assert "at best they cover 30% of the way" in s  # (0.25 - 0.1) / (0.6 - 0.1)
    m["retrieval"]["lightgcn"]["face"]["user"]["mrr"] = node(0.1, 0.05)
    assert plain_sentence(m, "lightgcn") == ("In plain words, lightgcn: FACE's descriptors are "
                                             "no better than random words on any of the 2 text "
                                             "measures.")
    assert plain_sentence({}, "lightgcn") is None
