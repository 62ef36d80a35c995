"""Does the choice of mask matter? A small measured experiment on 8x8 digits (notebook 4).

A coupling layer changes the entries where the mask ``b`` is 0, conditioned on the entries
where it is 1 (paper, Eq. 9). The paper's checkerboard (section 3.4) gives every changed
pixel its four neighbours as context; a "top half / bottom half" split gives most changed
pixels only far-away context. This module trains the same small stack of affine couplings
(identical networks, so identical parameter counts) with either mask family on
scikit-learn's digits and reports held-out bits/dim.

Preprocessing and objective are the trainer's (:mod:`nvp_edu.training`, notebook 6):
dequantize the 17 grey levels, logit with ``alpha = 0.05``, minimise nats per image; the
figure is held-out bits/dim of the discrete data.

Example:
    >>> from nvp_edu.masks import checkerboard_mask, top_half_mask
    >>> result = train_mask_study(checkerboard_mask, steps=5, num_couplings=2,
    ...                           mid_channels=4, num_blocks=1)
    >>> sorted(result)[:3], result["num_params"] > 0
    (['losses', 'num_params', 'test_bpd'], True)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..base import Sequential
from ..coupling import AffineCoupling
from ..masks import top_half_mask  # noqa: F401 (the study's poor mask, notebook 4)
from ..nets import ResNet
from .loop import train
from .settings import Config

MaskFn = Callable[..., Tensor]  # (height, width, invert=False) -> (1, 1, H, W)


def coupling_stack(mask_fn: MaskFn, size: int = 8, num_couplings: int = 4,
                   mid_channels: int = 32, num_blocks: int = 2) -> Sequential:
    """``num_couplings`` affine couplings on ``(1, size, size)`` images, masks alternating."""
    layers = []
    for i in range(num_couplings):
        mask = mask_fn(size, size, invert=i % 2 == 1)
        layers.append(AffineCoupling(mask, ResNet(1, 2, mid_channels, num_blocks, mask=mask)))
    return Sequential(*layers)


def train_mask_study(mask_fn: MaskFn, steps: int = 1000, num_couplings: int = 4,
                     mid_channels: int = 32, num_blocks: int = 2, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train a coupling stack with masks from ``mask_fn`` on digits; measure test bits/dim.

    The course's one trainer (:func:`nvp_edu.train.train`) with the same seed, data
    order, networks and optimizer for every ``mask_fn``, so only the mask differs; the
    test split is evaluated once, after the last step. Returns ``{"losses": [train
    bits/dim per step], "test_bpd": float, "num_params": int}``.
    """
    torch.manual_seed(seed)
    flow = coupling_stack(mask_fn, 8, num_couplings, mid_channels, num_blocks)
    cfg = Config(dataset="digits", preset="digits", out=None, max_steps=steps,
                 batch_size=batch_size, lr=lr, seed=seed, log_every=1, eval_every=steps,
                 progress=progress)
    result = train(cfg, model=flow)
    return {"losses": result.history["train_bpd"], "test_bpd": result.summary["test_bpd"],
            "num_params": result.summary["params"]}
