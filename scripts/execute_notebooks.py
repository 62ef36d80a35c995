"""Execute notebooks in place and strip execution metadata, so committed outputs are clean.

    python scripts/execute_notebooks.py                 # every notebook, full mode
    python scripts/execute_notebooks.py notebooks/02_toy_flows.ipynb
    python scripts/execute_notebooks.py --fast          # NVP_EDU_FAST=1 (quick check)
    python scripts/execute_notebooks.py --clean-only --executed-in /path/of/that/run

Prints the wall time of each notebook (the figure the README's curriculum map quotes).

Outputs are cleaned before the file is written (:func:`clean_outputs`), because learners
read them on GitHub: no progress-bar debris (whitespace-only stream outputs, tqdm's
"IProgress not found" warning) and no absolute path of the machine that ran the notebook
(the project root becomes a relative path, site-packages paths are shortened). An absolute
path that remains is reported and the script exits with status 1 (the notebook is still
written, so a long run is not lost; tests/test_committed_outputs.py refuses to pass it).
``--clean-only`` applies the same cleaning to already executed notebooks without running
them; ``--executed-in`` names the project root of the run that produced their outputs.
A notebook that fails to execute is named on stderr and left unchanged, the batch goes on
with the next one, and the exit status is 1 at the end.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

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


# tqdm.auto warns on stderr when ipywidgets is missing; the warning names tqdm's absolute path.
TQDM_WARNING = re.compile(
    r"^.*TqdmWarning: IProgress not found.*\n(?:[ \t]+from \.autonotebook import .*\n?)?",
    re.MULTILINE)
# An absolute path of the machine (POSIX or Windows). The look-behind skips URLs
# ("https://host/home/..."), whose path part follows a word character.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~-])(?:/(?:work|root|home|tmp|Users|usr|opt|var|private|mnt|srv|scratch)/|[A-Za-z]:\\)")
# ".../lib/python3.11/site-packages/torch/x.py" (a library's warning) -> "site-packages/torch/x.py"
SITE_PACKAGES = re.compile(
    r"(?<![\w.~-])(?:/|[A-Za-z]:\\)\S*?[/\\]((?:site|dist)-packages)[/\\]")


def _relative_text(text: str, root: Path) -> str:
    """Project root -> relative path ("/x/proj/data/f" -> "data/f"); site-packages shortened."""
    root_s = str(root).rstrip("/\\")
    text = text.replace(root_s + "/", "").replace(root_s + "\\", "")
    text = re.sub(re.escape(root_s) + r"(?![\w-])", ".", text)
    return SITE_PACKAGES.sub(r"\1/", text)


def _clean_stream_list(outputs: list) -> list:
    """Drop tqdm's warning and whitespace-only stream outputs (progress-bar debris), join
    adjacent outputs of the same stream, and keep only the last state of a redrawn line.

    A whitespace-only output holding newlines (tqdm's "\\n" closing a bar) is folded into the
    stream output just before it, if that is the same stream: renderers join adjacent stream
    outputs, and without the newline the next bar's "\\r" would overwrite the finished one.
    """
    kept: list = []
    for out in outputs:
        if out.get("output_type") == "stream":
            if out.get("name") == "stderr":
                out["text"] = TQDM_WARNING.sub("", out["text"])
            if not out["text"].strip():
                newlines = out["text"].count("\n")
                prev = kept[-1] if kept else None
                same_stream = (prev is not None and prev.get("output_type") == "stream"
                               and prev.get("name") == out.get("name"))
                if newlines and same_stream:
                    prev["text"] += "\n" * newlines
                continue
        prev = kept[-1] if kept else None
        if (out.get("output_type") == "stream" and prev is not None
                and prev.get("output_type") == "stream" and prev.get("name") == out.get("name")):
            prev["text"] += out["text"]  # renderers join adjacent outputs of one stream anyway
            continue
        kept.append(out)
    for out in kept:
        if out.get("output_type") == "stream":
            out["text"] = _resolve_carriage_returns(out["text"])
    _drop_interrupted_bars(kept)
    return [out for out in kept if out.get("output_type") != "stream" or out["text"].strip()]


# One state of a tqdm bar: "desc:  45%|####5     | 180/400 [00:39<00:49, 4.42step/s, ...]".
TQDM_BAR = re.compile(r"^(?P<desc>.*?)\s*\d+%\|.*\|\s*(?P<n>\d+)/(?P<total>\d+) \[.*\]\s*$")


def _postfix(line: str) -> str:
    """What a bar shows after its rate ("bpd=1.817, img_s=230.9"): the same numbers mean
    the same moment of the same run."""
    inside = line[line.rfind("[") + 1:line.rfind("]")]
    return ", ".join(part.strip() for part in inside.split(",")[2:])


def _same_moment(m: re.Match) -> tuple[str, ...]:
    return m["desc"], m["n"], m["total"], _postfix(m.string)


def interrupted_bars(lines: list[str]) -> set[int]:
    """Indices of the bar states in ``lines`` that a later state of the same bar replaces.

    A bar that printed lines in between (the trainer's "step 20: validation ...") leaves one
    unfinished copy of itself per interruption; and a line printed after the last step but
    before the bar closes leaves a finished copy that ``close()`` then redraws: the next bar
    line, with the same description, ``n/total`` and postfix numbers. Both kinds are
    dropped. Finished bars of separate runs stay, even under one description (their
    postfixes differ; a bar without a postfix is never taken for a redraw).
    """
    found, later = set(), set()
    following = None  # the next bar line's match, scanning backwards
    for index in reversed(range(len(lines))):
        m = TQDM_BAR.match(lines[index])
        if m:
            unfinished = m["n"] != m["total"]
            if unfinished and m["desc"] in later:
                found.add(index)
            elif (not unfinished and _postfix(m.string) and following is not None
                  and _same_moment(following) == _same_moment(m)):
                found.add(index)  # redrawn by close(): the later line is the same bar
            later.add(m["desc"])
            following = m
    return found


def _drop_interrupted_bars(outputs: list) -> None:
    """Keep only the last state of every interrupted bar (:func:`interrupted_bars`), in place."""
    streams = [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    lines = [(i, line) for i, out in enumerate(streams) for line in out["text"].split("\n")]
    drop = interrupted_bars([line for _, line in lines])
    for i, out in enumerate(streams):
        out["text"] = "\n".join(line for k, (j, line) in enumerate(lines) if j == i and k not in drop)


def _resolve_carriage_returns(text: str) -> str:
    """Keep, on each line, what a terminal shows: the last non-blank segment after a "\r"
    (a progress bar redraws itself with "\r" hundreds of times; only its last state shows)."""
    if "\r" not in text:
        return text
    resolved = []
    for line in text.split("\n"):
        segments = [seg for seg in line.split("\r") if seg.strip()]
        resolved.append(segments[-1] if segments else "")
    return "\n".join(resolved)


def _output_texts(out: nbformat.NotebookNode) -> list[tuple[Any, Any]]:
    """(container, key) of every text an output shows: stream text, text/* data, traceback."""
    if out.get("output_type") == "stream":
        return [(out, "text")]
    if out.get("output_type") == "error":
        return [(out["traceback"], i) for i in range(len(out["traceback"]))]
    data = out.get("data", {})
    return [(data, k) for k in data if k.startswith("text/") and isinstance(data[k], str)]


def clean_outputs(nb: nbformat.NotebookNode, root: Path = ROOT) -> list[str]:
    """Clean every code cell's outputs in place (see the module docstring); ``root`` is the
    project root of the run that produced them. Returns where absolute paths remain."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = _clean_stream_list(cell.outputs)
        for out in cell.outputs:
            for container, key in _output_texts(out):
                container[key] = _relative_text(container[key], root)
                for match in ABSOLUTE_PATH.finditer(container[key]):
                    text = container[key]
                    problems.append(f"cell {index}: absolute path in {out.output_type} output: "
                                    f"...{text[max(0, match.start() - 40):match.end() + 60]!r}...")
    return problems


def execute(path: Path, fast: bool, timeout: int) -> tuple[float, nbformat.NotebookNode]:
    """Run the notebook; return its wall time and the executed notebook (not yet written)."""
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
    return elapsed, nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--fast", action="store_true", help="run with NVP_EDU_FAST=1")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--clean-only", action="store_true",
                        help="do not execute: only clean the outputs already in the files")
    parser.add_argument("--executed-in", type=Path, default=ROOT,
                        help="project root of the run that produced the outputs "
                             "(default: this checkout)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    failed = False
    for path in paths:
        if args.clean_only:
            nb = nbformat.read(path, as_version=4)
        else:
            try:
                seconds, nb = execute(path, args.fast, args.timeout)
            except Exception as e:  # noqa: BLE001 (a cell's error, a dead kernel: name it, go on)
                # nbconvert's CellExecutionError names the cell's exception: ename, evalue
                what = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', e)}"
                print(f"error: {path.name} failed ({' '.join(what.split())[:300]}); the file "
                      "was left as it was", file=sys.stderr, flush=True)
                failed = True
                continue
            print(f"{path.name}: {seconds:.0f} s ({'fast' if args.fast else 'full'} mode)", flush=True)
        problems = clean_outputs(nb, args.executed_in)
        nbformat.write(nb, path)
        for problem in problems:
            print(f"error: {path.name}: {problem}", file=sys.stderr)
        if problems:
            print(f"error: {path.name}: print paths relative to the project root in the "
                  "notebook; the file was written but must not be committed like this",
                  file=sys.stderr)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
