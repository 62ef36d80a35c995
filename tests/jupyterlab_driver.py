"""Drive JupyterLab in headless Chromium: the course as a learner sees it.

Used by ``tests/test_browser.py``. A JupyterLab server is started on loopback
(127.0.0.1, a free port) over a *copy* of ``notebooks/`` (so that autosave can never
overwrite the committed outputs), Chromium opens each notebook through Playwright, clears
its outputs, runs every cell with JupyterLab's own "Run All" command and then reads what
the browser holds: which cells ran, which raised, which cells show a figure (an ``<img>``
in the rendered output area), and a screenshot.

Chromium is Debian's ``chromium`` package (``scripts/install_browser.sh``); Playwright
comes from PyPI and only drives it (``executable_path``): no ``playwright install``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
INSTALL_SCRIPT = ROOT / "scripts" / "install_browser.sh"
DEFAULT_CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

# JupyterLab user settings for the test server: no news pop-up (it would cover the page
# and phone home), no autosave, and every cell attached to the DOM so figures far down a
# notebook can be counted (the default windowing mode may detach off-screen cells).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright cannot be had on this machine (the test skips, or fails in CI)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip a test that cannot run here, saying why; in CI (``CI=true``) fail instead."""
    import pytest

    if in_ci():
        pytest.fail(f"{what} cannot run in CI: {reason}")
    pytest.skip(reason)


def require_browser(what: str) -> str:
    """Chromium's path for the browser test ``what``, once Playwright imports (else skip/fail)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        unavailable(what, f"Python package playwright is not installed ({err}); "
                    "pip install -e '.[test]'")
    try:
        return ensure_chromium()
    except BrowserUnavailable as err:
        unavailable(what, str(err))


def launch(playwright, chromium: str):
    """Headless Chromium from ``chromium`` (never Playwright's own download)."""
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)


def course_notebooks() -> list[Path]:
    """Every notebook of the course, in teaching order."""
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def ensure_chromium() -> str:
    """Path to a Chromium binary, installing Debian's package when we may (root + apt-get).

    ``NVP_EDU_CHROMIUM`` names another Chromium/Chrome binary (e.g. on a Mac).
    """
    path = os.environ.get("NVP_EDU_CHROMIUM", DEFAULT_CHROMIUM)
    if Path(path).is_file():
        return path
    if path != DEFAULT_CHROMIUM:
        raise BrowserUnavailable(f"NVP_EDU_CHROMIUM={path} does not exist")
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise BrowserUnavailable(
            f"{DEFAULT_CHROMIUM} is missing and cannot be installed here (needs root and "
            "apt-get: run `sudo bash scripts/install_browser.sh`, or point NVP_EDU_CHROMIUM "
            "at a Chromium/Chrome binary)")
    done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True)
    if done.returncode != 0 or not Path(DEFAULT_CHROMIUM).is_file():
        raise BrowserUnavailable(
            f"scripts/install_browser.sh failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return DEFAULT_CHROMIUM


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_course(dest: Path, extra: dict[str, nbformat.NotebookNode] | None = None) -> Path:
    """Copy ``notebooks/`` to ``dest/notebooks`` and link everything else of the repo.

    Notebooks keep their relative paths (``../data``) and the committed files are never
    written to. ``extra`` adds notebooks by name (the harness's self-test).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name in ("notebooks", ".git", "test-artifacts"):
            continue
        (dest / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    target = dest / "notebooks"
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, target,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    target.mkdir(exist_ok=True)
    for name, nb in (extra or {}).items():
        nbformat.write(nb, target / name)
    return dest


class LabServer:
    """``jupyter lab`` on 127.0.0.1:<free port> over ``root_dir``, with NVP_EDU_FAST=1."""

    def __init__(self, root_dir: Path, state_dir: Path, fast: bool = True,
                 threads_per_kernel: int | None = None):
        self.root_dir, self.state_dir = root_dir, state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fast, self.threads = fast, threads_per_kernel
        self.proc: subprocess.Popen | None = None
        self.log_path = state_dir / "jupyterlab.log"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NVP_EDU_FAST"] = "1" if self.fast else "0"
        # The kernel imports nvp_edu from this checkout even where it is not pip-installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env["JUPYTERLAB_SETTINGS_DIR"] = str(self.state_dir / "settings")
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.state_dir / "workspaces")
        env["JUPYTER_RUNTIME_DIR"] = str(self.state_dir / "runtime")
        if self.threads:  # kernels running side by side must not fight over the cores
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(self.threads)
        return env

    def start(self, timeout: float = 120) -> "LabServer":
        for rel, value in LAB_SETTINGS.items():
            path = self.state_dir / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--expose-app-in-browser", "--IdentityProvider.token=", "--ServerApp.password=",
               "--ip", "127.0.0.1", "--port", str(self.port), "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={self.root_dir}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=self._env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # jupyter shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def expected_figure_cells(path: Path) -> list[int]:
    """Indices of the cells whose committed outputs hold a PNG figure."""
    if not path.exists():
        return []
    nb = nbformat.read(path, as_version=4)
    return [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and any(
        "image/png" in out.get("data", {}) for out in cell.get("outputs", []))]


@dataclass
class NotebookRun:
    """What the browser showed after "Run All" on one notebook."""

    name: str
    seconds: float = 0.0              # from "Run All" to the last cell finishing
    load_seconds: float = 0.0         # opening the notebook and starting its kernel
    finished: bool = False
    timed_out: bool = False
    errors: list[str] = field(default_factory=list)        # "cell 7: ZeroDivisionError: ..."
    not_run: list[int] = field(default_factory=list)       # code cells without an execution count
    running: list[int] = field(default_factory=list)       # cells still [*] at the timeout
    figure_cells: list[int] = field(default_factory=list)  # cells showing >= 1 <img>
    images: int = 0
    missing_figures: list[int] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.timed_out:
            out.append(f"did not finish in time; still running: cells {self.running}")
        out += [f"error output in {e}" for e in self.errors]
        if self.finished and not self.errors and self.not_run:
            out.append(f"code cells never executed: {self.not_run}")
        if self.missing_figures:
            out.append(f"cells with a committed figure show no <img>: {self.missing_figures}")
        out += [f"dialog: {d}" for d in self.dialogs]
        return out


# Read the state of the visible notebook from the app (model) and the DOM (what is drawn).
_STATE_JS = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const node = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel || !panel.content || !panel.sessionContext || !node || panel.node !== node)
    return {ready: false};
  const dialogs = [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText.slice(0, 300));
  const cells = [];
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    const prompt = cell.node.querySelector('.jp-InputArea-prompt');
    const outputs = cell.model.outputs.toJSON();
    cells.push({
      i,
      empty: cell.model.sharedModel.getSource().trim() === '',
      count: cell.model.executionCount,
      running: !!prompt && prompt.textContent.includes('*'),
      errors: outputs.filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
      images: cell.node.querySelectorAll('.jp-OutputArea-output img').length,
    });
  });
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {ready: true, kernel: kernel ? kernel.status : 'none', cells, dialogs};
}
"""

_OPEN_JS = """
async () => {
  const app = window.jupyterapp;
  await app.restored;
  const panel = app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  return panel.sessionContext.session ? panel.sessionContext.session.kernel.status : 'none';
}
"""


class NotebookDriver:
    """One browser tab (own context and workspace) running notebooks one after another."""

    def __init__(self, browser, base_url: str, slot: int, out_dir: Path):
        self.context = browser.new_context(viewport={"width": 1280, "height": 960})
        self.page = self.context.new_page()
        self.base_url, self.slot, self.out_dir = base_url, slot, out_dir
        self.run: NotebookRun | None = None
        self.page.on("pageerror", lambda err: self.run and self.run.page_errors.append(str(err)))

    def start(self, name: str, expected_figures: list[int], timeout: float) -> None:
        self.run, self.expected, self.timeout = NotebookRun(name), expected_figures, timeout
        t0 = time.monotonic()
        # ?reset: start from an empty workspace, so no notebook of an earlier run reopens.
        self.page.goto(f"{self.base_url}/lab/workspaces/slot{self.slot}/tree/notebooks/{name}?reset",
                       wait_until="domcontentloaded", timeout=120_000)
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
        self.page.evaluate(_OPEN_JS)
        self._wait_kernel_idle(120)
        self.run.dialogs = self._state().get("dialogs", [])
        self.page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebook, wide
        # Committed outputs are cleared first, so every figure counted below is a new one.
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        self.run.load_seconds = time.monotonic() - t0
        self.t_run = time.monotonic()
        # Not awaited: the command's promise settles only when the last cell is done.
        self.page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
        self._settled = 0

    def _state(self) -> dict:
        return self.page.evaluate(_STATE_JS)

    def _wait_kernel_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._state()
            if state.get("dialogs"):
                return  # e.g. "Select Kernel": reported as a problem, not waited on
            if state.get("ready") and state["kernel"] == "idle":
                return
            time.sleep(0.25)
        raise TimeoutError(f"kernel of {self.run.name} not idle after {timeout:.0f} s")

    def poll(self) -> bool:
        """True once the notebook is done (all ran, an error stopped it, or timed out)."""
        state = self._state()
        if not state.get("ready"):
            return False
        cells = [c for c in state["cells"] if not c["empty"]]
        running = [c["i"] for c in cells if c["running"]]
        errors = [f"cell {c['i']}: {e}" for c in cells for e in c["errors"]]
        all_ran = all(c["count"] is not None for c in cells)
        done = not running and state["kernel"] == "idle" and (all_ran or errors)
        if state["dialogs"] and not running:
            done = True
        # "Done" must hold on two polls in a row: between two queued cells the kernel can
        # report idle for an instant.
        self._settled = self._settled + 1 if done else 0
        elapsed = time.monotonic() - self.t_run
        if self._settled >= 2 or elapsed > self.timeout:
            self._finish(state, cells, running, errors, timed_out=self._settled < 2)
            return True
        return False

    def _finish(self, state, cells, running, errors, timed_out: bool) -> None:
        run = self.run
        run.seconds = round(time.monotonic() - self.t_run, 1)
        run.load_seconds = round(run.load_seconds, 1)
        run.timed_out, run.finished = timed_out, not timed_out
        run.running, run.errors = running, errors
        run.not_run = [c["i"] for c in cells if c["count"] is None]
        run.dialogs = state["dialogs"]
        run.figure_cells = [c["i"] for c in cells if c["images"] > 0]
        run.images = sum(c["images"] for c in cells)
        run.missing_figures = [i for i in self.expected if i not in run.figure_cells]
        stem = Path(run.name).stem
        first_bad = (running or [int(e.split(":")[0].split()[1]) for e in errors] or [None])[0]
        shots = [("figure", run.figure_cells[0] if run.figure_cells else None),
                 ("end", first_bad if first_bad is not None else "last")]
        for label, where in shots:
            if where is None:
                continue
            self.page.evaluate(
                """(i) => { const ws = window.jupyterapp.shell.currentWidget.content.widgets;
                            const c = i === 'last' ? ws[ws.length - 1] : ws[i];
                            c.node.scrollIntoView({block: i === 'last' ? 'end' : 'start'}); }""", where)
            self.page.wait_for_timeout(300)  # let the scroll paint
            path = self.out_dir / f"{stem}-{label}.png"
            self.page.screenshot(path=str(path))
            run.screenshots.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
        # Free the kernel (and stop a runaway cell) before this tab takes the next notebook.
        self.page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.shutdown(); }")

    def close(self) -> None:
        self.context.close()


def run_in_browser(jobs: list[tuple[str, list[int], float]], base_url: str, chromium: str,
                   out_dir: Path, workers: int = 1) -> dict[str, NotebookRun]:
    """Run ``(notebook name, expected figure cells, timeout s)`` jobs in ``workers`` tabs."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, NotebookRun] = {}
    queue = list(jobs)
    with sync_playwright() as pw:
        browser = launch(pw, chromium)
        try:
            drivers = [NotebookDriver(browser, base_url, k, out_dir)
                       for k in range(max(1, min(workers, len(queue))))]
            active: list[NotebookDriver] = []
            for d in drivers:
                if queue:
                    d.start(*queue.pop(0))
                    active.append(d)
            while active:
                time.sleep(0.5)
                for d in list(active):
                    if d.poll():
                        results[d.run.name] = d.run
                        active.remove(d)
                        if queue:
                            d.start(*queue.pop(0))
                            active.append(d)
            for d in drivers:
                d.close()
        finally:
            browser.close()
    (out_dir / "runs.json").write_text(json.dumps([asdict(r) for r in results.values()], indent=2))
    return results
