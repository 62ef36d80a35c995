"""The standard-normal prior p_Z (Real NVP paper, section 3.1).

    log N(z; 0, I) = -1/2 * sum_i (z_i^2 + log(2 pi))
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Per-sample log-density of ``z`` under N(0, I), summed over all non-batch dims.

    Computed in float32 (or float64 if ``z`` is) even when ``z`` comes from bf16 code.

    Example:
        >>> standard_normal_log_prob(torch.zeros(1, 2))  # -log(2 pi)
        tensor([-1.8379])
    """
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    return -0.5 * (z.pow(2) + LOG_2PI).reshape(z.shape[0], -1).sum(dim=1)


def standard_normal_sample(shape: tuple[int, ...], temperature: float = 1.0,
                           device: torch.device | str | None = None,
                           generator: torch.Generator | None = None,
                           dtype: torch.dtype | None = None) -> Tensor:
    """Draw from N(0, T^2 I). Temperature T < 1 trades diversity for typical samples.

    ``T`` must be a finite number > 0: ``T = 0`` would give the single point ``z = 0``
    (not a sample), and a negative ``T`` is the same as ``|T|`` by symmetry.

    Example:
        >>> standard_normal_sample((2, 3), temperature=0.5).shape
        torch.Size([2, 3])
        >>> standard_normal_sample((2, 3), temperature=0.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: temperature must be a finite number > 0 ...; got 0.0
    """
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and t > 0):
        raise ValueError("temperature must be a finite number > 0 (1.0: the model's density; "
                         f"below 1: more typical samples); got {temperature!r}")
    return t * torch.randn(shape, device=device, generator=generator, dtype=dtype)
