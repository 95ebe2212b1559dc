"""The ``report`` stage: every executed notebook rendered to offline HTML, one
``reports/index.html`` linking them with the results and figures, the README's results
section refreshed, and a real-browser check of the pages.

    python -m facelib.report            # render, index, README
    python -m facelib.report --check    # load every page in headless Chromium
"""

from facelib.report.index import index_html, stage_of, write_index
from facelib.report.readme import (END, START, ReadmeError, current_block, readme_block,
                                   refresh_readme, replace_block)
from facelib.report.render import RenderReport, render_all, render_notebook

__all__ = ["END", "START", "ReadmeError", "RenderReport", "current_block", "index_html",
           "readme_block", "refresh_readme", "render_all", "render_notebook",
           "replace_block", "stage_of", "write_index"]
