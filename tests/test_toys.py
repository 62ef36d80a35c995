"""2-D toys: exact densities, sampling, standardization, training, baselines."""
import math

import pytest
import torch

from nvp_edu.checks import check_flow
from nvp_edu.models import RealNVP2D
from nvp_edu.toys import (TOYS, Circles, Moons, Standardize, StandardizedModel, fit, fit_density, gap_fraction,
                          fit_baselines, get_toy, grid_integral, make_splits, nll, sample_circles,
                          sample_moons)


class CheapMoons(Moons):
    quad_points = 256  # any node count gives a normalized density; fewer is faster


class CheapCircles(Circles):
    quad_points = 256


@pytest.mark.parametrize("toy", [CheapMoons(), CheapCircles(), get_toy("8gaussians"),
                                 get_toy("checkerboard")], ids=lambda t: t.name)
def test_exact_densities_integrate_to_one(toy):
    total = grid_integral(lambda p: toy.log_prob(p).exp(), toy.bounds, toy.quad_step)
    assert abs(total - 1) < 1e-6, total


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "circles"])
def test_samples_match_density(name):
    """E[-log p(x)] over samples is the entropy: sampler and density describe one law."""
    toy = get_toy(name)
    x = toy.sample(20000, seed=1)
    lp = toy.log_prob(x)
    assert torch.isfinite(lp).all()  # no sample falls where the density is 0
    mc = -lp.mean().item()
    stderr = lp.std().item() / math.sqrt(len(x))
    assert abs(mc - toy.true_entropy()) < 4 * stderr + 1e-9, (mc, toy.true_entropy(), stderr)


def test_moons_entropy_by_quadrature():
    toy = get_toy("moons")
    h = toy.true_entropy()
    assert abs(h - 0.2892) < 5e-4, h
    x = toy.sample(20000, seed=5)
    lp = toy.log_prob(x)
    assert abs(-lp.mean().item() - h) < 4 * lp.std().item() / math.sqrt(len(x))


def test_closed_form_entropies():
    assert get_toy("checkerboard").true_entropy() == pytest.approx(math.log(8))
    closed = math.log(8) + math.log(2 * math.pi * math.e * 0.1 ** 2)
    assert get_toy("8gaussians").true_entropy() == pytest.approx(closed, abs=1e-8)


def test_checkerboard_support():
    toy = get_toy("checkerboard")
    lp = toy.log_prob(torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [2.5, 0.0], [0.5, 0.5]]))
    assert lp.tolist() == [-math.log(8), -math.inf, -math.inf, -math.log(8)]


@pytest.mark.parametrize("name", sorted(TOYS))
def test_shapes_and_seeds(name):
    toy = get_toy(name)
    a, b, c = toy.sample(33, seed=0), toy.sample(33, seed=0), toy.sample(33, seed=1)
    assert a.shape == (33, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert toy.log_prob(a).shape == (33,)


def test_sklearn_wrappers():
    assert sample_moons(10).shape == (10, 2) and sample_circles(11).shape == (11, 2)
    s = make_splits("moons", n_train=50, n_val=20, n_test=30)
    assert (len(s.train), len(s.val), len(s.test)) == (50, 20, 30)


@pytest.mark.parametrize("bad", [lambda: get_toy("spirals"), lambda: get_toy("moons").sample(0),
                                 lambda: get_toy("checkerboard").sample(-3),
                                 lambda: get_toy("8gaussians").sample(2.5),
                                 lambda: get_toy("moons").log_prob(torch.zeros(4, 3)),
                                 lambda: Standardize(torch.zeros(2), torch.tensor([1.0, 0.0])),
                                 lambda: fit(RealNVP2D(), torch.zeros(10, 2), steps=0)])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        bad()


def test_standardize_is_a_flow_and_nll_is_in_data_units():
    x = torch.randn(64, 2, dtype=torch.float64) * torch.tensor([3.0, 0.5]) + 2
    st = Standardize.fit(x.float()).double()
    assert check_flow(st, x).passed
    # Model of u = N(0, I) exactly: the data density is N(mean, diag(std^2)).
    density = StandardizedModel(RealNVP2D(num_couplings=2, hidden=8).double(), st)
    expected = torch.distributions.Normal(st.mean.double(), st.std.double()).log_prob(x).sum(1)
    torch.testing.assert_close(density.log_prob(x), expected)
    assert nll(density, x) == pytest.approx(-expected.mean().item())


def test_short_training_lowers_nll():
    torch.manual_seed(0)
    data = make_splits("moons", n_train=2000, n_val=10, n_test=1000)
    st = Standardize.fit(data.train)
    model = RealNVP2D(num_couplings=4, hidden=32)
    density = StandardizedModel(model, st)
    before = nll(density, data.test)
    losses = fit(model, st(data.train)[0], steps=150, batch_size=256, lr=5e-3, progress=False,
                 ema_decay=0.9)
    after = nll(density, data.test)
    assert len(losses) == 150
    assert after < before - 0.5, (before, after)
    assert check_flow(model, torch.randn(4, 2)).passed


def test_baselines_pick_on_validation():
    data = make_splits("8gaussians", n_train=2000, n_val=500, n_test=500)
    out = fit_baselines(data.train, data.val, data.test, gmm_components=(1, 8),
                        kde_bandwidths=(0.05, 2.0))
    assert out["gmm_components"] == 8 and out["kde_bandwidth"] == 0.05
    h = get_toy("8gaussians").true_entropy()
    assert h - 0.1 < out["gmm_test_nll"] < h + 0.1


def test_2d_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nvp_edu.plotting import data_vs_samples, density_heatmap, layer_warp

    model = RealNVP2D(num_couplings=4, hidden=8)
    axes = layer_warp(model, torch.randn(50, 2), layers=[0, 2, 4], n_lines=3)
    assert len(axes) == 3 and axes[2].get_title() == "after layer 4"
    ax = density_heatmap(get_toy("checkerboard"), get_toy("checkerboard").bounds, n=40)
    image = ax.get_images()[0].get_array()
    assert image.shape == (40, 40) and abs(image.max() - 1 / 8) < 1e-6 and image.min() == 0
    assert data_vs_samples(torch.randn(10, 2), torch.randn(10, 2)).shape == (2,)
    plt.close("all")


def test_gap_fraction_separates_toy_from_uniform_noise():
    """The toys' own samples almost never lie in a gap; uniform points often do."""
    for name in sorted(TOYS):
        toy = get_toy(name) if name != "moons" else CheapMoons()
        if name == "circles":
            toy = CheapCircles()
        own = gap_fraction(toy, toy.sample(4000, seed=2))
        noise = gap_fraction(toy, 4 * torch.rand(4000, 2, generator=torch.Generator().manual_seed(0)) - 2)
        assert own < 0.002 and noise > 0.3, (name, own, noise)


def test_distance_to_core_exact_points():
    board = get_toy("checkerboard")
    d = board.distance_to_core(torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [2.5, -1.5], [3.0, 3.0]]))
    torch.testing.assert_close(d, torch.tensor([0.0, 0.5, 0.5 ** 0.5, 2 ** 0.5], dtype=torch.float64))
    ring = get_toy("8gaussians")
    assert ring.distance_to_core(torch.tensor([[2.0, 0.0], [0.0, 0.0]])).tolist() == [0.0, 2.0]
    arcs = CheapMoons().distance_to_core(torch.tensor([[0.0, 1.0], [0.0, 1.3]]))
    assert arcs[0] < 1e-2 and abs(arcs[1] - 0.3) < 1e-2


def test_progress_bar_shows_data_units(capsys):
    """fit_density's bar shows the loss plus sum log std: the NLL of x, not of u."""
    x = make_splits("moons", n_train=512, n_val=10, n_test=10).train
    shift = torch.log(x.std(dim=0)).sum().item()
    torch.manual_seed(0)
    _, losses = fit_density(RealNVP2D(num_couplings=2, hidden=8), x, steps=1, batch_size=64,
                            progress=True, desc="bar")
    shown = float(capsys.readouterr().err.split("loss=")[-1].split("]")[0])
    assert shown == pytest.approx(losses[0], abs=2e-3)
    assert abs(shown - (losses[0] - shift)) > 0.5  # the standardized loss would differ
