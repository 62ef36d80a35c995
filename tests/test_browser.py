"""The JupyterLab walkthrough, in a real browser: every notebook of the course is opened in
JupyterLab in headless Chromium and run top to bottom in fast mode (``NVP_EDU_FAST=1``).

A notebook fails when a cell shows an error, when it does not finish within
``NVP_EDU_BROWSER_TIMEOUT`` seconds (default 600), or when a cell that has a figure in the
committed notebook shows no image in the browser. Screenshots (the first figure, and the
end of the notebook or the failing cell) and ``runs.json`` with the timings land in
``test-artifacts/browser/``.

Chromium is Debian's package, installed by ``scripts/install_browser.sh`` when missing
(root + apt-get); elsewhere the test skips and says why, except in CI (``CI=true``), where
a missing browser is a failure. ``NVP_EDU_BROWSER_WORKERS`` (default 2 on a machine with two
cores or more, else 1) runs that many notebooks side by side in separate tabs.
"""
from __future__ import annotations

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import jupyterlab_driver as jl

NOTEBOOK_NAMES = [p.name for p in jl.course_notebooks()]
TIMEOUT = float(os.environ.get("NVP_EDU_BROWSER_TIMEOUT", "600"))
# Two tabs side by side on a machine with two cores or more (each kernel then gets
# OMP_NUM_THREADS = cores // 2, so the kernels do not fight over the cores): the walkthrough
# is the longest part of the suite, and most notebooks in fast mode use one core.
WORKERS = int(os.environ.get("NVP_EDU_BROWSER_WORKERS", "2" if (os.cpu_count() or 1) >= 2 else "1"))
HANG_TIMEOUT = 8.0


def _selftest_notebooks() -> dict[str, nbformat.NotebookNode]:
    """Two small notebooks that the harness must judge correctly, so the check can bite."""
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    error = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# harness self-test: a figure, then an error"),
        new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                      "plt.plot([0, 1], [1, 0]); plt.title('self-test'); plt.show()"),
        new_code_cell("1 / 0"),
        new_code_cell("plt.plot([0, 1]); plt.show()  # never reached: run-all stops at the error"),
    ])
    hang = new_notebook(metadata=meta, cells=[new_code_cell("import time\ntime.sleep(600)")])
    return {"_selftest_error.ipynb": error, "_selftest_hang.ipynb": hang}


def _selected(request, test_name: str, param: str) -> list[str]:
    """Parameters of ``test_name`` that this pytest session will actually run."""
    # An empty parametrization yields one placeholder item whose parameter is not a str.
    return [item.callspec.params[param] for item in request.session.items
            if getattr(item, "originalname", None) == test_name and hasattr(item, "callspec")
            and isinstance(item.callspec.params.get(param), str)]


@pytest.fixture(scope="session")
def browser_runs(request, tmp_path_factory) -> dict[str, jl.NotebookRun]:
    """Run every selected notebook once in the browser; the tests below read the results."""
    chromium = jl.require_browser("browser walkthrough")

    jobs = [(name, jl.expected_figure_cells(jl.NOTEBOOKS / name), TIMEOUT)
            for name in _selected(request, "test_notebook_runs_in_browser", "name")]
    extra = {}
    if _selected(request, "test_harness_detects_problems", "case"):
        extra = _selftest_notebooks()
        # Cell 3 would draw a figure had the error not stopped the run: it must be missed.
        jobs += [("_selftest_error.ipynb", [1, 3], TIMEOUT),
                 ("_selftest_hang.ipynb", [], HANG_TIMEOUT)]
    work = tmp_path_factory.mktemp("browser")
    course = jl.stage_course(work / "course", extra)
    workers = max(1, WORKERS)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    server = jl.LabServer(course, work / "state", fast=True, threads_per_kernel=threads).start()
    try:
        runs = jl.run_in_browser(jobs, server.url, chromium, jl.ARTIFACTS, workers=workers)
    except Exception as err:
        raise RuntimeError(f"{err}\n--- jupyter lab log ---\n{server.log()}") from err
    finally:
        server.stop()
    lines = [f"{r.name}: {r.seconds:.1f} s run-all, {r.load_seconds:.1f} s load, "
             f"{r.images} images" for r in runs.values()]
    (jl.ARTIFACTS / "timings.txt").write_text("\n".join(lines) + "\n")
    return runs


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_in_browser(browser_runs, name, record_property):
    run = browser_runs[name]
    record_property("browser_seconds", run.seconds)
    assert run.finished and not run.problems(), (
        f"{name} in JupyterLab: " + "; ".join(run.problems())
        + f" (screenshots: {', '.join(run.screenshots)})")
    committed_figures = jl.expected_figure_cells(jl.NOTEBOOKS / name)
    if committed_figures:
        assert run.images >= 1


@pytest.mark.parametrize("case", ["error", "hang"])
def test_harness_detects_problems(browser_runs, case):
    """The walkthrough's judge is itself checked: an error, a hang, a missing figure."""
    if case == "error":
        run = browser_runs["_selftest_error.ipynb"]
        assert run.finished and not run.timed_out
        assert len(run.errors) == 1 and run.errors[0].startswith("cell 2: ZeroDivisionError")
        assert run.figure_cells == [1] and run.images == 1  # the figure before the error drew
        assert run.missing_figures == [3] and run.not_run == [3]
        assert any(p.startswith("error output in cell 2") for p in run.problems())
    else:
        run = browser_runs["_selftest_hang.ipynb"]
        assert run.timed_out and not run.finished and run.running == [0]
        assert HANG_TIMEOUT <= run.seconds < HANG_TIMEOUT + 10
        assert "did not finish in time" in run.problems()[0]
