"""Exercises with instant feedback.

A notebook cell asks the learner to write a function; ``check("name", their_function)``
runs it against the reference on random inputs and says precisely what is wrong. An
untouched exercise (the stub raises ``NotImplementedError``) only prints a reminder, so a
notebook never crashes on it.

What the checker catches besides wrong values:

- an argument the function ignores (a hard-coded ``0.05`` instead of ``alpha``, ``3072``
  instead of ``D``): every exercise draws inputs that vary **every** argument across its
  test cases (the test suite enforces this), and a wrong answer whose value does not move
  when one argument changes gets the hint "does your function use alpha?";
- a function that changes its input in place (``x *= 2``, ``y.log_()``): caught even when
  the returned value is right ("your function changed its input x in place");
- a result in another dtype than the reference (e.g. float16 instead of float64): the
  message names both dtypes, since lost precision explains a small difference.

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
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

# Topic modules register themselves on import; see _load_all().
EXERCISES: dict[str, "Exercise"] = {}


@dataclass
class Exercise:
    """One exercise: a reference (the solution), how to draw inputs, and how to compare.

    ``make_inputs(generator)`` returns the positional arguments for one test case; across
    the ``cases`` every argument must take more than one value (a learner's function that
    ignores an argument must fail), which ``tests/test_exercises.py`` checks.
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


def _dtype_note(e: torch.Tensor, g: torch.Tensor) -> str:
    if g.dtype == e.dtype:
        return ""
    return (f". Note: your result is {g.dtype}, the reference's is {e.dtype}"
            + (": lower precision can explain a small difference; keep the inputs' dtype "
               "(no .half()/.float()/.to(...) on the way)" if g.is_floating_point() else ""))


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
            return (f"{where} has shape {tuple(g.shape)}, expected {tuple(e.shape)}"
                    + _dtype_note(e, g))
        if not torch.isfinite(g).all():
            return f"{where} contains NaN or inf" + _dtype_note(e, g)
        err = (g.to(e.dtype) - e).abs()
        if err.max() > atol:
            idx = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
            return (f"{where} is off by {err.max().item():.3g} at index {idx} "
                    f"(expected {e[idx].item():.4f}, got {g[idx].item():.4f})"
                    + _dtype_note(e, g))
    return None


def _arg_names(reference: Callable[..., Any], n: int) -> list[str]:
    """The reference's parameter names (what the notebook's stub calls them)."""
    try:
        names = [p.name for p in inspect.signature(reference).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return (names + [f"argument {k}" for k in range(len(names), n)])[:n]


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool((torch.eq(a, b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _changed_in_place(before: tuple, after: list) -> list[int]:
    """Positions of tensor arguments whose values the learner's function changed."""
    return [k for k, (a, b) in enumerate(zip(before, after))
            if isinstance(a, torch.Tensor) and not _same_tensor(a, b)]


def _ignored_argument(ex: "Exercise", fn: Callable[..., Any], inputs: tuple, expected: Any,
                      got: Any, names: list[str], seed: int) -> str:
    """A hint when ``fn``'s answer does not move with an argument the reference depends on.

    Each argument in turn is replaced by the same argument of another draw; if the
    reference's answer changes and the learner's does not, that argument is being ignored.
    """
    other = ex.make_inputs(torch.Generator().manual_seed(seed + 7919))
    for k in range(len(inputs)):
        mixed = tuple(other[k] if j == k else v for j, v in enumerate(inputs))
        try:
            moved = _compare(expected, ex.reference(*mixed), ex.atol) is not None
            stuck = _compare(got, fn(*[_copy(v) for v in mixed]), 0.0) is None
        except Exception:
            continue  # e.g. shapes that do not fit together
        if moved and stuck:
            return (f"your result did not change when {names[k]} changed, but it should: "
                    f"does your function use {names[k]}, or a fixed value in its place?")
    return ""


def evaluate(name: str, fn: Callable[..., Any], seed: int = 0) -> tuple[bool, str]:
    """Run ``fn`` against exercise ``name``; ``(passed, message)``. Never raises for the learner."""
    _load_all()
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; known: {sorted(EXERCISES)}")
    ex = EXERCISES[name]
    gen = torch.Generator().manual_seed(seed)
    for case in range(ex.cases):
        inputs = ex.make_inputs(gen)
        names = _arg_names(ex.reference, len(inputs))
        expected = ex.reference(*inputs)
        given = [_copy(i) for i in inputs]  # the learner's own copies: inputs stay intact
        try:
            got = fn(*given)
        except NotImplementedError:
            return False, f"⏳ {name}: not attempted yet (replace the `raise NotImplementedError`)."
        except Exception as err:  # the learner's code crashed: say how, don't crash the notebook
            return False, f"❌ {name}: your function raised {type(err).__name__}: {err}"
        changed = _changed_in_place(inputs, given)
        if changed:
            arg = names[changed[0]]
            return False, (f"❌ {name}: on test case {case}, your function changed its input "
                           f"{arg} in place. The caller's {arg} must stay as it was: use "
                           f"out-of-place operations ({arg} = {arg} * 2, not {arg} *= 2 or "
                           f"{arg}.mul_(2)), or work on {arg}.clone().")
        problem = _compare(expected, got, ex.atol)
        if problem is not None:
            hint = next((msg for pred, msg in ex.hints if _safe(pred, inputs, expected, got)), "")
            if not hint:
                hint = _ignored_argument(ex, fn, inputs, expected, got, names, seed + case)
            return False, f"❌ {name}: on test case {case}, {problem}." + (f" Hint: {hint}" if hint else "")
    return True, f"✅ {name}: correct on {ex.cases} random test cases."


def _safe(pred: Callable, *args: Any) -> bool:
    try:
        return bool(pred(*args))
    except Exception:
        return False


def check(name: str, fn: Callable[..., Any]) -> bool | None:
    """Check a learner's function against exercise ``name`` and print the verdict.

    Returns True or False; ``None`` for an untouched stub, so that a notebook cell ending
    in ``check(...)`` shows only the reminder, not a stray ``False``.
    """
    passed, message = evaluate(name, fn)
    print(message)
    return None if message.startswith("⏳") else passed


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
