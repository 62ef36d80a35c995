"""The course website (issue 22), built and then read in a real browser.

``website/build.py`` (what ``bash scripts/site.sh`` runs) builds the site from the
committed notebooks into a temporary folder; a static server on 127.0.0.1 serves it and
headless Chromium (the walkthrough's, ``jupyterlab_driver``) opens the home page, every
notebook page (its equations typeset by the site's own MathJax, no raw ``$$`` left, its
figures drawn), the search for "checkerboard" and the API page of ``AffineCoupling``.
Every request the pages make must stay on 127.0.0.1: one to anywhere else (a CDN, a font
server) is blocked and fails the test. Screenshots go to ``test-artifacts/site/``.

Without Chromium, the website's Python tools or npm (for MathJax, first build only), the
test skips and says why; in CI (``CI=true``) it fails instead.
"""
from __future__ import annotations

import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

import jupyterlab_driver as jl

ROOT = jl.ROOT
sys.path.insert(0, str(ROOT / "website"))
import course_site as cs  # noqa: E402
from plain_docstrings import literal_blocks  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts" / "site"
REPO_URL = "https://github.com/example-user/nvp-edu-fork"  # what a fork's build would set
NOTEBOOKS = jl.course_notebooks()
WHAT = "website test"


# ---------------------------------------------------------------- fast checks, no build

@pytest.mark.parametrize("remote", [
    "git@github.com:example-user/nvp-edu-fork.git",
    "ssh://git@github.com/example-user/nvp-edu-fork.git",
    "https://github.com/example-user/nvp-edu-fork.git",
    "https://token@github.com/example-user/nvp-edu-fork/",
])
def test_git_remotes_become_web_addresses(remote):
    assert cs.normalize_remote(remote) == REPO_URL


def test_repository_from_env_else_placeholder(tmp_path, monkeypatch):
    monkeypatch.delenv("NVP_EDU_REPO_URL", raising=False)
    monkeypatch.delenv("NVP_EDU_REPO_BRANCH", raising=False)
    assert cs.find_repository(tmp_path).is_placeholder  # not a git checkout: the placeholder
    monkeypatch.setenv("NVP_EDU_REPO_URL", REPO_URL + ".git")
    monkeypatch.setenv("NVP_EDU_REPO_BRANCH", "course")
    repo = cs.find_repository(tmp_path)
    assert (repo.github_slug, repo.branch) == ("example-user/nvp-edu-fork", "course")
    colab = "https://colab.research.google.com/github/example-user/nvp-edu-fork/blob/course/"
    assert repo.colab("notebooks/a.ipynb") == colab + "notebooks/a.ipynb"
    monkeypatch.setenv("NVP_EDU_REPO_URL", "example-user/nvp-edu-fork")
    with pytest.raises(ValueError, match="NVP_EDU_REPO_URL=https://github.com/"):
        cs.find_repository(tmp_path)
    monkeypatch.delenv("NVP_EDU_REPO_URL")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", str(ROOT)], check=True)
    assert cs.find_repository(tmp_path).is_placeholder  # a clone of a local folder
    subprocess.run(["git", "-C", str(tmp_path), "remote", "set-url", "origin",
                    "git@github.com:example-user/nvp-edu-fork.git"], check=True)
    assert cs.find_repository(tmp_path).url == REPO_URL


def test_indented_formulas_become_literal_blocks():
    doc = ["The formula", "", "    y = x * exp(s) + t", "    log|det| = sum(s)", "", "After.",
           "", ".. note::", "", "   a directive's body stays"]
    assert literal_blocks(doc) == ["The formula", "::", "", "", "    y = x * exp(s) + t",
                                   "    log|det| = sum(s)", "", "After.", "", ".. note::", "",
                                   "   a directive's body stays"]


def test_notebook_modules_resolve_to_their_concepts():
    """``from nvp_edu.flows import AffineCoupling`` points a learner to nvp_edu.coupling."""
    modules = cs.notebook_modules(jl.NOTEBOOKS / "03_affine_coupling.ipynb")
    assert "nvp_edu.coupling" in modules and "nvp_edu.flows" not in modules
    assert modules.index("nvp_edu.coupling") < modules.index("nvp_edu.config")  # helpers last
    assert "nvp_edu.exercises.coupling" not in modules  # its page would show the solutions


# ---------------------------------------------------------------- the built website

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The website built from this checkout, links set to an example fork."""
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        jl.unavailable(WHAT, f"the website's Python tools are missing ({err}): "
                       "pip install -e '.[site]'")
    if shutil.which("npm") is None and not (ROOT / "website/node_modules/mathjax").is_dir():
        jl.unavailable(WHAT, "npm is missing: the build installs MathJax with npm "
                       "(install Node.js 18 or newer)")
    out = tmp_path_factory.mktemp("website") / "site"
    env = {**os.environ, "NVP_EDU_REPO_URL": REPO_URL, "NVP_EDU_REPO_BRANCH": "main"}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "website" / "build.py"), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = f"{done.stdout}{done.stderr}"
    assert done.returncode == 0, f"website build failed:\n{log[-6000:]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build.log").write_text(f"{time.monotonic() - t0:.1f} s\n{log}")
    return out


def test_build_has_every_page_and_no_warning(site):
    log = (ARTIFACTS / "build.log").read_text()
    assert "(0 Sphinx warnings)" in log, (
        f"Sphinx warned (a docstring or page renders badly):\n{log}")
    for nb in NOTEBOOKS:
        assert (site / "notebooks" / f"{nb.stem}.html").is_file(), nb.name
    for module in cs.documented_modules():
        assert (site / "api" / f"{module}.html").is_file(), module
    assert (site / "_static/mathjax/tex-chtml.js").is_file()
    # Nothing on any page loads from elsewhere (the browser checks the pages it opens).
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html")
                 if remote.search(p.read_text())]
    assert not offenders, f"pages that load something from another host: {offenders}"


def test_run_links_point_to_the_fork(site):
    page = (site / "notebooks" / "04_masks.html").read_text()
    path = "notebooks/04_masks.ipynb"
    colab = "https://colab.research.google.com/github/example-user/nvp-edu-fork/blob/main/"
    binder = "https://mybinder.org/v2/gh/example-user/nvp-edu-fork/main?labpath="
    assert f'href="{colab}{path}"' in page
    assert f'href="{binder}notebooks%2F04_masks.ipynb"' in page
    assert f'href="{REPO_URL}/blob/main/nvp_edu/masks.py"' in page
    assert 'href="../api/nvp_edu.masks.html"' in page
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert ("!git clone -q --depth 1 https://github.com/example-user/nvp-edu-fork /content/nvp-edu"
            " && pip install -q -e /content/nvp-edu") in text
    assert f"bash scripts/course.sh {path}" in text


# ---------------------------------------------------------------- in the browser

class Browser:
    """One Chromium tab on the site, served on 127.0.0.1; records every other request."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.blocked: list[str] = []
        self.errors: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))

    def route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def open(self, path: str) -> None:
        self.page.goto(f"{self.base}/{path}", wait_until="load")
        assert not self.blocked, f"{path} requested hosts other than 127.0.0.1: {self.blocked}"
        assert not self.errors, f"JavaScript errors on {path}: {self.errors}"

    def typeset(self) -> None:
        """Wait for MathJax to finish typesetting the page."""
        self.page.wait_for_function("() => window.MathJax && MathJax.startup"
                                    " && MathJax.startup.promise")
        self.page.evaluate("() => MathJax.startup.promise")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture(scope="module")
def browser(site):
    chromium = jl.require_browser(WHAT)
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", jl.free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            chrome = jl.launch(pw, chromium)
            context = chrome.new_context(viewport={"width": 1280, "height": 900})
            tab = Browser(context.new_page(), f"http://127.0.0.1:{server.server_address[1]}")
            context.route("**/*", tab.route)
            yield tab
            chrome.close()
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output to the failures
        pass


def test_home_page_is_the_curriculum_map(browser):
    browser.open("index.html")
    browser.shot("home")
    assert "Real NVP" in browser.page.title()
    links = browser.page.eval_on_selector_all(
        "main table a", "as => as.map(a => a.getAttribute('href'))")
    notebook_links = [h for h in links if h.startswith("notebooks/")]
    assert notebook_links == [f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS]


@pytest.mark.parametrize("name", [nb.name for nb in NOTEBOOKS])
def test_notebook_page_equations_and_figures(browser, name):
    stem = Path(name).stem
    browser.open(f"notebooks/{stem}.html")
    browser.typeset()
    state = browser.page.evaluate("""() => {
        const main = document.querySelector('main');
        const imgs = [...main.querySelectorAll('.cell_output img')];
        // The prose, without code cells (their Python may hold TeX for matplotlib labels).
        const prose = main.cloneNode(true);
        prose.querySelectorAll('.cell, script, style, mjx-container').forEach(n => n.remove());
        return {
            math: main.querySelectorAll('mjx-container').length,
            text: prose.textContent,
            figures: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
            broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
        };
    }""")
    committed = len(jl.expected_figure_cells(jl.NOTEBOOKS / name))
    assert state["math"] > 0, f"{name}: no equation typeset by MathJax"
    raw = [m for m in ("$$", "\\[", "\\(", "\\frac", "\\begin{") if m in state["text"]]
    raw += re.findall(r"\$[^$\s][^$]*\$", state["text"])  # an inline $x$ left as is
    assert not raw, f"{name}: untypeset TeX in the visible text: {raw}"
    assert not state["broken"], f"{name}: images that do not load: {state['broken']}"
    assert state["figures"] >= committed, (
        f"{name}: {state['figures']} figures drawn, the committed notebook has {committed}")
    if committed:
        first = browser.page.locator(".cell_output img").first
        first.scroll_into_view_if_needed()
        assert first.is_visible()
        browser.shot(f"{stem}-figure")


def test_search_finds_checkerboard(browser):
    browser.open("index.html")
    browser.page.locator(".search-button-field:visible").first.click()
    box = browser.page.locator("input[name=q]:visible").first
    box.fill("checkerboard")
    box.press("Enter")
    browser.page.wait_for_url("**/search.html?q=checkerboard*")
    results = browser.page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=30_000)
    browser.shot("search")
    hrefs = results.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert any("notebooks/04_masks.html" in h for h in hrefs), hrefs
    assert any("api/nvp_edu.masks.html" in h for h in hrefs), hrefs
    assert not browser.blocked


def test_api_page_of_affine_coupling(browser):
    browser.open("api/nvp_edu.coupling.html")
    entry = browser.page.locator("dt[id='nvp_edu.coupling.AffineCoupling']")
    entry.wait_for()
    assert entry.is_visible()
    browser.shot("api-coupling")
    text = browser.page.locator("main").inner_text()
    assert "bounded" in text and "y_2 = x_2 * exp(s(x_1)) + t(x_1)" in text
    source = entry.locator("a:has(.viewcode-link)")
    assert source.count() == 1
    browser.open("api/" + source.get_attribute("href"))
    assert "class AffineCoupling" in browser.page.locator("main").inner_text()
    assert not browser.blocked


def test_the_guard_blocks_other_hosts(browser, site):
    """The localhost check can bite: a page loading MathJax from a CDN fails it."""
    (site / "_guard_selftest.html").write_text(
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')
    with pytest.raises(AssertionError, match="cdn.jsdelivr.net"):
        browser.open("_guard_selftest.html")
    browser.blocked.clear()
