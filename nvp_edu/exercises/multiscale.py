"""Exercises for notebooks 7 and 8: what the multi-scale model and its batch norms compute.

They ask for a number the notebook's figures explain, not for code the notebook showed:
how many numbers leave at each scale (paper, section 3.6), the log-likelihood of a
factored-out model (the composition rule with factor-out, Eq. 13-14), and how long a
running average remembers its start (section 3.7).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import Exercise, Question, register, register_question

HINTS = {
    "numbers_per_scale": "each scale but the last sends half of what it received to the "
                         "prior; the final scale sends everything it received. The numbers "
                         "add up to C * S * S.",
    "multiscale_log_prob": "factoring out is a split, so every latent is scored by the "
                           "prior: sum log N(z; 0, 1) over all entries of z1 AND z2, per "
                           "image, then add the log-det.",
    "forgotten_weight": "write one update as running = (1 - m) * running + m * batch and "
                        "follow the weight of the starting value through `steps` updates.",
}


def numbers_per_scale(channels: int, size: int, num_scales: int) -> Tensor:
    """How many numbers leave ``RealNVP(channels, size, num_scales)`` at each scale.

    Scale ``k < L`` factors out half of the ``D / 2^(k-1)`` numbers it received; the final
    scale ``L`` outputs all ``D / 2^(L-1)`` it received. Returns an int64 tensor of length
    ``num_scales`` summing to ``D = channels * size**2``.
    """
    d = channels * size * size
    out = [d // 2 ** k for k in range(1, num_scales)] + [d // 2 ** (num_scales - 1)]
    return torch.tensor(out, dtype=torch.int64)


def _numbers_inputs(gen: torch.Generator) -> tuple:
    channels = (1, 3)[int(torch.randint(2, (1,), generator=gen))]
    size = (16, 32, 64)[int(torch.randint(3, (1,), generator=gen))]
    num_scales = 2 + int(torch.randint(3, (1,), generator=gen))
    return channels, size, num_scales


def _no_final(channels, size, num_scales):      # forgets that the last scale keeps all
    d = channels * size * size
    return torch.tensor([d // 2 ** k for k in range(1, num_scales + 1)], dtype=torch.int64)


def _no_halving(channels, size, num_scales):    # as if nothing were factored out
    return torch.full((num_scales,), channels * size * size // num_scales, dtype=torch.int64)


register(Exercise(
    name="numbers_per_scale", topic="multiscale", reference=numbers_per_scale,
    make_inputs=_numbers_inputs, cases=4, atol=0.0, mistakes=[_no_final, _no_halving],
    hints=[
        (lambda inp, exp, got: torch.as_tensor(got).sum() != exp.sum(),
         "your numbers do not add up to D = C * S * S: every number leaves the model "
         "exactly once."),
    ],
))


def _log_normal(z: Tensor) -> Tensor:
    return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def multiscale_log_prob(z1: Tensor, z2: Tensor, log_det: Tensor) -> Tensor:
    """``log p(x) = sum log N(z1) + sum log N(z2) + log|det|`` per image, shape ``(N,)``.

    ``z1`` is factored out after scale 1, ``z2`` comes out of the final scale; both go to
    the standard-normal prior, and ``log_det`` is the sum of every layer's log-det.
    """
    return _log_normal(z1) + _log_normal(z2) + log_det


def _log_prob_inputs(gen: torch.Generator) -> tuple:
    n = 2 + int(torch.randint(3, (1,), generator=gen))
    c = 1 + int(torch.randint(3, (1,), generator=gen))
    z1 = torch.randn(n, 2 * c, 4, 4, generator=gen, dtype=torch.float64)
    z2 = torch.randn(n, 2 * c, 4, 4, generator=gen, dtype=torch.float64)
    return z1, z2, 10 * torch.randn(n, generator=gen, dtype=torch.float64)


def _final_only(z1, z2, log_det):
    return _log_normal(z2) + log_det


def _minus_log_det(z1, z2, log_det):
    return _log_normal(z1) + _log_normal(z2) - log_det


def _no_constant(z1, z2, log_det):
    return (-0.5 * z1.pow(2)).flatten(1).sum(1) + (-0.5 * z2.pow(2)).flatten(1).sum(1) + log_det


register(Exercise(
    name="multiscale_log_prob", topic="multiscale", reference=multiscale_log_prob,
    make_inputs=_log_prob_inputs, atol=1e-8,
    mistakes=[_final_only, _minus_log_det, _no_constant],
    hints=[
        (lambda inp, exp, got: torch.allclose(torch.as_tensor(got), _final_only(*inp)),
         "z1 left the model early, but it is part of z: the prior scores it too."),
        (lambda inp, exp, got: torch.allclose(torch.as_tensor(got), _minus_log_det(*inp)),
         "the change of variables ADDS log|det df/dx| (the map from x to z)."),
        (lambda inp, exp, got: torch.allclose(torch.as_tensor(got), _no_constant(*inp)),
         "log N(z; 0, 1) = -z**2 / 2 - log(2 pi) / 2 for every entry: the constant counts."),
    ],
))


def forgotten_weight(momentum: float, steps: int) -> Tensor:
    """Weight the initial running value still has after ``steps`` updates
    ``running = (1 - momentum) * running + momentum * batch``: ``(1 - momentum) ** steps``."""
    return torch.tensor((1.0 - momentum) ** steps, dtype=torch.float64)


def _forgotten_inputs(gen: torch.Generator) -> tuple:
    momentum = (0.001, 0.01, 0.05, 0.1, 0.5)[int(torch.randint(5, (1,), generator=gen))]
    return momentum, int(torch.randint(1, 400, (1,), generator=gen))


register(Exercise(
    name="forgotten_weight", topic="batchnorm", reference=forgotten_weight,
    make_inputs=_forgotten_inputs, cases=5, atol=1e-9,
    mistakes=[lambda m, s: torch.tensor(m ** s, dtype=torch.float64),
              lambda m, s: torch.tensor(max(0.0, 1 - m * s), dtype=torch.float64)],
    hints=[
        (lambda inp, exp, got: abs(float(got) - inp[0] ** inp[1]) < 1e-12,
         "momentum is the weight of the NEW batch; the old value keeps 1 - momentum."),
        (lambda inp, exp, got: abs(float(got) - max(0.0, 1 - inp[0] * inp[1])) < 1e-12,
         "the weights multiply at each step, they do not subtract: (1 - m) * (1 - m) * ..."),
    ],
))


register_question(Question(
    name="train_mode_single_image", topic="batchnorm",
    choices={
        "a": "the model happens to fit single images better than batches",
        "b": "each image is standardized with its own mean and variance, a map chosen after "
             "seeing that image: the numbers are not the log-densities of any one model",
        "c": "with one image per batch less dequantization noise is drawn",
        "d": "the running averages were updated during the evaluation",
    },
    correct="b",
    why=("a density must be one fixed map for every image, so that it integrates to 1. In "
         "training mode the map (mean, variance, hence log-det) is fitted to the image it "
         "scores, which is why it can look better than the model really is. Only eval mode, "
         "with running statistics fixed before seeing the test image, gives a density."),
    hint="What does the batch-norm layer use as mean and variance when the batch is one "
         "image, and is that map the same for every image?",
    feedback={
        "a": "the weights are the same in both evaluations; only the statistics the batch "
             "norms use differ.",
        "c": "dequantization draws one noise value per pixel whatever the batch size.",
        "d": "the evaluation ran on a copy of the model; and eval mode never uses the "
             "updated averages of a train-mode pass anyway.",
    },
))


register_question(Question(
    name="final_scale_numbers_64x64", topic="multiscale",
    correct=768,
    why=("a 3x64x64 image has D = 12,288 numbers. Each of the first four scales sends half "
         "of what it received to the prior: 6,144, 3,072, 1,536, 768. The final scale "
         "receives the remaining 768 and sends all of them (it does not factor out)."),
    hint="Follow D = 3 * 64 * 64 through the scales: scales 1 to 4 each keep half and send "
         "half; the final (5th) scale sends everything it receives.",
    feedback=[
        (384, "the final scale does not factor out half: it sends everything it received."),
        (1536, "that is what leaves at scale 3; count four halvings before the final scale."),
        (6144, "that is what leaves at scale 1 (half of D)."),
        (12288, "that is D, all the numbers together; the question is the final scale's share."),
    ],
))


def _ema_steps() -> int:
    return math.ceil(math.log(0.01) / math.log(0.999))


register_question(Question(
    name="ema_steps_to_forget_the_start", topic="multiscale",
    correct=_ema_steps(), rtol=0.02,
    why=("after n updates the average keeps the weight 0.999**n of its starting value "
         "(the note under notebook 7's training curve, with 0.98 there). 0.999**n < 0.01 when "
         "n > ln(0.01) / ln(0.999) = 4603 steps. The averaging window 1 / (1 - 0.999) = "
         "1000 steps is how far the average lags; forgetting the start to 1% takes about "
         "4.6 windows (ln 100 = 4.6)."),
    hint="One update multiplies the starting value's weight by 0.999. Solve "
         "0.999**n = 0.01 for n with logarithms.",
    feedback=[
        (1000, "that is the averaging window 1 / (1 - 0.999), how far the average lags; "
               "after 1000 steps the start still holds 0.999**1000 = 37%."),
        (math.log(100), "that is ln 100, the number of averaging windows it takes; "
                        "one window is 1 / (1 - 0.999) = 1000 steps."),
        (10, "the start loses only 0.1% of its weight per step, so it takes thousands."),
    ],
))


register_question(Question(
    name="running_average_start_weight", topic="batchnorm",
    correct=(1 - 0.001) ** 176,
    rtol=2e-3,
    why=("each update keeps 1 - 0.001 of the old value, so after 176 updates the starting "
         "value (mean 0, variance 1) still has weight 0.999 ** 176 = 0.84: the running "
         "averages are mostly their starting values, whatever the network learnt. With "
         "momentum 0.01 it is 0.99 ** 176 = 0.17, with 0.1 about 1e-8: that is the order of "
         "the three eval-mode rows of the table."),
    hint="Write one update as running = (1 - m) * running + m * batch and follow the "
         "weight of the starting value through the steps: it is multiplied at every step.",
    feedback=[
        ((1 - 0.01) ** 176, "that is for momentum 0.01; the question asks about 0.001."),
        (0.001 ** 176, "momentum is the weight of the NEW batch; the old value keeps 1 - m."),
        (1 - 0.001 * 176, "close, but the weights multiply at each step: (1 - m) ** steps."),
    ],
))
