"""Open report pages in a real browser (headless Chromium through selenium) and list what
a reader would see broken.

For each page (any offline HTML file: rendered notebooks, ``index.html``, the descriptor
explorer, the ablations index): it loads from its ``file://`` URL; every ``<img>`` has
``complete && naturalWidth > 0``; every local link (``href`` to a file, or ``#anchor``)
has a target; there is no SEVERE console entry, uncaught JavaScript error or failed
resource load. A PNG screenshot of each page is saved.

Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are used by explicit path, so
selenium-manager never downloads a browser or driver.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = ("run `make browser` (or: sudo apt-get install chromium chromium-driver) "
                "to get Debian's Chromium and chromedriver")
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1280,900")

# Installed before any page script runs: records uncaught errors, failed resource loads
# (capture phase: <img>/<script>/<link> errors do not bubble) and unhandled rejections.
ERROR_HOOK = """
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__reportErrors.push('failed to load ' + (t.src || t.href));
  } else {
    window.__reportErrors.push('uncaught ' + (e.message || e));
  }
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__reportErrors.push('unhandled rejection: ' + e.reason);
});
"""

PAGE_STATE = """
const imgs = Array.from(document.images).map(i => ({
  src: (i.getAttribute('src') || '').slice(0, 120), complete: i.complete,
  width: i.naturalWidth}));
const links = Array.from(document.querySelectorAll('a[href]')).map(a => ({
  raw: a.getAttribute('href'), url: a.href}));
return {ready: document.readyState, imgs: imgs, links: links,
        errors: window.__reportErrors || [], title: document.title,
        height: Math.max(document.body ? document.body.scrollHeight : 0, 600)};
"""


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is not installed (the message says how to get them)."""


def browser_missing() -> str | None:
    """Why the browser check cannot run here (None when it can)."""
    lost = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(lost)} not found" if lost else None


def make_driver(profile_dir: Path):  # -> selenium.webdriver.Chrome
    """Headless Chromium with browser-console logging, a throw-away profile, no network
    side-services, and the error hook installed on every new document."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*ARGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    return driver


def _link_problem(link: dict, driver) -> str | None:
    raw, parts = link["raw"] or "", urlsplit(link["url"] or "")
    if parts.scheme in ("http", "https", "mailto", "data", "javascript", "about"):
        return None  # external: not checked (the pages must work offline, not the web)
    if raw.startswith("#"):
        # as browsers do: the fragment as written, then percent-decoded (HTML spec)
        found = len(raw) == 1 or driver.execute_script(
            "return arguments.length && Array.from(arguments).some(a => "
            "document.getElementById(a) || document.getElementsByName(a).length)",
            raw[1:], unquote(raw[1:]))
        return None if found else f"broken anchor {raw}"
    if parts.scheme != "file":
        return f"link with unexpected scheme {raw}"
    target = Path(url2pathname(parts.path))
    return None if target.exists() else f"broken link {raw} ({target} does not exist)"


def _wait_loaded(driver, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(PAGE_STATE)
        done = state["ready"] == "complete" and all(i["complete"] for i in state["imgs"])
        if done or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def _screenshot_name(page: Path) -> str:
    return "__".join(page.resolve().parts[-2:]).replace(".html", "") + ".png"


def check_page(driver, page: Path, screenshot_dir: Path, timeout: float = 20.0) -> list[str]:
    """Problems of one page (see the module docstring); saves its screenshot."""
    page = Path(page).resolve()
    if not page.is_file():
        return [f"{page}: page does not exist"]
    driver.get_log("browser")  # drop entries of earlier pages
    driver.get(page.as_uri())
    state = _wait_loaded(driver, timeout)
    problems = []
    if state["ready"] != "complete":
        problems.append(f"did not finish loading in {timeout:.0f} s")
    problems += [f"broken image {i['src'] or '(no src)'}" for i in state["imgs"]
                 if not (i["complete"] and i["width"] > 0)]
    for link in state["links"]:
        problem = _link_problem(link, driver)
        if problem:
            problems.append(problem)
    problems += [f"console SEVERE: {e['message']}" for e in driver.get_log("browser")
                 if e.get("level") == "SEVERE"]
    problems += [f"JavaScript: {e}" for e in state["errors"]]
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, min(int(state["height"]), 12000))
    if not driver.save_screenshot(str(screenshot_dir / _screenshot_name(page))):
        problems.append("screenshot failed")
    driver.set_window_size(1280, 900)
    return [f"{page.name}: {p}" for p in dict.fromkeys(problems)]


def check_pages(pages: list[Path], screenshot_dir: Path, timeout: float = 20.0) -> list[str]:
    """Load every page in one headless Chromium; return the problems (an empty list: none), one
    string per problem, prefixed with the page's file name. Screenshots go to
    ``screenshot_dir/<folder>__<page>.png``.

    Raises :class:`BrowserUnavailable` when Chromium or chromedriver is missing.
    """
    missing = browser_missing()
    if missing:
        raise BrowserUnavailable(f"{missing}; {INSTALL_HINT}")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="facelib-chromium-") as profile:
        driver = make_driver(Path(profile))
        try:
            for page in pages:
                problems += check_page(driver, Path(page), Path(screenshot_dir), timeout)
        finally:
            driver.quit()
    return problems


def report_pages(reports: Path) -> list[Path]:
    """The pages ``python -m facelib.report --check`` loads: index.html, every rendered
    notebook, and the explorer / ablations index when present."""
    pages = [reports / "index.html", *sorted((reports / "html").glob("*.html"))]
    pages += [p for p in (reports / "explorer.html", reports / "ablations" / "index.html")
              if p.is_file()]
    return pages
