"""Baselines in bits/dim (nvp_edu.baselines): each against a value computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from nvp_edu.baselines import Gaussian, gaussian_bpd, ledoit_wolf, pixel_histogram_bpd, uniform_bpd


def test_uniform():
    assert uniform_bpd(256) == 8.0 and uniform_bpd(17) == pytest.approx(4.0875, abs=1e-4)


def test_histogram_matches_the_entropy_it_should_reach():
    # one channel, values 0 and 1 with frequencies 3/4 and 1/4 (large counts: smoothing negligible)
    x = torch.zeros(4000, 1, 1, 1, dtype=torch.uint8)
    x[:1000] = 1
    entropy = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert pixel_histogram_bpd(x, x, 2) == pytest.approx(entropy, abs=1e-3)
    # a value never seen in training costs log2(N + levels) bits, finitely (add-one smoothing)
    unseen = torch.full((1, 1, 1, 1), 3, dtype=torch.uint8)
    assert pixel_histogram_bpd(x, unseen, 4) == pytest.approx(math.log2(4000 + 4), abs=1e-9)


def test_histogram_is_per_channel():
    # channel 0 always 0, channel 1 always 1: each channel's own histogram predicts it
    x = torch.stack([torch.zeros(1000, 2, 2), torch.ones(1000, 2, 2)], dim=1).to(torch.uint8)
    assert pixel_histogram_bpd(x, x, 256) == pytest.approx(math.log2((1000 * 4 + 256) / (1000 * 4 + 1)), abs=1e-9)


def test_gaussian_on_gaussian_data_reaches_its_entropy():
    """Data quantized from a known Gaussian: the fitted Gaussian's bits/dim is close to the
    discretized entropy, D*h(N(mu, Sigma*levels^2))/D/ln2 (a fine grid: the bound is tight)."""
    g = torch.Generator().manual_seed(0)
    levels, n = 256, 20000
    a = torch.tensor([[20.0, 0.0], [12.0, 9.0]])  # correlated pixels, std ~ 10-20 levels
    z = torch.randn(n, 2, generator=g) @ a.T + 128
    x = z.round().clamp(0, 255).to(torch.uint8).view(n, 1, 1, 2)
    cov = a @ a.T
    entropy_nats = 0.5 * math.log((2 * math.pi * math.e) ** 2 * torch.det(cov).item())
    expected = entropy_nats / (2 * math.log(2))  # per dimension, in units of one level
    assert gaussian_bpd(x[:10000], x[10000:], levels) == pytest.approx(expected, abs=0.01)


def test_gaussian_knows_correlations_the_histogram_does_not():
    g = torch.Generator().manual_seed(1)
    base = torch.randint(0, 200, (3000, 1, 1, 1), generator=g)
    x = (base + torch.randint(0, 3, (3000, 1, 2, 2), generator=g)).to(torch.uint8)  # 4 near-equal pixels
    assert gaussian_bpd(x[:2000], x[2000:], 256) < pixel_histogram_bpd(x[:2000], x[2000:], 256) - 2


def test_bad_input():
    x = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8 images"):
        pixel_histogram_bpd(x.float(), x, 256)
    with pytest.raises(ValueError, match="holds the value 20, but levels=17"):
        pixel_histogram_bpd(x + 20, x, 17)
    with pytest.raises(ValueError, match="differ in shape"):
        gaussian_bpd(x, torch.zeros(10, 1, 4, 4, dtype=torch.uint8), 256)
    with pytest.raises(ValueError, match="needs more than 4 training images; got 3"):
        gaussian_bpd(x[:3], x, 256)


def test_fit_once_score_many():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (300, 1, 2, 2), generator=g).to(torch.uint8)
    fitted = Gaussian.fit(x[:200], 256)
    assert fitted.bpd(x[200:]) == gaussian_bpd(x[:200], x[200:], 256)
    with pytest.raises(ValueError, match="images of 16 numbers, but the Gaussian was fitted on 4"):
        fitted.bpd(torch.zeros(3, 1, 4, 4, dtype=torch.uint8))


def test_ledoit_wolf_matches_scikit_learn():
    from sklearn.covariance import ledoit_wolf as sklearn_ledoit_wolf

    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 30, generator=g, dtype=torch.float64) @ torch.randn(30, 30, generator=g, dtype=torch.float64)
    centered = x - x.mean(0)
    expected, _ = sklearn_ledoit_wolf(centered.numpy(), assume_centered=True)
    assert torch.allclose(ledoit_wolf(centered), torch.from_numpy(expected), atol=1e-10)
