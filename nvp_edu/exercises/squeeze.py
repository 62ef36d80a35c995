"""Exercises for notebook 5: the squeeze (paper, section 3.6, Figure 3), its inverse, and
where each pixel goes.

Example:
    >>> import torch.nn.functional as F
    >>> from nvp_edu.exercises import check
    >>> check("unsqueeze", lambda y: F.pixel_shuffle(y, 2))  # doctest: +SKIP
    ✅ unsqueeze: correct on 3 random test cases.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import Exercise, Question, register, register_question


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
    hint="View x as (N, C, H/2, 2, W/2, 2): the two 2s are the row i and column j inside a "
         "block. Permute so that (c, i, j) come right after N, then reshape to 4C channels.",
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


# Exercise 2: the inverse ---------------------------------------------------------------

def unsqueeze(y: Tensor) -> Tensor:
    """``(N, 4C, H, W) -> (N, C, 2H, 2W)``, the inverse of :func:`squeeze`
    (= ``F.pixel_shuffle(y, 2)``): channel ``4c + 2i + j`` goes back to pixel ``(i, j)`` of
    every 2x2 block of channel ``c``."""
    n, c4, h, w = y.shape
    c = c4 // 4
    y = y.view(n, c, 2, 2, h, w)                     # (n, c, i, j, block row, block col)
    y = y.permute(0, 1, 4, 2, 5, 3)                  # (n, c, block row, i, block col, j)
    return y.reshape(n, c, 2 * h, 2 * w)


def _unsqueeze_inputs(gen: torch.Generator) -> tuple:
    c = 2 + int(torch.randint(2, (1,), generator=gen))
    h = 1 + int(torch.randint(3, (1,), generator=gen))
    return (torch.randn(2, 4 * c, h, 3, generator=gen),)


def _un_plain_reshape(y):
    n, c4, h, w = y.shape
    return y.reshape(n, c4 // 4, 2 * h, 2 * w)


def _un_ij_swapped(y):
    n, c4, h, w = y.shape
    return y.view(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 3, 5, 2).reshape(n, c4 // 4, 2 * h, 2 * w)


def _un_channels_last(y):  # TensorFlow's depth_to_space: channel (2i + j) * C + c
    n, c4, h, w = y.shape
    return y.view(n, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c4 // 4, 2 * h, 2 * w)


def _un_wrong_permute(y):  # the squeeze's permutation again, instead of its inverse
    n, c4, h, w = y.shape
    return y.view(n, c4 // 4, 2, 2, h, w).permute(0, 1, 3, 5, 2, 4).reshape(n, c4 // 4, 2 * h, 2 * w)


register(Exercise(
    name="unsqueeze", topic="squeeze", reference=unsqueeze, make_inputs=_unsqueeze_inputs,
    atol=0.0,
    hint="Run the squeeze backwards: view y as (N, C, 2, 2, H, W) = (n, c, i, j, block row, "
         "block col), permute to (n, c, block row, i, block col, j), reshape to (N, C, 2H, 2W).",
    mistakes=[_un_plain_reshape, _un_ij_swapped, _un_channels_last, _un_wrong_permute],
    hints=[
        (_is(_un_plain_reshape), "a plain reshape keeps memory order: the 4 channels of a "
         "block position must be spread back over the 2x2 block. View, permute, reshape."),
        (_is(_un_ij_swapped), "i (the row inside the block) must land next to the block row, "
         "j next to the block column."),
        (_is(_un_channels_last), "that is TensorFlow's depth_to_space order; here channel "
         "4c + 2i + j: c is the outermost of the three."),
        (lambda inp, exp, got: True, "compare with F.pixel_shuffle(y, 2); y.view(N, C, 2, 2, "
         "H, W) names the axes (n, c, i, j, block row, block col)."),
    ],
))


# Questions: follow a pixel; what a channel mask keeps after a squeeze ------------------

register_question(Question(
    name="squeeze_track_pixel", topic="squeeze",
    correct=30,
    why=("for x = torch.arange(32.).view(1, 2, 4, 4), output channel 6 = 4c + 2i + j is input "
         "channel c = 1 with i = 1, j = 0: the lower-left pixel of each 2x2 block of the "
         "second channel. Output position (1, 1) is block row 1, block column 1, so input "
         "row 2*1 + 1 = 3, column 2*1 + 0 = 2 of channel 1: the number 16 + 4*3 + 2 = 30."),
    hint="Decode the channel first: channel k = 4c + 2i + j. Then block (r, col) and offset "
         "(i, j) are input pixel (2r + i, 2col + j) of channel c, which holds "
         "16 * c + 4 * row + column.",
    feedback=[
        (14, "that is the right pixel of channel 0; channel 6 = 4 * 1 + 2 comes from input "
             "channel c = 1, whose numbers start at 16."),
        (27, "you swapped i and j: 2i + j = 2 means i = 1 (second row of the block), j = 0."),
        (6, "that is the channel number; the question asks which input number lands there."),
        (29, "column 2 * 1 + j with j = 0 is column 2, not column 1."),
        (26, "row 2 * 1 + i with i = 1 is row 3, not row 2."),
    ],
))

register_question(Question(
    name="middle_channel_kept", topic="squeeze",
    correct=2, atol=1e-9,
    why=("squeezed channel 4c + 2i + j holds input channel c: channels 0-3 come from input "
         "channel 0, 4-7 from channel 1, 8-11 from channel 2 (the middle one of five), and so "
         "on. channel_mask(20) keeps channels 0-9: all of input channels 0 and 1 and the top "
         "row (i = 0, channels 8 and 9) of channel 2. The channels of one input channel are "
         "consecutive, so a plain half-split cuts by input channel, not by position: this is "
         "why the factor-out reorders the channels first."),
    hint="Write down which input channel and which (i, j) each squeezed channel holds "
         "(channel = 4c + 2i + j), then keep the first half (channels 0 to 9).",
    feedback=[
        (4, "channel 2's four squeezed channels are 8, 9, 10 and 11; the first half is "
            "channels 0-9, so 10 and 11 are not kept."),
        (0, "channel 2's squeezed channels start at 4 * 2 = 8, inside the first half (0-9)."),
        (1, "both 8 and 9 are below 10."),
    ],
))
