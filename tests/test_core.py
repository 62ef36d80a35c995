"""The flow protocol, the vector model and the checks (float64 autograd oracle)."""
import pytest
import torch

from conftest import perturb
from nvp_edu.checks import autograd_log_det, check_flow, check_inverse, check_log_det
from nvp_edu.flows import AffineCoupling, AdditiveCoupling, Flow, Sequential
from nvp_edu.masks import alternating_vector_mask
from nvp_edu.models import RealNVP2D
from nvp_edu.prior import standard_normal_log_prob


def test_sequential_adds_log_dets_and_inverts_backwards():
    a = perturb(AffineCoupling(alternating_vector_mask(3), hidden=16))
    b = perturb(AffineCoupling(alternating_vector_mask(3, invert=True), hidden=16))
    x = torch.randn(7, 3, dtype=torch.float64)
    a, b = a.double(), b.double()
    seq = Sequential(a, b)
    y, ld = seq(x)
    ya, lda = a(x)
    yb, ldb = b(ya)
    torch.testing.assert_close(y, yb)
    torch.testing.assert_close(ld, lda + ldb)
    torch.testing.assert_close(seq.inverse(y), x)
    assert len(seq.trajectory(x)) == 3


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("cls", [AffineCoupling, AdditiveCoupling])
def test_vector_couplings_against_autograd(cls, invert):
    layer = perturb(cls(alternating_vector_mask(4, invert=invert), hidden=16), 0.5)
    report = check_flow(layer, torch.randn(5, 4))
    assert report.passed, str(report)
    assert report.log_det.max_error < 1e-10


def test_realnvp2d_log_prob_is_prior_plus_log_det():
    model = perturb(RealNVP2D(num_couplings=4, hidden=32), 0.3)
    x = torch.randn(6, 2)
    z, ld = model(x)
    torch.testing.assert_close(model.log_prob(x), standard_normal_log_prob(z) + ld)
    report = check_flow(model, x)
    assert report.passed, str(report)
    assert (model.inverse(z) - x).abs().max() < 1e-5


def test_realnvp2d_identity_at_init_and_sampling_shapes():
    model = RealNVP2D()
    x = torch.randn(10, 2)
    z, ld = model(x)
    torch.testing.assert_close(z, x)  # zero-initialized last layers: identity map
    assert ld.abs().max() == 0
    assert model.sample(13).shape == (13, 2)
    cold = model.sample(2000, temperature=0.5)
    assert 0.4 < cold.std().item() < 0.6


@pytest.mark.parametrize("shape", [(4, 3), (4,), (4, 2, 1)])
def test_realnvp2d_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"needs input of shape \(N, 2\); got shape"):
        RealNVP2D()(torch.randn(*shape))


class _Scale(Flow):
    """y = 2x with a configurable (possibly wrong) log-det."""

    def __init__(self, log_det_fn, inverse_factor=0.5):
        super().__init__()
        self.log_det_fn, self.inverse_factor = log_det_fn, inverse_factor

    def forward(self, x):
        return 2 * x, self.log_det_fn(x)

    def inverse(self, y):
        return y * self.inverse_factor


def test_checks_flag_broken_layers():
    x = torch.randn(4, 3)
    right = torch.log(torch.tensor(2.0)) * 3
    good = _Scale(lambda x: right.expand(x.shape[0]).to(x))
    assert check_flow(good, x).passed
    wrong_sign = check_log_det(_Scale(lambda x: -right.expand(x.shape[0]).to(x)), x)
    assert not wrong_sign.passed and "sign" in wrong_sign.message
    missing = check_log_det(_Scale(lambda x: x.new_zeros(x.shape[0])), x)
    assert not missing.passed and "forget the sum of s" in missing.message
    assert "off by -2.08 nats on sample" in missing.message
    bad_inverse = check_inverse(_Scale(lambda x: right.expand(x.shape[0]).to(x), 1.0), x)
    assert not bad_inverse.passed and "differs from x" in bad_inverse.message


def test_checks_flag_a_nan_log_det():
    nan = check_log_det(_Scale(lambda x: torch.full((x.shape[0],), float("nan")).to(x)),
                        torch.randn(2, 3))
    assert not nan.passed and "absolute value" in nan.message


def test_checks_flag_a_non_invertible_map():
    class Collapse(Flow):
        def forward(self, x):
            return torch.cat([x[:, :1], x[:, :1]], dim=1), x.new_zeros(x.shape[0])

        def inverse(self, y):
            return y

    result = check_log_det(Collapse(), torch.randn(3, 2))
    assert not result.passed and "not invertible" in result.message
    assert torch.isinf(autograd_log_det(Collapse(), torch.randn(1, 2))).all()
