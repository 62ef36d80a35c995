"""Classroom helpers: instructor mode, and predictions that are made before they are revealed.

**Instructor mode** (graded use): with the environment variable ``NVP_EDU_INSTRUCTOR=1``
set for the Jupyter server (``NVP_EDU_INSTRUCTOR=1 jupyter lab``), or after
``instructor_mode()`` in a notebook, :func:`nvp_edu.exercises.solution` refuses to print
reference solutions; ``check``, ``answer`` and ``hint`` keep working. ``instructor_mode(False)``
switches it off again for the running kernel (the environment variable is read at each call,
so a call overrides it). A student copy of a notebook, without the outputs that answer its
exercises, is made by ``python scripts/student_copy.py`` (see its docstring).

**Predict first, then see**: a cell whose output answers a prediction runs only once the
learner has written one::

    my_prediction = ...            # your answer: "a", "b", "c" or "d"
    answer("sinh_flow_which_check", my_prediction)

    # next cell: the measurement that answers it
    if predicted(my_prediction):
        print(check_flow(SinhFlow(), points))

While ``my_prediction`` is still ``...`` (or None), :func:`predicted` prints a reminder and
returns False, so the committed notebook shows the question, not its answer.
"""
from __future__ import annotations

import os
from typing import Any

ENV_VAR = "NVP_EDU_INSTRUCTOR"
_override: bool | None = None  # set by instructor_mode(); None: the environment decides

REFUSAL = ("🔒 {name}: solutions are switched off (instructor mode: {why}). "
           "hint(\"{name}\") still helps, and check/answer still say what is wrong.")


def instructor_mode(on: bool = True) -> None:
    """Switch instructor mode on (``solution()`` refuses) or off, for this Python process."""
    global _override
    _override = bool(on)
    print(f"instructor mode {'on: solution() refuses' if on else 'off: solution() prints solutions'}")


def solutions_locked() -> bool:
    """True when ``solution()`` must refuse: ``instructor_mode()`` was called, or
    ``NVP_EDU_INSTRUCTOR`` is set to something other than "", "0", "false", "no", "off"."""
    if _override is not None:
        return _override
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("", "0", "false", "no", "off")


def refusal(name: str) -> str:
    """The line ``solution(name)`` prints in instructor mode."""
    why = "instructor_mode() was called" if _override else f"{ENV_VAR} is set"
    return REFUSAL.format(name=name, why=why)


def predicted(value: Any, what: str = "your prediction above") -> bool:
    """True once ``value`` holds a prediction; else print a reminder and return False.

    A notebook guards the cell that reveals an answer with it (``if predicted(p): ...``), so
    that the answer is shown only after the learner has committed to one.
    """
    if value is Ellipsis or value is None:
        print(f"⏳ Write {what} first (replace the `...`), run that cell, then run this one.")
        return False
    return True
