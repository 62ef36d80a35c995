"""Make a student copy of course notebooks: the outputs that answer exercises removed.

    python scripts/student_copy.py notebooks/04_masks.ipynb            # -> student/04_masks.ipynb
    python scripts/student_copy.py notebooks/*.ipynb --out-dir handout
    python scripts/student_copy.py notebooks/01_change_of_variables.ipynb --keep-solutions

The committed notebooks already keep predictions unspoiled (a cell that reveals an answer
runs only after ``answer(...)`` holds a prediction). A copy for graded work goes further;
it clears the outputs of

- every code cell from the "Exercises" heading on (after an instructor ran the notebook
  with the answers in, these outputs would show the verdicts);
- every cell tagged ``exercise-answer`` (a measurement that answers an exercise), and every
  cell that calls ``solution(``;
- any other output that shows a verdict ("✅") or a reference solution.

All other outputs (the lesson's figures and numbers, and the outputs of cells tagged
``exercise-prompt``, which belong to a question, such as the failing check of a bug hunt)
stay. Unless ``--keep-solutions`` is
given, the copy also switches instructor mode on in its first code cell, so that
``solution()`` refuses (``NVP_EDU_INSTRUCTOR``, see ``nvp_edu.exercises.classroom``). This
deters, it does not enforce: a student can delete the line. For graded work, also run the
Jupyter server with ``NVP_EDU_INSTRUCTOR=1``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ANSWER_TAG = "exercise-answer"
PROMPT_TAG = "exercise-prompt"  # its output is part of the question (kept)
EXERCISES_HEADING = re.compile(r"^#{1,3}\s+(\d+\.\s+)?Exercises\b", re.MULTILINE | re.IGNORECASE)
VERDICT = ("✅", "# reference solution of")
LOCK_LINE = ('import os; os.environ["NVP_EDU_INSTRUCTOR"] = "1"  '
             "# student copy: solution() refuses (instructor mode)")


def _shows_answer(output) -> bool:
    text = output.get("text", "")
    if output.get("output_type") in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return any(v in text for v in VERDICT)


def answering_cells(nb) -> list[int]:
    """Indices of the code cells whose outputs a student copy clears."""
    found, in_exercises = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and EXERCISES_HEADING.search(cell.source):
            in_exercises = True
        if cell.cell_type != "code" or PROMPT_TAG in cell.metadata.get("tags", []):
            continue
        if (in_exercises or ANSWER_TAG in cell.metadata.get("tags", [])
                or "solution(" in cell.source or any(_shows_answer(o) for o in cell.outputs)):
            found.append(i)
    return found


def student_copy(nb, lock_solutions: bool = True):
    """A new notebook: ``nb`` with the answering outputs cleared (and solutions locked)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # a deep copy
    for i in answering_cells(nb):
        nb.cells[i].outputs = []
        nb.cells[i].execution_count = None
    if lock_solutions:
        first = next((c for c in nb.cells if c.cell_type == "code"), None)
        if first is not None and LOCK_LINE not in first.source:
            first.source = LOCK_LINE + "\n" + first.source
    nb.metadata["nvp_edu_student_copy"] = True
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("student"),
                        help="where the copies go (default: student/)")
    parser.add_argument("--keep-solutions", action="store_true",
                        help="do not switch instructor mode on in the copy")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        copy = student_copy(nb, lock_solutions=not args.keep_solutions)
        target = args.out_dir / path.name
        if target.resolve() == path.resolve():
            print(f"error: {target} would overwrite its source", file=sys.stderr)
            return 2
        nbformat.write(copy, target)
        print(f"{path} -> {target}: outputs cleared in {len(answering_cells(nb))} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
