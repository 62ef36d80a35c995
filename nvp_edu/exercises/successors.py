"""Exercises of notebook 10 (what came after Real NVP): actnorm's log-det, the log-det of an
invertible 1x1 convolution from its LU factors, and the importance-weighted estimate of
Flow++.

``HINTS`` gives one hint per exercise (read by ``nvp_edu.exercises.hint``).

Example:
    >>> from nvp_edu.exercises import check
    >>> check("actnorm_log_det", lambda x, s: (x.shape[2] * x.shape[3] * s.sum()).expand(x.shape[0]))
    ✅ actnorm_log_det: correct on 3 random test cases.
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import Exercise, Question, register, register_question

HINTS = {
    "actnorm_log_det": (
        "y = (x - loc) * exp(log_scale) multiplies every entry of channel c by exp(log_scale_c). "
        "The Jacobian is diagonal; how many entries of one image belong to channel c? "
        "The log-det is one number per image, the same for all N images: shape (N,)."),
    "invconv_log_det": (
        "det(P L U) = det(P) det(L) det(U). |det P| = 1 (a permutation), det L = 1 (ones on "
        "its diagonal), det U = product of its diagonal. Take log|.| of each diagonal entry "
        "(some are negative), and the same W acts at each of the height * width pixels."),
    "importance_weighted_nll": (
        "log of the mean of the K weights w_k = p_k / q_k, computed in log space: "
        "torch.logsumexp(log_p - log_q, dim=0) - log K; the NLL is minus that."),
}


def _close(a: Tensor, b: Tensor) -> bool:
    return (isinstance(b, Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=1e-5))


# Glow, section 3.1: actnorm ------------------------------------------------------------

def actnorm_log_det(x: Tensor, log_scale: Tensor) -> Tensor:
    """Per-image log-det of ``y = (x - loc) * exp(log_scale)`` on ``x`` of shape
    ``(N, C, H, W)``, ``log_scale`` of shape ``(C,)``: ``H * W * sum(log_scale)``, shape ``(N,)``."""
    return (x.shape[2] * x.shape[3] * log_scale.sum()).expand(x.shape[0])


def _mutates_x__actnorm(x, log_scale):
    x.mul_(torch.exp(log_scale).view(1, -1, 1, 1))  # the forward map, in the caller's x
    return actnorm_log_det(x, log_scale)


def _actnorm_inputs(gen: torch.Generator) -> tuple[Tensor, Tensor]:
    n, c, h, w = (int(v) for v in torch.randint(1, 6, (4,), generator=gen))
    x = torch.randn(n + 1, c, h, w, generator=gen, dtype=torch.float64)
    return x, 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)


register(Exercise(
    name="actnorm_log_det",
    topic="what came after Real NVP",
    reference=actnorm_log_det,
    make_inputs=_actnorm_inputs,
    hints=[
        (lambda i, e, g: _close(e / (i[0].shape[2] * i[0].shape[3]), g),
         "every pixel of channel c is scaled by exp(log_scale_c): multiply by H * W."),
        (lambda i, e, g: isinstance(g, Tensor) and g.dim() == 0,
         "return one value per image, shape (N,): e.g. value.expand(x.shape[0])."),
        (lambda i, e, g: _close(-e, g), "sign: a scale exp(s) > 1 stretches volume (positive)."),
    ],
    mistakes=[
        lambda x, s: actnorm_log_det(x, s) / (x.shape[2] * x.shape[3]),
        lambda x, s: x.shape[2] * x.shape[3] * s.sum(),
        lambda x, s: -actnorm_log_det(x, s),
        lambda x, s: (x.shape[2] * x.shape[3] * torch.exp(s).sum()).expand(x.shape[0]),
        _mutates_x__actnorm,
    ],
))


# Glow, section 3.2: the LU log-det of an invertible 1x1 convolution ---------------------

def invconv_log_det(upper: Tensor, height: int, width: int) -> Tensor:
    """Log-det of ``y = W x`` at every pixel of one ``height x width`` image, where
    ``W = P L upper`` (``P`` a permutation, ``L`` unit lower triangular, ``upper`` upper
    triangular): ``height * width * sum(log|diag(upper)|)``, a 0-dim tensor."""
    return height * width * torch.log(torch.diagonal(upper).abs()).sum()


def _mutates_upper__invconv(upper, height, width):
    upper.abs_()  # right value, but the caller's matrix changed
    return height * width * torch.log(torch.diagonal(upper)).sum()


def _invconv_inputs(gen: torch.Generator) -> tuple[Tensor, int, int]:
    c = int(torch.randint(2, 6, (1,), generator=gen))
    upper = torch.triu(torch.randn(c, c, generator=gen, dtype=torch.float64), 1)
    diag = 0.3 + torch.rand(c, generator=gen, dtype=torch.float64) * 2
    signs = torch.ones(c, dtype=torch.float64)
    signs[torch.randperm(c, generator=gen)[: max(1, c // 2)]] = -1  # some negative entries
    upper = upper + torch.diag(signs * diag)
    h, w = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
    return upper, h, w + 1


register(Exercise(
    name="invconv_log_det",
    topic="what came after Real NVP",
    reference=invconv_log_det,
    make_inputs=_invconv_inputs,
    hints=[
        (lambda i, e, g: isinstance(g, Tensor) and not bool(torch.isfinite(g).all()),
         "some diagonal entries are negative: the log-det is log|det|, so take abs() first."),
        (lambda i, e, g: _close(e / (i[1] * i[2]), g),
         "the same W acts at every pixel: multiply by height * width (Glow, section 3.2)."),
    ],
    mistakes=[
        lambda u, h, w: h * w * torch.log(torch.diagonal(u)).sum(),          # no abs: NaN
        lambda u, h, w: torch.log(torch.diagonal(u).abs()).sum(),            # one pixel
        lambda u, h, w: h * w * torch.log(u[u != 0].abs()).sum(),            # every entry
        lambda u, h, w: (h + w) * torch.log(torch.diagonal(u).abs()).sum(),
        _mutates_upper__invconv,
    ],
))


# Flow++, section 3.1: the importance-weighted estimate ----------------------------------

def importance_weighted_nll(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``-log((1/K) sum_k exp(log_p[k] - log_q[k]))`` per image; inputs ``(K, N)``, output ``(N,)``."""
    k = log_p.shape[0]
    return -(torch.logsumexp(log_p - log_q, dim=0) - math.log(k))


def _mutates_log_p__iw(log_p, log_q):
    log_p.sub_(log_q)  # the log-weights, in the caller's log_p
    return -(torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0]))


def _iw_inputs(gen: torch.Generator) -> tuple[Tensor, Tensor]:
    k, n = (int(v) for v in torch.randint(2, 7, (2,), generator=gen))
    log_p = -50 + 5 * torch.randn(k, n, generator=gen, dtype=torch.float64)
    log_q = 3 * torch.randn(k, n, generator=gen, dtype=torch.float64)
    return log_p, log_q


register(Exercise(
    name="importance_weighted_nll",
    topic="what came after Real NVP",
    reference=importance_weighted_nll,
    make_inputs=_iw_inputs,
    hints=[
        (lambda i, e, g: _close(-(i[0] - i[1]).mean(0), g),
         "that is the variational bound (the mean of the log-weights): the estimate takes "
         "the log of the mean of the weights instead, which is lower (Jensen)."),
        (lambda i, e, g: _close(e - math.log(i[0].shape[0]), g),
         "the mean over K draws: subtract log K from the log-sum-exp before the minus."),
        (lambda i, e, g: _close(-torch.logsumexp(i[0] + i[1], dim=0) + math.log(i[0].shape[0]), g),
         "the weight is p / q: log_p - log_q, not log_p + log_q."),
    ],
    mistakes=[
        lambda lp, lq: -(lp - lq).mean(0),
        lambda lp, lq: -torch.logsumexp(lp - lq, dim=0),
        lambda lp, lq: -(torch.logsumexp(lp + lq, dim=0) - math.log(lp.shape[0])),
        lambda lp, lq: -(lp - lq).max(0).values,
        _mutates_log_p__iw,
    ],
))


register_question(Question(
    name="iw_versus_bound", topic="successors",
    choices={
        "a": "above the variational bound",
        "b": "below it, or equal",
        "c": "it depends on the images",
    },
    correct="b",
    why=("log is concave, so log of the mean of p_k / q_k is at least the mean of the logs "
         "(Jensen): the importance-weighted estimate is never above the bound computed from "
         "the same K draws, and equals it only when every draw gives the same p_k / q_k. "
         "Section 5's table shows it: every IW figure is below its bound."),
    hint="Compare -log(mean of w_k) with mean of (-log w_k) for positive weights w_k = "
         "p_k / q_k: which is larger, for a concave log?",
    feedback={
        "a": "that would make the IW estimate a looser bound than the ELBO; Jensen says the "
             "opposite for the concave log.",
        "c": "Jensen's inequality holds for every image and every set of draws.",
    },
))


register_question(Question(
    name="constant_image_bpd", topic="successors",
    choices={
        "a": "below the median held-out digit: more likely than a typical digit",
        "b": "between the median held-out digit and the uniform density's 4.09",
        "c": "above 4.09: less likely than under a model that knows nothing",
    },
    correct="a",
    why=("an all-zero image is simpler than any digit: every pixel sits at the background "
         "value that most training pixels have, and the flow assigns it a high density "
         "(the measurement below the question gives it well under the median held-out "
         "digit's bits/dim, on every seed). This is the effect Nalisnick et al. reported, "
         "here on the simple side: a high likelihood does not mean 'looks like the "
         "training data', so likelihood alone is no out-of-distribution detector."),
    hint="Most pixels of the training digits are 0. Where does an image made only of the "
         "most frequent pixel value sit for a model that scores each pixel given its "
         "neighbours?",
    feedback={
        "b": "section 7's sets were less regular than a digit; this one is more regular "
             "than any digit, and the model's density is highest where the training "
             "pixels were most common.",
        "c": "that held for noise, inverted and shuffled digits, which are less regular "
             "than digits; an all-background image is the opposite case.",
    },
))
