"""Instructor mode (solution() refuses) and the student copy of a notebook (issue 21)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

from nvp_edu import exercises
from nvp_edu.exercises import classroom, hint, instructor_mode, predicted, solution

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    monkeypatch.setattr(classroom, "_override", None)
    monkeypatch.delenv(classroom.ENV_VAR, raising=False)


def test_solution_refuses_under_the_environment_variable(monkeypatch, capsys):
    solution("affine_1d_log_det")
    assert "reference solution of affine_1d_log_det" in capsys.readouterr().out
    monkeypatch.setenv("NVP_EDU_INSTRUCTOR", "1")
    solution("affine_1d_log_det")
    out = capsys.readouterr().out
    assert "switched off" in out and "NVP_EDU_INSTRUCTOR" in out
    assert "torch.log" not in out  # nothing of the reference leaks
    solution("density_of_3x_at_0")  # a question: its answer is refused too
    assert "0.133" not in capsys.readouterr().out
    hint("affine_1d_log_det")  # hints stay available
    assert "💡" in capsys.readouterr().out
    with pytest.raises(KeyError):
        solution("no_such_exercise")
    monkeypatch.setenv("NVP_EDU_INSTRUCTOR", "0")
    assert not classroom.solutions_locked()


def test_instructor_mode_call_overrides_the_environment(monkeypatch, capsys):
    instructor_mode()
    solution("affine_1d_log_det")
    assert "instructor_mode() was called" in capsys.readouterr().out
    monkeypatch.setenv("NVP_EDU_INSTRUCTOR", "1")
    instructor_mode(False)
    solution("affine_1d_log_det")
    assert "reference solution" in capsys.readouterr().out
    assert exercises.solutions_locked is classroom.solutions_locked


def test_predicted_waits_for_a_prediction(capsys):
    assert predicted(...) is False and predicted(None) is False
    assert "⏳" in capsys.readouterr().out
    assert predicted("b") is True and predicted(0) is True
    assert capsys.readouterr().out == ""


def _script():
    spec = importlib.util.spec_from_file_location("student_copy", PROJECT / "scripts" / "student_copy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_student_copy_clears_answering_outputs(tmp_path):
    script = _script()
    new = nbformat.v4
    out = lambda text: [new.new_output("stream", name="stdout", text=text)]
    cells = [
        new.new_code_cell("import torch", outputs=out("lesson\n"), execution_count=1),
        new.new_code_cell("measure()", outputs=out("figure 3.32\n"), execution_count=2),
        new.new_code_cell("reveal()", outputs=out("the answer is b\n"), execution_count=3),
        new.new_code_cell("solution('x')", outputs=out("code\n"), execution_count=4),
        new.new_code_cell("check('x', f)", outputs=out("✅ x: correct\n"), execution_count=5),
        new.new_markdown_cell("## Exercises\n\n1. ..."),
        new.new_code_cell("answer('y', 3)", outputs=out("❌ y: too high\n"), execution_count=6),
    ]
    cells[2].metadata["tags"] = ["exercise-answer"]
    nb = new.new_notebook(cells=cells)
    copy = script.student_copy(nb)
    kept = [bool(c.get("outputs")) for c in copy.cells if c.cell_type == "code"]
    assert kept == [True, True, False, False, False, False]
    assert copy.cells[0].source.startswith(script.LOCK_LINE)
    assert nb.cells[2].outputs, "the source notebook is left as it was"
    assert not script.student_copy(nb, lock_solutions=False).cells[0].source.startswith("import os")
    nbformat.validate(copy)


def test_student_copy_of_a_course_notebook(tmp_path):
    """The script on a real notebook: the lesson's outputs stay, the exercises' go."""
    script = _script()
    path = PROJECT / "notebooks" / "01_change_of_variables.ipynb"
    assert script.main([str(path), "--out-dir", str(tmp_path)]) == 0
    copy = nbformat.read(tmp_path / path.name, as_version=4)
    original = nbformat.read(path, as_version=4)
    heading = next(i for i, c in enumerate(copy.cells) if c.source.startswith("## Exercises"))
    after = [c for c in copy.cells[heading:] if c.cell_type == "code"]
    before = [c for c in copy.cells[:heading] if c.cell_type == "code" and c.outputs]
    assert after and all(not c.outputs for c in after)
    assert len(before) == sum(1 for c in original.cells[:heading] if c.cell_type == "code" and c.outputs)
    assert "NVP_EDU_INSTRUCTOR" in next(c for c in copy.cells if c.cell_type == "code").source
