"""Squeeze: trade spatial size for channels (paper, section 3.6, Figure 3).

Each 2x2 block of pixels becomes 4 channels: ``(C, H, W) -> (4C, H/2, W/2)``. It only
moves numbers around, so it is a permutation: log-det 0, exact inverse. After a squeeze
a channel-wise mask splits every original 2x2 neighbourhood between kept and changed.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import Flow


class Squeeze(Flow):
    """Space-to-depth by 2, channel order identical to ``F.pixel_unshuffle(x, 2)``.

    Output channel ``4c + 2i + j`` holds pixel ``(i, j)`` of each 2x2 block of input
    channel ``c``.

    Example:
        >>> import torch
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> y, log_det = Squeeze()(x)
        >>> y.shape, bool((Squeeze().inverse(y) == x).all())
        (torch.Size([1, 4, 2, 2]), True)
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"Squeeze needs input (N, C, H, W) with even H and W; got shape "
                             f"{tuple(x.shape)}")
        return F.pixel_unshuffle(x, 2), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        if y.dim() != 4 or y.shape[1] % 4:
            raise ValueError(f"Squeeze.inverse needs input (N, 4C, H, W) with channels a "
                             f"multiple of 4; got shape {tuple(y.shape)}")
        return F.pixel_shuffle(y, 2)


def factor_out_order(channels: int) -> list[int]:
    """Channel order of a squeezed tensor that puts what the next scale keeps first.

    ``channels`` is ``C`` of the unsqueezed image; the squeezed tensor has ``4C`` channels
    in ``pixel_unshuffle`` order (channel ``4c + 2i + j`` is sub-pixel ``(i, j)`` of colour
    ``c``). The official code factors out in this order: first the sub-pixels ``(0, 0)``
    of every colour, then ``(1, 1)``, then ``(0, 1)``, then ``(1, 0)``. Cutting it in half,
    the next scale keeps one colour of a spatial checkerboard, ``(0, 0)`` and ``(1, 1)``,
    for **every** channel, and the other checkerboard colour leaves. (Halving the plain
    squeezed order would send whole channels out: on RGB all of red and half of green.)

    Example:
        >>> factor_out_order(1)
        [0, 3, 1, 2]
        >>> factor_out_order(2)  # (0,0) of both colours, (1,1) of both, then the rest
        [0, 4, 3, 7, 1, 5, 2, 6]
    """
    return [4 * c + k for k in (0, 3, 1, 2) for c in range(channels)]
