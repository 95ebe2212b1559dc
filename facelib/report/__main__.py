"""``python -m facelib.report``: render the executed notebooks, write the index, refresh
the README's results section. ``--check``: load every page in headless Chromium instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelib import paths


def build_report(root=None) -> int:
    """Render, index, README; return the exit status (1 when a notebook failed)."""
    from facelib.report.index import write_index
    from facelib.report.readme import ReadmeError, refresh_readme
    from facelib.report.render import render_all

    root = root or paths.repo_root()
    reports = root / "reports"
    done = render_all(reports / "notebooks", reports / "html")
    index = write_index(reports)
    try:
        changed = refresh_readme(root)
    except ReadmeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"rendered {len(done.written)} notebook(s) to reports/html/; wrote "
          f"{index.relative_to(root)}; README results {'updated' if changed else 'unchanged'}")
    for name, why in done.failed.items():
        print(f"error: {name} did not render: {why}", file=sys.stderr)
    return 1 if done.failed else 0


def check_report(root=None) -> int:
    """Check every report page in a real browser; screenshots in build/screenshots/."""
    from facelib.report.browser import BrowserUnavailable, check_pages, report_pages

    root = root or paths.repo_root()
    pages = report_pages(root / "reports")
    shots = root / "build" / "screenshots"
    try:
        problems = check_pages(pages, shots)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"checked {len(pages)} pages in Chromium: {len(problems)} problems; screenshots in "
          f"{shots.relative_to(root)}/")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelib.report", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="load index.html, reports/html/*.html, explorer.html and "
                             "ablations/index.html in headless Chromium")
    parser.add_argument("--render", nargs=2, metavar=("NOTEBOOK", "HTML"), type=Path,
                        help="render one executed notebook to one page (e.g. the ablations "
                             "summary to reports/ablations/index.html) and stop")
    args = parser.parse_args(argv)
    if args.render:
        from facelib.report.render import render_notebook

        src, dst = args.render
        if not src.is_file():
            print(f"error: no executed notebook at {src}; run its stage first", file=sys.stderr)
            return 2
        print(f"rendered {src} to {render_notebook(src, dst)}")
        return 0
    return check_report() if args.check else build_report()


if __name__ == "__main__":
    sys.exit(main())
