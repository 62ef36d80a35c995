"""Exercises with instant feedback.

A notebook cell asks the learner to write a function; ``check("name", their_function)``
runs it against the reference on random inputs and says precisely what is wrong. An
untouched exercise (the stub raises ``NotImplementedError``) only prints a reminder, so a
notebook never crashes on it.

Each topic module (``exercises/coupling.py``, ...) registers its exercises with
:func:`register`; the reference implementation is the solution, and the test suite runs
every exercise with its solution (and with a broken one) so a broken checker fails CI.

Example:
    >>> from nvp_edu.exercises import check
    >>> check("affine_1d_log_det", lambda x, a, b: torch.log(torch.abs(a)).expand_as(x))  # doctest: +SKIP
    ✅ affine_1d_log_det: correct on 3 random test cases.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

# Topic modules register themselves on import; see _load_all().
EXERCISES: dict[str, "Exercise"] = {}


@dataclass
class Exercise:
    """One exercise: a reference (the solution), how to draw inputs, and how to compare.

    ``make_inputs(generator)`` returns the positional arguments for one test case.
    ``hints`` maps a predicate on ``(inputs, expected, got)`` to a message; the first one
    that holds is shown when the answer is wrong.
    """

    name: str
    reference: Callable[..., Any]
    make_inputs: Callable[[torch.Generator], tuple]
    cases: int = 3
    atol: float = 1e-5
    hints: list[tuple[Callable[[tuple, Any, Any], bool], str]] = field(default_factory=list)
    topic: str = ""
    # Typical mistakes (e.g. the wrong sign of s): the tests check that each is rejected.
    mistakes: list[Callable[..., Any]] = field(default_factory=list)


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry (topic modules call this at import time)."""
    EXERCISES[exercise.name] = exercise
    return exercise


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _compare(expected: Any, got: Any, atol: float) -> str | None:
    """None if ``got`` matches ``expected``; otherwise what differs, in words."""
    exp_t, got_t = _as_tuple(expected), _as_tuple(got)
    if len(exp_t) != len(got_t):
        return f"expected {len(exp_t)} return value(s), got {len(got_t)}"
    for k, (e, g) in enumerate(zip(exp_t, got_t)):
        where = f"return value {k}" if len(exp_t) > 1 else "the result"
        if not isinstance(g, torch.Tensor):
            try:
                g = torch.as_tensor(g, dtype=e.dtype)
            except (TypeError, ValueError, RuntimeError):
                return f"{where} should be a tensor, got {type(g).__name__}"
        if g.shape != e.shape:
            return f"{where} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        err = (g.to(e.dtype) - e).abs()
        if not torch.isfinite(g).all():
            return f"{where} contains NaN or inf"
        if err.max() > atol:
            idx = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
            return (f"{where} is off by {err.max().item():.3g} at index {idx} "
                    f"(expected {e[idx].item():.4f}, got {g[idx].item():.4f})")
    return None


def evaluate(name: str, fn: Callable[..., Any], seed: int = 0) -> tuple[bool, str]:
    """Run ``fn`` against exercise ``name``; ``(passed, message)``. Never raises for the learner."""
    _load_all()
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; known: {sorted(EXERCISES)}")
    ex = EXERCISES[name]
    gen = torch.Generator().manual_seed(seed)
    for case in range(ex.cases):
        inputs = ex.make_inputs(gen)
        expected = ex.reference(*inputs)
        try:
            got = fn(*[i.clone() if isinstance(i, torch.Tensor) else i for i in inputs])
        except NotImplementedError:
            return False, f"⏳ {name}: not attempted yet (replace the `raise NotImplementedError`)."
        except Exception as err:  # the learner's code crashed: say how, don't crash the notebook
            return False, f"❌ {name}: your function raised {type(err).__name__}: {err}"
        problem = _compare(expected, got, ex.atol)
        if problem is not None:
            hint = next((msg for pred, msg in ex.hints if _safe(pred, inputs, expected, got)), "")
            return False, f"❌ {name}: on test case {case}, {problem}." + (f" Hint: {hint}" if hint else "")
    return True, f"✅ {name}: correct on {ex.cases} random test cases."


def _safe(pred: Callable, *args: Any) -> bool:
    try:
        return bool(pred(*args))
    except Exception:
        return False


def check(name: str, fn: Callable[..., Any]) -> bool:
    """Check a learner's function against exercise ``name`` and print the verdict."""
    passed, message = evaluate(name, fn)
    print(message)
    return passed


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
