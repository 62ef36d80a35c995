"""Exercise for notebook 4: the checkerboard mask (paper, section 3.4)."""
from __future__ import annotations

import torch
from torch import Tensor

from . import Exercise, register


def checkerboard(height: int, width: int) -> Tensor:
    """Float tensor ``(1, 1, H, W)``: 1 where ``i + j`` is odd, as ``nvp_edu.masks``."""
    i = torch.arange(height).view(-1, 1)
    j = torch.arange(width).view(1, -1)
    return ((i + j) % 2 == 1).float().view(1, 1, height, width)


def _make_inputs(gen: torch.Generator) -> tuple:
    # non-square and odd sizes, so a transposed or square-only answer shows up
    h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
    if h == w:
        w += 1
    return h, w


def _even_parity(h, w):
    return 1 - checkerboard(h, w)


def _no_batch_dims(h, w):
    return checkerboard(h, w)[0, 0]


def _transposed(h, w):
    return checkerboard(w, h)


def _ignores_width(h, w):  # square: uses height for both
    return checkerboard(h, h)


def _stripes(h, w):
    return (torch.arange(w) % 2 == 1).float().expand(h, w).reshape(1, 1, h, w)


register(Exercise(
    name="checkerboard_mask", topic="masks", reference=checkerboard, make_inputs=_make_inputs,
    atol=0.0, mistakes=[_even_parity, _no_batch_dims, _transposed, _stripes, _ignores_width],
    hints=[
        (lambda inp, exp, got: torch.equal(torch.as_tensor(got).float(), 1 - exp),
         "you have the other parity: the course's convention is 1 where i + j is odd "
         "(so pixel (0, 0) is 0)."),
        (lambda inp, exp, got: torch.as_tensor(got).dim() == 2,
         "return shape (1, 1, H, W) so it broadcasts over a batch of images: .view(1, 1, H, W)."),
        (lambda inp, exp, got: tuple(torch.as_tensor(got).shape[-2:]) == (inp[1], inp[0]),
         "height is the number of rows (i), width the number of columns (j)."),
        (lambda inp, exp, got: tuple(torch.as_tensor(got).shape[-2:]) == (inp[0], inp[0]),
         "the mask is height x width, not square: use width for the number of columns."),
        (lambda inp, exp, got: True, "the value must depend on both i and j: (i + j) % 2."),
    ],
))
