"""Variational dequantization (nvp_edu.vardeq): exact log q, the bound and its IW estimate."""
import math

import pytest
import torch

from conftest import perturb
from nvp_edu.ledger import bits_per_dim_ledger
from nvp_edu.models import RealNVP
from nvp_edu.preprocess import Logit, dequantize
from nvp_edu.prior import standard_normal_log_prob
from nvp_edu.train import model_bpd
from nvp_edu.vardeq import (VariationalDequantizer, importance_weighted_bpd,
                            variational_bound_bpd)

LEVELS = 17


def tiny_images(n=4, c=2, h=3, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, LEVELS, (n, c, h, w), generator=g)
    x[0, 0, 0, :2] = torch.tensor([0, LEVELS - 1])  # both extreme levels present
    return x


def test_noise_lies_in_the_cell_and_floor_recovers_the_integers():
    deq = perturb(VariationalDequantizer(2, LEVELS, hidden=8, num_couplings=3), 0.3)
    x_int = tiny_images(n=16)
    x_deq, log_q = deq(x_int)
    u = x_deq * LEVELS - x_int
    assert x_deq.dtype == torch.float32 and x_deq.shape == x_int.shape
    assert bool(((u > 0) & (u < 1)).all()) and bool(((x_deq >= 0) & (x_deq < 1)).all())
    assert log_q.abs().max() > 20  # a peaked q: u is pushed towards the cell edges
    assert torch.equal(torch.floor(x_deq * LEVELS).long(), x_int)
    assert torch.equal(deq.inverse(x_deq).long(), x_int)
    assert log_q.shape == (16,) and bool(torch.isfinite(log_q).all())


def test_floor_recovers_the_integers_even_for_noise_at_the_cell_edges():
    """Very large eps drive the sigmoid to 0 or 1 in float32; the margin keeps x_int + u
    from rounding into the next cell, for 256 levels too."""
    deq = VariationalDequantizer(1, 256, hidden=4, num_couplings=1)
    x_int = torch.tensor([0, 1, 127, 254, 255] * 2).view(10, 1, 1, 1)
    eps = torch.tensor([-50.0] * 5 + [50.0] * 5).view(10, 1, 1, 1)
    u, log_det = deq.transform(eps, x_int)
    x_deq = (x_int + u) / 256
    assert torch.equal(torch.floor(x_deq * 256).long(), x_int)
    assert bool((x_deq < 1).all()) and bool(torch.isfinite(log_det).all())
    assert torch.equal(deq.inverse(x_deq).long(), x_int)


def test_log_q_matches_a_brute_force_jacobian_in_float64(one_thread):
    """log q(u|x) = log N(eps) - log|det du/deps|, with the Jacobian from autograd."""
    deq = perturb(VariationalDequantizer(2, LEVELS, hidden=8, num_couplings=4), 0.15).double()
    x_int = tiny_images(n=3, h=2, w=3)
    gen = torch.Generator().manual_seed(1)
    x_deq, log_q = deq(x_int, generator=gen)
    eps = torch.randn(x_int.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(x_deq, (x_int + deq.transform(eps, x_int)[0]) / LEVELS)
    for i in range(3):
        xi = x_int[i:i + 1]

        def f(v):
            return deq.transform(v.view_as(xi), xi)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, eps[i].reshape(-1))
        assert jac.shape == (12, 12)
        assert (jac - torch.diag(torch.diagonal(jac))).abs().max() > 1e-3  # couplings couple
        brute = standard_normal_log_prob(eps[i:i + 1]) - torch.linalg.slogdet(jac).logabsdet
        assert abs(log_q[i].item() - brute.item()) < 1e-7


def test_log_q_integrates_to_one_in_one_dimension():
    """A 1x1x1 image: q(u|x) is a density on (0, 1), so its integral is 1 (and not 1 for
    a wrong log-det): a check of log q that does not use autograd at all."""
    deq = perturb(VariationalDequantizer(1, LEVELS, hidden=4, num_couplings=1), 0.5).double()
    x_int = torch.tensor([[[[5]]]])
    eps = torch.linspace(-9, 9, 20001, dtype=torch.float64).view(-1, 1, 1, 1)
    u, log_det = deq.transform(eps, x_int.expand(len(eps), -1, -1, -1))
    density = (standard_normal_log_prob(eps) - log_det).exp()
    u = u.flatten()
    assert bool((u[1:] > u[:-1]).all())
    integral = torch.trapezoid(density, u).item()
    assert abs(integral - 1) < 1e-3


def test_gradients_reach_the_dequantizer(one_thread):
    deq = perturb(VariationalDequantizer(2, LEVELS, hidden=8, num_couplings=2), 0.1)
    x_int = tiny_images()
    x_deq, log_q = deq(x_int)
    y, logit_ld = Logit()(x_deq)
    loss = (-(standard_normal_log_prob(y) + logit_ld) + log_q).mean()
    loss.backward()
    for name, p in deq.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().max() > 0, name


def test_training_the_dequantizer_tightens_the_bound(one_thread):
    """A fixed model whose density varies inside each cell: the learned q must beat its
    starting point on the bound, measured on the same noise before and after."""
    torch.manual_seed(0)
    levels = 4
    deq = VariationalDequantizer(1, levels, hidden=8, num_couplings=2)
    x_int = torch.randint(0, levels, (64, 1, 4, 4))

    def model_log_p(x_deq):  # N(0, 1) in logit space: far from flat across a wide cell
        y, ld = Logit()(x_deq)
        return standard_normal_log_prob(y) + ld

    def bound():
        with torch.no_grad():
            x_deq, log_q = deq(x_int, generator=torch.Generator().manual_seed(123))
            return variational_bound_bpd(model_log_p(x_deq), log_q, 16, levels).mean().item()

    start = bound()
    opt = torch.optim.Adam(deq.parameters(), lr=1e-2)
    for _ in range(60):
        x_deq, log_q = deq(x_int)
        loss = (-model_log_p(x_deq) + log_q).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bound() < start - 0.05, (start, bound())


def test_bound_with_uniform_noise_equals_the_course_bits_per_dim(one_thread):
    """log q = 0 (uniform noise): the variational bound is the ledger's and the trainer's
    bits/dim, computed on the same dequantization draw."""
    model = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1).eval()
    perturb(model, 0.05)
    x_int = torch.randint(0, LEVELS, (5, 1, 8, 8))
    ledger = bits_per_dim_ledger(model, x_int, LEVELS, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        trainer = model_bpd(model, x_int, LEVELS, torch.Generator().manual_seed(3))
        y, logit_ld = Logit()(dequantize(x_int, LEVELS, torch.Generator().manual_seed(3)))
        log_p = model.log_prob(y) + logit_ld
    ours = variational_bound_bpd(log_p, torch.zeros(5), 64, LEVELS)
    torch.testing.assert_close(ours, ledger.total(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours, trainer, atol=1e-5, rtol=0)
    assert torch.equal(ours, variational_bound_bpd(log_p, 0.0, 64, LEVELS))


def test_importance_weighted_estimate_is_below_the_bound():
    g = torch.Generator().manual_seed(0)
    log_p = -100 + 10 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    log_q = 3 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    iw = importance_weighted_bpd(log_p, log_q, num_dims=64, levels=LEVELS)
    bound = variational_bound_bpd(log_p, log_q, 64, LEVELS).mean(dim=0)
    assert iw.shape == (6,) and bool((iw < bound).all())  # Jensen, strict for unequal weights
    one = importance_weighted_bpd(log_p[:1], log_q[:1], 64, LEVELS)
    torch.testing.assert_close(one, variational_bound_bpd(log_p[0], log_q[0], 64, LEVELS))
    # equal weights: every estimate is the same number
    same = importance_weighted_bpd(log_p[:1].expand(5, -1), log_q[:1].expand(5, -1), 64, LEVELS)
    torch.testing.assert_close(same, one)
    # the formula in nats: -logsumexp(log p - log q) + log K + D ln L
    nats = -(torch.logsumexp(log_p - log_q, 0) - math.log(8)) + 64 * math.log(LEVELS)
    torch.testing.assert_close(iw, nats / (64 * math.log(2)))


def test_importance_weighting_with_the_dequantizer_on_a_model(one_thread):
    deq = perturb(VariationalDequantizer(1, LEVELS, hidden=8, num_couplings=2), 0.2)
    model = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1).eval()
    x_int = torch.randint(0, LEVELS, (3, 1, 8, 8))
    draws = []
    with torch.no_grad():
        for _ in range(10):
            x_deq, log_q = deq(x_int)
            y, logit_ld = Logit()(x_deq)
            draws.append((model.log_prob(y) + logit_ld, log_q))
    log_p, log_q = (torch.stack(t) for t in zip(*draws))
    iw = importance_weighted_bpd(log_p, log_q, 64, LEVELS)
    bound = variational_bound_bpd(log_p, log_q, 64, LEVELS).mean(dim=0)
    assert bool((iw <= bound).all()) and bool(torch.isfinite(iw).all())


@pytest.mark.parametrize("bad,match", [
    (lambda: torch.full((2, 1, 4, 4), 0.5), "whole numbers"),
    (lambda: torch.full((2, 1, 4, 4), LEVELS), "0..16"),
    (lambda: torch.full((2, 1, 4, 4), -1), "0..16"),
    (lambda: torch.full((2, 1, 4, 4), float("nan")), "NaN"),
    (lambda: torch.zeros(2, 3, 4, 4, dtype=torch.long), r"\(N, 1, H, W\)"),
    (lambda: torch.zeros(2, 4, 4, dtype=torch.long), r"\(N, 1, H, W\)"),
    (lambda: torch.zeros(0, 1, 4, 4, dtype=torch.long), "empty batch"),
])
def test_bad_input_gives_clear_errors(bad, match):
    deq = VariationalDequantizer(1, LEVELS, hidden=4, num_couplings=1)
    with pytest.raises(ValueError, match=match):
        deq(bad())


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="levels"):
        VariationalDequantizer(1, 1)
    with pytest.raises(ValueError, match="same shape"):
        variational_bound_bpd(torch.zeros(3), torch.zeros(4), 4, 2)
    with pytest.raises(ValueError, match="K draws"):
        importance_weighted_bpd(torch.zeros(3), torch.zeros(3), 4, 2)
    deq = VariationalDequantizer(1, LEVELS, hidden=4, num_couplings=1)
    with pytest.raises(ValueError, match="eps must have"):
        deq.transform(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3, dtype=torch.long))
