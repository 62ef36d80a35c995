"""Exercise for notebook 5: the squeeze operation (paper, section 3.6, Figure 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import Exercise, register


def squeeze(x: Tensor) -> Tensor:
    """``(N, C, H, W) -> (N, 4C, H/2, W/2)``; output channel ``4c + 2i + j`` holds pixel
    ``(i, j)`` of every 2x2 block of input channel ``c`` (= ``F.pixel_unshuffle(x, 2)``)."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2)          # (n, c, H/2, i, W/2, j)
    x = x.permute(0, 1, 3, 5, 2, 4)                  # (n, c, i, j, H/2, W/2)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def _make_inputs(gen: torch.Generator) -> tuple:
    c = 2 + int(torch.randint(2, (1,), generator=gen))  # C >= 2: channel order matters
    h, w = 2 * (1 + int(torch.randint(3, (1,), generator=gen))), 6
    return (torch.randn(2, c, h, w, generator=gen),)


def _plain_reshape(x):
    n, c, h, w = x.shape
    return x.reshape(n, 4 * c, h // 2, w // 2)


def _channels_last_order(x):  # TensorFlow's space_to_depth: channel (2i + j) * C + c
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def _ij_swapped(x):
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 5, 3, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def _is(alt):
    return lambda inp, exp, got: torch.allclose(torch.as_tensor(got), alt(*inp))


register(Exercise(
    name="squeeze", topic="squeeze", reference=squeeze, make_inputs=_make_inputs, atol=0.0,
    mistakes=[_plain_reshape, _channels_last_order, _ij_swapped],
    hints=[
        (_is(_plain_reshape), "a plain reshape keeps memory order, so the 4 pixels of a 2x2 "
         "block do not end up in one output position: view as (N, C, H/2, 2, W/2, 2), "
         "permute, then reshape."),
        (_is(_channels_last_order), "right pixels, wrong channel order: this is TensorFlow's "
         "space_to_depth ((2i + j) * C + c). The course uses 4c + 2i + j, like "
         "F.pixel_unshuffle: keep c outermost."),
        (_is(_ij_swapped), "the row offset i comes before the column offset j: channel "
         "4c + 2i + j."),
        (lambda inp, exp, got: True, "compare your answer with F.pixel_unshuffle(x, 2)."),
    ],
))
