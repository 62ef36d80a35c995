"""Every registered exercise accepts its solution and rejects each typical mistake."""
import inspect
import math

import pytest
import torch

from nvp_edu.exercises import EXERCISES, _load_all, check, evaluate

_load_all()

# Arguments a correct answer may ignore: log|dy/dx| of y = a x + b does not depend on b.
IRRELEVANT = {("affine_1d_log_det", 2)}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes(name):
    passed, message = evaluate(name, EXERCISES[name].reference)
    assert passed, message


@pytest.mark.parametrize("name", sorted(n for n, e in EXERCISES.items() if e.mistakes))
def test_mistakes_are_caught(name):
    for wrong in EXERCISES[name].mistakes:
        passed, message = evaluate(name, wrong)
        assert not passed and message.startswith("❌"), message
        label = getattr(wrong, "__name__", "")
        if label.startswith("_mutates_"):  # _mutates_x(__where): right value, but x changed
            arg = label[len("_mutates_"):].split("__")[0]
            assert f"changed its input {arg} in place" in message, message


def test_untouched_stub_does_not_crash():
    def stub(*args):
        raise NotImplementedError

    for name in EXERCISES:
        passed, message = evaluate(name, stub)
        assert not passed and "not attempted yet" in message


def test_check_of_an_untouched_stub_returns_nothing_a_notebook_would_display(capsys):
    def stub(*args):
        raise NotImplementedError

    assert check("coupling_forward", stub) is None
    assert "not attempted yet" in capsys.readouterr().out
    assert check("coupling_forward", EXERCISES["coupling_forward"].reference) is True


# Issue 13, fault D: arguments that never varied, inputs changed in place, dtype silence --

def _cases(name, seed=0):
    ex = EXERCISES[name]
    gen = torch.Generator().manual_seed(seed)
    return [ex.make_inputs(gen) for _ in range(ex.cases)]  # as evaluate() draws them


def _same(a, b):
    if callable(a) and not isinstance(a, torch.Tensor):
        return False  # a fresh function per case (e.g. st_net with new weights)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return a.shape == b.shape and bool((a == b).all())
    return a == b


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_every_argument_varies_across_cases(name):
    cases = _cases(name)
    assert len(cases) >= 2
    for k in range(len(cases[0])):
        assert not all(_same(c[k], cases[0][k]) for c in cases[1:]), (
            f"{name}: argument {k} is the same in every test case, so a function that "
            "ignores it (a hard-coded value) would pass")


def _freeze(name, k):
    """A 'solution' that ignores argument k and uses a fixed value of it instead."""
    ex = EXERCISES[name]
    fixed = ex.make_inputs(torch.Generator().manual_seed(4242))[k]

    def wrong(*args):
        return ex.reference(*(fixed if j == k else a for j, a in enumerate(args)))
    return wrong


@pytest.mark.parametrize("name, k", [(n, k) for n in sorted(EXERCISES)
                                     for k in range(len(_cases(n)[0]))
                                     if (n, k) not in IRRELEVANT])
def test_ignoring_any_argument_is_rejected(name, k):
    passed, message = evaluate(name, _freeze(name, k))
    assert not passed and message.startswith("❌"), message


def test_an_irrelevant_argument_may_be_ignored():
    for name, k in IRRELEVANT:
        passed, message = evaluate(name, _freeze(name, k))
        assert passed, message


def _tensor_args(name):
    return [(name, k) for k, v in enumerate(_cases(name)[0]) if isinstance(v, torch.Tensor)]


@pytest.mark.parametrize("name, k", [nk for n in sorted(EXERCISES) for nk in _tensor_args(n)])
def test_changing_any_input_in_place_is_rejected_even_with_the_right_value(name, k):
    ex = EXERCISES[name]
    arg = list(inspect.signature(ex.reference).parameters)[k]

    def sneaky(*args):
        result = ex.reference(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        args[k].add_(1) if args[k].dtype != torch.bool else args[k].logical_not_()
        return result

    passed, message = evaluate(name, sneaky)
    assert not passed and f"your function changed its input {arg} in place" in message, message


def test_half_precision_result_names_the_dtypes(capsys):
    from nvp_edu.exercises.images import logit_log_det
    passed = check("logit_log_det", lambda x, alpha: logit_log_det(x.half(), alpha))
    out = capsys.readouterr().out
    assert not passed and "off by" in out
    assert "your result is torch.float16, the reference's is torch.float64" in out
    assert "lower precision" in out


def test_same_dtype_answers_get_no_dtype_note():
    passed, message = evaluate("logit_log_det", lambda x, alpha: -x.sum(1))
    assert not passed and "Note: your result is" not in message


@pytest.mark.parametrize("name, wrong, arg", [
    ("logit_log_det", lambda x, alpha: EXERCISES["logit_log_det"].reference(x, 0.05), "alpha"),
    ("cifar_bits_per_dim",
     lambda lp, ld, D, levels: (-(lp + ld) + 3072 * math.log(levels)) / (3072 * math.log(2)), "D"),
    ("batchnorm_log_det", lambda x, eps: EXERCISES["batchnorm_log_det"].reference(x, 1e-5), "eps"),
])
def test_a_hard_coded_argument_gets_a_hint_naming_it(name, wrong, arg):
    passed, message = evaluate(name, wrong)
    assert not passed and f"does your function use {arg}" in message, message
