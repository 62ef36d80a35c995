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


# Self-study help (issue 11): hint(name), solution(name), answer(name, value) ----------------

from nvp_edu.exercises import (QUESTIONS, Question, answer, hint, hint_text, judge,  # noqa: E402
                               solution, solution_text)

ALL_NAMES = sorted(set(EXERCISES) | set(QUESTIONS))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_exercise_and_question_has_a_hint(name, capsys):
    assert hint_text(name).strip(), f"{name} has no hint (Exercise(hint=...) or HINTS)"
    hint(name)
    assert hint_text(name) in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_printed_solution_is_the_reference(name, capsys):
    """Exec the printed text in the topic module's namespace stripped of the functions it
    defines: what comes out must pass the exercise (so the text is complete and correct)."""
    ex = EXERCISES[name]
    solution(name)
    printed = capsys.readouterr().out
    text = solution_text(name)
    assert text in printed
    if ex.solution:  # a dedicated text, not code: nothing to run
        return
    module = inspect.getmodule(ex.reference)
    namespace = dict(vars(module))
    defined = [line.split("(")[0][4:] for line in text.splitlines() if line.startswith("def ")]
    assert ex.reference.__name__ in defined
    for fn_name in defined:
        namespace.pop(fn_name, None)
    exec(compile(text, f"<solution of {name}>", "exec"), namespace)
    fn = namespace[ex.reference.__name__]
    assert fn is not ex.reference
    passed, message = evaluate(name, fn)
    assert passed, message


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_every_question_accepts_its_answer_and_rejects_its_typical_wrong_ones(name):
    q = QUESTIONS[name]
    assert q.why.strip() and q.feedback, f"{name}: explain the answer and the typical mistakes"
    assert judge(name, q.correct)[0] is True
    assert f"Answer: {q.correct}" in solution_text(name) or \
        f"Answer: {float(q.correct):.6g}" in solution_text(name)
    wrong = list(q.feedback) if q.choices else [v for v, _ in q.feedback]
    for value in wrong:
        verdict, message = judge(name, value)
        assert verdict is False and message.startswith("❌"), (value, message)
    if q.choices:
        assert set(q.feedback) == set(q.choices) - {q.correct}, \
            f"{name}: say why each wrong option is wrong"


def test_answer_of_an_untouched_stub_prints_a_reminder_and_returns_nothing(capsys):
    assert answer("coupling_predict_log_det", ...) is None
    assert "not answered yet" in capsys.readouterr().out
    assert answer("coupling_predict_log_det", 1.5) is True
    assert "✅" in capsys.readouterr().out


def test_answer_to_a_number_question():
    assert judge("coupling_predict_log_det", torch.tensor(1.5001))[0] is True  # a tensor is fine
    verdict, message = judge("coupling_predict_log_det", 3)
    assert verdict is False and "kept ones pass through" in message  # the stored feedback
    verdict, message = judge("coupling_predict_log_det", 2.2)
    assert verdict is False and "too high" in message and "Hint:" in message
    verdict, message = judge("coupling_predict_log_det", "one and a half")
    assert verdict is False and "is a number" in message
    assert judge("coupling_predict_log_det", float("nan"))[0] is False


def test_answer_to_a_multiple_choice_question():
    assert judge("sinh_flow_which_check", " B) ")[0] is True  # case, spaces, ")" tolerated
    verdict, message = judge("sinh_flow_which_check", "e")
    assert verdict is False and "not one of the options" in message
    verdict, message = judge("sinh_flow_which_check", "a")
    assert verdict is False and "asinh undoes sinh" in message


def test_a_question_whose_answer_is_not_an_option_is_refused():
    from nvp_edu.exercises import register_question
    with pytest.raises(ValueError, match="not one of the choices"):
        register_question(Question(name="broken", correct="z", why="-", hint="-",
                                   choices={"a": "x", "b": "y"}))


@pytest.mark.parametrize("fn", [hint, solution, hint_text, solution_text])
def test_unknown_names_raise_a_key_error_listing_the_known_ones(fn):
    with pytest.raises(KeyError, match="coupling_predict_log_det") as err:
        fn("no_such_exercise")
    assert "affine_1d_log_det" in str(err.value)


def test_check_and_answer_say_which_kind_a_name_is():
    with pytest.raises(KeyError, match="use answer"):
        evaluate("coupling_predict_log_det", lambda: None)
    with pytest.raises(KeyError, match="use check"):
        judge("affine_1d_log_det", 1.0)
    with pytest.raises(KeyError):
        answer("no_such_question", 1.0)


def test_module_level_hints_and_solutions_are_collected(monkeypatch):
    from nvp_edu import exercises
    monkeypatch.setitem(exercises._MODULE_HINTS, "cifar_hflip", "module hint")
    monkeypatch.setitem(exercises._MODULE_SOLUTIONS, "cifar_hflip", "x.flip(3)")
    monkeypatch.setattr(EXERCISES["cifar_hflip"], "hint", "")
    assert hint_text("cifar_hflip") == "module hint"
    assert solution_text("cifar_hflip") == "x.flip(3)"


def test_a_name_known_only_from_a_modules_hints_has_a_hint_and_a_solution_line(monkeypatch, capsys):
    """A topic module may check an exercise with its own function (not registered) and
    still give it a hint in HINTS: hint() and solution() must know the name."""
    from nvp_edu import exercises
    monkeypatch.setitem(exercises._MODULE_HINTS, "module_only_exercise", "look at the mask")
    hint("module_only_exercise")
    assert "look at the mask" in capsys.readouterr().out
    solution("module_only_exercise")
    assert "no reference solution" in capsys.readouterr().out


def test_bug_hunt_layers_fail_exactly_the_check_the_questions_say():
    from nvp_edu.checks import check_flow
    from nvp_edu.exercises.coupling import _fl_all_of_s, _inv_wrong_mask, layer_from_functions

    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    verdict = {"a": (False, True), "b": (True, False), "c": (False, False), "d": (True, True)}
    for fn, question in [(dict(forward=_fl_all_of_s), "coupling_bug_log_det_which_check"),
                         (dict(inverse=_inv_wrong_mask), "coupling_bug_inverse_which_check")]:
        report = check_flow(layer_from_functions(**fn), x)
        assert (report.inverse.passed, report.log_det.passed) == verdict[QUESTIONS[question].correct]
    assert check_flow(layer_from_functions(), x).passed


def test_the_sinh_bug_fails_only_the_log_det_check():
    from nvp_edu.checks import check_flow
    from nvp_edu.flows import Flow

    class SinhFlow(Flow):  # as in notebook 1
        def forward(self, x):
            y = torch.sinh(x)
            return y, torch.log(torch.cosh(y)).sum(dim=1)

        def inverse(self, y):
            return torch.asinh(y)

    report = check_flow(SinhFlow(), torch.randn(4, 3, dtype=torch.float64))
    assert report.inverse.passed and not report.log_det.passed
    assert QUESTIONS["sinh_flow_which_check"].correct == "b"


def test_every_name_a_notebook_uses_is_registered():
    """A typo in a notebook's check("...")/answer("...") would only show as a KeyError there."""
    import json
    import re
    from pathlib import Path

    from nvp_edu.exercises import _known

    calls = re.compile(r'\b(check|answer|hint|solution)\(\s*"([A-Za-z0-9_]+)"')
    wrong_kind = {"check": QUESTIONS, "answer": EXERCISES}
    problems = []
    for path in sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for kind, name in calls.findall(source):
            if name not in _known() or name in wrong_kind.get(kind, {}):
                problems.append(f"{path.name}: {kind}({name!r})")
    assert not problems, problems
