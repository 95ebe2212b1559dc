"""``reports/index.html``: one self-contained, offline page (inline CSS, no script, figures
embedded as data URIs) that links every rendered notebook, grouped by stage, and shows the
results tables, the figures and a provenance line."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from facelib.io import write_text

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 0.6rem 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
th { background: #f3f3f3; } .meta { color: #555; } figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; } ul.pages { columns: 2; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def stage_of(stem: str, stages: dict[str, str]) -> tuple[str, str]:
    """(stage, variant) of an executed notebook's stem: ``30_train_cf-mf-0`` ->
    (``train_cf``, ``mf-0``), given ``stages``: notebook stem -> stage name."""
    for nb_stem, stage in sorted(stages.items(), key=lambda kv: -len(kv[0])):
        if stem == nb_stem or stem.startswith(nb_stem + "-"):
            return stage, stem[len(nb_stem) + 1:]
    return "other", stem


def notebook_title(path: Path) -> str | None:
    """The first Markdown heading of a notebook, without its '#'s."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return None
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def markdown_html(text: str) -> str:
    """Markdown (with pipe tables) to HTML; raw HTML in the text is escaped."""
    import mistune

    return mistune.create_markdown(escape=True, plugins=["table"])(text)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _stages() -> dict[str, str]:
    from facelib.pipeline import STAGES

    return {Path(nb).stem: stage for stage, (nb, _) in STAGES.items()}


def meta_line(reports: Path) -> str:
    """Data, profile builder, compute profile and date: the results' provenance line when
    the results stage has run, else what the data and text metrics say."""
    results = reports / "metrics" / "results.json"
    if results.is_file():
        line = json.loads(results.read_text()).get("provenance_line")
        if line:
            return str(line)
    parts = []
    for name, keys in (("data.json", ("dataset", "users", "items")), ("text.json", ("builder",))):
        path = reports / "metrics" / name
        if path.is_file():
            rec = json.loads(path.read_text())
            parts += [f"{k} {rec[k]}" for k in keys if k in rec]
    parts.append("compute profile: see params.yaml; results not generated yet")
    return "; ".join(parts) + "."


def index_html(reports: Path, today: str | None = None,
               stages: dict[str, str] | None = None) -> str:
    """The page for the ``reports`` folder (pages in ``reports/html``)."""
    stages = stages if stages is not None else _stages()
    today = today or dt.datetime.now(dt.timezone.utc).date().isoformat()
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>facelib report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>facelib: a reproducible companion to FACE</h1>",
           f'<p class="meta">{esc(meta_line(reports))} Page written {esc(today)}.</p>']
    extra = [("related/index.html", "RLMRec-Con/Gen and DaRec beside FACE"),
             ("generative/index.html", "LC-Rec, Semantic Convergence and SASRec (leave-one-out)"),
             ("ablations/index.html", "Ablations"), ("budget/index.html", "Alignment budget curve"),
             ("budget/budget.png", "(figure)"), ("explorer.html", "Descriptor explorer")]
    links = [f'<a href="{href}">{label}</a>' for href, label in extra
             if (reports / href).is_file()]
    if links:
        out.append("<p>" + " · ".join(links) + "</p>")
    results_md = reports / "results" / "results.md"
    out.append("<h2>Results</h2>")
    if results_md.is_file():
        body = "\n".join(line for line in results_md.read_text(encoding="utf-8").splitlines()
                         if not line.startswith("# ") and not line.startswith("<!--"))
        out.append(markdown_html(body.replace("\n## ", "\n### ")))
    else:
        out.append("<p>Not generated yet: run <code>make repro</code>.</p>")
    figures = sorted((reports / "figures").glob("*.png"))
    if figures:
        out.append("<h2>Figures</h2>")
        out += [f'<figure><img src="{_png_data_uri(f)}" alt="{esc(f.stem)}">'
                f"<figcaption><code>figures/{esc(f.name)}</code></figcaption></figure>"
                for f in figures]
    out.append("<h2>Notebooks</h2>")
    out += _page_list(reports, stages)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _page_list(reports: Path, stages: dict[str, str]) -> Iterable[str]:
    pages = sorted((reports / "html").glob("*.html"))
    if not pages:
        return ["<p>No rendered notebook yet: run <code>make repro</code>.</p>"]
    groups: dict[str, list[tuple[str, Path]]] = {}
    for page in pages:
        stage, variant = stage_of(page.stem, stages)
        groups.setdefault(stage, []).append((variant, page))
    order = [*dict.fromkeys(stages.values()), "other"]
    out = []
    for stage in sorted(groups, key=lambda s: order.index(s) if s in order else len(order)):
        out.append(f"<h3><code>{html.escape(stage)}</code></h3><ul class=\"pages\">")
        for variant, page in groups[stage]:
            title = notebook_title(reports / "notebooks" / f"{page.stem}.ipynb") or page.stem
            label = f"{title} ({variant})" if variant else title
            out.append(f'<li><a href="html/{quote(page.name)}">{html.escape(label)}</a></li>')
        out.append("</ul>")
    return out


def write_index(reports: Path, today: str | None = None) -> Path:
    """Write ``reports/index.html`` atomically; return its path."""
    return write_text(index_html(Path(reports), today), Path(reports) / "index.html")
