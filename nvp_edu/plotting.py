"""Matplotlib helpers shared by every notebook (one place, no copy-paste)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor


def image_grid(images: Tensor, nrow: int | None = None, levels: int | None = None,
               ax: plt.Axes | None = None, title: str | None = None) -> plt.Axes:
    """Show a batch ``(N, C, H, W)`` (C = 1 or 3) as one grid image.

    Values are taken as [0, 1] floats, or as integers in ``0..levels-1`` when ``levels``
    is given.
    """
    x = images.detach().float().cpu()
    if levels is not None:
        x = x / (levels - 1)
    x = x.clamp(0, 1)
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    ncol = int(math.ceil(n / nrow))
    pad = 1
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad)
    for k in range(n):
        r, col = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = x[k]
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 + 0.25 * nrow * max(1, w / 8), 0.5 + 0.25 * ncol * max(1, h / 8)))
    if c == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def training_curve(losses: list[float] | np.ndarray, ax: plt.Axes | None = None,
                   label: str | None = None, ylabel: str = "loss", smooth: int = 20) -> plt.Axes:
    """Plot a loss curve with a moving average (raw values faint behind it)."""
    y = np.asarray(losses, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    line = ax.plot(y, alpha=0.25)[0]
    if len(y) >= smooth > 1:
        kernel = np.ones(smooth) / smooth
        ax.plot(np.arange(smooth - 1, len(y)), np.convolve(y, kernel, mode="valid"),
                color=line.get_color(), label=label)
    elif label:
        line.set_label(label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if label:
        ax.legend()
    return ax
