"""Exercises for notebook 4: the checkerboard mask (paper, section 3.4), and what masks do.

Example:
    >>> from nvp_edu.exercises import answer
    >>> answer("stripes_kept_neighbours", 2)  # doctest: +SKIP
    ✅ stripes_kept_neighbours: right (2). ...
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import Exercise, Question, register, register_question


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
    atol=0.0,
    hint="Build a column of row indices i (shape (H, 1)) and a row of column indices j "
         "(shape (1, W)) with torch.arange; broadcasting (i + j) % 2 gives the H x W pattern.",
    mistakes=[_even_parity, _no_batch_dims, _transposed, _stripes, _ignores_width],
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


register_question(Question(
    name="same_mask_twice_copies", topic="masks",
    correct=18,
    why=("both layers keep the same 18 pixels (b = 1) and change only the other 18, so the "
         "kept 18 pass through both layers untouched: half of the image is never transformed, "
         "however many such layers you stack. That is why the layers alternate the parity."),
    hint="A coupling copies every pixel with b = 1. If the second layer's b is the same as "
         "the first's, which pixels does it copy?",
    feedback=[
        (0, "that is the count for two layers with OPPOSITE parities (printed above); here "
            "both layers have the same mask."),
        (36, "the pixels with b = 0 are changed by each layer (scaled and shifted)."),
        (9, "a 6 x 6 checkerboard keeps half of the 36 pixels, not a quarter."),
    ],
))

register_question(Question(
    name="why_checkerboard_wins", topic="masks",
    choices={
        "a": "the checkerboard model has more parameters",
        "b": "a changed pixel sees its four direct neighbours through s and t, and "
             "neighbouring pixels predict each other well; with the top/bottom mask most "
             "changed pixels see only pixels far away",
        "c": "a checkerboard coupling has a larger log-det by construction",
        "d": "luck of the seed",
    },
    correct="b",
    why=("with the same networks and the same parameter count, what differs is what s and t "
         "can condition on. In natural images (and digits) a pixel is best predicted from "
         "its neighbours, and the checkerboard puts all four of them in the kept half."),
    hint="Look at the numbers printed above: parameter counts, the spread over seeds. Then "
         "ask what the networks s and t get to see in each case.",
    feedback={
        "a": "the notebook printed 'equal parameter counts: True': same networks.",
        "c": "the log-det is sum(s) for any mask; no mask changes the formula, only what s "
             "and t are computed from.",
        "d": "every seed separates: the worst checkerboard seed beats the best top/bottom seed "
             "by about 0.4 bits/dim, while the spread over seeds is a few hundredths.",
    },
))

register_question(Question(
    name="stripes_kept_neighbours", topic="masks",
    correct=2,
    why=("with b = 1 on odd columns, a changed pixel (even column) has its left and right "
         "neighbours kept and its upper and lower neighbours changed, like itself: 2 of 4. "
         "The checkerboard gives 4 of 4; the top/bottom mask 0 of 4 for every pixel away "
         "from the middle row. So one expects stripes between the two."),
    hint="Draw a 4 x 4 grid, shade the odd columns (kept), pick a changed pixel in the "
         "middle, and count which of up/down/left/right are shaded.",
    feedback=[
        (4, "that is the checkerboard; with stripes the pixels above and below are in the "
            "same column as the changed pixel, so they are changed too."),
        (0, "left and right neighbours are in odd columns, which stripes keep."),
        (1, "both the left and the right neighbour are kept."),
    ],
))


# Exercise 4 (design, then measure): vertical stripes --------------------------------------

def stripes(height: int, width: int, invert: bool = False) -> Tensor:
    """Float tensor ``(1, 1, H, W)``: 1 on the odd columns (``j`` odd); ``invert`` swaps."""
    j = torch.arange(width).view(1, -1)
    mask = (j % 2 == 1).float().expand(height, width)
    if invert:
        mask = 1 - mask
    return mask.reshape(1, 1, height, width)


def _stripes_inputs(gen: torch.Generator) -> tuple:
    h, w = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
    if h == w:
        w += 1
    return h, w, bool(torch.randint(0, 2, (1,), generator=gen))


def _stripes_rows(h, w, invert=False):  # horizontal stripes: odd rows
    return stripes(w, h, invert).transpose(2, 3)


def _stripes_ignores_invert(h, w, invert=False):
    return stripes(h, w)


def _stripes_even(h, w, invert=False):
    return stripes(h, w, not invert)


register(Exercise(
    name="stripes_mask", topic="masks", reference=stripes, make_inputs=_stripes_inputs,
    atol=0.0, cases=4,
    hint="Only the column index j matters: (torch.arange(W) % 2 == 1), broadcast over the H "
         "rows; invert=True is 1 - mask. Return shape (1, 1, H, W).",
    mistakes=[_stripes_rows, _stripes_ignores_invert, _stripes_even],
    hints=[
        (lambda inp, exp, got: torch.equal(torch.as_tensor(got).float(), 1 - exp),
         "you have the other parity (or invert the wrong way round): 1 on the odd columns "
         "when invert=False."),
        (lambda inp, exp, got: torch.equal(torch.as_tensor(got).float(), _stripes_rows(*inp)),
         "the stripes are vertical: the value changes from column to column, not row to row."),
    ],
))

register_question(Question(
    name="stripes_where", topic="masks",
    choices={
        "a": "below the checkerboard (better than it)",
        "b": "between the checkerboard and the top/bottom mask",
        "c": "above the top/bottom mask (worse than both)",
    },
    correct="b",
    why=("a changed pixel sees 2 of its 4 direct neighbours with stripes, 4 with the "
         "checkerboard and (away from the middle row) none with the top/bottom mask; the "
         "measurement below the question puts stripes between the two."),
    hint="Use your answer to the neighbour count: which mask gives s and t more of the "
         "pixels that predict a changed pixel best?",
    feedback={
        "a": "stripes give s and t fewer direct neighbours than the checkerboard does.",
        "c": "the top/bottom mask gives (away from the middle row) no direct neighbour at all.",
    },
))
