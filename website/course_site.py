"""The pages of the course website, generated from the repository's own files.

``website/build.py`` stages a Sphinx source folder from these pages and runs Sphinx on it;
``website/conf.py`` reads the repository settings from here too. Nothing here executes a
notebook: their committed outputs are what the website shows.

- the home page: the README's introduction and its curriculum map, notebook names linked;
- every notebook, with a "Run this notebook" box under its title (JupyterLab on your
  machine, Binder, Colab with the install cell the course uses) and links to the
  ``nvp_edu`` modules it imports, resolved to where each name is defined;
- one API page per module of ``nvp_edu`` (autodoc reads the docstrings), listed with the
  README's "The package, module by concept" table.

Where the links point: ``NVP_EDU_REPO_URL`` (e.g. ``https://github.com/you/nvp-edu``), else
the git remote ``origin``, else the placeholder ``https://github.com/YOUR-USER/YOUR-FORK``
(the README's own); ``NVP_EDU_REPO_BRANCH`` (default ``main``) is the branch Colab and
Binder open.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "nvp_edu"
PLACEHOLDER_URL = "https://github.com/YOUR-USER/YOUR-FORK"
# Imported by nearly every notebook for plumbing; listed after the concept modules.
HELPER_MODULES = ("nvp_edu.config", "nvp_edu.plotting", "nvp_edu.exercises")
# The exercise topic modules hold the reference solutions: no API page spoils them.
HIDDEN_PREFIX = "nvp_edu.exercises."
WEB_REMOTE = re.compile(r"^(https?://|ssh://|git@)")
LOCAL_LAB = "http://localhost:8888/lab/tree"  # where `bash scripts/course.sh` serves the repo


# ---------------------------------------------------------------- the repository's address

@dataclass(frozen=True)
class Repository:
    """Where the course lives on the web: the links of every page point there."""

    url: str            # https://github.com/<user>/<repo>, no trailing .git
    branch: str = "main"

    @property
    def is_placeholder(self) -> bool:
        return self.url == PLACEHOLDER_URL

    @property
    def github_slug(self) -> str | None:
        """``user/repo`` for a GitHub repository (Binder's and Colab's GitHub links), else None."""
        m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", self.url)
        return m.group(1) if m else None

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def blob(self, path: str) -> str:
        return f"{self.url}/blob/{self.branch}/{path}"

    def pip_install_line(self) -> str:
        """The Colab install cell of the README, on one line: a clone (it brings the pretrained
        models of ``data/pretrained/``, which ``pip install git+...`` would not), an editable
        install, and the clone on ``sys.path`` (a running kernel does not see a new install)."""
        return (f"!git clone -q --depth 1 {self.url} /content/nvp-edu && "
                f"pip install -q -e /content/nvp-edu` then "
                f"`import sys; sys.path.insert(0, '/content/nvp-edu')")

    def binder(self, path: str) -> str | None:
        if not self.github_slug:
            return None
        return (f"https://mybinder.org/v2/gh/{self.github_slug}/{self.branch}"
                f"?labpath={quote(path, safe='')}")

    def colab(self, path: str) -> str | None:
        if not self.github_slug:
            return None
        return (f"https://colab.research.google.com/github/{self.github_slug}"
                f"/blob/{self.branch}/{path}")


def normalize_remote(remote: str) -> str:
    """A git remote as a web address: ``git@github.com:u/r.git`` -> ``https://github.com/u/r``."""
    url = remote.strip()
    m = re.fullmatch(r"(?:ssh://)?git@([^:/]+)[:/](.+)", url)
    if m:
        url = f"https://{m.group(1)}/{m.group(2)}"
    url = re.sub(r"^http://", "https://", url)
    url = re.sub(r"//[^/@]+@", "//", url)  # never publish credentials embedded in a remote
    return url.removesuffix("/").removesuffix(".git")


def find_repository(root: Path = ROOT) -> Repository:
    """The repository the pages link to: NVP_EDU_REPO_URL, else git's origin, else the
    placeholder (also for an origin that is a local folder: no page can link there)."""
    branch = os.environ.get("NVP_EDU_REPO_BRANCH", "").strip() or "main"
    url = os.environ.get("NVP_EDU_REPO_URL", "").strip()
    if url and not WEB_REMOTE.match(url):
        raise ValueError(f"NVP_EDU_REPO_URL={url!r} is not a web or ssh git address; expected "
                         "NVP_EDU_REPO_URL=https://github.com/<user>/<repo>")
    if not url:
        try:
            done = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"],
                                  capture_output=True, text=True, timeout=10)
            url = done.stdout.strip() if done.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            url = ""  # no git: the placeholder below
    if url and WEB_REMOTE.match(url):
        return Repository(normalize_remote(url), branch)
    return Repository(PLACEHOLDER_URL, branch)


# ---------------------------------------------------------------- the package's modules

def documented_modules() -> list[str]:
    """Every public module of nvp_edu that gets an API page (``nvp_edu.exercises`` without
    its topic modules, which hold the solutions)."""
    package = importlib.import_module(PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        name = f"{PACKAGE}.{info.name}"
        names.append(name)
        if info.ispkg and not (name + ".").startswith(HIDDEN_PREFIX):  # nvp_edu.training
            sub = importlib.import_module(name)
            names += [f"{name}.{i.name}" for i in pkgutil.iter_modules(sub.__path__)
                      if not i.name.startswith("_")]
    return sorted(names)


def defining_module(module: str, name: str) -> str:
    """The module that defines ``name`` imported from ``module`` (``nvp_edu.flows`` gathers
    layers that live in their concept's module)."""
    obj = getattr(importlib.import_module(module), name, None)
    if obj is None and importlib.util.find_spec(f"{module}.{name}") is not None:
        obj = importlib.import_module(f"{module}.{name}")  # a submodule not imported yet
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    home = getattr(obj, "__module__", None)
    return home if isinstance(home, str) and home.startswith(PACKAGE) else module


def page_module(module: str) -> str:
    """The module whose API page documents ``module`` (exercise topics: the registry's)."""
    return "nvp_edu.exercises" if module.startswith(HIDDEN_PREFIX) else module


def notebook_modules(notebook: Path) -> list[str]:
    """The nvp_edu modules a notebook uses, concept modules first, then the helpers."""
    found: list[str] = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        # IPython's %magics and !shell lines are not Python.
        source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # an exercise stub with a deliberate gap: it imports nothing we miss
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                found += [defining_module(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [a.name for a in node.names if a.name.startswith(PACKAGE + ".")]
    unique = list(dict.fromkeys(page_module(m) for m in found))
    return ([m for m in unique if m not in HELPER_MODULES]
            + [m for m in unique if m in HELPER_MODULES])


def reexported(module: str) -> list[tuple[str, str]]:
    """``(name, defining module)`` for the names of ``__all__`` defined in another module."""
    mod = importlib.import_module(module)
    return [(name, defining_module(module, name)) for name in getattr(mod, "__all__", [])
            if defining_module(module, name) != module]


# ---------------------------------------------------------------- the README

def readme_sections(text: str) -> dict[str, str]:
    """``{"": introduction, "<heading>": body}`` for the README's ``## `` sections."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    intro = re.sub(r"\A# .*\n", "", parts[0]).strip()
    sections = {"": intro}
    for title, body in zip(parts[1::2], parts[2::2]):
        sections[title.strip()] = body.strip()
    return sections


def readme_section(sections: dict[str, str], title: str) -> str:
    if title not in sections:
        raise ValueError(f"README.md has no '## {title}' section; the website is built from it "
                       f"(sections found: {', '.join(t for t in sections if t)})")
    return sections[title]


def module_concepts(table: str) -> dict[str, str]:
    """The README's "module by concept" table: ``{"nvp_edu.coupling": "AffineCoupling ..."}``.

    A row may name several files (``nvp_edu/base.py``, ``flows.py``): each gets the concept.
    """
    concepts = {}
    for row in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        for path in re.findall(r"`(?:nvp_edu/)?([\w/]+?)(?:\.py)?/?`", cells[0]):
            concepts[f"{PACKAGE}.{path.replace('/', '.')}"] = cells[1]
    return concepts


# ---------------------------------------------------------------- MyST pages

def doc_link(text: str, docname: str) -> str:
    """A cross-reference Sphinx checks: a missing page is a build warning, not a dead link."""
    return f"{{doc}}`{text} </{docname}>`"


def api_link(module: str) -> str:
    return doc_link(module, f"api/{module}")


def link_notebook_names(markdown: str, notebooks: list[Path]) -> str:
    """``01_x.ipynb`` in code font -> a link to that notebook's page, under its title."""
    for nb in notebooks:
        markdown = markdown.replace(f"`{nb.name}`", f"{{doc}}`/notebooks/{nb.stem}`")
    return markdown


def home_page(readme: str, notebooks: list[Path], repo: Repository) -> str:
    sections = readme_sections(readme)
    title = readme.splitlines()[0].removeprefix("# ").strip()
    curriculum = link_notebook_names(readme_section(sections, "Curriculum map"), notebooks)
    toc = "\n".join(f"notebooks/{nb.stem}" for nb in notebooks)
    # The curriculum map is wide: no "Contents" column beside it.
    return f"""---
html_theme.sidebar_secondary.remove: true
---
# {title}

{sections[""]}

## Read here, run anywhere

Every page is a notebook as committed, with the outputs of its last full run (nothing is
re-executed to build this website). Each page has links to run it: on Binder or Colab in
the browser, or on your machine:

    git clone {repo.url}.git && cd {repo.name}
    bash scripts/course.sh     # installs on first use, opens JupyterLab

The code the notebooks import is the package [`nvp_edu`]({repo.url}/tree/{repo.branch}/nvp_edu),
documented module by module under {doc_link("The package", "api/index")}.

## Curriculum map

{curriculum}

```{{toctree}}
:caption: Notebooks
:hidden:
:maxdepth: 1

{toc}
```

```{{toctree}}
:caption: The package
:hidden:
:maxdepth: 1

api/index
```
"""


def run_box(notebook: Path, modules: list[str], repo: Repository) -> str:
    """The "Run this notebook" admonition put under a notebook's title."""
    path = f"notebooks/{notebook.name}"
    binder, colab = repo.binder(path), repo.colab(path)
    if binder and colab:
        browser = (f"- **In the browser**: [Binder]({binder}) (a CPU machine; set "
                   f"`NVP_EDU_FAST=1` if it is slow) or [Colab]({colab}), where a first cell "
                   f"installs the course: `{repo.pip_install_line()}`")
    else:
        browser = (f"- **In the browser**: Binder and Colab open GitHub repositories; "
                   f"{repo.url} is not one.")
    lines = [
        browser,
        "- **On your machine** (installs on first use, then opens JupyterLab):",
        "",
        "  ```bash",
        f"  git clone {repo.url}.git && cd {repo.name}",
        f"  bash scripts/course.sh {path}",
        "  ```",
        "",
        f"  With the course already open in JupyterLab: "
        f"[open this notebook there]({LOCAL_LAB}/{path}).",
    ]
    concept = [m for m in modules if m not in HELPER_MODULES]
    helpers = [m for m in modules if m in HELPER_MODULES]
    if concept or helpers:
        source = ", ".join(f"{api_link(m)} ([source]({repo.blob(module_path(m))}))"
                           for m in concept)
        extra = f"; helpers: {', '.join(api_link(m) for m in helpers)}." if helpers else "."
        lines.append(f"- **Its code**: {source or 'none'}{extra}")
    if repo.is_placeholder:
        lines.append(f"- *{repo.url} is a placeholder: whoever builds this website sets the "
                     "repository with `NVP_EDU_REPO_URL` (or the git remote `origin`).*")
    body = "\n".join(lines)
    return f":::{{admonition}} Run this notebook\n:class: tip nvp-run\n\n{body}\n:::\n"


def module_path(module: str) -> str:
    """``nvp_edu.coupling`` -> ``nvp_edu/coupling.py`` (a package: its folder)."""
    rel = module.replace(".", "/")
    return f"{rel}.py" if (ROOT / f"{rel}.py").exists() else f"{rel}/"


def staged_notebook(notebook: Path, box: str) -> dict:
    """The notebook as JSON with ``box`` under its first ``# `` title (a copy: the committed
    file is never written)."""
    nb = json.loads(notebook.read_text())
    cells = nb["cells"]

    def markdown(cell_id: str, source: str) -> dict:  # nbformat 4.5 cells carry an id
        return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}

    first = "".join(cells[0]["source"]) if cells and cells[0]["cell_type"] == "markdown" else ""
    if first.startswith("# "):
        title, _, rest = first.partition("\n")
        cells[0] = {**cells[0], "source": title + "\n"}
        cells[1:1] = [markdown("nvp-run-box", box)] + (
            [markdown("nvp-intro", rest)] if rest.strip() else [])
    else:
        cells.insert(0, markdown("nvp-run-box", box))
    return nb


def api_index(modules: list[str], concepts: dict[str, str], used_in: dict[str, list[str]]) -> str:
    rows = "\n".join(
        f"| {api_link(m)} | {concepts.get(m, '')} | {', '.join(used_in.get(m, [])) or '-'} |"
        for m in modules)
    toc = "\n".join(modules)
    return f"""# The package `nvp_edu`

One module per concept; each page is generated from the module's docstrings (the same
text `help()` shows in a notebook), with a link to its highlighted source.

| module | concept | notebooks |
|---|---|---|
{rows}

```{{toctree}}
:hidden:
:maxdepth: 1

{toc}
```
"""


def api_page(module: str, concept: str, notebooks: list[Path], repo: Repository) -> str:
    used = ", ".join(doc_link(nb.stem, f"notebooks/{nb.stem}") for nb in notebooks)
    gathered = reexported(module)
    lines = [f"# `{module}`", ""]
    if concept:
        lines += [concept, ""]
    lines += [f"**Used in**: {used}." if used else "**Used in**: no notebook imports it directly.",
              f"**Source**: [`{module_path(module)}`]({repo.blob(module_path(module))}).", ""]
    if gathered:
        lines += ["**Gathered here** (each documented where it is defined): "
                  + ", ".join(f"{{py:obj}}`{name} <{home}.{name}>`" for name, home in gathered)
                  + ".", ""]
    # autodoc writes reStructuredText: inside a MyST page it must be parsed as such.
    options = [":members:", ":show-inheritance:"]
    if gathered:
        options.append(":exclude-members: " + ", ".join(name for name, _ in gathered))
    lines += ["```{eval-rst}", f".. automodule:: {module}", *(f"   {o}" for o in options),
              "```", ""]
    return "\n".join(lines)
