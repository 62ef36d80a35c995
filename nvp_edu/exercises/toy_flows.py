"""Exercises of notebook 2: densities of 2-D toys and of a trained flow.

Example:
    >>> import torch
    >>> from nvp_edu.exercises import check
    >>> check("standardized_log_prob", lambda lp_u, std: lp_u - torch.log(std).sum())
    ✅ standardized_log_prob: correct on 3 random test cases.
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import Exercise, register

TOPIC = "2-D toy flows"


def _close(a: Tensor, b: Tensor) -> bool:
    return isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-5)


# 1. NLL in data units after standardization ---------------------------------------------

def standardized_log_prob(log_prob_u: Tensor, std: Tensor) -> Tensor:
    """``log p_X(x)`` from ``log p_U(u)``, ``u = (x - mean) / std``: ``log p_U(u) - sum_i log std_i``."""
    return log_prob_u - torch.log(std).sum()


def _mutates_log_prob_u(log_prob_u, std):
    return log_prob_u.sub_(torch.log(std).sum())  # the caller's tensor is changed


register(Exercise(
    name="standardized_log_prob",
    topic=TOPIC,
    reference=standardized_log_prob,
    make_inputs=lambda gen: (torch.randn(7, generator=gen, dtype=torch.float64) - 1,
                             0.2 + 2 * torch.rand(2, generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: _close(e + 2 * torch.log(i[1]).sum(), g),
         "wrong sign: u = (x - mean)/std has du/dx = 1/std, so log|det du/dx| = -sum log std."),
        (lambda i, e, g: _close(i[0], g), "you returned log p_U(u): the log-det of the scaling "
                                          "is missing."),
        (lambda i, e, g: _close(e - torch.log(i[1]).sum(), g),
         "std, not variance: the scaling divides by std."),
    ],
    mistakes=[
        lambda lp, std: lp + torch.log(std).sum(),        # sign flipped
        lambda lp, std: lp,                               # forgot the scaling
        lambda lp, std: lp - 2 * torch.log(std).sum(),    # used the variance
        lambda lp, std: lp - torch.log(std.prod()) / 2,   # halved
        _mutates_log_prob_u,
    ],
))


# 2. the ring of Gaussians: a mixture density with logsumexp ------------------------------

def mixture_log_prob(x: Tensor, centres: Tensor, std: float) -> Tensor:
    """``log p(x)`` of an equal-weight mixture of ``N(c_k, std^2 I)`` in 2-D, shape ``(N,)``.

    ``log p(x) = logsumexp_k(-|x - c_k|^2 / (2 std^2)) - log K - log(2 pi std^2)``.
    """
    d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return (torch.logsumexp(-d2 / (2 * std ** 2), dim=1) - math.log(len(centres))
            - math.log(2 * math.pi * std ** 2))


def _mixture_inputs(gen: torch.Generator) -> tuple:
    k = int(torch.randint(3, 8, (1,), generator=gen))  # the number of components varies
    centres = 2 * torch.randn(k, 2, generator=gen, dtype=torch.float64)
    x = (centres[torch.randint(0, k, (9,), generator=gen)]
         + 0.5 * torch.randn(9, 2, generator=gen, dtype=torch.float64))
    return x, centres, 0.4 + 0.3 * torch.rand((), generator=gen).item()


def _mutates_x__mixture(x, centres, std):
    x /= std  # in place: work in units of std
    d2 = ((x[:, None, :] - centres[None, :, :] / std) ** 2).sum(-1)
    return (torch.logsumexp(-d2 / 2, dim=1) - math.log(len(centres))
            - math.log(2 * math.pi * std ** 2))


register(Exercise(
    name="mixture_log_prob",
    topic=TOPIC,
    reference=mixture_log_prob,
    make_inputs=_mixture_inputs,
    hints=[
        (lambda i, e, g: _close(e + math.log(len(i[1])), g),
         "the mixture weights 1/K are missing (subtract log K)."),
        (lambda i, e, g: _close(e + 0.5 * math.log(2 * math.pi * i[2] ** 2), g),
         "a 2-D Gaussian's normalizer is 2 pi std^2 (one factor sqrt(2 pi) std per coordinate)."),
        (lambda i, e, g: any(_close(e + math.log(len(i[1]) / k), g) for k in range(1, 11)),
         "the number of components K is len(centres), and it differs between test cases: "
         "do not write a fixed K."),
    ],
    mistakes=[
        lambda x, c, s: mixture_log_prob(x, c, s) + math.log(len(c)),          # no 1/K
        lambda x, c, s: mixture_log_prob(x, c, s) + 0.5 * math.log(2 * math.pi * s ** 2),  # 1-D normalizer
        lambda x, c, s: (-((x[:, None] - c[None]) ** 2).sum(-1) / (2 * s ** 2)).max(1).values
        - math.log(2 * math.pi * s ** 2),                                      # nearest component only
        lambda x, c, s: mixture_log_prob(x, c, 0.5),                           # ignores std
        lambda x, c, s: mixture_log_prob(x, c, s) + math.log(len(c)) - math.log(5),  # K fixed at 5
        _mutates_x__mixture,
    ],
))


# 3. one 2-D affine coupling (paper, Eq. 4-6) --------------------------------------------

def affine_coupling_2d(x: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Keep ``x_1``; ``y_2 = x_2 exp(s) + t`` (``s, t`` of shape ``(N,)``, computed from ``x_1``).

    Returns ``(y, log_det)`` with ``log_det = s`` (the Jacobian is triangular, Eq. 6).
    """
    y = torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], dim=1)
    return y, s


def _mutates_x__coupling_2d(x, s, t):
    x[:, 1] = x[:, 1] * torch.exp(s) + t  # writes into the caller's x
    return x, s


register(Exercise(
    name="affine_coupling_2d",
    topic=TOPIC,
    reference=affine_coupling_2d,
    make_inputs=lambda gen: (torch.randn(6, 2, generator=gen, dtype=torch.float64),
                             torch.randn(6, generator=gen, dtype=torch.float64),
                             torch.randn(6, generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and _close(-e[1], g[1]),
         "log_det has the wrong sign: forward multiplies by exp(s), so it adds s."),
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and _close(torch.exp(e[1]), g[1]),
         "the log-det is s itself (log of exp(s)), not exp(s)."),
    ],
    mistakes=[
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], 1), -s),
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], 1), torch.exp(s)),
        lambda x, s, t: (torch.stack([x[:, 0], (x[:, 1] + t) * torch.exp(s)], 1), s),
        lambda x, s, t: (torch.stack([x[:, 0] * torch.exp(s), x[:, 1] * torch.exp(s) + t], 1), s),
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s)], 1), s),  # ignores t
        _mutates_x__coupling_2d,
    ],
))
