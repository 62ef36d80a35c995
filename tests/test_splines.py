"""Rational-quadratic splines (nvp_edu.splines): exact log-dets, inverse, monotone, identity."""
import pytest
import torch

from conftest import perturb
from nvp_edu.checks import check_flow
from nvp_edu.splines import (SplineCoupling, SplineFlow2D, _knots, _slopes,
                             rational_quadratic_spline)
from nvp_edu.toys import fit_density, make_splits, nll

B = 3.0
K = 6


def random_params(shape, scale=2.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(*shape, K, generator=g, dtype=dtype)
    h = scale * torch.randn(*shape, K, generator=g, dtype=dtype)
    d = scale * torch.randn(*shape, K - 1, generator=g, dtype=dtype)
    return w, h, d


def elementwise_derivative(fn, x):
    """dy_i/dx_i of an elementwise map, by autograd (the Jacobian is diagonal)."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x)
    return grad


def test_log_det_matches_autograd_and_inverse_undoes_forward():
    x = torch.linspace(-4.5, 4.5, 301, dtype=torch.float64)  # tails on both sides too
    w, h, d = random_params(x.shape)
    y, log_det = rational_quadratic_spline(x, w, h, d, bound=B)
    deriv = elementwise_derivative(lambda v: rational_quadratic_spline(v, w, h, d, bound=B)[0], x)
    torch.testing.assert_close(log_det, torch.log(deriv), atol=1e-10, rtol=0)

    x_back, inv_log_det = rational_quadratic_spline(y, w, h, d, inverse=True, bound=B)
    torch.testing.assert_close(x_back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(inv_log_det, -log_det, atol=1e-10, rtol=0)
    inv_deriv = elementwise_derivative(
        lambda v: rational_quadratic_spline(v, w, h, d, inverse=True, bound=B)[0], y)
    torch.testing.assert_close(inv_log_det, torch.log(inv_deriv), atol=1e-10, rtol=0)


def test_spline_is_monotone_and_maps_the_interval_onto_itself():
    x = torch.linspace(-B, B, 2001, dtype=torch.float64)
    w, h, d = (p[:1].expand(2001, -1) for p in random_params((1,), scale=3.0))
    y, log_det = rational_quadratic_spline(x, w, h, d, bound=B)
    assert bool((y[1:] > y[:-1]).all()), "the spline must be strictly increasing"
    assert y[0].item() == -B and y[-1].item() == B
    assert bool(torch.isfinite(log_det).all())


def test_zero_parameters_give_the_identity():
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    zeros = torch.zeros(1001, K, dtype=torch.float64)
    y, log_det = rational_quadratic_spline(x, zeros, zeros, zeros[:, 1:], bound=B)
    assert (y - x).abs().max().item() < 1e-12
    assert log_det.abs().max().item() < 1e-12
    x_back, _ = rational_quadratic_spline(x, zeros, zeros, zeros[:, 1:], inverse=True, bound=B)
    assert (x_back - x).abs().max().item() < 1e-12


def test_tails_are_the_identity_exactly():
    x = torch.tensor([-100.0, -3.5, -3.0001, 3.0001, 7.0, 1e6], dtype=torch.float64)
    w, h, d = random_params(x.shape)
    for inverse in (False, True):
        y, log_det = rational_quadratic_spline(x, w, h, d, inverse=inverse, bound=B)
        assert torch.equal(y, x) and torch.equal(log_det, torch.zeros_like(x))


def test_inputs_exactly_on_the_knots():
    w, h, d = random_params((1,))
    xk, _ = _knots(w, B, 1e-3)
    yk, _ = _knots(h, B, 1e-3)
    slopes = _slopes(d)
    n = K + 1
    x = xk[0]  # all K + 1 knots, ends -B and B included
    rep = lambda p: p.expand(n, -1)  # noqa: E731 - the same spline for every entry
    y, log_det = rational_quadratic_spline(x, rep(w), rep(h), rep(d), bound=B)
    torch.testing.assert_close(y, yk[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(log_det, torch.log(slopes[0]), atol=1e-10, rtol=0)
    assert abs(slopes[0, 0].item() - 1) < 1e-15 and abs(slopes[0, -1].item() - 1) < 1e-15
    x_back, inv_log_det = rational_quadratic_spline(yk[0], rep(w), rep(h), rep(d), inverse=True,
                                                    bound=B)
    torch.testing.assert_close(x_back, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(inv_log_det, -torch.log(slopes[0]), atol=1e-10, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_are_finite_everywhere(inverse, dtype):
    """Tails, knots, ends and extreme network outputs: no NaN/inf reaches a gradient."""
    x = torch.cat([torch.linspace(-6, 6, 97), torch.tensor([-B, B, 0.0])]).to(dtype)
    w, h, d = (p.to(dtype) for p in random_params(x.shape, scale=20.0))  # very uneven bins
    params = [t.clone().requires_grad_(True) for t in (x, w, h, d)]
    y, log_det = rational_quadratic_spline(*params, inverse=inverse, bound=B)
    (y.sum() + log_det.sum()).backward()
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(log_det).all())
    for p in params:
        assert bool(torch.isfinite(p.grad).all())


def test_float32_inverse_is_accurate_with_uneven_bins():
    """With very uneven bins the slope inside a bin can drop to ~1e-7: there x is not
    determined by a float32 y to better than (rounding of y) / slope, so the test measures
    the error where it is well defined, in y, and in x weighted by the slope."""
    x = torch.linspace(-B, B, 1001)
    w, h, d = (p.float() for p in random_params(x.shape, scale=4.0))
    y, log_det = rational_quadratic_spline(x, w, h, d, bound=B)
    x_back, _ = rational_quadratic_spline(y, w, h, d, inverse=True, bound=B)
    y_again, _ = rational_quadratic_spline(x_back, w, h, d, bound=B)
    assert (y_again - y).abs().max().item() < 1e-5
    # first order: an error dx in x is an error slope * dx in y
    assert ((x_back - x).abs() * log_det.exp()).max().item() < 1e-5
    steep = log_det.exp() > 0.1
    assert steep.sum() > 100 and (x_back - x)[steep].abs().max().item() < 2e-5


def test_spline_rejects_mismatched_parameter_shapes():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="derivatives of shape"):
        rational_quadratic_spline(x, torch.zeros(4, K), torch.zeros(4, K), torch.zeros(4, K))


@pytest.mark.parametrize("dim,mask", [(2, None), (2, torch.tensor([[0.0, 1.0]])),
                                      (5, torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0]]))])
def test_coupling_log_det_and_inverse_against_autograd(dim, mask):
    layer = perturb(SplineCoupling(dim, mask, hidden=16, bins=5, bound=2.0), 0.5)
    x = 1.5 * torch.randn(6, dim)  # some entries beyond the bound: tails
    report = check_flow(layer, x, atol=1e-8)
    assert report.passed, str(report)
    y, _ = layer(x)
    kept = layer.mask[0] == 1
    assert torch.equal(y[:, kept], x[:, kept])
    assert not torch.allclose(y[:, ~kept], x[:, ~kept])  # the perturbed layer does something


def test_coupling_starts_as_the_identity():
    layer = SplineCoupling(3, hidden=8, bins=4)
    x = 2 * torch.randn(50, 3, dtype=torch.float64)
    y, log_det = layer.double()(x)
    assert (y - x).abs().max().item() < 1e-12 and log_det.abs().max().item() < 1e-12


def test_coupling_rejects_bad_input_and_masks():
    layer = SplineCoupling(2, hidden=8)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        layer(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="mask"):
        SplineCoupling(2, torch.ones(1, 2))
    with pytest.raises(ValueError, match="bins"):
        SplineCoupling(2, bins=1)


def test_spline_flow_is_a_checked_density_model():
    model = perturb(SplineFlow2D(num_couplings=3, hidden=16, bins=4), 0.3)
    x = torch.randn(5, 2)
    assert check_flow(model, x, atol=1e-8).passed
    assert model.log_prob(x).shape == (5,)
    assert model.sample(7).shape == (7, 2)
    assert len(model.trajectory(x)) == 4
    with pytest.raises(ValueError, match="SplineFlow2D"):
        model(torch.zeros(3, 3))


def test_spline_flow_trains_on_moons(one_thread):
    data = make_splits("moons", n_train=2000, n_val=10, n_test=1000)
    model = SplineFlow2D(num_couplings=4, hidden=32, bins=8)
    density, losses = fit_density(model, data.train, steps=300, batch_size=256, lr=5e-3,
                                  progress=False)
    before = sum(losses[:10]) / 10
    after = nll(density, data.test)
    # the standardized data under the untrained flow (a standard normal) score ~2 nats;
    # the exact density scores ~0.29 on moons
    assert before > 1.8 and after < 0.8, (before, after)
