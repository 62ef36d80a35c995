"""Variational dequantization (Ho, Chen, Srinivas, Duan, Abbeel, "Flow++", ICML 2019,
arXiv:1902.00275, section 3.1): learn the noise that turns integer pixels into reals.

Uniform dequantization (``nvp_edu.preprocess``, Real NVP section 4.1) adds
``u ~ U[0, 1)^D`` to the integers ``x`` (``D`` numbers per image, ``L`` levels) and models
``x_deq = (x + u) / L`` with a density ``p`` on ``[0, 1)^D``. The discrete probability is
the integral of the density over the pixel's cell, ``P(x) = integral p(x_deq) L^-D du``,
and Jensen's inequality gives the bound the course trains on:

    -log P(x) <= E_u[ -log p(x_deq) ] + D ln L                       (u uniform)

The bound is loose wherever ``p`` is not flat inside a cell: the gap is exactly
``KL(uniform || p(. | cell))``. Flow++ draws ``u`` from a learned density ``q(u | x)`` on
``(0, 1)^D`` instead; multiplying and dividing the integrand by ``q`` gives

    P(x) = E_q[ p(x_deq) L^-D / q(u | x) ]
    -log P(x) <= E_q[ -log p(x_deq) + log q(u | x) ] + D ln L        (variational bound)

whose gap is ``KL(q(u | x) || p(u | x))``: a better ``q`` makes the bound tighter, and
``q`` is trained with the model on the same objective. With ``q`` uniform, ``log q = 0``
and the bound is the uniform one. Averaging ``K`` draws inside the logarithm tightens it
further (importance sampling, as in Burda et al. 2016's importance-weighted bound):

    -log P(x) ~= -log( (1/K) sum_k p(x_deq,k) / q(u_k | x) ) + D ln L
              = -logsumexp_k( log p_k - log q_k ) + log K + D ln L

an upper bound in expectation for every ``K``, that decreases to ``-log P(x)`` as ``K``
grows (and equals the variational bound for ``K = 1``).

The dequantizer here: ``u = m + (1 - 2m) sigmoid(g(eps; x))`` with ``eps ~ N(0, I)`` and
``g`` a stack of affine couplings (alternating checkerboard masks) whose ``s, t`` networks
see the coupling's kept half of ``eps`` and features of the image ``x / L``. It is a flow
from ``eps`` to ``u`` for each fixed ``x``, so by the change of variables

    log q(u | x) = log N(eps; 0, I) - sum_couplings log|det|
                   - sum_i [log sigmoid'(v_i) + log(1 - 2m)]

exactly, with ``v = g(eps; x)`` and ``log sigmoid'(v) = log sigmoid(v) + log sigmoid(-v)``.
The margin ``m = 1e-4`` keeps ``u`` in ``[m, 1 - m]``: any ``q`` inside the cell gives a
valid bound, and this one survives float32 rounding, so that ``floor(x_deq * L)`` is always
``x`` (for ``L <= 256``). It costs at most ``2m / ln 2 = 0.0003`` bits/dim.

Example:
    >>> deq = VariationalDequantizer(in_channels=1, levels=17, hidden=8, num_couplings=2)
    >>> x_int = torch.randint(0, 17, (3, 1, 4, 4))
    >>> x_deq, log_q = deq(x_int)
    >>> bool((torch.floor(x_deq * 17) == x_int).all()), log_q.shape
    (True, torch.Size([3]))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import sum_except_batch
from .ledger import bits_per_dim
from .masks import checkerboard_mask
from .nets import zero_init
from .preprocess import _check_pixels
from .prior import standard_normal_log_prob

MARGIN = 1e-4  # u stays in [MARGIN, 1 - MARGIN]: see the module docstring


class _ConditionalCoupling(nn.Module):
    """Affine coupling of ``eps`` given image features: ``y = b*e + (1-b)*(e*exp(s) + t)``.

    ``s, t`` come from a small conv net on ``[b * e, b, features]``; ``s`` is bounded
    (``scale * tanh``) as in :class:`~nvp_edu.flows.AffineCoupling`. The mask is a
    checkerboard built for the input's height and width. Only the forward direction is
    needed: the dequantizer draws ``u`` from ``eps``, never the other way round.
    """

    def __init__(self, channels: int, context_channels: int, hidden: int, invert: bool) -> None:
        super().__init__()
        self.invert = invert
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1 + context_channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            zero_init(nn.Conv2d(hidden, 2 * channels, 3, padding=1)),
        )
        self.scale = nn.Parameter(torch.ones(1))

    def _s_t(self, e: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = checkerboard_mask(e.shape[2], e.shape[3], self.invert).to(e)
        raw_s, t = self.net(torch.cat([e * b, b.expand(e.shape[0], -1, -1, -1), context],
                                      dim=1)).chunk(2, dim=1)
        s = self.scale * torch.tanh(raw_s) * (1 - b)  # kept entries: s = t = 0
        return b, s, t * (1 - b)

    def forward(self, e: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        b, s, t = self._s_t(e, context)
        return b * e + (1 - b) * (e * torch.exp(s) + t), sum_except_batch(s)


class VariationalDequantizer(nn.Module):
    """Learned dequantization noise ``q(u | x)`` (Flow++, section 3.1).

    ``x_deq, log_q = deq(x_int)``: ``x_int`` is a batch of integer images ``(N, C, H, W)``
    with values in ``0..levels-1`` (what :func:`nvp_edu.preprocess.dequantize` takes);
    ``x_deq = (x_int + u) / levels`` as in ``dequantize`` (float32 for a float32 module,
    float64 after ``.double()``), with ``u`` in ``[MARGIN, 1 - MARGIN]`` inside ``(0, 1)``
    drawn from ``q(u | x_int)``; ``log_q`` has shape ``(N,)``: ``log q(u | x_int)`` in nats,
    summed over the image.

    The training loss in nats per image, a bound on ``-log P(x_int)``::

        -(log p_model(x_deq) + log-det of the logit) + log_q + D ln levels

    (:func:`variational_bound_bpd` in bits/dim). Unlike uniform noise in float32, which can
    round ``x_int + u`` up to ``x_int + 1``, the margin keeps ``floor(x_deq * levels) == x_int``
    for up to 256 levels (see the module docstring).

    Args:
        in_channels: ``C``.
        levels: ``L``, the number of pixel values (256 for 8-bit images, 17 for digits).
        hidden: channels of the feature and coupling networks.
        num_couplings: affine couplings from ``eps`` to the pre-sigmoid ``v``.

    At initialization the couplings are the identity (zero last layers), so
    ``u = sigmoid(eps)``: a logit-normal, not yet uniform, draw.
    """

    def __init__(self, in_channels: int, levels: int, hidden: int = 32,
                 num_couplings: int = 4) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2; got {levels}")
        if in_channels < 1 or hidden < 1 or num_couplings < 1:
            raise ValueError("in_channels, hidden and num_couplings must be >= 1; got "
                             f"{in_channels}, {hidden}, {num_couplings}")
        self.in_channels, self.levels = in_channels, levels
        self.features = nn.Sequential(  # what the couplings know about the image
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
        )
        self.couplings = nn.ModuleList([
            _ConditionalCoupling(in_channels, hidden, hidden, invert=i % 2 == 1)
            for i in range(num_couplings)
        ])

    def _check(self, x_int: Tensor) -> None:
        if x_int.dim() != 4 or x_int.shape[1] != self.in_channels:
            raise ValueError(f"VariationalDequantizer(in_channels={self.in_channels}) needs "
                             f"integer images of shape (N, {self.in_channels}, H, W); got shape "
                             f"{tuple(x_int.shape)}")
        if x_int.shape[0] == 0:
            raise ValueError(f"VariationalDequantizer got an empty batch (shape "
                             f"{tuple(x_int.shape)}): pass at least one image")
        _check_pixels(x_int, self.levels)  # ValueError for fractions, NaN, out of range

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def transform(self, eps: Tensor, x_int: Tensor) -> tuple[Tensor, Tensor]:
        """The flow ``eps -> u`` for fixed ``x_int``: ``(u, log|det du/deps|)`` per image."""
        self._check(x_int)
        if eps.shape != x_int.shape:
            raise ValueError(f"eps must have the shape of the image {tuple(x_int.shape)}; got "
                             f"{tuple(eps.shape)}")
        return self._transform(eps, x_int)

    def _transform(self, eps: Tensor, x_int: Tensor) -> tuple[Tensor, Tensor]:
        context = self.features(x_int.to(eps.dtype) / self.levels)
        v, log_det = eps, eps.new_zeros(eps.shape[0])
        for coupling in self.couplings:
            v, ld = coupling(v, context)
            log_det = log_det + ld
        # u = m + (1 - 2m) sigmoid(v): du/dv = (1 - 2m) sigmoid(v) sigmoid(-v), and
        # logsigmoid stays finite for any v (sigmoid(v) itself rounds to 1 for v > ~17)
        log_det = log_det + sum_except_batch(F.logsigmoid(v) + F.logsigmoid(-v)
                                             + math.log(1 - 2 * MARGIN))
        u = MARGIN + (1 - 2 * MARGIN) * torch.sigmoid(v)
        return u, log_det

    def forward(self, x_int: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(u | x_int)``; return ``(x_deq, log_q)``, see the class docstring."""
        self._check(x_int)
        dtype = self._dtype()
        eps = torch.randn(x_int.shape, generator=generator, dtype=dtype, device=x_int.device)
        u, log_det = self._transform(eps, x_int)
        log_q = standard_normal_log_prob(eps) - log_det
        return (x_int.to(dtype) + u) / self.levels, log_q

    def inverse(self, x_deq: Tensor) -> Tensor:
        """The integers back: ``floor(x_deq * levels)``, clamped to ``0..levels-1``."""
        return torch.floor(x_deq * self.levels).clamp(0, self.levels - 1)


def _check_same_shape(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def variational_bound_bpd(log_p: Tensor, log_q: Tensor | float, num_dims: int,
                          levels: int) -> Tensor:
    """The variational bound in bits/dim, per image (module docstring; Flow++ section 3.1).

    ``( -log_p + log_q + D ln L ) / (D ln 2)``, where ``log_p`` is the model's log-density
    of ``x_deq`` on ``[0, 1)^D`` in nats (the logit's log-det included) and ``log_q`` the
    dequantizer's ``log q(u | x)``. ``log_q = 0`` (uniform noise) gives
    :func:`nvp_edu.ledger.bits_per_dim` of ``-log_p``, the course's usual figure.

    Example:
        >>> variational_bound_bpd(torch.zeros(2), 0.0, 3 * 32 * 32, 256)  # uniform p and q
        tensor([8., 8.])
    """
    if isinstance(log_q, Tensor):
        _check_same_shape(log_p, log_q, "log_p and log_q")
    return bits_per_dim(-log_p + log_q, num_dims, levels)


def importance_weighted_bpd(log_p_draws: Tensor, log_q_draws: Tensor, num_dims: int,
                            levels: int) -> Tensor:
    """The ``K``-draw importance-weighted estimate of ``-log2 P(x) / D``, per image.

    ``log_p_draws`` and ``log_q_draws`` have shape ``(K, N)``: for each of ``K``
    independent draws ``u_k ~ q(u | x)``, the model's ``log p(x_deq,k)`` and ``log q(u_k | x)``
    (as for :func:`variational_bound_bpd`). In nats per image,

        -log P(x) ~= -logsumexp_k(log p_k - log q_k) + log K + D ln L,

    which is at most the mean over ``k`` of the variational bound (Jensen: the log of a
    mean is at least the mean of the logs), equal to it for ``K = 1``.

    Example:
        >>> lp, lq = torch.tensor([[-1.0], [-3.0]]), torch.zeros(2, 1)
        >>> bool(importance_weighted_bpd(lp, lq, 4, 2) < variational_bound_bpd(lp, lq, 4, 2).mean())
        True
    """
    _check_same_shape(log_p_draws, log_q_draws, "log_p_draws and log_q_draws")
    if log_p_draws.dim() != 2:
        raise ValueError("log_p_draws and log_q_draws need shape (K draws, N images); got "
                         f"{tuple(log_p_draws.shape)}")
    log_w = (log_p_draws - log_q_draws).double()  # log-sum-exp of large numbers: float64
    k = log_w.shape[0]
    nll = -(torch.logsumexp(log_w, dim=0) - math.log(k))
    return bits_per_dim(nll, num_dims, levels).to(torch.promote_types(log_p_draws.dtype,
                                                                        torch.float32))
