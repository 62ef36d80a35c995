"""Exercises for notebook 9 (CIFAR-10): the bits/dim of a logit-space model, and flips."""
from __future__ import annotations

import math

import torch

from . import Exercise, Question, register, register_question


def bpd(log_prob_y, logit_log_det, D, levels):
    """Bits/dim of the pixel data from a model of the logit-space ``y``: ``log p(x~) =
    log p(y) + logit_log_det``, then ``(-log p(x~) + D ln(levels)) / (D ln 2)``."""
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
    reference=bpd,
    make_inputs=_bpd_inputs,
    atol=1e-4,
    hint="The model's density is of y = logit(...), not of the pixels: log p(x~) = log p(y) + "
         "logit_log_det. Then the discretization term D ln(levels) and nats -> bits: "
         "divide by D ln 2.",
    hints=[
        (lambda i, e, g: torch.allclose(torch.as_tensor(g), bpd(i[0], 0 * i[1], i[2], i[3]),
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


def hflip(x):
    """Mirror a batch of images ``(N, C, H, W)`` left-right: reverse the width axis."""
    return x.flip(3)


register(Exercise(
    name="cifar_hflip",
    topic="CIFAR-10",
    reference=hflip,
    hint="Left-right is the width axis W, dim 3 of (N, C, H, W); torch.flip (or x.flip) "
         "reverses an axis without copying anything by hand.",
    make_inputs=_hflip_inputs,
    hints=[(lambda i, e, g: torch.equal(torch.as_tensor(g), i[0].flip(2)),
            "that mirrors top and bottom; a horizontal flip reverses the width axis (dim 3).")],
    mistakes=[lambda x: x.flip(2), lambda x: x.flip(1), _mutates_x],
))


# Questions: bf16 and the log-det -----------------------------------------------------------

register_question(Question(
    name="bf16_spacing_near_7000", topic="CIFAR-10",
    correct=32,
    why=("bfloat16 keeps 8 significant bits (7 stored + the implicit 1). Between 4096 = 2^12 "
         "and 8192 the spacing is 2^(12 - 7) = 32: an NLL of about 7000 nats per CIFAR-10 "
         "image is rounded to a multiple of 32 nats, 32 / (3072 ln 2) = 0.015 bits/dim, as "
         "large as the differences one wants to see between runs. Hence log-dets and the "
         "prior stay in float32 (spacing 2^(12-23) = 0.0005 there)."),
    hint="bf16 has 7 stored fraction bits. Write 7000 as 1.something x 2^e; the smallest step "
         "of the fraction is 2^-7, times 2^e. (Check it: torch.tensor(7000.).bfloat16().item() "
         "and the next representable value.)",
    feedback=[
        (2 ** -7, "that is the relative step 2^-7; multiply by 2^12, the power of two just "
                  "below 7000."),
        (16, "bf16 stores 7 fraction bits, not 8: the spacing is 2^(12 - 7)."),
        (64, "7000 lies between 2^12 and 2^13, so the exponent is 12, not 13."),
        (2 ** (12 - 10), "that is float16's spacing (10 fraction bits); bfloat16 has 7."),
    ],
))

register_question(Question(
    name="why_float32_log_dets_are_cheap", topic="CIFAR-10",
    choices={
        "a": "float32 arithmetic is faster than bf16 on a GPU",
        "b": "the s/t networks' convolutions are almost all of the work; exp(s), the log-det "
             "sums and the prior are a few operations per entry, so doing them in float32 "
             "costs almost nothing",
        "c": "log-dets are integers, so precision does not matter",
        "d": "autocast cannot compute sums in bf16",
    },
    correct="b",
    why=("a 3x3 convolution with 64 input and 64 output channels costs about 64 * 64 * 9 "
         "multiply-adds per pixel, the log-det one addition per entry. bf16 speeds up the "
         "expensive part; the cheap bookkeeping keeps float32 precision."),
    hint="Count operations per entry: a 3x3 convolution with 64 channels in and out, against "
         "adding up s.",
    feedback={
        "a": "on a modern GPU bf16 matrix multiplies are several times faster than float32; "
             "that is why the networks run in bf16.",
        "c": "a log-det is a real number (a sum of s values); the previous question shows how "
             "much bf16 would round it.",
        "d": "autocast leaves sums in the dtype of their input; the coupling asks for float32 "
             "on purpose.",
    },
))


# Questions: float16 on GPUs without bf16 (T4, V100) -------------------------------------------

register_question(Question(
    name="fp16_sum_of_a_batch", topic="CIFAR-10",
    choices={
        "a": "about 448,000, rounded to a multiple of 256",
        "b": "inf",
        "c": "0: it underflows",
        "d": "exactly 448,000",
    },
    correct="b",
    why=("float16's largest finite number is 65,504 (5 exponent bits). 64 x 7,000 = 448,000 "
         "overflows to inf, and one inf in the loss makes every gradient inf or NaN. bfloat16 "
         "has float32's 8 exponent bits (largest about 3.4e38), so it would only round. That "
         "is why the trainer keeps the loss, the log-dets and the prior in float32 under "
         "either precision."),
    hint="Look up the largest finite float16: torch.finfo(torch.float16).max. Compare with "
         "64 x 7,000.",
    feedback={
        "a": "that is what bfloat16 would do (it has float32's range); float16's range is "
             "much smaller.",
        "c": "underflow is the problem of tiny numbers (gradients); 448,000 is large.",
        "d": "float16 cannot even hold 448,000: its largest finite number is 65,504.",
    },
))

register_question(Question(
    name="why_fp16_needs_a_gradient_scaler", topic="CIFAR-10",
    choices={
        "a": "it makes each step faster",
        "b": "many gradients are smaller than float16's smallest positive number (about 6e-8) "
             "and would become 0; multiplying the loss by S (a power of two) lifts them into "
             "range, and dividing the gradients by S before the step gives their values back",
        "c": "it clips gradients that are too large",
        "d": "float16 cannot represent negative gradients",
    },
    correct="b",
    why=("float16 keeps numbers down to 2^-24, about 6e-8 (subnormals), and only 11 significant "
         "bits near the bottom of that range: small gradients round to 0 or lose their digits. "
         "torch.amp.GradScaler multiplies the loss by a large power of two before backward, "
         "divides the gradients by it before the optimizer step (exact: a power of two), "
         "skips any step whose gradients hold inf or NaN, and then lowers the scale. bfloat16's "
         "range is float32's, so it needs no scaler."),
    hint="What happens to a gradient of 1e-9 when it is stored in float16? "
         "(torch.tensor(1e-9).half())",
    feedback={
        "a": "it costs a multiplication and a check for inf per step; speed comes from fp16 "
             "itself, the scaler keeps it correct.",
        "c": "clipping caps large gradients (the trainer clips at norm 100 separately); the "
             "scaler rescues small ones.",
        "d": "float16 has a sign bit like any float.",
    },
))
