"""2-D toy data with exact densities, their train/validation/test splits and baselines.

The toys of the course (notebook 2, ``benchmarks/toy2d.py``):

- ``moons``: scikit-learn ``make_moons(noise=0.05)``: two half-circle arcs plus N(0, 0.05^2 I)
- ``circles``: scikit-learn ``make_circles(noise=0.05, factor=0.5)``: two concentric circles
- ``8gaussians``: a ring of 8 Gaussians (radius 2, std 0.1)
- ``checkerboard``: uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2

Every toy knows its exact density, so a flow's held-out negative log-likelihood (NLL) can
be compared with the best possible value, the true differential entropy
``H = -E[log p(x)]`` (in nats): by Gibbs' inequality ``E_p[-log q(x)] = H + KL(p || q) >= H``.

For moons and circles the density is "a uniform point on the arcs, plus Gaussian noise":

    p(x) = sum_k w_k / L_k * integral over arc k of N(x; c, sigma^2 I) dc

which has no closed form; :class:`ArcMixture` evaluates the arc integral with the midpoint
rule (1,024 points per arc) and the entropy by grid quadrature of ``-p log p`` (step 0.02).
For moons this gives 0.2892 nats (1,024 arc points: 0.28923, 2,048: 0.28923; the
midpoint rule's O(h^2) error is below 1e-5), computed here, not copied; the project's
FACTS.md quotes 0.290. Circles: 0.606 nats.

Fitting a flow to a toy is notebook 2's loop, in :mod:`nvp_edu.training.fit2d`
(standardization, ``fit``, ``fit_density``, ``nll``; importable from here as before).

Example:
    >>> toy = get_toy("checkerboard")
    >>> x = toy.sample(1000, seed=0)
    >>> x.shape, round(toy.true_entropy(), 4)  # log 8
    (torch.Size([1000, 2]), 2.0794)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# notebook 2's loop lives with the trainers; its names stay importable from here
from .training.fit2d import (Standardize, StandardizedModel, ema_with_warmup, fit,  # noqa: F401
                             fit_density, nll)

LOG_2PI = math.log(2 * math.pi)
_ENTROPY_CACHE: dict[tuple, float] = {}  # quadrature takes seconds: do it once per process


def _check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of samples must be a positive integer; got {n!r}")


def _check_points(x: Tensor) -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"toy densities take points of shape (N, 2); got shape {tuple(x.shape)}")
    return x.double()


def grid_integral(fn, bounds: tuple[float, float, float, float], step: float,
                  chunk: int = 4096) -> float:
    """Midpoint-rule integral of ``fn(points) -> (N,)`` over the box ``(x0, x1, y0, y1)``."""
    x0, x1, y0, y1 = bounds
    xs = torch.arange(x0 + step / 2, x1, step, dtype=torch.float64)
    ys = torch.arange(y0 + step / 2, y1, step, dtype=torch.float64)
    pts = torch.cartesian_prod(xs, ys)
    total = sum(fn(pts[i:i + chunk]).sum().item() for i in range(0, len(pts), chunk))
    return total * step * step


class Toy:
    """A 2-D distribution: ``sample(n, seed)``, exact ``log_prob(x)``, ``true_entropy()``.

    ``bounds = (x0, x1, y0, y1)`` holds all but a negligible part of the mass (used for
    quadrature and for figures).
    """

    name = "toy"
    bounds: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0)
    # The integrands are smooth on the scale of the noise (0.05), where the midpoint rule
    # converges very fast: steps 0.02 and 0.01 agree to 1e-10 for moons.
    quad_step = 0.02

    def sample(self, n: int, seed: int = 0) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # A point farther than this from the support's core (arcs, centres, dark squares) lies
    # where the true density is negligible: see :func:`gap_fraction`.
    gap_margin = 0.0

    def distance_to_core(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Distance of each point to the core of the distribution (arcs, centres, squares)."""
        raise NotImplementedError

    def true_entropy(self) -> float:
        """``H = -integral p log p`` by grid quadrature over ``bounds`` (cached)."""
        key = (type(self).__name__, self.quad_step)
        if key not in _ENTROPY_CACHE:
            def integrand(pts: Tensor) -> Tensor:
                lp = self.log_prob(pts)
                p = lp.exp()
                return torch.where(p > 0, -p * lp, torch.zeros_like(p))
            _ENTROPY_CACHE[key] = grid_integral(integrand, self.bounds, self.quad_step)
        return _ENTROPY_CACHE[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ArcMixture(Toy):
    """Equal-weight mixture of arcs, each a uniform point on a circular arc plus N(0, sigma^2 I).

    ``arcs`` holds ``(cx, cy, radius, angle0, angle1)``; a point on arc k is
    ``(cx + r cos a, cy + r sin a)`` with ``a`` uniform on ``[angle0, angle1]`` (uniform in
    angle = uniform in arc length on a circle). Subclasses sample with scikit-learn, whose
    generators put points at evenly spaced angles: the same distribution in the limit.
    """

    arcs: tuple[tuple[float, float, float, float, float], ...] = ()
    noise = 0.05
    quad_points = 1024

    def _arc_points(self) -> Tensor:
        """Midpoint-rule nodes on every arc, shape ``(num_arcs, quad_points, 2)``."""
        out = []
        for cx, cy, r, a0, a1 in self.arcs:
            a = a0 + (a1 - a0) * (torch.arange(self.quad_points, dtype=torch.float64) + 0.5) / self.quad_points
            out.append(torch.stack([cx + r * torch.cos(a), cy + r * torch.sin(a)], dim=1))
        return torch.stack(out)

    gap_margin = 4 * noise  # 4 noise std from the arcs

    def distance_to_core(self, x: Tensor) -> Tensor:
        """Distance to the nearest arc (to its nearest quadrature node, ~0.003 apart)."""
        x = _check_points(x)
        nodes = self._arc_points().reshape(-1, 2)
        return torch.cat([torch.cdist(x[i:i + 1024], nodes).min(dim=1).values
                          for i in range(0, len(x), 1024)])

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)``: log of the mean over arc nodes of ``N(x; node, sigma^2 I)``."""
        x = _check_points(x)
        nodes = self._arc_points().reshape(-1, 2)  # every node carries equal weight
        s2 = self.noise ** 2
        out = []
        for i in range(0, len(x), 1024):
            d2 = torch.cdist(x[i:i + 1024], nodes).pow(2)
            out.append(torch.logsumexp(-d2 / (2 * s2), dim=1))
        log_norm = -math.log(len(nodes)) - LOG_2PI - math.log(s2)
        return torch.cat(out) + log_norm


class Moons(ArcMixture):
    """scikit-learn ``make_moons(noise=0.05)``: upper arc ``(cos a, sin a)``, a in [0, pi];
    lower arc ``(1 - cos a, 1/2 - sin a)``, i.e. centre (1, 1/2) with a in [pi, 2 pi]."""

    name = "moons"
    arcs = ((0.0, 0.0, 1.0, 0.0, math.pi), (1.0, 0.5, 1.0, math.pi, 2 * math.pi))
    bounds = (-1.45, 2.45, -0.95, 1.45)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        from sklearn.datasets import make_moons
        _check_n(n)
        x, _ = make_moons(n_samples=n, noise=self.noise, random_state=seed)
        return torch.from_numpy(x).float()


class Circles(ArcMixture):
    """scikit-learn ``make_circles(noise=0.05, factor=0.5)``: circles of radius 1 and 0.5,
    half of the points on each."""

    name = "circles"
    arcs = ((0.0, 0.0, 1.0, 0.0, 2 * math.pi), (0.0, 0.0, 0.5, 0.0, 2 * math.pi))
    bounds = (-1.45, 1.45, -1.45, 1.45)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        from sklearn.datasets import make_circles
        _check_n(n)
        x, _ = make_circles(n_samples=n, noise=self.noise, factor=0.5, random_state=seed)
        return torch.from_numpy(x).float()


class EightGaussians(Toy):
    """A ring of 8 Gaussians: centres ``2 (cos 2 pi k/8, sin 2 pi k/8)``, std 0.1, equal weights.

    Neighbouring centres are 1.53 apart (15 std), so the components barely overlap and
    ``H = log 8 + log(2 pi e sigma^2)`` = 0.312 nats to many digits; :meth:`true_entropy`
    still integrates numerically, and the tests compare both.
    """

    name = "8gaussians"
    radius, std = 2.0, 0.1
    bounds = (-2.8, 2.8, -2.8, 2.8)
    quad_step = 0.01  # std 0.1 (not 0.05), but a finer grid is cheap with 8 components

    gap_margin = 4 * std  # 4 std from every centre: true mass exp(-8) = 0.03%

    def distance_to_core(self, x: Tensor) -> Tensor:
        """Distance to the nearest centre."""
        return torch.cdist(_check_points(x), self.centres()).min(dim=1).values

    def centres(self) -> Tensor:
        a = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return self.radius * torch.stack([torch.cos(a), torch.sin(a)], dim=1)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        _check_n(n)
        g = torch.Generator().manual_seed(seed)
        k = torch.randint(0, 8, (n,), generator=g)
        x = self.centres()[k] + self.std * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return x.float()

    def log_prob(self, x: Tensor) -> Tensor:
        x = _check_points(x)
        d2 = torch.cdist(x, self.centres()).pow(2)
        s2 = self.std ** 2
        return torch.logsumexp(-d2 / (2 * s2), dim=1) - math.log(8) - LOG_2PI - math.log(s2)


class Checkerboard(Toy):
    """Uniform on the dark squares of a 4x4 board on [-2, 2]^2 (8 unit squares).

    Density 1/8 on a dark square, 0 elsewhere, so ``H = log 8`` exactly. A square
    ``[i-2, i-1) x [j-2, j-1)`` is dark when ``i + j`` is even.
    """

    name = "checkerboard"
    bounds = (-2.0, 2.0, -2.0, 2.0)
    quad_step = 0.02

    def sample(self, n: int, seed: int = 0) -> Tensor:
        _check_n(n)
        g = torch.Generator().manual_seed(seed)
        x = 4 * torch.rand(n, dtype=torch.float64, generator=g) - 2
        y = torch.rand(n, dtype=torch.float64, generator=g) - 2  # row 0, then shifted
        j = torch.randint(0, 2, (n,), generator=g) * 2 + (torch.floor(x + 2).long() % 2)
        return torch.stack([x, y + j], dim=1).float()

    def log_prob(self, x: Tensor) -> Tensor:
        x = _check_points(x)
        inside = ((x >= -2) & (x < 2)).all(dim=1)
        ij = torch.floor(x + 2).long()
        dark = (ij.sum(dim=1) % 2 == 0) & inside
        return torch.where(dark, torch.full_like(x[:, 0], -math.log(8)),
                           torch.full_like(x[:, 0], -math.inf))

    def true_entropy(self) -> float:
        return math.log(8)

    def distance_to_core(self, x: Tensor) -> Tensor:
        """Distance to the nearest dark square (0 on a dark square): ``gap_margin`` is 0, so
        :func:`gap_fraction` counts the points where the density is exactly 0."""
        x = _check_points(x)
        lo = torch.tensor([[i - 2.0, j - 2.0] for i in range(4) for j in range(4)
                           if (i + j) % 2 == 0], dtype=torch.float64)  # 8 lower-left corners
        gap = torch.clamp(torch.maximum(lo[None] - x[:, None], x[:, None] - (lo[None] + 1)), min=0)
        return gap.norm(dim=2).min(dim=1).values


TOYS: dict[str, type[Toy]] = {"moons": Moons, "circles": Circles, "8gaussians": EightGaussians,
                               "checkerboard": Checkerboard}


def get_toy(name: str) -> Toy:
    """The toy called ``name``: one of ``moons``, ``circles``, ``8gaussians``, ``checkerboard``."""
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; expected one of {sorted(TOYS)}")
    return TOYS[name]()


def sample_moons(n: int, seed: int = 0) -> Tensor:
    """``n`` points of scikit-learn ``make_moons(noise=0.05)`` as a float tensor ``(n, 2)``."""
    return Moons().sample(n, seed)


def sample_circles(n: int, seed: int = 0) -> Tensor:
    """``n`` points of scikit-learn ``make_circles(noise=0.05, factor=0.5)``, ``(n, 2)``."""
    return Circles().sample(n, seed)


def gap_fraction(toy: Toy, x: Tensor) -> float:
    """Share of the points ``x`` that lie more than ``toy.gap_margin`` from the toy's core.

    Those regions (between the arcs, between the Gaussians, the light squares) carry almost
    no true probability (checkerboard: exactly none); a flow's density is positive
    everywhere, and this measures how much of its mass leaks there. Compare a flow's
    samples with the same number of the toy's own samples.
    """
    return (toy.distance_to_core(x) > toy.gap_margin).double().mean().item()


@dataclass
class Splits:
    """Independent train / validation / test draws of one toy (different seeds)."""

    train: Tensor
    val: Tensor
    test: Tensor


def make_splits(toy: Toy | str, n_train: int = 20000, n_val: int = 20000, n_test: int = 20000,
                seed: int = 0) -> Splits:
    """Draw train, validation and test sets with seeds ``seed``, ``seed + 1``, ``seed + 2``."""
    toy = get_toy(toy) if isinstance(toy, str) else toy
    return Splits(toy.sample(n_train, seed), toy.sample(n_val, seed + 1),
                  toy.sample(n_test, seed + 2))


def fit_baselines(train: Tensor, val: Tensor, test: Tensor,
                  gmm_components: tuple[int, ...] = (10, 20, 40, 80),
                  kde_bandwidths: tuple[float, ...] = (0.01, 0.015, 0.02, 0.03, 0.05, 0.1),
                  seed: int = 0) -> dict:
    """scikit-learn ``GaussianMixture`` and ``KernelDensity`` fitted on ``train``.

    Hyperparameters (number of full-covariance components; Gaussian bandwidth, in data
    units) are chosen by validation NLL, then the chosen model is scored once on ``test``.
    Returns NLLs in nats per point and the choices.
    """
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import KernelDensity

    tr, va, te = (t.double().numpy() for t in (train, val, test))
    best_gmm = min(
        (GaussianMixture(k, covariance_type="full", random_state=seed).fit(tr) for k in gmm_components),
        key=lambda m: -m.score(va))
    kdes = [KernelDensity(bandwidth=b).fit(tr) for b in kde_bandwidths]
    best_kde = min(kdes, key=lambda m: -m.score_samples(va).mean())
    return {
        "gmm_val_nll": -best_gmm.score(va),
        "gmm_test_nll": -best_gmm.score(te),
        "gmm_components": int(best_gmm.n_components),
        "kde_val_nll": float(-best_kde.score_samples(va).mean()),
        "kde_test_nll": float(-best_kde.score_samples(te).mean()),
        "kde_bandwidth": float(best_kde.bandwidth),
    }


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of ``fn(*args, **kwargs)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
