"""Does the choice of mask matter? A small measured experiment on 8x8 digits (notebook 4).

A coupling layer changes the entries where the mask ``b`` is 0, conditioned on the entries
where it is 1 (paper, Eq. 9). The paper's checkerboard (section 3.4) gives every changed
pixel its four neighbours as context; a "top half / bottom half" split gives most changed
pixels only far-away context. This module trains the same small stack of affine couplings
(identical networks, so identical parameter counts) with either mask family on
scikit-learn's digits and reports held-out bits/dim.

Preprocessing, kept minimal here (notebook 6 treats it properly): dequantize the 17 grey
levels to ``x = (k + u) / 17`` with ``u ~ U[0, 1)``, then ``y = logit(alpha + (1 - 2 alpha) x)``
with ``alpha = 0.05`` (the official code's range [0.05, 0.95]). Bits/dim of the discrete
data (paper, section 4.1, with 17 levels instead of 256):

    bits/dim = (NLL_y - log|det dy/dx| + D ln 17) / (D ln 2)

Example:
    >>> from nvp_edu.masks import checkerboard_mask
    >>> result = train_mask_study(checkerboard_mask, steps=5, num_couplings=2,
    ...                           mid_channels=4, num_blocks=1)
    >>> sorted(result)[:3], result["num_params"] > 0
    (['losses', 'num_params', 'test_bpd'], True)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import Sequential
from .coupling import AffineCoupling
from .data import DIGITS_LEVELS, load_digits_split
from .ledger import bits_per_dim as ledger_bits_per_dim
from .nets import ResNet
from .preprocess import LOGIT_ALPHA, Logit, dequantize
from .prior import standard_normal_log_prob

MaskFn = Callable[..., Tensor]  # (height, width, invert=False) -> (1, 1, H, W)


def top_half_mask(height: int, width: int, invert: bool = False) -> Tensor:
    """A deliberately poor spatial mask, shape ``(1, 1, H, W)``: 1 on the top half of the rows.

    Example:
        >>> top_half_mask(4, 2)[0, 0]
        tensor([[1., 1.],
                [1., 1.],
                [0., 0.],
                [0., 0.]])
    """
    if height < 2 or height % 2:
        raise ValueError(f"top_half_mask needs an even height >= 2; got height={height}")
    mask = torch.zeros(height, width)
    mask[: height // 2] = 1.0
    if invert:
        mask = 1.0 - mask
    return mask.view(1, 1, height, width)


def dequantize_logit(k: Tensor, levels: int = DIGITS_LEVELS, alpha: float = LOGIT_ALPHA,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Integer images ``k`` in ``0..levels-1`` -> logit space ``y`` and ``log|det dy/dx|``.

    ``x = (k + u) / levels`` lies in [0, 1); ``y = logit(alpha + (1 - 2 alpha) x)``
    (the :mod:`nvp_edu.preprocess` flows of notebook 6).
    """
    return Logit(alpha)(dequantize(k, levels, generator))


def coupling_stack(mask_fn: MaskFn, size: int = 8, num_couplings: int = 4,
                   mid_channels: int = 32, num_blocks: int = 2) -> Sequential:
    """``num_couplings`` affine couplings on ``(1, size, size)`` images, masks alternating."""
    return Sequential(*[
        AffineCoupling(mask_fn(size, size, invert=i % 2 == 1),
                       ResNet(1, 2, mid_channels=mid_channels, num_blocks=num_blocks))
        for i in range(num_couplings)
    ])


def bits_per_dim(flow: Sequential, images: Tensor, seed: int = 0) -> float:
    """Held-out bits/dim of integer digit images under ``flow`` (one fixed noise draw)."""
    flow.eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y, logit_ld = dequantize_logit(images, generator=gen)
        z, ld = flow(y)
        nll = -(standard_normal_log_prob(z) + ld + logit_ld)  # nats, of x in [0, 1)^D
    return float(ledger_bits_per_dim(nll.mean().item(), images[0].numel(), DIGITS_LEVELS))


def train_mask_study(mask_fn: MaskFn, steps: int = 1000, num_couplings: int = 4,
                     mid_channels: int = 32, num_blocks: int = 2, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, progress: bool = False) -> dict:
    """Train a coupling stack with masks from ``mask_fn`` on digits; measure test bits/dim.

    Same seed, data order, networks and optimizer for every ``mask_fn``, so only the mask
    differs. Returns ``{"losses": [train bits/dim per step], "test_bpd": float,
    "num_params": int}``.
    """
    torch.manual_seed(seed)
    train, test = load_digits_split()
    flow = coupling_stack(mask_fn, train.shape[-1], num_couplings, mid_channels, num_blocks)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    dims = train[0].numel()
    losses = []
    steps_iter = range(steps)
    if progress:
        from tqdm.auto import tqdm
        steps_iter = tqdm(steps_iter, desc=getattr(mask_fn, "__name__", "mask"))
    flow.train()
    for _ in steps_iter:
        idx = torch.randint(len(train), (batch_size,), generator=gen)
        y, logit_ld = dequantize_logit(train[idx], generator=gen)
        z, ld = flow(y)
        nll = -(standard_normal_log_prob(z) + ld + logit_ld).mean()
        opt.zero_grad()
        nll.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
        opt.step()
        losses.append(ledger_bits_per_dim(nll.item(), dims, DIGITS_LEVELS))
    return {"losses": losses, "test_bpd": bits_per_dim(flow, test, seed),
            "num_params": sum(p.numel() for p in flow.parameters())}
