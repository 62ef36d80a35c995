"""Issue 20: the exercise checker's holes the hostile probe found, each reproduced first."""
import math
import time

import torch

from nvp_edu.exercises import _guard
from nvp_edu.exercises import answer, check


def right(x, a, b):
    return torch.log(torch.abs(a)).expand_as(x)


def test_a_complex_answer_is_not_silently_cast_to_real(capsys):
    # log of a negative scale, computed in complex: its real part equals log|a|, so a cast
    # that drops the imaginary part marked this wrong answer correct before the fix
    def complex_log(x, a, b):
        return torch.log(a.to(torch.complex128)).expand_as(x)

    assert check("affine_1d_log_det", complex_log) is False
    assert "the result is complex (torch.complex128), but the answer is real" in \
        capsys.readouterr().out
    assert check("affine_1d_log_det", right) is True


def test_an_endless_loop_is_stopped_with_a_message(capsys, monkeypatch):
    monkeypatch.setattr(_guard, "TIME_LIMIT_S", 0.3)

    def endless(x, a, b):
        while True:
            pass

    start = time.perf_counter()
    assert check("affine_1d_log_det", endless) is False
    assert time.perf_counter() - start < 5
    assert "was still running after 0.3 s and was stopped: an endless loop?" in \
        capsys.readouterr().out


def test_check_leaks_no_global_state():
    def careless(x, a, b):
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        return right(x, a, b)

    try:
        assert check("affine_1d_log_det", careless) is True
        assert torch.get_default_dtype() == torch.float32
        assert torch.is_grad_enabled()
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)


def test_answer_nan_says_it_is_not_a_number(capsys):
    assert answer("density_of_3x_at_0", math.nan) is False
    out = capsys.readouterr().out
    assert "nan is not a number the question can have (NaN: not a number)" in out
    assert "too low" not in out and "too high" not in out
    assert answer("density_of_3x_at_0", math.inf) is False
    assert "(infinite)" in capsys.readouterr().out
