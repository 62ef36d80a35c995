"""Exercises for notebook 3: an affine coupling's forward pass, inverse and log-det.

The learner's functions take ``x`` (or ``y``) of shape ``(N, D)``, a mask ``b`` of shape
``(1, D)`` (1 = kept) and ``st_net``, a function that maps the conditioning input ``b * x``
to ``(s, t)``, both of shape ``(N, D)``. The reference is the paper's Eq. 9 and Eq. 7-8.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import Exercise, register


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
    mistakes=[_inv_wrong_sign, _inv_wrong_order, _inv_plus_t, _inv_conditions_on_y,
              _inv_ignores_b, _mutates_y__inverse],
    hints=[
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
