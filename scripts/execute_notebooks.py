"""Execute notebooks in place and strip execution metadata, so committed outputs are clean.

    python scripts/execute_notebooks.py                 # every notebook, full mode
    python scripts/execute_notebooks.py notebooks/02_toy_flows.ipynb
    python scripts/execute_notebooks.py --fast          # NVP_EDU_FAST=1 (quick check)

Prints the wall time of each notebook (the figure the README's curriculum map quotes).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent


def strip_metadata(nb: nbformat.NotebookNode) -> None:
    """Drop per-run noise (timings, execution ids) so diffs show only real changes."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if "id" in cell:
            pass  # stable ids are part of nbformat 4.5; keep them


def execute(path: Path, fast: bool, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    env_backup = os.environ.get("NVP_EDU_FAST")
    os.environ["NVP_EDU_FAST"] = "1" if fast else "0"
    try:
        start = time.perf_counter()
        ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(path.parent)}})
        elapsed = time.perf_counter() - start
    finally:
        if env_backup is None:
            os.environ.pop("NVP_EDU_FAST", None)
        else:
            os.environ["NVP_EDU_FAST"] = env_backup
    strip_metadata(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--fast", action="store_true", help="run with NVP_EDU_FAST=1")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        seconds = execute(path, args.fast, args.timeout)
        print(f"{path.name}: {seconds:.0f} s ({'fast' if args.fast else 'full'} mode)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
