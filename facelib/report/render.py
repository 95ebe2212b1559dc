"""Render executed notebooks to standalone, offline HTML.

nbconvert's ``lab`` template, minus the three scripts it loads from a CDN (require.js,
MathJax, mermaid): the pages must open offline with no console error. Plots are embedded
as base64 PNG by the template; markdown attachments are embedded too (``embed_images``).
Mathematics in markdown cells (``$...$``, ``$$...$$``) is converted to MathML when the page
is written (``latex2mathml``, a pinned package), which browsers render with no script and
no network. Every page is written to a temporary file and renamed into place, so a failed
render leaves no half-written page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from facelib.io import write_text

OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def exporter():  # -> nbconvert.HTMLExporter (imported lazily: nbconvert is slow to import)
    """An HTMLExporter for the offline lab template, inputs shown, images embedded."""
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab", template_file="facelib_offline.html.j2",
        extra_loaders=[jinja2.DictLoader({"facelib_offline.html.j2": OFFLINE_TEMPLATE})],
        embed_images=True)


# $$display$$ or $inline$ (not \$, not spanning a blank line; code spans are left alone)
_MATH = re.compile(r"(?<!\\)\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)", re.S)
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


def math_to_mathml(markdown: str) -> str:
    """Markdown with every ``$...$`` / ``$$...$$`` replaced by MathML (code untouched)."""
    from latex2mathml.converter import convert

    def one(m: re.Match[str]) -> str:
        display, inline = m.group(1), m.group(2)
        return convert((display or inline).strip(), display="block" if display else "inline")

    parts = _CODE.split(markdown)
    return "".join(p if i % 2 else _MATH.sub(one, p) for i, p in enumerate(parts))


def render_notebook(src: Path, dst: Path, html_exporter=None) -> Path:
    """Render the executed notebook ``src`` to ``dst`` (atomic; raises on failure)."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_to_mathml(cell.source)
    html, _ = (html_exporter or exporter()).from_notebook_node(
        nb, resources={"metadata": {"name": src.stem, "path": str(src.parent)}})
    return write_text(html, dst)


@dataclass
class RenderReport:
    """What :func:`render_all` did: pages written, failures (name -> one-line reason),
    stale pages removed (no notebook any more, or their notebook failed to render)."""

    written: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)


def render_all(notebooks_dir: Path, html_dir: Path) -> RenderReport:
    """Render every ``*.ipynb`` of ``notebooks_dir`` to ``html_dir/<name>.html``.

    A notebook that fails to render is reported, not raised, and leaves no page (a page
    from an earlier run is removed so that it is never mistaken for the current one).
    Pages without a notebook are removed: ``html_dir`` belongs to this function.
    """
    report = RenderReport()
    sources = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if not p.name.startswith("."))
    html_exporter = exporter() if sources else None
    for src in sources:
        dst = Path(html_dir) / f"{src.stem}.html"
        try:
            report.written.append(render_notebook(src, dst, html_exporter))
        except Exception as exc:  # one bad notebook must not hide the others
            first = (str(exc).strip().splitlines() or [""])[0]
            report.failed[src.name] = f"{type(exc).__name__}: {first}"
    keep = {p.name for p in report.written}
    for page in sorted(Path(html_dir).glob("*.html")) if Path(html_dir).is_dir() else []:
        if page.name not in keep:
            page.unlink()
            report.removed.append(page)
    return report
