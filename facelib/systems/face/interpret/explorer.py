"""Study 6, the descriptor explorer: one self-contained offline HTML page.

Every user and item with its id, descriptors (one column per descriptor set, e.g. FACE and
map-only of one backbone and seed), profile, and liked titles (users) or title and genres
(items). A search box filters by any text (all space-separated terms must occur), the
table is paginated; the view is kept in the address (``explorer.html#kind=items&q=war``), so
a search can be linked. The data sits in the page as JSON (``<script type="application/json">``,
words and titles stored once and referenced by index to keep the file small); the script is
vanilla JavaScript, nothing is fetched, there are no images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from facelib.data import RecDataset
from facelib.systems.face.interpret.cases import liked_items, titles
from facelib.systems.face.interpret.descriptors import Descriptors
from facelib.io import write_text

MAX_LIKED = 10  # liked titles kept per user


def explorer_payload(ds: RecDataset, profiles: dict[str, list[str]],
                     sets: dict[str, Descriptors], words: np.ndarray, title: str,
                     note: str = "", seed: int = 0) -> dict[str, Any]:
    """The page's data: ``users`` rows [id, [words per set], profile, [liked item ids],
    n_liked], ``items`` rows [id, [words per set], profile, genres]; words and titles by index."""
    liked = ds.user_items("train")
    genres = (ds.items["genres"].astype(str).str.replace("|", ", ").tolist()
              if "genres" in ds.items.columns else [""] * ds.n_items)
    users = [[u, [d["user"][u].tolist() for d in sets.values()], profiles["user"][u],
              liked_items(liked[u], MAX_LIKED, seed, u).tolist(), int(len(liked[u]))]
             for u in range(ds.n_users)]
    items = [[i, [d["item"][i].tolist() for d in sets.values()], profiles["item"][i], genres[i]]
             for i in range(ds.n_items)]
    return {"title": title, "note": note, "sets": list(sets), "words": [str(w) for w in words],
            "titles": titles(ds).tolist(), "users": users, "items": items}


def embed_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element (every "<" escaped as \\u003c)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def explorer_html(payload: dict[str, Any]) -> str:
    """The complete page for ``payload`` (:func:`explorer_payload`)."""
    from html import escape

    return (_PAGE.replace("__TITLE__", escape(payload["title"]))
            .replace("__DATA__", embed_json(payload)))


def write_explorer(payload: dict[str, Any], path: Path) -> Path:
    """Write the page atomically; return its path."""
    return write_text(explorer_html(payload), path)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.35em; margin: 0 0 .2em; }
#note { color: #555; margin: 0 0 1em; }
#controls { display: flex; gap: .6em; align-items: center; flex-wrap: wrap; margin-bottom: .8em; }
#q { flex: 1; min-width: 16em; padding: .35em .5em; font-size: 1em; }
button, select { padding: .3em .6em; font-size: .95em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .4em .5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.id { font-variant-numeric: tabular-nums; color: #555; }
td.words { max-width: 22em; }
span.w { display: inline-block; background: #eef3fb; border-radius: 3px; padding: 0 .3em;
         margin: 0 .2em .2em 0; font-size: .92em; }
td.profile { max-width: 30em; color: #333; }
td.meta { max-width: 24em; color: #444; font-size: .93em; }
#info { color: #555; }
</style>
</head>
<body>
<h1 id="heading"></h1>
<p id="note"></p>
<div id="controls">
  <select id="kind" aria-label="entity type"><option value="users">users</option>
    <option value="items">items</option></select>
  <input id="q" type="search" placeholder="search ids, descriptors, profiles, titles, genres"
         aria-label="search">
  <button id="prev" type="button">&larr; prev</button>
  <span id="info"></span>
  <button id="next" type="button">next &rarr;</button>
</div>
<table><thead id="head"></thead><tbody id="body"></tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("data").textContent);
  var PAGE = 25, page = 0, rows = [], hay = {users: null, items: null};
  var $ = function (id) { return document.getElementById(id); };
  $("heading").textContent = D.title;
  $("note").textContent = D.note;
  function words(ids) { return ids.map(function (i) { return D.words[i]; }); }
  function liked(r) { return r[3].map(function (i) { return D.titles[i]; }); }
  function text(kind, r) {
    var parts = [String(r[0]), r[2]];
    r[1].forEach(function (ids) { parts.push(words(ids).join(" ")); });
    if (kind === "users") { parts.push(liked(r).join(" ")); }
    else { parts.push(D.titles[r[0]], r[3]); }
    return parts.join(" \\n ").toLowerCase();
  }
  function haystack(kind) {
    if (!hay[kind]) { hay[kind] = D[kind].map(function (r) { return text(kind, r); }); }
    return hay[kind];
  }
  function cell(tr, cls, content) {
    var td = document.createElement("td");
    td.className = cls;
    if (Array.isArray(content)) {
      content.forEach(function (w) {
        var s = document.createElement("span"); s.className = "w"; s.textContent = w;
        td.appendChild(s);
      });
    } else { td.textContent = content; }
    tr.appendChild(td);
  }
  function header(kind) {
    var cols = ["id"].concat(D.sets, ["profile",
      kind === "users" ? "liked titles (training, sample)" : "title, genres"]);
    var tr = document.createElement("tr");
    cols.forEach(function (c) {
      var th = document.createElement("th"); th.textContent = c; tr.appendChild(th);
    });
    $("head").replaceChildren(tr);
  }
  function filter() {
    var kind = $("kind").value, terms = $("q").value.toLowerCase().split(/\\s+/)
      .filter(function (t) { return t.length > 0; });
    var h = terms.length ? haystack(kind) : null;
    rows = [];
    D[kind].forEach(function (r, i) {
      if (!h || terms.every(function (t) { return h[i].indexOf(t) >= 0; })) { rows.push(r); }
    });
    page = 0;
    header(kind);
    render();
  }
  function render() {
    var kind = $("kind").value, pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    var body = document.createDocumentFragment();
    rows.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, "id", String(r[0]));
      r[1].forEach(function (ids) { cell(tr, "words", words(ids)); });
      cell(tr, "profile", r[2]);
      if (kind === "users") {
        cell(tr, "meta", liked(r).join("; ") + (r[4] > r[3].length ?
          " (" + r[3].length + " of " + r[4] + ")" : ""));
      } else { cell(tr, "meta", D.titles[r[0]] + (r[3] ? " \\u2014 " + r[3] : "")); }
      body.appendChild(tr);
    });
    $("body").replaceChildren(body);
    $("info").textContent = rows.length + " " + kind + " \\u00b7 page " + (page + 1) +
      " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  function remember() {  // the view in the address (#kind=items&q=war): linkable searches
    try {
      var h = "#kind=" + encodeURIComponent($("kind").value) +
        ($("q").value ? "&q=" + encodeURIComponent($("q").value) : "");
      history.replaceState(null, "", h);
    } catch (e) { /* some viewers forbid it; the page works without */ }
  }
  function restore() {
    var h = new URLSearchParams(location.hash.slice(1));
    if (h.get("kind") === "items" || h.get("kind") === "users") { $("kind").value = h.get("kind"); }
    if (h.get("q")) { $("q").value = h.get("q"); }
  }
  var timer = null;
  $("q").addEventListener("input", function () {
    clearTimeout(timer); timer = setTimeout(function () { filter(); remember(); }, 150);
  });
  $("kind").addEventListener("change", function () { filter(); remember(); });
  $("prev").addEventListener("click", function () { page -= 1; render(); });
  $("next").addEventListener("click", function () { page += 1; render(); });
  restore();
  filter();
})();
</script>
</body>
</html>
"""
