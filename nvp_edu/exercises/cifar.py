"""Exercises for notebook 9 (CIFAR-10): the bits/dim of a logit-space model, and flips."""
from __future__ import annotations

import math

import torch

from . import Exercise, register


def _bpd_reference(log_prob_y, logit_log_det, D, levels):
    return (-(log_prob_y + logit_log_det) + D * math.log(levels)) / (D * math.log(2))


def _bpd_inputs(g):
    D = 3 * 32 * 32
    return (-D * (1.5 + torch.rand(4, generator=g)), D * (0.5 + torch.rand(4, generator=g)),
            D, 256)


register(Exercise(
    name="cifar_bits_per_dim",
    topic="CIFAR-10",
    reference=_bpd_reference,
    make_inputs=_bpd_inputs,
    atol=1e-4,
    hints=[
        (lambda i, e, g: torch.allclose(torch.as_tensor(g), _bpd_reference(i[0], 0 * i[1], i[2], i[3]),
                                        atol=1e-3),
         "the logit transform is part of the model: add its log-det to log p(y)."),
        (lambda i, e, g: torch.allclose(torch.as_tensor(g), e - 8.0, atol=1e-3),
         "the D ln(levels) term is missing: a density on [0, 1]^D must be rescaled to the "
         "pixel grid [0, 256)^D."),
    ],
    mistakes=[
        lambda lp, ld, D, levels: (-(lp - ld) + D * math.log(levels)) / (D * math.log(2)),
        lambda lp, ld, D, levels: -(lp + ld) / (D * math.log(2)),
        lambda lp, ld, D, levels: (-(lp + ld) + D * math.log(levels)) / D,
    ],
))


def _hflip_inputs(g):
    return (torch.randint(0, 256, (2, 3, 4, 5), generator=g).to(torch.uint8),)


register(Exercise(
    name="cifar_hflip",
    topic="CIFAR-10",
    reference=lambda x: x.flip(3),
    make_inputs=_hflip_inputs,
    hints=[(lambda i, e, g: torch.equal(torch.as_tensor(g), i[0].flip(2)),
            "that mirrors top and bottom; a horizontal flip reverses the width axis (dim 3).")],
    mistakes=[lambda x: x.flip(2), lambda x: x.flip(1)],
))
