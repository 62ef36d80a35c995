"""Exercises with instant feedback.

Two kinds of exercise, one registry of names:

- **write a function**: ``check("name", their_function)`` runs it against the reference on
  random inputs and says precisely what is wrong;
- **predict a number or pick an option** (a :class:`Question`): ``answer("name", value)``
  compares with the stored answer (numbers with a tolerance) and says why a typical wrong
  answer is wrong, or explains the right one.

An untouched exercise (a stub that raises ``NotImplementedError``, or ``answer(name, ...)``
with the literal ``...``) only prints a reminder and returns ``None``, so a notebook never
crashes on it and shows no stray ``False``.

For self-study, ``hint("name")`` prints a short hint and ``solution("name")`` prints the
reference solution (its source code; for a question, the answer and why).

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

A topic module gives each exercise a hint with ``Exercise(hint=...)`` /
``Question(hint=...)``, or in a module-level dict ``HINTS = {name: text}`` (and may give a
dedicated solution text with ``solution=...`` or ``SOLUTIONS = {name: text}``).

Example:
    >>> from nvp_edu.exercises import answer, check, hint, solution
    >>> check("affine_1d_log_det", lambda x, a, b: torch.log(torch.abs(a)).expand_as(x))  # doctest: +SKIP
    ✅ affine_1d_log_det: correct on 3 random test cases.
    >>> answer("uniform_bits_per_dim_half_cube", 9)  # doctest: +SKIP
    ❌ uniform_bits_per_dim_half_cube: 9 is not it. Hint: ...
    >>> hint("affine_1d_log_det")  # doctest: +SKIP
    💡 affine_1d_log_det: dy/dx = a everywhere; a volume factor is never negative.
"""
from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ._guard import TimeLimit, call, complex_note

# Topic modules register themselves on import; see _load_all().
EXERCISES: dict[str, "Exercise"] = {}
QUESTIONS: dict[str, "Question"] = {}
# Hints and solution texts given by topic modules as module-level HINTS / SOLUTIONS dicts.
_MODULE_HINTS: dict[str, str] = {}
_MODULE_SOLUTIONS: dict[str, str] = {}


@dataclass
class Exercise:
    """One exercise: a reference (the solution), how to draw inputs, and how to compare.

    ``make_inputs(generator)`` returns the positional arguments for one test case; across
    the ``cases`` every argument must take more than one value (a learner's function that
    ignores an argument must fail), which ``tests/test_exercises.py`` checks.
    ``hints`` maps a predicate on ``(inputs, expected, got)`` to a message; the first one
    that holds is shown when the answer is wrong. ``hint`` is the short hint that
    :func:`hint` prints on request (before any attempt); ``solution``, if given, is printed
    by :func:`solution` instead of the reference's source code.
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
    hint: str = ""
    solution: str = ""


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
        complex_note_ = complex_note(where, e, g)
        if complex_note_:
            return complex_note_
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
            stuck = _compare(got, call(fn, [_copy(v) for v in mixed]), 0.0) is None
        except (Exception, TimeLimit):
            continue  # e.g. shapes that do not fit together
        if moved and stuck:
            return (f"your result did not change when {names[k]} changed, but it should: "
                    f"does your function use {names[k]}, or a fixed value in its place?")
    return ""


def evaluate(name: str, fn: Callable[..., Any], seed: int = 0) -> tuple[bool, str]:
    """Run ``fn`` against exercise ``name``; ``(passed, message)``. Never raises for the learner."""
    _load_all()
    if name not in EXERCISES:
        what = " (it is a question: use answer(name, value))" if name in QUESTIONS else ""
        raise KeyError(f"no function exercise named {name!r}{what}; known: {sorted(EXERCISES)}")
    ex = EXERCISES[name]
    gen = torch.Generator().manual_seed(seed)
    for case in range(ex.cases):
        inputs = ex.make_inputs(gen)
        names = _arg_names(ex.reference, len(inputs))
        expected = ex.reference(*inputs)
        given = [_copy(i) for i in inputs]  # the learner's own copies: inputs stay intact
        try:
            got = call(fn, given)
        except NotImplementedError:
            return False, f"⏳ {name}: not attempted yet (replace the `raise NotImplementedError`)."
        except TimeLimit as limit:
            return False, f"❌ {name}: on test case {case}, {limit}"
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
        with warnings.catch_warnings():  # e.g. a predicate casting a complex answer
            warnings.simplefilter("ignore")
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
    """Import every topic module (they register on import) and collect HINTS / SOLUTIONS."""
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        _MODULE_HINTS.update(getattr(module, "HINTS", {}))
        _MODULE_SOLUTIONS.update(getattr(module, "SOLUTIONS", {}))


# Questions: predict a number, or pick one of a few options -----------------------------

NOT_ANSWERED = (Ellipsis, None)


@dataclass
class Question:
    """A question with one right answer: a number to predict, or an option to pick.

    ``correct`` is a number (``choices`` empty) or the key of the right option in
    ``choices`` (``{"a": "text of option a", ...}``). A number counts as right when
    ``|value - correct| <= atol + rtol * |correct|``. ``why`` explains the right answer
    (shown when it is given, and by :func:`solution`). ``feedback`` says why a typical
    wrong answer is wrong: for options, ``{key: reason}``; for numbers, ``[(value,
    reason), ...]``, each value matched with the same tolerance as the right answer.

    Example (a number): "predict the bits/dim of a model that is uniform on [0, 1)^D for
    256 levels": ``correct=8.0``, ``feedback=[(256, "that is L, not log2 L")]``.
    """

    name: str
    correct: float | str
    why: str
    hint: str = ""
    choices: dict[str, str] = field(default_factory=dict)
    feedback: Any = field(default_factory=list)
    rtol: float = 1e-2
    atol: float = 0.0
    topic: str = ""

    def is_right(self, value: Any) -> bool:
        if self.choices:
            return _choice_key(value) == self.correct
        return _close_number(float(value), float(self.correct), self.rtol, self.atol)


def register_question(question: Question) -> Question:
    """Add a question to the registry (topic modules call this at import time)."""
    if question.choices and question.correct not in question.choices:
        raise ValueError(f"{question.name}: correct answer {question.correct!r} is not one "
                         f"of the choices {sorted(question.choices)}")
    QUESTIONS[question.name] = question
    return question


def _choice_key(value: Any) -> str:
    return str(value).strip().strip(")").strip().lower()


def _close_number(value: float, target: float, rtol: float, atol: float) -> bool:
    return math.isfinite(value) and abs(value - target) <= atol + rtol * abs(target)


def _as_number(value: Any) -> float | None:
    try:
        return float(value)  # also a one-element tensor or numpy number
    except (TypeError, ValueError, RuntimeError):
        return None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def judge(name: str, value: Any) -> tuple[bool | None, str]:
    """``(verdict, message)`` for an answer to question ``name``; verdict None = no answer yet."""
    q = _question(name)
    if any(value is v for v in NOT_ANSWERED):
        return None, f"⏳ {name}: not answered yet (replace the `...` with your answer)."
    if q.choices:
        key = _choice_key(value)
        if key not in q.choices:
            return False, (f"❌ {name}: {value!r} is not one of the options "
                           f"{', '.join(repr(k) for k in q.choices)}.")
        if key == q.correct:
            return True, f"✅ {name}: right, {key}) {q.choices[key]}. {_capital(q.why)}"
        reason = dict(q.feedback).get(key, "") if isinstance(q.feedback, dict) else ""
        return False, f"❌ {name}: not {key}). " + (_capital(reason) or f"Hint: {q.hint}")
    number = _as_number(value)
    if number is None:
        return False, f"❌ {name}: the answer is a number; got {value!r}."
    if not math.isfinite(number):
        return False, (f"❌ {name}: {number} is not a number the question can have "
                       f"({'NaN: not a number' if math.isnan(number) else 'infinite'}); "
                       "check the calculation that gave it.")
    if q.is_right(number):
        return True, f"✅ {name}: right ({float(q.correct):.6g}). {_capital(q.why)}"
    for wrong, reason in q.feedback:
        if _close_number(number, float(wrong), q.rtol, q.atol):
            return False, f"❌ {name}: {number:.6g} is not it. {_capital(reason)}"
    side = "too high" if number > float(q.correct) else "too low"
    return False, f"❌ {name}: {number:.6g} is {side}. Hint: {q.hint}"


def answer(name: str, value: Any) -> bool | None:
    """Check an answer to question ``name`` (a number or an option key) and print why.

    Returns True or False; ``None`` while the notebook's stub still holds ``...``, so that
    an untouched cell shows only the reminder.

    Example:
        >>> answer("squeeze_log_det_question", ...)  # doctest: +SKIP
        ⏳ squeeze_log_det_question: not answered yet (replace the `...` with your answer).
    """
    verdict, message = judge(name, value)
    print(message)
    return verdict


# Self-study help: hint(name), solution(name) ---------------------------------------------

def _known() -> list[str]:
    """Registered exercises and questions, and names that only a module's HINTS give (a
    topic module may check an exercise with its own function instead of registering it)."""
    _load_all()
    return sorted(set(EXERCISES) | set(QUESTIONS) | set(_MODULE_HINTS) | set(_MODULE_SOLUTIONS))


def _question(name: str) -> Question:
    _load_all()
    if name not in QUESTIONS:
        what = " (it is a function exercise: use check(name, fn))" if name in EXERCISES else ""
        raise KeyError(f"no question named {name!r}{what}; known: {sorted(QUESTIONS)}")
    return QUESTIONS[name]


def _lookup(name: str) -> Exercise | Question | None:
    """The registered exercise or question; None for a name known only from HINTS/SOLUTIONS."""
    known = _known()
    if name not in known:
        raise KeyError(f"no exercise named {name!r}; known: {known}")
    return EXERCISES.get(name) or QUESTIONS.get(name)


def hint_text(name: str) -> str:
    """The hint of exercise or question ``name`` ("" if it has none); KeyError if unknown."""
    item = _lookup(name)
    return (item.hint if item else "") or _MODULE_HINTS.get(name, "")


def hint(name: str) -> None:
    """Print a short hint for exercise or question ``name`` (KeyError if there is none such)."""
    text = hint_text(name)
    print(f"💡 {name}: {text}" if text else f"{name}: no hint for this one, sorry.")


def _helpers(fn: Callable[..., Any]) -> list[Callable[..., Any]]:
    """Functions of ``fn``'s own module that ``fn`` calls (depth first, each once)."""
    found: list[Callable[..., Any]] = []

    def visit(f: Callable[..., Any]) -> None:
        names = set(f.__code__.co_names)
        for const in f.__code__.co_consts:  # nested functions and lambdas
            if inspect.iscode(const):
                names |= set(const.co_names)
        for n in sorted(names):
            g = f.__globals__.get(n)
            if (inspect.isfunction(g) and g.__module__ == f.__module__ and g is not fn
                    and g not in found):
                found.append(g)
                visit(g)

    visit(fn)
    return found


def solution_text(name: str) -> str:
    """The reference solution of ``name`` as text: a dedicated text if the topic module gives
    one, else the source code of the reference (after the module's own helpers it calls);
    for a question, the answer and why. KeyError if unknown."""
    item = _lookup(name)
    text = getattr(item, "solution", "") or _MODULE_SOLUTIONS.get(name, "")
    if text:
        return text
    if item is None:
        return "(no reference solution is stored for this one; its hint and the notebook's text are the help)"
    if isinstance(item, Question):
        right = (f"{item.correct}) {item.choices[item.correct]}" if item.choices
                 else f"{float(item.correct):.6g}")
        return f"Answer: {right}\n{_capital(item.why)}"
    fns = [*reversed(_helpers(item.reference)), item.reference]
    consts = {n: v for f in fns for n in f.__code__.co_names
              if isinstance(v := f.__globals__.get(n), (int, float)) and not isinstance(v, bool)}
    head = "".join(f"{n} = {v!r}\n" for n, v in sorted(consts.items()))
    return head + ("\n" if head else "") + "\n\n".join(inspect.getsource(f) for f in fns)


def solution(name: str) -> None:
    """Print the reference solution of exercise or question ``name`` (try it yourself first!).

    In instructor mode (``NVP_EDU_INSTRUCTOR=1`` or :func:`instructor_mode`) it refuses: it
    prints a line saying so, after checking that the name exists.
    """
    if solutions_locked():
        _lookup(name)  # an unknown name is still a KeyError
        print(refusal(name))
        return
    print(f"# reference solution of {name}\n{solution_text(name)}")


from .classroom import instructor_mode, predicted, refusal, solutions_locked  # noqa: E402
