"""Invertible 1x1 convolution, Glow's learned channel mixing (Kingma & Dhariwal 2018,
section 3.2, Table 1, row "Invertible 1x1 convolution").

Real NVP alternates fixed masks, so a channel-wise coupling only ever splits the channels
the same two ways. Glow replaces that fixed permutation by a learned one: every pixel's
vector of ``C`` channels is multiplied by the same invertible ``C x C`` matrix ``W``,

    y[:, :, i, j] = W @ x[:, :, i, j]                  (a 1x1 convolution)
    log|det dy/dx| = height * width * log|det W|        (one W per pixel)

Computing ``log|det W|`` costs ``O(C^3)``. Glow's LU parametrisation (section 3.2)
makes it ``O(C)``:

    W = P L (U + diag(sign_s * exp(log_s)))
    log|det W| = sum(log_s)

with ``P`` a fixed permutation, ``L`` lower triangular with ones on the diagonal, ``U``
strictly upper triangular, and the diagonal kept apart as signs (fixed) and log-magnitudes
(learned). As in Glow, ``W`` starts as a random rotation (the Q of the QR decomposition
of a Gaussian matrix, drawn from torch's global random stream), whose LU decomposition
gives the initial ``P, L, U, s``. The inverse map multiplies by ``W^-1``; with the LU form
it is two triangular solves, without it a matrix inverse computed in float64.

Example:
    >>> conv = InvConv1x1(4)
    >>> x = torch.randn(2, 4, 3, 3)
    >>> y, log_det = conv(x)
    >>> torch.allclose(conv.inverse(y), x, atol=1e-5), log_det.shape
    (True, torch.Size([2]))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Flow, check_input


def random_rotation(channels: int) -> Tensor:
    """A random orthogonal ``C x C`` matrix (float32): the Q of a Gaussian matrix's QR."""
    q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
    return q.float()


class InvConv1x1(Flow):
    """``y = W x`` at every pixel, ``W`` an invertible ``C x C`` matrix (Glow, section 3.2).

    For ``(N, C, H, W)`` images (a 1x1 convolution) and ``(N, C)`` vectors (a matrix
    product). The map itself and its log-det run in float32 even under autocast.

    Args:
        channels: ``C``.
        lu: the LU parametrisation (Glow, section 3.2; log-det ``O(C)``, exact triangular
            inverse); ``False``: a plain learned ``W``, log-det by ``torch.linalg.slogdet``.

    Example:
        >>> conv = InvConv1x1(3, lu=False)
        >>> x = torch.randn(5, 3)
        >>> y, log_det = conv(x)
        >>> torch.allclose(conv.inverse(y), x, atol=1e-5), round(log_det[0].item(), 5) == 0
        (True, True)
    """

    def __init__(self, channels: int, lu: bool = True) -> None:
        super().__init__()
        self.channels, self.lu = channels, lu
        w = random_rotation(channels)
        if not lu:
            self.weight = nn.Parameter(w)
            return
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)  # entries above are masked off
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def extra_repr(self) -> str:
        return f"{self.channels}, lu={self.lu}"

    def _factors(self) -> tuple[Tensor, Tensor]:
        """``L`` (unit lower triangular) and ``U + diag(sign_s * exp(log_s))``."""
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def weight_matrix(self) -> Tensor:
        """``W``, the ``C x C`` matrix applied at every pixel."""
        if not self.lu:
            return self.weight
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def log_abs_det_weight(self) -> Tensor:
        """``log|det W|``: ``sum(log_s)`` (LU) or ``slogdet(W)``."""
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight).logabsdet

    def inverse_weight_matrix(self) -> Tensor:
        """``W^-1``: ``U^-1 L^-1 P^T`` by triangular solves (LU), else ``inv(W)`` in float64."""
        if not self.lu:
            w = self.weight
            return torch.linalg.inv(w.double().cpu()).to(w)  # float64 on the CPU: also for MPS
        lower, upper = self._factors()
        eye = torch.eye(self.channels, dtype=lower.dtype, device=lower.device)
        lower_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        upper_inv = torch.linalg.solve_triangular(upper, eye, upper=True)
        return upper_inv @ lower_inv @ self.perm.T

    def _check(self, x: Tensor) -> int:
        """Check the shape; return the number of pixels ``H * W`` (1 for vectors)."""
        if x.dim() not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"InvConv1x1({self.channels}) needs input (N, {self.channels}) or "
                             f"(N, {self.channels}, H, W); got shape {tuple(x.shape)}")
        check_input(x, self, "InvConv1x1")
        return 1 if x.dim() == 2 else x.shape[2] * x.shape[3]

    def _multiply(self, x: Tensor, w: Tensor) -> Tensor:
        x = x.to(w.dtype)
        if x.dim() == 2:
            return x @ w.T
        return F.conv2d(x, w.view(self.channels, self.channels, 1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pixels = self._check(x)
        with torch.autocast(x.device.type, enabled=False):  # the flow map in full precision
            y = self._multiply(x, self.weight_matrix())
            log_det = pixels * self.log_abs_det_weight()
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        self._check(y)
        with torch.autocast(y.device.type, enabled=False):
            return self._multiply(y, self.inverse_weight_matrix())
