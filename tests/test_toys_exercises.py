"""Notebook 2's prediction and bug-hunt exercises: their checkers accept the right answer,
reject the typical wrong ones with the matching message, and treat an untouched stub kindly."""
import pytest
import torch

from nvp_edu.checks import check_flow
from nvp_edu.exercises import toy_flows as ex2
from nvp_edu.models import RealNVP2D
from nvp_edu.toys import fit_density, make_splits, nll


@pytest.fixture(scope="module")
def moons():
    return make_splits("moons", n_train=1000, n_val=10, n_test=500)


def test_untrained_nll_checker(moons, capsys):
    truth = ex2.untrained_flow_nll(moons.train, moons.test)
    log_std = torch.log(moons.train.double().std(dim=0)).sum().item()
    # the identity flow is the diagonal Gaussian N(mean, diag(std^2))
    gauss = torch.distributions.Normal(moons.train.double().mean(0), moons.train.double().std(0))
    assert truth == pytest.approx(-gauss.log_prob(moons.test.double()).sum(1).mean().item(), abs=1e-4)
    assert ex2.check_untrained_nll(truth + 0.005, moons.train, moons.test) is True
    assert ex2.check_untrained_nll(truth - log_std, moons.train, moons.test) is False
    assert "change of variables" in capsys.readouterr().out
    assert ex2.check_untrained_nll(truth - 2 * log_std, moons.train, moons.test) is False
    assert "wrong sign" in capsys.readouterr().out
    assert ex2.check_untrained_nll(None, moons.train, moons.test) is None
    assert ex2.check_untrained_nll("two", moons.train, moons.test) is False


def test_forgotten_log_det_checker(moons, capsys):
    torch.manual_seed(0)
    density, _ = fit_density(RealNVP2D(num_couplings=2, hidden=8), moons.train, steps=20,
                             progress=False)
    right = nll(density, moons.test)
    shift = -torch.log(density.standardize.std).sum().item()
    assert ex2.check_forgotten_log_det(right + shift, density, moons.test) is True
    assert ex2.check_forgotten_log_det(right - shift, density, moons.test) is False
    assert "wrong direction" in capsys.readouterr().out
    assert ex2.check_forgotten_log_det(right, density, moons.test) is False
    assert ex2.check_forgotten_log_det(None, density, moons.test) is None


def test_buggy_coupling_fails_only_the_log_det_check():
    report = check_flow(ex2.coupling_pair(ex2.BuggyCoupling), torch.randn(16, 2))
    assert report.inverse.passed and not report.log_det.passed


def test_coupling_fix_checker(capsys):
    class Masked(ex2.BuggyCoupling):  # the intended repair
        def _s_t(self, x):
            s, t = super()._s_t(x)
            return s * (1 - self.mask), t

    class Zeroed(ex2.BuggyCoupling):  # passes the checks by changing the map: rejected
        def _s_t(self, x):
            s, t = super()._s_t(x)
            return torch.zeros_like(s), t

    class Stub(ex2.BuggyCoupling):
        def _s_t(self, x):
            raise NotImplementedError

    assert ex2.check_coupling_fix(Masked) is True
    assert ex2.check_coupling_fix(ex2.BuggyCoupling) is False
    assert ex2.check_coupling_fix(Zeroed) is False
    assert "different map" in capsys.readouterr().out
    assert ex2.check_coupling_fix(Stub) is None
    assert ex2.check_coupling_fix(Masked(torch.ones(1, 2))) is False  # an instance, not the class


def test_every_notebook_2_exercise_has_a_hint():
    names = {"standardized_log_prob", "mixture_log_prob", "affine_coupling_2d", "untrained_nll",
             "forgotten_log_det", "coupling_bug", "leak_bound"}
    assert names <= set(ex2.HINTS) and all(len(h) > 20 for h in ex2.HINTS.values())


def test_leak_bound_checker(capsys):
    import math
    assert ex2.leak_bound(0.0005, 0.1752) == pytest.approx(
        0.0005 * math.log(0.0005 / 0.1752) + 0.9995 * math.log(0.9995 / 0.8248))
    assert ex2.leak_bound(0.3, 0.3) == 0.0
    good = ex2.leak_bound(0.0005, 0.1752)
    assert ex2.check_leak_bound(good, 0.0005, 0.1752) is True
    assert ex2.check_leak_bound(ex2.leak_bound(0.1752, 0.0005), 0.0005, 0.1752) is False
    assert "swapped" in capsys.readouterr().out
    assert ex2.check_leak_bound(good, 0.05, 17.52) is False  # percentages, not fractions
    assert ex2.check_leak_bound(None, 0.0005, 0.1752) is None
