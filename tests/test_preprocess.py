"""Dequantization, the logit transform and the bits/dim ledger."""
import math
import re

import pytest
import torch
from torch import nn

from conftest import perturb
from nvp_edu.checks import check_flow
from nvp_edu.ledger import (bits_per_dim, bits_per_dim_ledger, bits_per_dim_to_nats,
                            evaluate_bits_per_dim, nats_to_bits_per_dim)
from nvp_edu.models import RealNVP
from nvp_edu.preprocess import Dequantize, Logit, Preprocess, dequantize


def test_dequantize_stays_in_each_pixels_cell():
    x_int = torch.arange(17).repeat(50).view(50, 1, 17)
    x = dequantize(x_int, 17)
    assert x.dtype == torch.float32
    assert (x >= x_int / 17).all() and (x < (x_int + 1) / 17).all()
    centre = dequantize(torch.tensor([[0, 16]]), 17, noise=False)
    torch.testing.assert_close(centre, torch.tensor([[0.5 / 17, 16.5 / 17]]))


def test_dequantize_rejects_values_outside_the_levels():
    with pytest.raises(ValueError, match=r"0\.\.16 for levels=17; got values in 0\.\.17"):
        dequantize(torch.tensor([[0, 17]]), 17)
    with pytest.raises(ValueError, match="levels must be >= 2; got 1"):
        Dequantize(1)


@pytest.mark.parametrize("levels", [17, 256])
def test_dequantize_flow_inverse_and_log_det_against_autograd(levels):
    x_int = torch.randint(0, levels, (3, 1, 3, 3)).double()
    report = check_flow(Dequantize(levels), x_int)
    assert report.passed, str(report)
    _, log_det = Dequantize(levels)(x_int)
    torch.testing.assert_close(log_det, torch.full((3,), -9 * math.log(levels), dtype=torch.float64))


def test_dequantize_inverse_survives_noise_just_below_one():
    x_int = torch.tensor([[16.0, 0.0]], dtype=torch.float64)
    x = (x_int + (1 - 1e-9)) / 17
    assert (Dequantize(17).inverse(x) == x_int).all()
    # float32 rounding can land exactly on the upper edge: the top level stays the top
    assert Dequantize(17).inverse(torch.tensor([[1.0]])).item() == 16


def test_logit_against_autograd_and_known_values():
    x = torch.rand(4, 2, 3, 3, dtype=torch.float64)
    report = check_flow(Logit(0.05), x)
    assert report.passed, str(report)
    assert report.log_det.max_error < 1e-10
    y, _ = Logit(0.05)(torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([[-math.log(19), 0.0, math.log(19)]],
                                               dtype=torch.float64))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 0.5\); got 0.5"):
        Logit(0.5)


def test_preprocess_chain_round_trip_and_log_det_adds():
    x_int = torch.randint(0, 256, (4, 3, 4, 4))
    pre = Preprocess(256)
    pre.dequantizer.generator = torch.Generator().manual_seed(1)
    y, log_det = pre(x_int)
    assert (pre.inverse(y) == x_int).all()
    pre.dequantizer.generator = torch.Generator().manual_seed(1)
    x, deq_ld = pre.dequantizer(x_int)
    _, logit_ld = pre.logit(x)
    torch.testing.assert_close(log_det, deq_ld + logit_ld)


def test_bits_per_dim_conversions():
    d = 3 * 32 * 32
    assert bits_per_dim(0.0, d, 256) == pytest.approx(8.0)
    assert nats_to_bits_per_dim(d * math.log(2), d) == pytest.approx(1.0)
    assert bits_per_dim_to_nats(nats_to_bits_per_dim(123.4, d), d) == pytest.approx(123.4)
    # the paper's CIFAR-10 figure 3.49 bits/dim is this many nats on [0, 1)^D:
    assert bits_per_dim_to_nats(3.49 - 8, d) == pytest.approx(-9603.4, abs=0.1)


class UniformOnUnitCube(nn.Module):
    """Density 1 on [0, 1)^D: log p = 0 inside."""

    def log_prob(self, x):
        assert ((x >= 0) & (x < 1)).all()
        return x.new_zeros(x.shape[0])


@pytest.mark.parametrize("levels", [17, 256])
def test_uniform_model_scores_exactly_log2_levels(levels):
    x_int = torch.randint(0, levels, (6, 3, 4, 4))
    ledger = bits_per_dim_ledger(UniformOnUnitCube(), x_int, levels, alpha=None)
    assert list(ledger.terms) == ["model", "discretization"]
    torch.testing.assert_close(ledger.total(), torch.full((6,), math.log2(levels)))
    if levels == 256:
        assert ledger.total().mean().item() == 8.0


def _trained_ish_model(channels=1, size=8, scales=2):
    model = perturb(RealNVP(channels, size, scales, mid_channels=8, num_blocks=1), 0.05)
    model.train()
    with torch.no_grad():  # give the batch-norm layers non-trivial running statistics
        for _ in range(3):
            model(torch.randn(16, channels, size, size) * 0.7 + 0.3)
    return model.eval()


def test_ledger_sums_to_the_total_and_matches_the_bpd_formula():
    model = _trained_ish_model()
    x_int = torch.randint(0, 17, (7, 1, 8, 8))
    ledger = bits_per_dim_ledger(model, x_int, 17, generator=torch.Generator().manual_seed(3))
    assert list(ledger.terms) == ["prior", "scale 1 log-det", "scale 2 log-det",
                                  "logit log-det", "discretization"]
    manual = sum(ledger.terms.values())
    torch.testing.assert_close(ledger.total(), manual)
    # The same number from the formula (NLL of the [0,1) data + D ln L) / (D ln 2):
    x = dequantize(x_int, 17, torch.Generator().manual_seed(3))
    y, logit_ld = Logit()(x)
    with torch.no_grad():
        nll = -(model.log_prob(y) + logit_ld)
    torch.testing.assert_close(ledger.total(), bits_per_dim(nll, 64, 17), atol=1e-5, rtol=1e-6)
    assert ledger.means()["discretization"] == pytest.approx(math.log2(17))
    assert "total" in str(ledger) and "scale 2 log-det" in str(ledger)


def test_evaluate_bits_per_dim_averages_draws_and_restores_mode():
    model = _trained_ish_model().train()
    x_int = torch.randint(0, 17, (10, 1, 8, 8))
    one = evaluate_bits_per_dim(model, x_int, 17, draws=1, batch_size=4, seed=5)
    assert model.training
    again = evaluate_bits_per_dim(model, x_int, 17, draws=1, batch_size=10, seed=5)
    assert one == pytest.approx(again, rel=1e-5)  # eval mode: batching does not matter
    model.eval()
    ledger = bits_per_dim_ledger(model, x_int, 17, generator=torch.Generator().manual_seed(5))
    assert one == pytest.approx(ledger.total().mean().item(), rel=1e-5)
    three = evaluate_bits_per_dim(model, x_int, 17, draws=3, seed=5)
    assert three != one and abs(three - one) < 0.5


# Issue 13, fault C: out-of-range, NaN and wrongly typed inputs are refused, not passed on --

@pytest.mark.parametrize("bad, found", [(1.5, r"0\.2\.\.1\.5"), (-0.25, r"-0\.25\.\.0\.7")])
def test_logit_refuses_values_outside_the_unit_interval(bad, found):
    x = torch.tensor([[0.2, bad, 0.7]])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]") as e:
        Logit()(x)
    assert re.search(f"got values in {found}", str(e.value)), str(e.value)
    assert "1 of 3 entries outside" in str(e.value)


def test_logit_refuses_nan_and_integer_tensors_but_inverts_any_real():
    with pytest.raises(ValueError, match="1 NaN"):
        Logit()(torch.tensor([[0.5, float("nan")]]))
    with pytest.raises(ValueError, match="only NaN"):
        Logit()(torch.full((1, 2), float("nan")))
    with pytest.raises(TypeError, match="floating-point.*got dtype torch.uint8.*dequantize"):
        Logit()(torch.tensor([[0, 255]], dtype=torch.uint8))
    x = Logit().inverse(torch.tensor([[-1e4, -3.0, 0.0, 3.0, 1e4]]))
    assert torch.isfinite(x).all()
    y, log_det = Logit()(torch.tensor([[0.0, 1.0]]))  # the closed interval is fine
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all()


@pytest.mark.parametrize("value, match", [
    (float("nan"), r"finite.*1 NaN"),
    (float("inf"), r"finite.*1 inf"),
    (3.5, r"whole numbers 0\.\.16 \(an integer dtype.*non-integer value 3\.5"),
])
def test_dequantize_refuses_nan_inf_and_fractions(value, match):
    x = torch.tensor([[0.0, value, 16.0]])
    with pytest.raises(ValueError, match=match):
        dequantize(x, 17)
    with pytest.raises(ValueError, match=match):
        Dequantize(17)(x.double())


def test_dequantize_hints_at_already_scaled_data_and_accepts_integer_dtypes():
    with pytest.raises(ValueError, match=r"already scaled to \[0, 1\]"):
        dequantize(torch.rand(2, 5) * 0.99 + 0.001, 256)
    for dtype in (torch.uint8, torch.int32, torch.int64, torch.float16, torch.float64):
        x = dequantize(torch.tensor([[0, 3, 16]], dtype=dtype), 17)
        assert x.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    with pytest.raises(TypeError, match="complex"):
        dequantize(torch.zeros(1, 2, dtype=torch.complex64), 17)
