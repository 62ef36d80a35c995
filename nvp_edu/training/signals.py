"""Ctrl-C and SIGTERM stop a run between two steps, after a checkpoint.

While the loop runs, the first SIGINT (Ctrl-C, a notebook's "interrupt kernel") or SIGTERM
(a batch system's or Colab's stop) only sets a flag; the loop sees it after the step in
flight, saves a checkpoint and raises :class:`TrainingInterrupted`, which says how to
resume. A second Ctrl-C interrupts at once (``KeyboardInterrupt``), for a step that hangs.
Signal handlers can only be set in the main thread; elsewhere nothing changes.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class TrainingInterrupted(RuntimeError):
    """The run was stopped by a signal between two steps (``signum``: which)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are appended to the yielded list instead of
    stopping the process; the handlers before the block are put back after it."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: at once

    for s in before:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in before.items():
            signal.signal(s, h)
