"""Bits per dimension, and a ledger that says where every bit comes from.

The figure image flows report is the negative log-likelihood of a discrete image in
bits per dimension (paper, section 5; Table 1). With ``D`` numbers per image, ``L`` pixel
levels and ``x = (x_int + u) / L`` the dequantized image in ``[0, 1)^D``:

    bits/dim = ( -log p(x) + D ln L ) / (D ln 2)          (p in nats, on [0, 1)^D)

an upper bound on ``-log2 P(x_int) / D`` (on average over the noise ``u``). A uniform
density on ``[0, 1)^D`` scores exactly ``log2 L`` (8 bits/dim for 256 levels).

The model sees ``y = logit(alpha + (1 - 2 alpha) x)``, so by the change of variables

    log p(x) = log N(z) + sum_k log|det J_scale k| + log|det J_logit|.

Divided by ``-D ln 2`` each term becomes a line of the ledger, and the lines add up to
the total exactly:

    prior            -log N(z) / (D ln 2)
    scale k log-det  -log|det J_k| / (D ln 2)        (one line per scale of RealNVP)
    logit log-det    -log|det J_logit| / (D ln 2)
    discretization   log2 L

Example:
    >>> from nvp_edu.models import RealNVP
    >>> model = RealNVP(1, 8, num_scales=2, mid_channels=4, num_blocks=1).eval()
    >>> ledger = bits_per_dim_ledger(model, torch.randint(0, 17, (5, 1, 8, 8)), levels=17)
    >>> abs(sum(ledger.means().values()) - ledger.total().mean().item()) < 1e-5
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .preprocess import LOGIT_ALPHA, Preprocess
from .prior import standard_normal_log_prob

LN2 = math.log(2)


def nats_to_bits_per_dim(nats: Tensor | float, num_dims: int) -> Tensor | float:
    """``nats / (D ln 2)``: a log-likelihood term per image to bits per dimension."""
    return nats / (num_dims * LN2)


def bits_per_dim_to_nats(bpd: Tensor | float, num_dims: int) -> Tensor | float:
    """``bpd * D ln 2``: the inverse of :func:`nats_to_bits_per_dim`."""
    return bpd * num_dims * LN2


def bits_per_dim(nll_nats: Tensor | float, num_dims: int, levels: int) -> Tensor | float:
    """Bits/dim of discrete data from the NLL (nats) of its dequantized ``[0, 1)`` version.

    ``(NLL + D ln L) / (D ln 2)``.

    Example:
        >>> bits_per_dim(0.0, 3 * 32 * 32, 256)  # uniform density on the unit cube
        8.0
    """
    return (nll_nats + num_dims * math.log(levels)) / (num_dims * LN2)


@dataclass
class Ledger:
    """Per-sample bits/dim for each term; ``total()`` is their sum."""

    terms: dict[str, Tensor]
    num_dims: int
    levels: int

    def total(self) -> Tensor:
        return torch.stack(list(self.terms.values())).sum(dim=0)

    def means(self) -> dict[str, float]:
        """Batch average of each term, in bits/dim."""
        return {name: value.mean().item() for name, value in self.terms.items()}

    def __str__(self) -> str:
        width = max(len(n) for n in self.terms) + 2
        lines = [f"{'term':<{width}}bits/dim", "-" * (width + 9)]
        lines += [f"{name:<{width}}{value:8.4f}" for name, value in self.means().items()]
        lines += ["-" * (width + 9), f"{'total':<{width}}{self.total().mean().item():8.4f}"]
        return "\n".join(lines)


def bits_per_dim_ledger(model: nn.Module, x_int: Tensor, levels: int,
                        alpha: float | None = LOGIT_ALPHA,
                        generator: torch.Generator | None = None) -> Ledger:
    """Dequantize ``x_int``, apply the logit (unless ``alpha=None``), run the model; split
    ``-log p`` into bits/dim per term (see the module docstring).

    A model with ``encode`` (:class:`~nvp_edu.models.RealNVP`) gets a prior line and one
    line per scale; any other model with ``log_prob`` gets a single "model" line. Runs the
    model as it is (call ``model.eval()`` first for a proper per-sample density).
    """
    pre = Preprocess(levels, alpha)
    pre.dequantizer.generator = generator
    x = pre.dequantizer(x_int)[0]
    num_dims = x[0].numel()

    def line(nats: Tensor) -> Tensor:  # a log-density term -> its bits/dim cost
        return -nats.float() / (num_dims * LN2)

    terms: dict[str, Tensor] = {}
    if pre.logit is not None:
        y, logit_ld = pre.logit(x)
    else:
        y, logit_ld = x, None
    if hasattr(model, "encode"):
        latents, log_dets = model.encode(y)
        terms["prior"] = line(sum(standard_normal_log_prob(z) for z in latents))
        for k, ld in enumerate(log_dets, start=1):
            terms[f"scale {k} log-det"] = line(ld)
    else:
        terms["model"] = line(model.log_prob(y))
    if logit_ld is not None:
        terms["logit log-det"] = line(logit_ld)
    terms["discretization"] = torch.full_like(terms[next(iter(terms))], math.log2(levels))
    return Ledger(terms, num_dims, levels)


@torch.no_grad()
def evaluate_bits_per_dim(model: nn.Module, x_int: Tensor, levels: int, draws: int = 1,
                          batch_size: int = 500, alpha: float | None = LOGIT_ALPHA,
                          seed: int = 0) -> float:
    """Mean bits/dim of ``x_int`` in eval mode, averaged over ``draws`` dequantization draws.

    Uses its own seeded generator, so the number is reproducible and does not move the
    global random stream. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.buffers()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    try:
        for _ in range(draws):
            for batch in x_int.split(batch_size):
                ledger = bits_per_dim_ledger(model, batch.to(device), levels, alpha, generator)
                total += ledger.total().sum().item()
                count += batch.shape[0]
    finally:
        model.train(was_training)
    return total / count
