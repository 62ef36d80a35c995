"""Exercises for notebook 3: an affine coupling's forward pass, inverse and log-det.

The learner's functions take ``x`` (or ``y``) of shape ``(N, D)``, a mask ``b`` of shape
``(1, D)`` (1 = kept) and ``st_net``, a function that maps the conditioning input ``b * x``
to ``(s, t)``, both of shape ``(N, D)``. The reference is the paper's Eq. 9 and Eq. 7-8.

The notebook's exercises are bug hunts and predictions: :func:`layer_from_functions` turns
a (buggy) forward or inverse function into a flow layer, so that the oracle of
``nvp_edu.checks`` can say which check fails; the fixed function is then checked with
``check``. (``coupling_forward`` and ``coupling_log_det`` stay registered for instructors
who want the learner to write the layer from scratch.)

Example:
    >>> from nvp_edu.checks import check_flow
    >>> layer = layer_from_functions(forward=coupling_forward_and_log_det)
    >>> check_flow(layer, torch.randn(4, 6)).passed
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..base import Flow
from ..masks import alternating_vector_mask
from . import Exercise, Question, register, register_question


def _make_inputs(gen: torch.Generator) -> tuple:
    """A batch, a random (not just alternating) mask and a fixed random s/t network."""
    n, d = 5, 6
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    b = torch.zeros(1, d, dtype=torch.float64)
    b[0, torch.randperm(d, generator=gen)[: d // 2]] = 1.0
    w_s = torch.randn(d, d, generator=gen, dtype=torch.float64)
    w_t = torch.randn(d, d, generator=gen, dtype=torch.float64)

    def st_net(h: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(h @ w_s) + 0.3, h @ w_t

    return x, b, st_net


def coupling_forward(x: Tensor, b: Tensor, st_net) -> Tensor:
    """Eq. 9: ``y = b*x + (1-b)*(x*exp(s) + t)`` with ``s, t = st_net(b*x)``."""
    s, t = st_net(b * x)
    return b * x + (1 - b) * (x * torch.exp(s) + t)


def coupling_inverse(y: Tensor, b: Tensor, st_net) -> Tensor:
    """Eq. 7-8: ``x = b*y + (1-b)*(y - t)*exp(-s)`` with ``s, t = st_net(b*y)``."""
    s, t = st_net(b * y)
    return b * y + (1 - b) * (y - t) * torch.exp(-s)


def coupling_log_det(x: Tensor, b: Tensor, st_net) -> Tensor:
    """Eq. 6: ``log|det dy/dx| = sum_j (1-b_j) s_j``, one number per sample."""
    s, _ = st_net(b * x)
    return ((1 - b) * s).sum(dim=1)


def _matches(alternative):
    """Hint predicate: the learner's answer equals what ``alternative`` computes."""
    def pred(inputs, expected, got):
        return torch.allclose(torch.as_tensor(got, dtype=torch.float64), alternative(*inputs),
                              atol=1e-6)
    return pred


# typical mistakes -------------------------------------------------------------------------

def _fwd_conditions_on_x(x, b, st_net):
    s, t = st_net(x)
    return b * x + (1 - b) * (x * torch.exp(s) + t)


def _fwd_exp_minus_s(x, b, st_net):
    s, t = st_net(b * x)
    return b * x + (1 - b) * (x * torch.exp(-s) + t)


def _fwd_shift_then_scale(x, b, st_net):
    s, t = st_net(b * x)
    return b * x + (1 - b) * ((x + t) * torch.exp(s))


def _fwd_changes_everything(x, b, st_net):
    s, t = st_net(b * x)
    return x * torch.exp(s) + t


def _inv_wrong_sign(y, b, st_net):
    s, t = st_net(b * y)
    return b * y + (1 - b) * (y - t) * torch.exp(s)


def _inv_wrong_order(y, b, st_net):
    s, t = st_net(b * y)
    return b * y + (1 - b) * (y * torch.exp(-s) - t)


def _inv_plus_t(y, b, st_net):  # the stray "+" of a circulating study summary
    s, t = st_net(b * y)
    return b * y + (1 - b) * (y + t) * torch.exp(-s)


def _inv_conditions_on_y(y, b, st_net):
    s, t = st_net(y)
    return b * y + (1 - b) * (y - t) * torch.exp(-s)


def _ld_all_entries(x, b, st_net):
    s, _ = st_net(b * x)
    return s.sum(dim=1)


def _ld_sum_exp(x, b, st_net):
    s, _ = st_net(b * x)
    return ((1 - b) * torch.exp(s)).sum(dim=1)


def _ld_minus(x, b, st_net):
    return -coupling_log_det(x, b, st_net)


def _ld_whole_batch(x, b, st_net):
    return coupling_log_det(x, b, st_net).sum()


def _ld_mean(x, b, st_net):
    s, _ = st_net(b * x)
    return ((1 - b) * s).mean(dim=1)


def _alternating(x):  # the textbook mask, whatever b says: ignores b
    return (torch.arange(x.shape[1]) % 2).to(x.dtype).view(1, -1)


def _fwd_ignores_b(x, b, st_net):
    return coupling_forward(x, _alternating(x), st_net)


def _inv_wrong_mask(y, b, st_net):  # conditions on the changed half (the notebook's bug)
    s, t = st_net((1 - b) * y)
    return b * y + (1 - b) * (y - t) * torch.exp(-s)


def _inv_ignores_b(y, b, st_net):
    return coupling_inverse(y, _alternating(y), st_net)


def _ld_ignores_b(x, b, st_net):
    return coupling_log_det(x, _alternating(x), st_net)


def _mutates_x__forward(x, b, st_net):
    s, t = st_net(b * x)
    return x.copy_(b * x + (1 - b) * (x * torch.exp(s) + t))  # overwrites the caller's x


def _mutates_y__inverse(y, b, st_net):
    s, t = st_net(b * y)
    y -= (1 - b) * t  # in place
    y *= b + (1 - b) * torch.exp(-s)
    return y


def _mutates_x__log_det(x, b, st_net):
    x.mul_(b)  # masks the caller's x in place
    s, _ = st_net(x)
    return ((1 - b) * s).sum(dim=1)


register(Exercise(
    name="coupling_forward", topic="coupling", reference=coupling_forward,
    make_inputs=_make_inputs,
    hint="s, t = st_net(b * x); the kept entries pass through (b * x), the others are scaled "
         "by exp(s) and then shifted by t: (1 - b) * (x * exp(s) + t).",
    mistakes=[_fwd_conditions_on_x, _fwd_exp_minus_s, _fwd_shift_then_scale,
              _fwd_changes_everything, _fwd_ignores_b, _mutates_x__forward],
    hints=[
        (_matches(_fwd_conditions_on_x), "s and t must see only the kept entries: call "
         "st_net(b * x), not st_net(x), or the layer cannot be inverted."),
        (_matches(_fwd_exp_minus_s), "the forward pass multiplies by exp(+s); exp(-s) belongs "
         "to the inverse."),
        (_matches(_fwd_shift_then_scale), "(x + t) * exp(s) is invertible too, but Eq. 9 is "
         "x * exp(s) + t: scale first, then shift."),
        (_matches(_fwd_changes_everything), "the kept entries (b = 1) must pass through "
         "unchanged: y = b*x + (1-b)*(...)."),
    ],
))

register(Exercise(
    name="coupling_inverse", topic="coupling", reference=coupling_inverse,
    make_inputs=_make_inputs,
    hint="b * y equals b * x (the kept entries did not change), so st_net(b * y) gives back "
         "the forward pass's s and t; then undo the shift, then the scale.",
    mistakes=[_inv_wrong_sign, _inv_wrong_order, _inv_plus_t, _inv_conditions_on_y,
              _inv_ignores_b, _inv_wrong_mask, _mutates_y__inverse],
    hints=[
        (_matches(_inv_wrong_mask), "st_net must see the KEPT entries, b * y (they are the "
         "same in x and y); (1 - b) * y holds the changed ones, which the forward pass's "
         "s and t never saw."),
        (_matches(_inv_wrong_sign), "undo the scale with exp(-s), not exp(s)."),
        (_matches(_inv_wrong_order), "undo the steps in reverse order: subtract t first, "
         "then multiply by exp(-s)."),
        (_matches(_inv_plus_t), "the forward pass added t, so the inverse subtracts it: "
         "(y - t) * exp(-s)."),
        (_matches(_inv_conditions_on_y), "s and t come from the kept entries, st_net(b * y): "
         "they equal b * x, so you get the forward pass's s and t back."),
    ],
))

register(Exercise(
    name="coupling_log_det", topic="coupling", reference=coupling_log_det,
    make_inputs=_make_inputs,
    hint="The Jacobian is triangular with 1 on the kept entries and exp(s_j) on the changed "
         "ones: sum (1 - b) * s over each sample's entries.",
    mistakes=[_ld_all_entries, _ld_sum_exp, _ld_minus, _ld_whole_batch, _ld_mean,
              _ld_ignores_b, _mutates_x__log_det],
    hints=[
        (_matches(_ld_all_entries), "only the changed entries (1 - b) are scaled: the kept "
         "ones have a 1 on the Jacobian's diagonal and add log 1 = 0."),
        (_matches(_ld_sum_exp), "the diagonal entries are exp(s); their log is s: sum s, "
         "not exp(s)."),
        (_matches(_ld_minus), "the sign is flipped: the forward pass's log-det is +sum(s)."),
        (_matches(_ld_mean), "a determinant is a product of the diagonal, so its log is a "
         "sum, not a mean."),
        (lambda inputs, expected, got: torch.as_tensor(got).dim() == 0,
         "return one log-det per sample: sum over dim=1 only, shape (N,)."),
    ],
))


# The bug hunts of notebook 3 ---------------------------------------------------------------

def coupling_forward_and_log_det(x: Tensor, b: Tensor, st_net) -> tuple[Tensor, Tensor]:
    """A coupling's forward pass as a flow layer returns it: ``(y, log_det)``.

    ``y = b*x + (1-b)*(x*exp(s) + t)`` (Eq. 9) and ``log|det dy/dx| = sum_j (1-b_j) s_j``
    (Eq. 6), with ``s, t = st_net(b*x)``; ``log_det`` has shape ``(N,)``.
    """
    s, t = st_net(b * x)
    y = b * x + (1 - b) * (x * torch.exp(s) + t)
    return y, ((1 - b) * s).sum(dim=1)


def _fl_all_of_s(x, b, st_net):  # the notebook's bug: s of the kept entries counted too
    s, t = st_net(b * x)
    return b * x + (1 - b) * (x * torch.exp(s) + t), s.sum(dim=1)


def _fl_minus(x, b, st_net):
    y, log_det = coupling_forward_and_log_det(x, b, st_net)
    return y, -log_det


def _fl_no_log_det(x, b, st_net):
    y, log_det = coupling_forward_and_log_det(x, b, st_net)
    return y, torch.zeros_like(log_det)


def _fl_exp_minus_s(x, b, st_net):
    return _fwd_exp_minus_s(x, b, st_net), coupling_log_det(x, b, st_net)


def _mutates_x__forward_and_log_det(x, b, st_net):
    s, t = st_net(b * x)
    log_det = ((1 - b) * s).sum(dim=1)
    return x.copy_(b * x + (1 - b) * (x * torch.exp(s) + t)), log_det


def _log_det_is(alternative):
    def pred(inputs, expected, got):
        return (isinstance(got, tuple) and len(got) == 2 and
                torch.allclose(torch.as_tensor(got[1], dtype=torch.float64),
                               alternative(*inputs)[1], atol=1e-6))
    return pred


register(Exercise(
    name="coupling_forward_and_log_det", topic="coupling",
    reference=coupling_forward_and_log_det, make_inputs=_make_inputs,
    hint="Only the changed entries (b = 0) are scaled: the Jacobian's diagonal is 1 on the "
         "kept entries and exp(s_j) on the changed ones. Which entries of s should the sum see?",
    mistakes=[_fl_all_of_s, _fl_minus, _fl_no_log_det, _fl_exp_minus_s,
              _mutates_x__forward_and_log_det],
    hints=[
        (_log_det_is(_fl_all_of_s), "the log-det still adds s of the kept entries: st_net "
         "returns s for every entry, but a kept entry has dy/dx = 1 (log 1 = 0). Multiply by "
         "(1 - b) before summing."),
        (_log_det_is(_fl_minus), "sign: the forward pass multiplies by exp(+s), so its log-det "
         "is +sum(s)."),
        (_log_det_is(_fl_no_log_det), "the log-det is zero: an affine coupling changes volume "
         "(only NICE's additive coupling does not)."),
    ],
))


class FunctionCoupling(Flow):
    """A coupling layer on vectors, built from two plain functions, for the bug hunts.

    ``forward(x, b, st_net) -> (y, log_det)`` and ``inverse(y, b, st_net) -> x`` have the
    exercises' signatures; ``st_net`` is a fixed random network (bounded ``s = tanh(.)``),
    so a wrong formula shows up in ``nvp_edu.checks.check_flow``. Built by
    :func:`layer_from_functions`.
    """

    def __init__(self, forward_fn, inverse_fn, mask: Tensor, net: nn.Module):
        super().__init__()
        self.forward_fn, self.inverse_fn = forward_fn, inverse_fn
        self.register_buffer("mask", mask)
        self.net = net

    def st_net(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self.net(h).chunk(2, dim=1)
        return torch.tanh(raw_s), t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_fn(x, self.mask, self.st_net)

    def inverse(self, y: Tensor) -> Tensor:
        return self.inverse_fn(y, self.mask, self.st_net)


def layer_from_functions(forward=None, inverse=None, dim: int = 6, seed: int = 0) -> FunctionCoupling:
    """A coupling layer on ``dim``-vectors from your ``forward`` and/or ``inverse`` function.

    A function you leave out is the reference (``coupling_forward_and_log_det``,
    ``coupling_inverse``), so the checks of ``nvp_edu.checks`` test the one you give. The
    mask keeps the even positions (``alternating_vector_mask(dim)``); ``s`` and ``t`` come
    from a small random network (fixed by ``seed``), away from the identity.

    Example:
        >>> from nvp_edu.checks import check_flow
        >>> print(check_flow(layer_from_functions(), torch.randn(4, 6)).passed)
        True
    """
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 2 * dim))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))
    return FunctionCoupling(forward or coupling_forward_and_log_det, inverse or coupling_inverse,
                            alternating_vector_mask(dim), net)


_WHICH_CHECK = {
    "a": "only the inverse check fails",
    "b": "only the log-det check fails",
    "c": "both checks fail",
    "d": "both checks pass",
}

register_question(Question(
    name="coupling_bug_log_det_which_check", topic="coupling",
    choices=_WHICH_CHECK, correct="b",
    why=("y is computed correctly, so forward then inverse gives x back; but the log-det sums "
         "s over ALL entries, while only the changed ones are scaled. check_log_det compares "
         "with autograd's Jacobian of the forward pass and fails."),
    hint="The inverse check runs forward then inverse and compares the points; the log-det "
         "check compares the forward's claimed log-det with autograd. Which of them can "
         "see this bug?",
    feedback={
        "a": "y is computed right and the inverse is the reference, so inverse(forward(x)) is x.",
        "c": "the points are transformed correctly: the inverse check only looks at points.",
        "d": "st_net returns s for every entry, also the kept ones, and the bug adds those.",
    },
))

register_question(Question(
    name="coupling_bug_inverse_which_check", topic="coupling",
    choices=_WHICH_CHECK, correct="a",
    why=("the log-det check only runs the forward pass (and autograd on it), which is the "
         "reference here, so it passes; inverse(forward(x)) uses s and t computed from the "
         "changed half, (1 - b) * y, which differ from the forward pass's s(b * x), t(b * x), "
         "so x does not come back."),
    hint="Which of the two checks ever calls the inverse?",
    feedback={
        "b": "the log-det check never calls the inverse: it compares the forward pass's "
             "log-det with autograd's Jacobian of the forward pass.",
        "c": "the forward pass (and its log-det) is the reference here; only the inverse is "
             "new.",
        "d": "(1 - b) * y is not b * y: s and t come out different from the forward pass's.",
    },
))

register_question(Question(
    name="coupling_predict_log_det", topic="coupling",
    correct=1.5,
    why=("only the 3 changed entries are scaled, each by exp(0.5): log|det| = 3 * 0.5 = 1.5, "
         "for every x (the kept entries contribute log 1 = 0)."),
    hint="The Jacobian is triangular: its determinant is the product of the diagonal, 1 for "
         "a kept entry and exp(s_j) for a changed one.",
    feedback=[
        (3.0, "that counts all 6 entries; the kept ones pass through unchanged (dy/dx = 1)."),
        (-1.5, "that is the log-det of the inverse; the forward pass multiplies by exp(+s)."),
        (math.exp(1.5), "that is the determinant itself; the layer returns its log."),
        (0.5, "the log of a product is the sum of the logs: add s over the changed entries."),
    ],
))

register_question(Question(
    name="coupling_why_nonfinite", topic="coupling",
    choices={
        "a": "the networks were initialised with NaN weights",
        "b": "s grew large, exp(s) overflowed (or y became huge), the prior term -y^2/2 and its "
             "gradient became inf, and one Adam step later the weights were NaN",
        "c": "sum(s), the log-det, overflows before exp(s) does",
        "d": "the inverse was called with the wrong mask",
    },
    correct="b",
    why=("the data force a large stretch (about e^7 on x2), so s is pushed up; unbounded, one "
         "big step makes exp(s) and y enormous, -y^2/2 overflows to -inf and the gradient to "
         "inf/NaN. With s = scale * tanh(raw), |s| <= |scale|, which moves by about one "
         "learning rate per step, so exp(s) cannot jump."),
    hint="Compare the size of the numbers: s, exp(s), y = x * exp(s) + t and y^2. Which one "
         "reaches the float32 limit (about 3.4e38) first?",
    feedback={
        "a": "the couplings start as the identity (zero output layer) and the losses are "
             "finite for hundreds of steps: the weights are fine at first.",
        "c": "sum(s) grows linearly in s; exp(s) and y^2 grow exponentially and overflow first.",
        "d": "the training loop only runs the forward pass; the inverse is never called.",
    },
))
