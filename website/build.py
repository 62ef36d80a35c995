"""Build the course website into ``build/site/`` (``bash scripts/site.sh`` runs this).

    python website/build.py [--out DIR] [--serve [--port N]]

1. MathJax 3 from the npm registry (``npm ci`` in ``website/``, pinned by its lock file),
   once: the pages load it from the site, never from a CDN;
2. a Sphinx source folder ``<out>-src/`` staged from the repository (``course_site``):
   home page, notebooks (copies, with a "Run this notebook" box), API pages;
3. ``sphinx-build`` (nothing is executed: the notebooks' committed outputs are the pages);
4. MathJax copied into ``<out>/_static/mathjax``.

Only the package registries are needed (PyPI for Sphinx, npm for MathJax), and only the
first time. ``--serve`` serves the result on http://127.0.0.1:8000 afterwards.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_site as cs  # noqa: E402

WEBSITE = Path(__file__).resolve().parent
ROOT = WEBSITE.parent
DEFAULT_OUT = ROOT / "build" / "site"
MATHJAX = WEBSITE / "node_modules" / "mathjax"
# The one MathJax entry point the pages load (conf.py's mathjax_path) and what it loads
# on demand (fonts, extensions, the menu's accessibility tools); the other bundles stay out.
MATHJAX_UNUSED = ("tex-mml-*.js", "tex-svg*.js", "mml-*.js", "tex-chtml-full*.js", "node-main.js")


class BuildError(RuntimeError):
    """A step of the build failed; the message says which and what to do."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def shown(path: Path) -> Path:
    """``path`` relative to the repository when inside it (shorter, and no machine's paths)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def mathjax_version() -> str | None:
    manifest = MATHJAX / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


def ensure_mathjax() -> Path:
    """MathJax's ``es5/`` folder, installed with ``npm ci`` from the lock file when missing."""
    lock = json.loads((WEBSITE / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/mathjax"]["version"]
    if mathjax_version() != wanted:
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError("npm is missing: the website serves MathJax from the npm package "
                             "`mathjax` (install Node.js 18 or newer, which brings npm)")
        step(f"npm ci: MathJax {wanted} into website/node_modules")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=WEBSITE, capture_output=True, text=True)
        if done.returncode != 0 or mathjax_version() != wanted:
            raise BuildError(f"npm ci in website/ failed (exit {done.returncode}); it needs the "
                             f"npm registry once:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return MATHJAX / "es5"


def stage(src: Path, repo: cs.Repository) -> int:
    """Write the Sphinx sources into ``src`` (emptied first); return the number of pages."""
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    (src / "api").mkdir()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        raise BuildError(f"no notebooks in {ROOT / 'notebooks'} (expected NN_name.ipynb files)")
    readme = (ROOT / "README.md").read_text()
    (src / "index.md").write_text(cs.home_page(readme, notebooks, repo))

    used_in: dict[str, list[Path]] = {}
    for nb in notebooks:
        modules = cs.notebook_modules(nb)
        for m in modules:
            used_in.setdefault(m, []).append(nb)
        staged = cs.staged_notebook(nb, cs.run_box(nb, modules, repo))
        (src / "notebooks" / nb.name).write_text(json.dumps(staged, ensure_ascii=False))

    concepts = cs.module_concepts(cs.readme_section(cs.readme_sections(readme),
                                                    "The package, module by concept"))
    modules = cs.documented_modules()
    for m in modules:
        (src / "api" / f"{m}.md").write_text(cs.api_page(m, concepts.get(m, ""),
                                                         used_in.get(m, []), repo))
    short = {m: [nb.name[:2] for nb in nbs] for m, nbs in used_in.items()}
    (src / "api" / "index.md").write_text(cs.api_index(modules, concepts, short))
    return 1 + len(notebooks) + 1 + len(modules)


def sphinx(src: Path, out: Path) -> list[str]:
    """Run sphinx-build; return its warnings (printed, not fatal: a page still builds)."""
    warnings = src / "warnings.log"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-c", str(WEBSITE),
           "-d", str(src / ".doctrees"), "-w", str(warnings), str(src), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"sphinx-build failed (exit {done.returncode}):\n"
                         f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    text = warnings.read_text() if warnings.exists() else ""
    return [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]


def build(out: Path = DEFAULT_OUT) -> Path:
    """Build the website into ``out``; return ``out``."""
    t0 = time.monotonic()
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        raise BuildError(f"the website's Python tools are missing ({err}): "
                         "pip install -e '.[site]' (scripts/site.sh does it)") from err
    repo = cs.find_repository(ROOT)
    if repo.is_placeholder:
        step(f"links point to the placeholder {repo.url}: set NVP_EDU_REPO_URL="
             "https://github.com/<user>/<repo> (or add a git remote origin)")
    else:
        step(f"links point to {repo.url} (branch {repo.branch})")
    mathjax = ensure_mathjax()
    out = out.resolve()
    src = out.with_name(out.name + "-src")
    pages = stage(src, repo)
    step(f"sphinx-build: {pages} pages from {shown(src)}")
    if out.exists():
        shutil.rmtree(out)
    warnings = sphinx(src, out)
    shutil.copytree(mathjax, out / "_static" / "mathjax",
                    ignore=shutil.ignore_patterns(*MATHJAX_UNUSED))
    (out / ".nojekyll").touch()  # a gh-pages branch must serve _static/ as is
    for line in warnings:
        print(f"   {line}")
    step(f"website built in {time.monotonic() - t0:.0f} s: {shown(out)}/index.html "
         f"({len(warnings)} Sphinx warnings)")
    return out


def serve(folder: Path, port: int) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        step(f"serving on http://127.0.0.1:{port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (build/site)")
    parser.add_argument("--serve", action="store_true", help="serve the website after building it")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    args = parser.parse_args(argv)
    try:
        out = build(args.out)
    except (BuildError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.serve:
        serve(out, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
