"""Exercises of notebooks 6-8: bits/dim, the logit's log-det, factor-out, batch norm's log-det.

Example:
    >>> import math
    >>> from nvp_edu.exercises import check
    >>> check("nll_to_bits_per_dim", lambda nll, d, L: (nll + d * math.log(L)) / (d * math.log(2)))
    ✅ nll_to_bits_per_dim: correct on 3 random test cases.
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import Exercise, register


def _close(a: Tensor, b: Tensor) -> bool:
    return isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-5)


# Notebook 6: bits/dim from the NLL of dequantized data ------------------------------------

def nll_to_bits_per_dim(nll: Tensor, num_dims: int, levels: int) -> Tensor:
    """``(NLL + D ln L) / (D ln 2)``: NLL in nats of the ``[0, 1)`` data to bits/dim."""
    return (nll + num_dims * math.log(levels)) / (num_dims * math.log(2))


def _mutates_nll(nll, num_dims, levels):
    nll += num_dims * math.log(levels)  # in place: the caller's nll changes
    nll /= num_dims * math.log(2)
    return nll


register(Exercise(
    name="nll_to_bits_per_dim",
    hint='Dividing the pixels by L has log-det -D ln L, so the NLL of the integers is nll + D ln L nats; then divide by D ln 2 to get bits per dimension.',
    topic="images as data",
    reference=nll_to_bits_per_dim,
    make_inputs=lambda gen: (200 * torch.randn(5, generator=gen, dtype=torch.float64),
                             int(torch.randint(10, 100, (1,), generator=gen)),
                             int(torch.randint(2, 300, (1,), generator=gen))),
    hints=[
        (lambda i, e, g: _close(i[0] / (i[1] * math.log(2)), g),
         "the discretization constant is missing: add D ln L (the data were divided by L)."),
        (lambda i, e, g: _close(e - 2 * math.log2(i[2]), g),
         "sign of the constant: dividing by L has log-det -D ln L, so it adds +log2 L bits."),
        (lambda i, e, g: _close(e * math.log(2), g), "divide by ln 2 to go from nats to bits."),
    ],
    mistakes=[
        lambda nll, d, L: nll / (d * math.log(2)),
        lambda nll, d, L: (nll - d * math.log(L)) / (d * math.log(2)),
        lambda nll, d, L: (nll + d * math.log(L)) / d,
        lambda nll, d, L: (nll + d * math.log(256)) / (d * math.log(2)),  # ignores L
        _mutates_nll,
    ],
))


# Notebook 6: the logit transform's log-det ------------------------------------------------

def logit_log_det(x: Tensor, alpha: float) -> Tensor:
    """Per-sample log-det of ``y = logit(alpha + (1 - 2 alpha) x)`` for ``x`` of shape (N, D)."""
    p = alpha + (1 - 2 * alpha) * x
    return (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).sum(dim=1)


def _mutates_x__logit(x, alpha):
    x.mul_(1 - 2 * alpha).add_(alpha)  # p, computed in the caller's x
    return (math.log(1 - 2 * alpha) - torch.log(x) - torch.log1p(-x)).sum(dim=1)


register(Exercise(
    name="logit_log_det",
    hint="Chain rule: p = alpha + (1 - 2 alpha) x has dp/dx = 1 - 2 alpha, and logit(p) has derivative 1 / (p (1 - p)). Take the log of the product and sum over each sample's D entries.",
    topic="images as data",
    reference=logit_log_det,
    # alpha varies (0.05 is the paper's), so a hard-coded 0.05 fails
    make_inputs=lambda gen: (torch.rand(4, 6, generator=gen, dtype=torch.float64),
                             round(0.01 + 0.2 * torch.rand((), generator=gen).item(), 3)),
    hints=[
        (lambda i, e, g: _close(e - i[0].shape[1] * math.log(1 - 2 * i[1]), g),
         "the chain rule's inner factor (1 - 2 alpha) is missing: log(1 - 2 alpha) per entry."),
        (lambda i, e, g: _close(-e, g), "sign: d logit(p)/dp = 1 / (p (1 - p)), so the log-det is "
                                        "-log p - log(1 - p), plus log(1 - 2 alpha)."),
    ],
    mistakes=[
        lambda x, a: -logit_log_det(x, a),
        lambda x, a: logit_log_det(x, a) - x.shape[1] * math.log(1 - 2 * a),
        lambda x, a: logit_log_det(x, a).mean() * torch.ones(x.shape[0], dtype=x.dtype),
        lambda x, a: logit_log_det(x, 0.05),  # ignores alpha: the paper's value hard-coded
        _mutates_x__logit,
    ],
))


# Notebook 7: factor out half of the channels ----------------------------------------------

def squeeze_and_factor_out(x: Tensor) -> tuple[Tensor, Tensor]:
    """Squeeze ``(N, C, H, W) -> (N, 4C, H/2, W/2)`` (pixel_unshuffle order), put the
    channels in the official factor-out order (``nvp_edu.squeeze.factor_out_order``), then
    split them in two halves: ``(z, h)`` = (factored out: sub-pixels (0,1) and (1,0);
    kept for the next scale: (0,0) and (1,1))."""
    from nvp_edu.squeeze import factor_out_order

    y = torch.nn.functional.pixel_unshuffle(x, 2)[:, factor_out_order(x.shape[1])]
    h, z = y.chunk(2, dim=1)
    return z, h


def _plain_split(x: Tensor) -> tuple[Tensor, Tensor]:
    return tuple(torch.nn.functional.pixel_unshuffle(x, 2).chunk(2, dim=1))


register(Exercise(
    name="squeeze_and_factor_out",
    hint='F.pixel_unshuffle(x, 2) squeezes; index its channels with factor_out_order(C) (from nvp_edu.squeeze); the first half stays (h), the second half leaves (z); return (z, h).',
    topic="multi-scale architecture",
    reference=squeeze_and_factor_out,
    make_inputs=lambda gen: (torch.randn(2, *(int(v) for v in torch.randint(1, 4, (1,), generator=gen)),
                                         *(2 * int(v) for v in torch.randint(1, 4, (2,), generator=gen)),
                                         generator=gen, dtype=torch.float64),),
    hints=[
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and _close(e[0], g[1]),
         "the halves are swapped: z (first in the result) is the half that leaves, the "
         "second half of the reordered channels."),
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and i[0].shape[1] > 1
         and _close(_plain_split(i[0])[0], g[0]),
         "a plain split of the squeezed channels sends whole colour channels out: reorder "
         "them with factor_out_order(C) first, so (0,0) and (1,1) of every channel stay."),
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and g[0].shape != e[0].shape,
         "squeeze first: (C, H, W) -> (4C, H/2, W/2), then split the 4C channels in two."),
    ],
    mistakes=[
        lambda x: squeeze_and_factor_out(x)[::-1],
        _plain_split,
        lambda x: tuple(x.chunk(2, dim=2)),
        lambda x: tuple(x.reshape(x.shape[0], 4 * x.shape[1], 2, 2).chunk(2, dim=1)),
        lambda x: tuple(torch.nn.functional.pixel_unshuffle(x, 2).reshape(2, 12, 2, 2).chunk(2, 1)),
    ],
))


# Notebook 8: batch normalization's log-det ------------------------------------------------

def batchnorm_log_det(x: Tensor, eps: float) -> Tensor:
    """Train-mode log-det of batch norm on ``(N, C, H, W)``, per sample, shape ``(N,)``:
    ``-1/2 * H * W * sum_c log(var_c + eps)`` with the biased batch variance."""
    var = x.var(dim=(0, 2, 3), unbiased=False)
    pixels = x.shape[2] * x.shape[3]
    return (-0.5 * pixels * torch.log(var + eps).sum()).expand(x.shape[0])


def _mutates_x__batchnorm(x, eps):
    x -= x.mean(dim=(0, 2, 3), keepdim=True)  # centres the caller's x in place
    var = (x ** 2).mean(dim=(0, 2, 3))
    return (-0.5 * x.shape[2] * x.shape[3] * torch.log(var + eps).sum()).expand(x.shape[0])


register(Exercise(
    name="batchnorm_log_det",
    hint='Each channel c is divided by sqrt(var_c + eps) at all H*W pixels: log-det = -1/2 * H * W * sum_c log(var_c + eps), the same for every sample; the variance is the biased one over (N, H, W).',
    topic="batch normalization",
    reference=batchnorm_log_det,
    # per-channel scales and eps vary, so eps matters and a fixed eps fails
    make_inputs=lambda gen: ((0.2 + 2 * torch.rand(1, 2, 1, 1, generator=gen, dtype=torch.float64))
                             * torch.randn(8, 2, 3, 3, generator=gen, dtype=torch.float64),
                             round(0.01 + 0.3 * torch.rand((), generator=gen).item(), 3)),
    hints=[
        (lambda i, e, g: _close(e / (i[0].shape[2] * i[0].shape[3]), g),
         "every pixel of a channel is divided by the same std: multiply by H * W."),
        (lambda i, e, g: _close(2 * e, g), "std, not variance: the factor is -1/2 log(var + eps)."),
        (lambda i, e, g: _close(-e, g), "sign: dividing by a std > 1 shrinks volume (negative)."),
    ],
    mistakes=[
        lambda x, eps: batchnorm_log_det(x, eps) / 9,
        lambda x, eps: 2 * batchnorm_log_det(x, eps),
        lambda x, eps: -batchnorm_log_det(x, eps),
        lambda x, eps: batchnorm_log_det(x, 1e-5),  # ignores eps
        _mutates_x__batchnorm,
    ],
))
