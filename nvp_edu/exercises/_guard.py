"""Running a learner's function safely for :func:`nvp_edu.exercises.check`.

Not a topic module (it registers no exercise): the time limit, the global state a
learner's code may change (torch's default dtype, the grad mode), and a complex result
where the answer is real.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

import torch

TIME_LIMIT_S = 10.0  # seconds one call of the learner's function may take


class TimeLimit(Exception):
    """The learner's function ran longer than ``TIME_LIMIT_S`` (an endless loop?)."""


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Run the learner's code with a time limit (POSIX, main thread: ``SIGALRM``), and put
    back what it may change globally: torch's default dtype and the grad mode."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    timer = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if timer:
        def expired(signum: int, frame: Any) -> None:
            raise TimeLimit(f"your function was still running after {TIME_LIMIT_S:g} s and "
                            "was stopped: an endless loop?")
        before = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    try:
        yield
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, before)
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)


def call(fn: Callable[..., Any], args: list | tuple) -> Any:
    """``fn(*args)`` under :func:`guarded`."""
    with guarded():
        return fn(*args)


def complex_note(where: str, e: Any, g: Any) -> str | None:
    """A complex result where the reference is real: never cast (that would drop the
    imaginary part and could pass a wrong answer, e.g. the log of a negative scale)."""
    is_complex = isinstance(g, complex) or (isinstance(g, torch.Tensor) and g.is_complex())
    if not is_complex or (isinstance(e, torch.Tensor) and e.is_complex()):
        return None
    return (f"{where} is complex ({g.dtype if isinstance(g, torch.Tensor) else 'complex'}), "
            "but the answer is real: a log or square root of a negative number somewhere? "
            "(a volume factor is |det|, never negative)")
