"""Every committed notebook was committed from a run (scripts/execute_notebooks.py):
each code cell executed, no error outputs, no per-run execution metadata, python3 kernel.
Learners read these outputs on GitHub without running anything."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        "kernelspec python3 expected (else JupyterLab asks the learner to pick a kernel)"
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    assert code, "a course notebook without code cells"
    not_run = [i for i, c in code if c.execution_count is None]
    assert not not_run, f"cells never executed in the committed file: {not_run}; " \
                        f"run python scripts/execute_notebooks.py {path.name}"
    counts = [c.execution_count for _, c in code]
    assert counts == sorted(counts), f"cells ran out of order: {counts}"
    errors = [f"cell {i}: {o.get('ename')}" for i, c in code for o in c.outputs
              if o.output_type == "error"]
    assert not errors, f"error outputs committed: {errors}"
    timing = [i for i, c in enumerate(nb.cells)
              if "execution" in c.metadata or "ExecuteTime" in c.metadata]
    assert not timing, f"execution metadata left in cells {timing} (strip it: scripts/execute_notebooks.py)"
    assert any(c.outputs for _, c in code), "no outputs at all"
