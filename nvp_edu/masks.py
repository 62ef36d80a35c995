"""Binary masks for coupling layers (Real NVP paper, section 3.4, Figure 3).

Convention (paper, Eq. 9): ``b = 1`` marks the entries that pass through unchanged and
condition ``s`` and ``t``; ``b = 0`` marks the entries that get scaled and shifted.
Layers alternate ``invert=False`` / ``invert=True`` so every entry is updated.
"""
from __future__ import annotations

import torch
from torch import Tensor


def checkerboard_mask(height: int, width: int, invert: bool = False) -> Tensor:
    """Spatial checkerboard, shape ``(1, 1, H, W)``: 1 where ``i + j`` is odd.

    Example:
        >>> checkerboard_mask(2, 2)[0, 0]
        tensor([[0., 1.],
                [1., 0.]])
    """
    if height < 1 or width < 1:
        raise ValueError(f"checkerboard_mask needs height, width >= 1; got ({height}, {width})")
    i = torch.arange(height).view(-1, 1)
    j = torch.arange(width).view(1, -1)
    mask = ((i + j) % 2 == 1).float()
    if invert:
        mask = 1.0 - mask
    return mask.view(1, 1, height, width)


def channel_mask(channels: int, invert: bool = False) -> Tensor:
    """Channel-wise mask, shape ``(1, C, 1, 1)``: 1 on the first half of the channels.

    Example:
        >>> channel_mask(4).flatten()
        tensor([1., 1., 0., 0.])
    """
    if channels < 2 or channels % 2:
        raise ValueError(f"channel_mask needs an even number of channels >= 2; got {channels}")
    mask = torch.zeros(channels)
    mask[: channels // 2] = 1.0
    if invert:
        mask = 1.0 - mask
    return mask.view(1, channels, 1, 1)


def alternating_vector_mask(dim: int, invert: bool = False) -> Tensor:
    """Vector mask, shape ``(1, D)``: 1 on the even positions (0, 2, ...).

    For 2-D data it keeps one coordinate and transforms the other.

    Example:
        >>> alternating_vector_mask(4)
        tensor([[1., 0., 1., 0.]])
    """
    if dim < 2:
        raise ValueError(f"a coupling needs dim >= 2 to split; got dim={dim}")
    mask = (torch.arange(dim) % 2 == 0).float()
    if invert:
        mask = 1.0 - mask
    return mask.view(1, dim)


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
