"""A fixed rotation of the plane: the cheapest way to mix coordinates between couplings.

With alternating masks in 2-D, every coupling moves one coordinate axis, conditioned on the
other: the flow only ever bends the plane along the two axes. A rotation

    y = R x,    R = [[cos a, -sin a], [sin a, cos a]]

between couplings lets the next couplings act along new directions. It is a flow with
``det R = 1``, so ``log|det| = 0`` and the inverse is ``R^T``: it costs nothing in the
likelihood and adds no parameters. Glow (notebook 10) learns such a mixing matrix (the
invertible 1x1 convolution); Real NVP's own answer is to alternate the masks.

Example:
    >>> rot = Rotation(45.0)
    >>> x = torch.randn(4, 2)
    >>> y, log_det = rot(x)
    >>> torch.allclose(rot.inverse(y), x, atol=1e-6), log_det.abs().max().item()
    (True, 0.0)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Flow, check_input


class Rotation(Flow):
    """``y = R x`` for vectors of size 2, ``R`` the rotation by ``degrees`` (log-det 0)."""

    def __init__(self, degrees: float) -> None:
        super().__init__()
        if not math.isfinite(degrees):
            raise ValueError(f"Rotation needs a finite angle in degrees; got {degrees!r}")
        a = math.radians(degrees)
        self.degrees = float(degrees)
        # float64 buffer: R^T R = I to rounding, so the inverse stays exact in float64 tests
        self.register_buffer("matrix", torch.tensor([[math.cos(a), -math.sin(a)],
                                                     [math.sin(a), math.cos(a)]],
                                                    dtype=torch.float64),
                             persistent=False)  # a function of `degrees`: not a learned state

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"Rotation acts on points of the plane, shape (N, 2); "
                             f"got shape {tuple(x.shape)}")
        check_input(x, self, "Rotation")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return x @ self.matrix.to(x.dtype).T, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        self._check(y)
        return y @ self.matrix.to(y.dtype)  # R^-1 = R^T

    def extra_repr(self) -> str:
        return f"degrees={self.degrees:g}"
