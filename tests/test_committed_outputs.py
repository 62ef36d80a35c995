"""Every committed notebook was committed from a run (scripts/execute_notebooks.py):
each code cell executed, no error outputs, no per-run execution metadata, python3 kernel,
no absolute path of the machine that ran it and no progress-bar debris in its outputs.
Learners read these outputs on GitHub without running anything."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

PROJECT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((PROJECT / "notebooks").glob("[0-9]*.ipynb"))

# Written out here, not imported from the script, so that a too lenient script fails this test.
ABSOLUTE = re.compile(r"(?<![\w.~-])(/work/|/root/|/home/|/tmp/|/Users/|/usr/|/opt/|/var/|"
                      r"/private/|/mnt/|[A-Za-z]:\\)")
TQDM_DEBRIS = ("TqdmWarning", "IProgress not found")


def output_texts(nb):
    """(cell index, output type, text) of everything an output shows as text."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                yield i, f"stream {out.name}", out.text
            elif out.output_type == "error":
                yield i, "error", "\n".join(out.traceback)
            else:
                for mime, value in out.get("data", {}).items():
                    if mime.startswith("text/"):
                        yield i, mime, "".join(value) if isinstance(value, list) else value


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_absolute_paths_in_outputs(path):
    nb = nbformat.read(path, as_version=4)
    found = [f"cell {i} ({kind}): ...{text[max(0, m.start() - 40):m.end() + 40]!r}..."
             for i, kind, text in output_texts(nb) for m in ABSOLUTE.finditer(text)]
    assert not found, ("absolute paths of the machine that ran the notebook (print paths "
                       "relative to the project root; scripts/execute_notebooks.py rewrites "
                       f"the project root): {found[:5]}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_progress_bar_debris_in_outputs(path):
    nb = nbformat.read(path, as_version=4)
    empty = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
             if o.output_type == "stream" and not o.text.strip()]
    assert not empty, f"whitespace-only stream outputs (progress-bar debris) in cells {empty}"
    tqdm = [f"cell {i} ({kind})" for i, kind, text in output_texts(nb)
            if any(d in text for d in TQDM_DEBRIS)]
    assert not tqdm, f"tqdm's IProgress warning committed: {tqdm}"
    interrupted_bars = _load_script().interrupted_bars
    for i, cell in enumerate(nb.cells):
        lines = [line for o in cell.get("outputs", []) if o.output_type == "stream"
                 and o.name == "stderr" for line in o.text.split("\n")]
        assert not interrupted_bars(lines), (
            f"cell {i}: a progress bar committed in pieces (one per line printed while it "
            "ran); scripts/execute_notebooks.py keeps only its last state")


def _load_script():
    spec = importlib.util.spec_from_file_location("execute_notebooks",
                                                  PROJECT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_execute_script_cleans_outputs():
    """The cleaning scripts/execute_notebooks.py applies before writing a notebook."""
    clean_outputs = _load_script().clean_outputs
    root = Path("/home/someone/nvp-edu")
    warning = ("/home/someone/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: "
               "IProgress not found. Please update jupyter and ipywidgets.\n"
               "  from .autonotebook import tqdm as notebook_tqdm\n")
    stream = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell(outputs=[
        stream("stream", name="stderr", text=warning),
        stream("stream", name="stderr", text="\rfit:   0%|  | 0/2"),
        stream("stream", name="stderr", text="\r          "),
        stream("stream", name="stderr", text="\rfit: 100%|##| 2/2"),
        stream("stream", name="stderr", text="\n"),
        stream("stream", name="stdout", text="saved to /home/someone/nvp-edu/runs/a.pt\n"),
        stream("stream", name="stdout", text="\n"),
        nbformat.v4.new_output("execute_result", execution_count=1,
                               data={"text/plain": "PosixPath('/home/someone/nvp-edu')"}),
        stream("stream", name="stderr",
               text="/opt/py/lib/site-packages/torch/x.py:3: UserWarning: careful\n"),
    ])
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert clean_outputs(nb, root) == []
    outs = nb.cells[0].outputs
    assert [o.get("text") for o in outs if o.output_type == "stream"] == [
        "fit: 100%|##| 2/2\n",  # joined, redraws resolved to the last, the clear dropped
        "saved to runs/a.pt\n\n",
        "site-packages/torch/x.py:3: UserWarning: careful\n",
    ]
    result = [o for o in outs if o.output_type == "execute_result"]
    assert result[0].data["text/plain"] == "PosixPath('.')"
    nbformat.validate(nb)
    # a bar interrupted by printed lines keeps only its last state; the lines stay
    bar = "digits/digits:  {}%|#   | {}/400 [00:03<01:07,  5.61step/s, bpd=2.450]"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        stream("stream", name="stderr", text="\r" + bar.format(5, 20)),
        stream("stream", name="stdout", text="step 20: validation 3.6 bits/dim\n"),
        stream("stream", name="stderr", text="\r" + bar.format(10, 40) + "\r" + bar.format(100, 400)),
        stream("stream", name="stderr", text="\n"),
        stream("stream", name="stdout", text="step 400: validation 2.0 bits/dim\n")])])
    assert clean_outputs(nb, root) == []
    assert [o.text for o in nb.cells[0].outputs] == [
        "step 20: validation 3.6 bits/dim\n", bar.format(100, 400) + "\n",
        "step 400: validation 2.0 bits/dim\n"]
    # a path outside the project cannot be made relative: reported, not hidden
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        stream("stream", name="stdout", text="cache in /tmp/abc/x, see https://x.org/home/y\n")])])
    problems = clean_outputs(nb, root)
    assert len(problems) == 1 and "/tmp/abc" in problems[0]


# nbval's cell tags (the course marks cells with tags, not with visible comments).
CHECK_TAG, IGNORE_TAG, SKIP_TAG = "nbval-check-output", "nbval-ignore-output", "nbval-skip"
# A number in scientific notation ("4.4e-16", "0.0e+00", "1E-7").
SCIENTIFIC = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")
# What a stated tolerance follows: "error < 1e-12", "below 1e-10", "within 1e-9".
TOLERANCE = re.compile(r"(<=?|\bbelow|\bwithin|\bunder|\btolerance)\s*$")
# A decimal with more than 8 significant digits ("0.30000000000000004"): float noise shows.
LONG_DECIMAL = re.compile(r"(?<![\w.])[-+]?\d*\.\d{9,}(?![\w.])")


def rounding_noise(text: str) -> list[str]:
    """Numbers in ``text`` whose digits are rounding error, which differs between CPUs.

    A float below 1e-6 written in scientific notation (0 included: "0.0e+00" on one CPU is
    "4.4e-16" on another) is the residue of a computation that is exact in theory; a decimal
    with more than 8 significant digits prints float64's last bits.
    """
    found = [m.group() for m in SCIENTIFIC.finditer(text) if abs(float(m.group())) < 1e-6
             and not TOLERANCE.search(text[max(0, m.start() - 12):m.start()])]
    return found + [m.group() for m in LONG_DECIMAL.finditer(text)]


def test_rounding_noise_detector():
    assert rounding_noise("inverse max error 4.4e-16") == ["4.4e-16"]
    assert rounding_noise("max error 0.0e+00, singular value 6.1E-18") == ["0.0e+00", "6.1E-18"]
    assert rounding_noise("sum 0.30000000000000004") == ["0.30000000000000004"]
    assert rounding_noise("inverse max error below 1e-06 (float64)") == []  # a stated tolerance
    assert rounding_noise("zero up to rounding (< 1e-12 x largest), within 1e-9: True") == []
    assert rounding_noise("error 3e-13 < 1e-12") == ["3e-13"]
    assert rounding_noise("NLL -2.1e+08 bits, lr 1e-3, 7431.4 nats, 3.49 bits/dim, v1.2e-7x") == []


def compared_cells(nb):
    """(index, cell) of the code cells whose outputs nbval compares in --nbval-lax mode
    (marked by the tag, or by nbval's older comment, which the test below forbids)."""
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and
            (CHECK_TAG in c.metadata.get("tags", []) or "# NBVAL_CHECK_OUTPUT" in c.source)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_compared_outputs_hold_no_rounding_noise(path):
    """CI runs on Intel and AMD CPUs: what nbval compares must not depend on rounding."""
    nb = nbformat.read(path, as_version=4)
    cells = {i for i, _ in compared_cells(nb)}
    noisy = [f"cell {i}: {rounding_noise(text)} in {text.strip()[:120]!r}"
             for i, _, text in output_texts(nb) if i in cells and rounding_noise(text)]
    assert not noisy, ("compared outputs print rounding error, which differs between CPUs: "
                       "print a verdict against a stated tolerance instead (the exact value "
                       f"may go in a cell that is not compared): {noisy}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_nbval_markers_are_tags_not_comments(path):
    """A learner reads the cell, not test plumbing: nbval markers live in cell tags."""
    nb = nbformat.read(path, as_version=4)
    comments = [i for i, c in enumerate(nb.cells) if "NBVAL_" in c.source]
    assert not comments, f"visible NBVAL_ comments in cells {comments}: make them cell tags"
    both = [i for i, c in enumerate(nb.cells)
            if {CHECK_TAG, IGNORE_TAG} <= set(c.metadata.get("tags", []))]
    assert not both, f"cells tagged both to check and to ignore their output: {both}"
    assert compared_cells(nb), "no cell's output is compared: the notebook checks no claim"


def test_interrupted_bars_keeps_only_the_last_state_of_each_bar():
    interrupted_bars = _load_script().interrupted_bars
    lines = [
        "digits: 40%|####      | 8/20 [00:01<00:02,  5.0step/s]",   # 0: interrupted by a print
        "digits: 100%|##########| 20/20 [00:04<00:00,  5.0step/s, bpd=2.1]",  # 1: redrawn by close()
        "digits: 100%|##########| 20/20 [00:05<00:00,  4.0step/s, bpd=2.1]",  # 2: the last state
        "photos: 100%|##########| 30/30 [00:09<00:00,  3.3step/s, bpd=4.6]",  # 3: another bar
        "photos: 100%|##########| 30/30 [00:09<00:00,  3.3step/s, bpd=4.7]",  # 4: another run
        "photos: 100%|##########| 60/60 [00:19<00:00,  3.2step/s]",  # 5: same name, other total
        "moons: 100%|##########| 10/10 [00:01<00:00, 10.0it/s]",     # 6: no postfix: kept
        "moons: 100%|##########| 10/10 [00:01<00:00, 10.0it/s]",     # 7
    ]
    assert interrupted_bars(lines) == {0, 1}
    assert interrupted_bars(lines[3:]) == set()
