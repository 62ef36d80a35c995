"""The objective: negative log-likelihood in nats per image, the L2 term, bits/dim.

This is the official code's objective (tensorflow/models, ``research/real_nvp``): the mean
negative log-likelihood in **nats per image** of the dequantized image in ``[0, 1)^D``
(the model runs in logit space, paper section 4.1, and the logit's log-det is counted),
plus ``l2 * sum g^2`` over the weight-norm magnitudes and the checkerboard couplings'
scales (:func:`l2_parameters`; ``l2 = 5e-5``). Units matter: on a bits/dim loss (nats
divided by ``D ln 2``, 2129 for CIFAR-10) the same L2 coefficient would weigh ~2000x more
against the likelihood, and a gradient clip at 100 would never act.

What is reported is bits/dim of the discrete data, through the ledger
(:func:`nvp_edu.ledger.bits_per_dim`):

    bits/dim = (NLL in nats + D ln levels) / (D ln 2)

With ``--dequant variational`` (Flow++) the noise ``u`` comes from a learned ``q(u | x)``
and the objective is the variational bound ``E_q[-log p((x + u) / L) + log q(u | x)]``;
uniform noise is the case ``log q = 0``.

Example:
    >>> import torch
    >>> x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    >>> y, logit_log_det = to_model_space(x, 256, torch.Generator().manual_seed(0))
    >>> y.shape, logit_log_det.shape
    (torch.Size([2, 3, 4, 4]), torch.Size([2]))
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from ..coupling import AffineCoupling
from ..ledger import bits_per_dim as ledger_bits_per_dim
from ..nets import WNConv2d
from ..preprocess import LOGIT_ALPHA, Logit, dequantize
from ..prior import standard_normal_log_prob

__all__ = ["LOGIT_ALPHA", "to_model_space", "from_model_space", "bits_per_dim",
           "dequantized_model_space", "nll_nats", "model_bpd", "l2_parameters", "l2_penalty"]

# Preprocessing (notebook 6, nvp_edu.preprocess): dequantization (paper section 4.1,
# "jittering") and the logit with the official code's constraint p = 0.05 + 0.9 x.
_LOGIT = Logit(LOGIT_ALPHA)


def to_model_space(x_uint8: Tensor, levels: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Integer images -> logit space: ``y = logit(alpha + (1 - 2 alpha)(x + u) / levels)``.

    Returns ``y`` (float32) and the per-sample log-det of ``(x + u)/levels -> y``.
    """
    return _LOGIT(dequantize(x_uint8, levels, generator))


def from_model_space(y: Tensor) -> Tensor:
    """Inverse of the logit: model space -> images in [0, 1] (clamped, for display)."""
    return _LOGIT.inverse(y.float()).clamp(0, 1)


def bits_per_dim(log_prob_model_space: Tensor, logit_log_det: Tensor, D: int,
                 levels: int) -> Tensor:
    """Bits/dim of the discrete data: ``(-(log p(y) + logdet) + D ln levels) / (D ln 2)``.

    ``log p(y) + logdet`` is the log-density of the dequantized data scaled to [0, 1]
    (see :func:`nvp_edu.ledger.bits_per_dim`).
    """
    return ledger_bits_per_dim(-(log_prob_model_space + logit_log_det), D, levels)


def dequantized_model_space(x_uint8: Tensor, levels: int, generator: torch.Generator | None,
                            dequantizer: nn.Module | None = None
                            ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(y, logit log-det, log q)``: integer images in the model's logit space.

    Uniform noise from ``generator`` (``log q = None``: the density of ``u`` is 1 on
    ``[0, 1)^D``), or noise drawn by a variational ``dequantizer`` (Flow++, Ho et al.
    2019, section 3.1; :mod:`nvp_edu.vardeq`), which returns ``x = (x_int + u) / levels``
    and ``log q(u | x_int)``, shape ``(batch,)``.
    """
    if dequantizer is None:
        y, logit_ld = to_model_space(x_uint8, levels, generator)
        return y, logit_ld, None
    x, log_q = dequantizer(x_uint8, generator=generator)
    y, logit_ld = _LOGIT(x)
    return y, logit_ld, log_q.float()


def nll_nats(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator | None,
             autocast: Any = nullcontext(), channels_last: bool = False,
             dequantizer: nn.Module | None = None) -> Tensor:
    """Per-sample NLL in nats of the dequantized images in ``[0, 1)^D`` (the objective).

    ``-(log N(z) + log-dets of the flow + log-det of the logit)``, plus ``log q(u | x_int)``
    with a variational ``dequantizer`` (the bound ``>= -log P(x_int)``, up to the
    ``D ln levels`` the ledger adds). ``autocast`` runs the flow (the s/t networks) in
    bf16 or fp16; the prior and every log-det stay in float32.
    """
    y, logit_ld, log_q = dequantized_model_space(x_uint8, levels, generator, dequantizer)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    with autocast:
        z, log_det = net(y)
    nll = -(standard_normal_log_prob(z.float()) + log_det.float() + logit_ld)
    return nll if log_q is None else nll + log_q


def model_bpd(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator | None,
              autocast: Any = nullcontext(), channels_last: bool = False,
              dequantizer: nn.Module | None = None) -> Tensor:
    """Per-sample bits/dim of integer images under ``net`` (through the ledger); with a
    variational ``dequantizer``, of its bound."""
    nll = nll_nats(net, x_uint8, levels, generator, autocast, channels_last, dequantizer)
    return ledger_bits_per_dim(nll, x_uint8[0].numel(), levels)


@torch.no_grad()
def mean_bpd(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator | None,
             batch_size: int = 128, **options: Any) -> float:
    """Mean bits/dim of many integer images, :func:`model_bpd` batch by batch (each batch
    moved to ``net``'s device; ``options``: those of :func:`model_bpd`). One generator
    draws the noise of every batch in turn, so a seeded generator gives a fixed figure."""
    device = next(net.parameters()).device
    total = sum(float(model_bpd(net, xb.to(device), levels, generator, **options).sum())
                for xb in x_uint8.split(batch_size))
    return total / len(x_uint8)


def l2_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the paper's L2 term penalizes (section 4.1, "weight scale parameters").

    As the official code: every weight-norm magnitude ``g`` and the bounded-scale factor
    of the spatially masked (checkerboard) couplings; not the channel-wise couplings'
    factor, which the official code names differently and leaves out.
    """
    params = [m.magnitude for m in model.modules()
              if isinstance(m, WNConv2d) and m.magnitude is not None]
    params += [m.scale for m in model.modules()
               if isinstance(m, AffineCoupling) and m.mask.dim() == 4 and not m.split]
    return params


def l2_penalty(model_or_params: nn.Module | list[nn.Parameter]) -> Tensor:
    """``sum g^2`` over :func:`l2_parameters`; the objective adds ``l2 * l2_penalty``.

    Pass the list from :func:`l2_parameters` once looked up (the trainer does, so the
    training step does not walk the model's modules every time).
    """
    params = (l2_parameters(model_or_params) if isinstance(model_or_params, nn.Module)
              else model_or_params)
    if not params:
        return torch.zeros(())
    return sum(p.pow(2).sum() for p in params)
