"""Exercises for notebook 9 (CIFAR-10): the bits/dim of a logit-space model, and flips."""
from __future__ import annotations

import math

import torch

from . import Exercise, register


def _bpd_reference(log_prob_y, logit_log_det, D, levels):
    return (-(log_prob_y + logit_log_det) + D * math.log(levels)) / (D * math.log(2))


def _bpd_inputs(g):
    # image side and bit depth vary (CIFAR-10 is 32 and 8 bits: D = 3072, 256 levels), so
    # a function with 3072 or 256 written in fails
    side = int(torch.randint(4, 33, (1,), generator=g))
    levels = 2 ** int(torch.randint(3, 9, (1,), generator=g))
    D = 3 * side * side
    return (-D * (1.5 + torch.rand(4, generator=g)), D * (0.5 + torch.rand(4, generator=g)),
            D, levels)


def _mutates_log_prob_y(log_prob_y, logit_log_det, D, levels):
    log_prob_y += logit_log_det  # in place: the caller's tensor changes
    return (-log_prob_y + D * math.log(levels)) / (D * math.log(2))


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
        (lambda i, e, g: torch.allclose(torch.as_tensor(g), e - math.log2(i[3]), atol=1e-3),
         "the D ln(levels) term is missing: a density on [0, 1]^D must be rescaled to the "
         "pixel grid [0, levels)^D."),
    ],
    mistakes=[
        lambda lp, ld, D, levels: (-(lp - ld) + D * math.log(levels)) / (D * math.log(2)),
        lambda lp, ld, D, levels: -(lp + ld) / (D * math.log(2)),
        lambda lp, ld, D, levels: (-(lp + ld) + D * math.log(levels)) / D,
        lambda lp, ld, D, levels: (-(lp + ld) + 3072 * math.log(levels)) / (3072 * math.log(2)),
        lambda lp, ld, D, levels: (-(lp + ld) + D * math.log(256)) / (D * math.log(2)),
        _mutates_log_prob_y,
    ],
))


def _hflip_inputs(g):
    h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=g))
    return (torch.randint(0, 256, (2, 3, h, w), generator=g).to(torch.uint8),)


def _mutates_x(x):
    return x.copy_(x.flip(3))  # flips the caller's images


register(Exercise(
    name="cifar_hflip",
    topic="CIFAR-10",
    reference=lambda x: x.flip(3),
    make_inputs=_hflip_inputs,
    hints=[(lambda i, e, g: torch.equal(torch.as_tensor(g), i[0].flip(2)),
            "that mirrors top and bottom; a horizontal flip reverses the width axis (dim 3).")],
    mistakes=[lambda x: x.flip(2), lambda x: x.flip(1), _mutates_x],
))
