"""The interpret stage's outputs and plumbing: the explorer page (data embedded, parses,
script valid), the metrics tree and the sentences written from it, parameters, the
pipeline registration and the one-line error for missing descriptors."""

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
    (s,) = verdicts(_metrics([0.2, 0.4], [0.1, 0.1], [0.0, 0.0], 1.0))
    assert "FACE 0.300" in s and "beats map-only 0.100 (higher on 2 of 2 seeds)" in s
    assert "beats random words" in s and "covers 30% of the way" in s
    (s,) = verdicts(_metrics([0.2, 0.05], [0.1, 0.1], [0.0, 0.0], 1.0))
    assert "is higher on average than map-only 0.100 (higher on 1 of 2 seeds)" in s
    (s,) = verdicts(_metrics([0.05, 0.05], [0.1, 0.1], [0.08, 0.08], 1.0))
    assert "does not beat map-only" in s and "below random words" in s


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


def test_registered_in_the_pipeline():
    from facelib import pipeline

    assert pipeline.STAGES["interpret"] == ("06_interpret.ipynb",
                                            "facelib.systems.face.interpret:InterpretParams")
    assert pipeline.params_class("interpret") is InterpretParams
    assert (ROOT / "notebooks" / "06_interpret.ipynb").is_file()


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
    folder = tmp_path / "data" / "face" / "synthetic"
    folder.mkdir(parents=True)
    empty = pd.DataFrame(columns=["entity", "entity_id", "concept", "word"])
    for suffix in ("", "-map"):
        empty.to_csv(folder / f"descriptors-mf-0{suffix}.csv", index=False)
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
