"""Questions of notebook 6: predict the numbers of dequantization, the logit and bits/dim.

With ``L`` levels and ``D`` numbers per image, for dequantized data ``x~`` in ``[0, 1)^D``:

    bits/dim = (-log p(x~) + D ln L) / (D ln 2)

and the logit ``y = logit(alpha + (1 - 2 alpha) x~)`` has log-det per entry
``ln(1 - 2 alpha) - ln p - ln(1 - p)`` with ``p = alpha + (1 - 2 alpha) x~``.

Example:
    >>> from nvp_edu.exercises import answer
    >>> answer("uniform_half_cube_bits_per_dim", 7)  # doctest: +SKIP
    ✅ uniform_half_cube_bits_per_dim: right (7). ...
"""
from __future__ import annotations

import math

from . import Question, register_question

TOPIC = "images as data"

register_question(Question(
    name="logit_log_det_near_zero", topic=TOPIC,
    correct=-math.log(1e-7) - math.log1p(-1e-7), rtol=2e-3,
    why=("with alpha = 0, p = x = 1e-7 and the log-det is -ln p - ln(1 - p) = 16.12 nats for "
         "this ONE entry: the logit stretches the neighbourhood of 0 by 10^7, and the value "
         "grows without bound as x -> 0 (at x = 0 the logit is -inf). A few such pixels "
         "dominate the log-det of a whole image. Shrinking to [0.05, 0.95] first caps the "
         "stretch at 1 / (0.05 * 0.95) * 0.9 = 18.9, a log-det of at most 2.94 per entry."),
    hint="d logit(p)/dp = 1 / (p (1 - p)); with alpha = 0, p = x. Take the natural log of "
         "that derivative at x = 1e-7.",
    feedback=[
        (math.log(1e-7), "sign: the logit stretches near 0 (its derivative 1 / (p(1-p)) is "
                         "huge), so its log-det is large and positive."),
        (1e7, "that is the derivative itself; the log-det is its natural log."),
        (7.0, "that is log10; the log-det is in nats (natural log)."),
        (-math.log(1e-7) / math.log(2), "that is in bits; the question asks for nats."),
    ],
))

register_question(Question(
    name="uniform_half_cube_bits_per_dim", topic=TOPIC,
    correct=7.0,
    why=("the uniform density on [0, 1/2)^D is 2^D (its volume is 2^-D), so log p = D ln 2 "
         "and bits/dim = (-D ln 2 + D ln 256) / (D ln 2) = -1 + 8 = 7. Halving the range "
         "of every pixel saves exactly one bit per dimension."),
    hint="A uniform density is 1 / volume. What is the volume of [0, 1/2)^D? Then plug "
         "log p into (-log p + D ln 256) / (D ln 2).",
    feedback=[
        (8.0, "8 is the uniform density on the whole cube [0, 1)^D; on half of each axis "
              "the density is 2^D, not 1."),
        (9.0, "sign: a density above 1 (here 2^D) has a positive log p, which LOWERS the "
              "bits/dim."),
        (4.0, "halving each axis changes the density by a factor 2 per dimension: one bit "
              "per dimension, not half of the bits."),
    ],
))

register_question(Question(
    name="forgot_logit_log_det", topic=TOPIC,
    choices={
        "a": "too low",
        "b": "too high",
        "c": "unchanged",
        "d": "too high for some images and too low for others",
    },
    correct="b",
    why=("the logit's derivative is (1 - 2 alpha) / (p (1 - p)) >= 4 * 0.9 = 3.6 > 1 "
         "everywhere, so its log-det is positive (at least ln 3.6 = 1.28 nats per entry) for "
         "every image: log p(x~) = log p(y) + logit_log_det is larger than log p(y). "
         "Dropping the term reports a larger NLL, so bits/dim too high (by at least "
         "1.28 / ln 2 = 1.85 bits/dim)."),
    hint="Is the logit's log-det positive, negative, or either? Its derivative is "
         "(1 - 2 alpha) / (p (1 - p)); what is the smallest value it can take for p in "
         "(0, 1)?",
    feedback={
        "a": "log p(x~) = log p(y) + logit_log_det; what is the sign of logit_log_det?",
        "c": "the logit is a change of variables with a non-zero log-det; the density of the "
             "pixels is not the density of y.",
        "d": "since p (1 - p) <= 1/4, the derivative is at least 4 (1 - 2 alpha) = 3.6 for every "
             "pixel value: the log-det is positive for every image.",
    },
))
