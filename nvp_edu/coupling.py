"""Coupling layers: the invertible building block of Real NVP (paper, section 3.3-3.4).

Affine coupling (Eq. 4-5): with ``x`` split into a part ``x_1`` that is kept and a part
``x_2`` that is transformed,

    y_1 = x_1
    y_2 = x_2 * exp(s(x_1)) + t(x_1)

The Jacobian ``dy/dx`` is lower triangular (Eq. 6), so ``log|det| = sum(s(x_1))``, and the
inverse (Eq. 7-8) needs no inverse of ``s`` or ``t``:

    x_1 = y_1
    x_2 = (y_2 - t(y_1)) * exp(-s(y_1))

With a binary mask ``b`` (1 = kept) the same layer reads (Eq. 9)

    y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Flow, check_input, sum_except_batch
from .nets import MLP


def _is_channel_mask(mask: Tensor) -> bool:
    return mask.dim() == 4 and mask.shape[2:] == (1, 1) and mask.shape[1] > 1


def _check_mask_fits(mask: Tensor, x: Tensor) -> None:
    fits = x.dim() == mask.dim() and all(m in (1, s) for m, s in zip(mask.shape[1:], x.shape[1:]))
    if not fits:
        need = ", ".join(str(m) if m != 1 else "any" for m in mask.shape[1:])
        raise ValueError(f"input of shape {tuple(x.shape)} does not fit the coupling's mask of "
                         f"shape {tuple(mask.shape)}: expected (N, {need})")


class _Coupling(Flow):
    """Shared plumbing: mask handling and the conditioner network.

    For a channel mask the conditioner sees only the kept channels and predicts values for
    the changed ones (the channel-wise coupling "splits channels"); this is Eq. 9 with the
    zero entries of ``b * x`` left out, so the two forms agree exactly.
    """

    def __init__(self, mask: Tensor, net: nn.Module, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net = net
        self.split = _is_channel_mask(mask)
        if self.split:
            flat = mask.flatten()
            self.register_buffer("kept", torch.nonzero(flat == 1).flatten())
            self.register_buffer("changed", torch.nonzero(flat == 0).flatten())
        self.n_outputs = n_outputs

    def _conditioner(self, x: Tensor) -> tuple[Tensor, ...]:
        """The network's outputs, each shaped like the part of ``x`` that changes."""
        _check_mask_fits(self.mask, x)
        check_input(x, self, type(self).__name__)
        if self.split:
            h = self.net(x.index_select(1, self.kept))
        else:
            h = self.net(x * self.mask)
        return h.chunk(self.n_outputs, dim=1)

    def _combine(self, x: Tensor, new_part: Tensor) -> Tensor:
        """Put the kept entries of ``x`` and the transformed ``new_part`` back together."""
        if self.split:
            out = x.clone()
            out[:, self.changed] = new_part.to(x.dtype)
            return out
        return self.mask * x + (1 - self.mask) * new_part

    def _changed(self, x: Tensor) -> Tensor:
        return x.index_select(1, self.changed) if self.split else x


class AffineCoupling(_Coupling):
    """Affine coupling ``y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x))`` (paper, Eq. 9).

    ``s`` is bounded, ``s = scale * tanh(raw)`` with a learned ``scale``: an unbounded
    ``exp(s)`` is the usual source of NaN/inf. For images ``scale`` is one number per
    coupling, as in the official code; for vectors one per dimension.

    The official code computes ``(x + t) * exp(s)``; this is the paper's ``x * exp(s) + t``
    (Eq. 5). Both are affine maps of ``x`` with the same log-det: a network that outputs
    ``t`` for one form outputs ``t * exp(s)`` for the other.

    Args:
        mask: ``(1, D)`` for vectors, ``(1, 1, H, W)`` (checkerboard) or ``(1, C, 1, 1)``
            (channel-wise) for images; 1 marks the entries that pass through unchanged.
        net: maps the conditioning input to ``[raw_s, t]`` stacked on dim 1. For vector and
            checkerboard masks its input is ``b * x`` (same shape as ``x``) and its output
            has twice the channels of ``x``; for a channel mask its input is the kept
            channels and its output twice the changed channels. Default (vectors only): an
            ``MLP`` with ``hidden`` units.

    Example:
        >>> from nvp_edu.masks import alternating_vector_mask
        >>> layer = AffineCoupling(alternating_vector_mask(2), hidden=16)
        >>> x = torch.randn(4, 2)
        >>> y, log_det = layer(x)
        >>> torch.allclose(layer.inverse(y), x)
        True
    """

    def __init__(self, mask: Tensor, net: nn.Module | None = None, hidden: int = 128) -> None:
        if net is None:
            if mask.dim() != 2:
                raise ValueError("AffineCoupling builds a default net only for vector masks "
                                 f"of shape (1, D); got mask of shape {tuple(mask.shape)}: "
                                 "pass net=ResNet(...) for images")
            net = MLP(mask.shape[1], 2 * mask.shape[1], hidden=hidden)
        super().__init__(mask, net, n_outputs=2)
        # starts at 1: with the zero-initialized output layer raw_s = 0, and a zero scale
        # would then get no gradient through tanh(raw_s) = 0 (nor raw_s through scale = 0)
        scale_shape = (1, mask.shape[1]) if mask.dim() == 2 else ()
        self.scale = nn.Parameter(torch.ones(scale_shape))

    def _s_t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self._conditioner(x)
        # float32 (at least) for exp and the log-det even if the network ran in bf16
        dtype = torch.promote_types(x.dtype, torch.float32)
        s = self.scale * torch.tanh(raw_s.to(dtype))
        t = t.to(dtype)
        if not self.split:
            s = s * (1 - self.mask)  # kept entries: s = 0, so they add nothing to the log-det
            t = t * (1 - self.mask)
        return s.to(x.dtype), t.to(x.dtype)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._s_t(x)
        y = self._combine(x, self._changed(x) * torch.exp(s) + t)
        return y, sum_except_batch(s)

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._s_t(y)  # y's kept part equals x's, so s and t are the same as forward
        return self._combine(y, (self._changed(y) - t) * torch.exp(-s))


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling ``y = b*x + (1-b)*(x + t(b*x))`` (Dinh et al. 2014).

    Volume preserving: the Jacobian is triangular with ones on the diagonal, so the log-det
    is exactly 0. Real NVP's affine coupling adds the ``exp(s)`` scale.

    Example:
        >>> from nvp_edu.masks import alternating_vector_mask
        >>> layer = AdditiveCoupling(alternating_vector_mask(2), hidden=16)
        >>> x = torch.randn(4, 2)
        >>> y, log_det = layer(x)
        >>> torch.allclose(layer.inverse(y), x), log_det.abs().max().item()
        (True, 0.0)
    """

    def __init__(self, mask: Tensor, net: nn.Module | None = None, hidden: int = 128) -> None:
        if net is None:
            if mask.dim() != 2:
                raise ValueError("AdditiveCoupling builds a default net only for vector masks "
                                 f"of shape (1, D); got mask of shape {tuple(mask.shape)}")
            net = MLP(mask.shape[1], mask.shape[1], hidden=hidden)
        super().__init__(mask, net, n_outputs=1)

    def _t(self, x: Tensor) -> Tensor:
        (t,) = self._conditioner(x)
        t = t.to(x.dtype)
        return t if self.split else t * (1 - self.mask)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self._combine(x, self._changed(x) + self._t(x))
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return self._combine(y, self._changed(y) - self._t(y))
