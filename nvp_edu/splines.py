"""Monotone rational-quadratic splines: a more flexible coupling than the affine one.

An affine coupling moves each changed entry by ``x * exp(s) + t``: one stretch and one
shift per entry. Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows" (NeurIPS
2019, arXiv:1906.04032) replace it with a *monotone rational-quadratic spline*: a
piecewise function with ``K`` bins on ``[-B, B]`` whose shape (bin widths, bin heights,
slopes at the knots) the conditioner network predicts. Outside ``[-B, B]`` the map is the
identity (the "linear tails"), so it is defined on the whole real line.

The spline (paper, section 3.1). Knots ``(x^k, y^k)``, ``k = 0..K``, increasing from
``(-B, -B)`` to ``(B, B)``; slopes ``delta^k > 0`` at the knots, ``delta^0 = delta^K = 1`` so
that the slope matches the identity tails. In bin ``k`` (``x^k <= x <= x^{k+1}``) with

    w_k = x^{k+1} - x^k,   h_k = y^{k+1} - y^k,   s_k = h_k / w_k,   xi = (x - x^k) / w_k

the map is (section 3.1; appendix A)

    y = y^k + h_k [s_k xi^2 + delta^k xi (1 - xi)]
              / [s_k + (delta^{k+1} + delta^k - 2 s_k) xi (1 - xi)]

and its derivative (appendix A)

    dy/dx = s_k^2 [delta^{k+1} xi^2 + 2 s_k xi (1 - xi) + delta^k (1 - xi)^2]
            / [s_k + (delta^{k+1} + delta^k - 2 s_k) xi (1 - xi)]^2

which is positive whenever all slopes are, so the map is strictly increasing. The inverse
(appendix A): for ``y`` in bin ``k``, ``xi`` solves ``a xi^2 + b xi + c = 0`` with

    a = h_k (s_k - delta^k) + (y - y^k)(delta^{k+1} + delta^k - 2 s_k)
    b = h_k delta^k - (y - y^k)(delta^{k+1} + delta^k - 2 s_k)
    c = -s_k (y - y^k)

and the root in ``[0, 1]`` is ``xi = 2c / (-b - sqrt(b^2 - 4ac))`` (appendix A). This is
the textbook root ``(-b + sqrt(b^2 - 4ac)) / (2a)`` with numerator and denominator
multiplied by ``-b - sqrt(...)``: the same number, but it never divides by ``a``, which is
exactly 0 in a bin where the spline is a straight line (the identity at initialization)
and tiny near one, where the textbook form would be 0/0 or lose every digit.

Parameters: the network outputs unconstrained numbers; widths and heights are a softmax
(scaled to ``2B``) with a minimum bin size, interior slopes a softplus with a minimum
slope, shifted so that an output of 0 gives slope 1. All-zero outputs therefore give
``K`` equal bins with equal widths and heights and unit slopes: ``s_k = 1`` and the
formula above reduces to ``y = y^k + h_k xi = x``, the identity (up to rounding: about
1e-7 in float32). A coupling whose last layer starts at zero starts as the identity map,
like :class:`~nvp_edu.flows.AffineCoupling`.

Example:
    >>> _ = torch.manual_seed(0)
    >>> x = 4 * torch.randn(6)  # some entries in the tails, beyond B = 3
    >>> w, h, d = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 4)
    >>> y, log_det = rational_quadratic_spline(x, w, h, d, bound=3.0)
    >>> x_back, inv_log_det = rational_quadratic_spline(y, w, h, d, inverse=True, bound=3.0)
    >>> torch.allclose(x_back, x, atol=1e-5), torch.allclose(inv_log_det, -log_det, atol=1e-5)
    (True, True)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Flow, Sequential, check_input, sum_except_batch
from .masks import alternating_vector_mask
from .models import VectorFlow
from .nets import MLP

MIN_BIN_WIDTH = 1e-3   # as a fraction of 2B: no bin narrower than this
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3  # slopes at the knots at least this: dy/dx stays positive
# softplus(raw + _SLOPE_SHIFT) + MIN_DERIVATIVE = 1 at raw = 0: zero outputs give slope 1
_SLOPE_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))


def _knots(raw: Tensor, bound: float, min_size: float) -> tuple[Tensor, Tensor]:
    """Bin sizes from unconstrained ``raw`` (..., K): ``(positions (..., K+1), sizes (..., K))``.

    Sizes: ``min_size + (1 - K min_size) softmax(raw)``, times ``2B``; positions are their
    running sum from ``-B``, with the last one set to exactly ``B``.
    """
    num_bins = raw.shape[-1]
    if min_size * num_bins >= 1:
        raise ValueError(f"{num_bins} bins of minimum size {min_size} do not fit in the interval")
    frac = min_size + (1 - min_size * num_bins) * torch.softmax(raw, dim=-1)
    cum = F.pad(torch.cumsum(frac, dim=-1), (1, 0), value=0.0)
    pos = 2 * bound * cum - bound
    ends = torch.ones_like(pos[..., :1]) * bound  # the ends exactly, whatever the rounding
    pos = torch.cat([-ends, pos[..., 1:-1], ends], dim=-1)
    return pos, pos[..., 1:] - pos[..., :-1]


def _slopes(raw: Tensor) -> Tensor:
    """Slopes at all ``K+1`` knots from the ``K-1`` interior outputs; 1 at both ends."""
    inner = MIN_DERIVATIVE + F.softplus(raw + _SLOPE_SHIFT)
    return F.pad(inner, (1, 1), value=1.0)


def _gather(t: Tensor, idx: Tensor) -> Tensor:
    """``t[..., idx]`` for one index per entry: ``t`` is (..., M), ``idx`` is (...)."""
    return t.gather(-1, idx.unsqueeze(-1)).squeeze(-1)


def rational_quadratic_spline(x: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor,
                              inverse: bool = False, bound: float = 3.0) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on ``[-B, B]``, identity outside (linear tails).

    Args:
        x: input of any shape ``S``.
        widths, heights: unconstrained bin parameters, shape ``S + (K,)`` (softmax inside).
        derivatives: unconstrained slopes at the ``K - 1`` interior knots, shape
            ``S + (K - 1,)`` (softplus inside); the slopes at ``-B`` and ``B`` are 1.
        inverse: compute the inverse map (``x`` is then a spline output).
        bound: ``B``.

    Returns:
        ``(y, log_abs_det)``, both of shape ``S``: the output and, entry by entry,
        ``log |dy/dx|`` (forward) or ``log |dx/dy|`` of the inverse (``inverse=True``), so
        the inverse's log-det is minus the forward one at the matching point. 0 in the tails.
    """
    num_bins = widths.shape[-1]
    if (widths.shape != x.shape + (num_bins,) or heights.shape != widths.shape
            or derivatives.shape != x.shape + (num_bins - 1,)):
        raise ValueError(f"for input of shape {tuple(x.shape)} the spline needs widths and heights "
                         f"of shape (*{tuple(x.shape)}, K) and derivatives of shape "
                         f"(*{tuple(x.shape)}, K-1); got {tuple(widths.shape)}, "
                         f"{tuple(heights.shape)}, {tuple(derivatives.shape)}")
    inside = (x >= -bound) & (x <= bound)
    # Compute the spline on clamped input everywhere and pick the tails afterwards: a NaN or
    # inf computed in a branch that torch.where discards would still poison the gradient.
    xc = x.clamp(-bound, bound)
    xk, w = _knots(widths, bound, MIN_BIN_WIDTH)    # knot positions on the input side
    yk, h = _knots(heights, bound, MIN_BIN_HEIGHT)  # ... and on the output side
    d = _slopes(derivatives)

    # the bin each entry falls in: how many interior knots lie at or below it (0..K-1)
    edges = yk if inverse else xk
    k = (xc.unsqueeze(-1) >= edges[..., 1:-1]).sum(dim=-1)
    x0, w_k, y0, h_k = _gather(xk, k), _gather(w, k), _gather(yk, k), _gather(h, k)
    d0, d1 = _gather(d, k), _gather(d, k + 1)
    s = h_k / w_k
    curve = d1 + d0 - 2 * s  # how far the bin departs from a straight line

    if inverse:
        dy = xc - y0
        a = h_k * (s - d0) + dy * curve
        b = h_k * d0 - dy * curve
        c = -s * dy
        disc = (b.pow(2) - 4 * a * c).clamp(min=0)  # >= 0 in exact arithmetic
        xi = (2 * c) / (-b - torch.sqrt(disc))
        out = x0 + xi * w_k
    else:
        xi = (xc - x0) / w_k
        out = y0 + h_k * (s * xi.pow(2) + d0 * xi * (1 - xi)) / (s + curve * xi * (1 - xi))
    # log dy/dx at xi (the derivative in the module docstring), term by term. Every factor
    # is positive: the denominator is s (1 - 2 xi (1 - xi)) + (d0 + d1) xi (1 - xi) > 0.
    xi1 = xi * (1 - xi)
    log_deriv = (2 * torch.log(s) + torch.log(d1 * xi.pow(2) + 2 * s * xi1 + d0 * (1 - xi).pow(2))
                 - 2 * torch.log(s + curve * xi1))
    log_det = -log_deriv if inverse else log_deriv
    return torch.where(inside, out, x), torch.where(inside, log_det, torch.zeros_like(log_det))


class SplineCoupling(Flow):
    """Coupling layer whose changed entries go through a rational-quadratic spline.

    ``y_kept = x_kept``; each changed entry ``x_i`` becomes ``spline_i(x_i)``, with bin
    widths, heights and slopes predicted by an MLP from ``x_kept`` (Durkan et al. 2019,
    section 3.2). The Jacobian is triangular, so ``log|det| = sum_i log spline_i'(x_i)``,
    and the inverse applies the inverse splines, whose parameters come from the kept part
    that the forward pass left unchanged.

    Args:
        dim: number of entries of a sample.
        mask: ``(1, dim)`` with 1 on the kept entries (default: the even positions,
            :func:`~nvp_edu.masks.alternating_vector_mask`).
        hidden: width of the conditioner MLP (two hidden layers; last layer zero).
        bins: ``K``, the number of spline bins.
        bound: ``B``; the spline acts on ``[-B, B]``, the identity outside.

    The last layer starts at zero, so the layer starts as the identity map, up to
    rounding (see the module docstring).

    Example:
        >>> layer = SplineCoupling(2, hidden=16, bins=4)
        >>> x = torch.randn(5, 2)
        >>> y, log_det = layer(x)
        >>> (y - x).abs().max().item() < 1e-6, log_det.abs().max().item() < 1e-6
        (True, True)
    """

    def __init__(self, dim: int, mask: Tensor | None = None, hidden: int = 64, bins: int = 8,
                 bound: float = 3.0) -> None:
        super().__init__()
        mask = alternating_vector_mask(dim) if mask is None else mask.float()
        if mask.shape != (1, dim) or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must be a 0/1 tensor of shape (1, {dim}); got shape "
                             f"{tuple(mask.shape)}")
        n_kept = int(mask.sum())
        if not 0 < n_kept < dim:
            raise ValueError("mask must keep some entries and change others; got "
                             f"{mask.flatten().tolist()}")
        if bins < 2 or not bound > 0:
            raise ValueError(f"need bins >= 2 and bound > 0; got bins={bins}, bound={bound}")
        self.dim, self.bins, self.bound = dim, bins, float(bound)
        self.register_buffer("mask", mask)
        self.register_buffer("kept", torch.nonzero(mask[0] == 1).flatten())
        self.register_buffer("changed", torch.nonzero(mask[0] == 0).flatten())
        n_changed = dim - n_kept
        # per changed entry: K widths, K heights, K - 1 interior slopes
        self.net = MLP(n_kept, n_changed * (3 * bins - 1), hidden=hidden)

    def _transform(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"SplineCoupling(dim={self.dim}) needs input of shape "
                             f"(N, {self.dim}); got shape {tuple(x.shape)}")
        check_input(x, self, "SplineCoupling")
        params = self.net(x[:, self.kept])
        params = params.view(x.shape[0], len(self.changed), 3 * self.bins - 1)
        w, h, d = params.split([self.bins, self.bins, self.bins - 1], dim=-1)
        new, log_det = rational_quadratic_spline(x[:, self.changed], w, h, d, inverse=inverse,
                                                 bound=self.bound)
        out = x.clone()
        out[:, self.changed] = new
        return out, sum_except_batch(log_det)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=False)

    def inverse(self, y: Tensor) -> Tensor:
        return self._transform(y, inverse=True)[0]


class SplineFlow2D(VectorFlow):
    """A density model of vectors from spline couplings with alternating masks.

    The same interface as :class:`~nvp_edu.models.RealNVP2D` (``forward``, ``inverse``,
    ``log_prob``, ``sample``, ``trajectory``), with :class:`SplineCoupling` in place of
    the affine coupling. Train it on standardized data (``nvp_edu.toys.fit_density``):
    the splines act on ``[-bound, bound]``.

    Example:
        >>> model = SplineFlow2D(num_couplings=2, hidden=16, bins=4)
        >>> x = torch.randn(8, 2)
        >>> z, log_det = model(x)
        >>> torch.allclose(model.inverse(z), x, atol=1e-5), model.log_prob(x).shape
        (True, torch.Size([8]))
    """

    def __init__(self, dim: int = 2, num_couplings: int = 4, hidden: int = 64, bins: int = 8,
                 bound: float = 4.0) -> None:
        super().__init__()
        self.dim = dim
        self.flow = Sequential(*[
            SplineCoupling(dim, alternating_vector_mask(dim, invert=i % 2 == 1), hidden=hidden,
                           bins=bins, bound=bound)
            for i in range(num_couplings)
        ])
