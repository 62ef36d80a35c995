"""Every registered exercise accepts its solution and rejects each typical mistake."""
import pytest

from nvp_edu.exercises import EXERCISES, _load_all, evaluate

_load_all()


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes(name):
    passed, message = evaluate(name, EXERCISES[name].reference)
    assert passed, message


@pytest.mark.parametrize("name", sorted(n for n, e in EXERCISES.items() if e.mistakes))
def test_mistakes_are_caught(name):
    for wrong in EXERCISES[name].mistakes:
        passed, message = evaluate(name, wrong)
        assert not passed and message.startswith("❌"), message


def test_untouched_stub_does_not_crash():
    def stub(*args):
        raise NotImplementedError

    for name in EXERCISES:
        passed, message = evaluate(name, stub)
        assert not passed and "not attempted yet" in message
