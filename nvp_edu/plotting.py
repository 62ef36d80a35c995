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


# ---------------------------------------------------------------- 2-D figures (notebook 2)

def _grid(bounds: tuple[float, float, float, float], n: int) -> tuple[np.ndarray, np.ndarray, Tensor]:
    x0, x1, y0, y1 = bounds
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    xx, yy = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1)).float()
    return xx, yy, pts


def density_heatmap(log_prob, bounds: tuple[float, float, float, float] = (-3, 3, -3, 3),
                    n: int = 200, ax: plt.Axes | None = None, title: str | None = None,
                    log_scale: bool = False, vmax: float | None = None,
                    colorbar: bool = True) -> plt.Axes:
    """Heatmap of a density on an ``n x n`` grid over ``bounds = (x0, x1, y0, y1)``.

    ``log_prob`` is a model with a ``log_prob`` method or a function ``(N, 2) -> (N,)``.
    Shows ``p(x)`` (or ``log p(x)`` with ``log_scale``, clipped 12 nats below the max),
    with a colour bar. Panels to be compared share one scale: pass the same ``vmax`` (for
    example the exact density's maximum, :func:`density_max`); values above it saturate.
    """
    img = _density_image(log_prob, bounds, n, log_scale)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    im = ax.imshow(img, origin="lower", extent=bounds, cmap="viridis", aspect="auto",
                   vmin=None if log_scale else 0.0, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03,
                           label="log p(x)" if log_scale else "density p(x)")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return ax


def _density_image(log_prob, bounds, n: int, log_scale: bool = False) -> np.ndarray:
    fn = log_prob.log_prob if hasattr(log_prob, "log_prob") else log_prob
    xx, _, pts = _grid(bounds, n)
    with torch.no_grad():
        lp = torch.cat([fn(pts[i:i + 8192]).double().cpu() for i in range(0, len(pts), 8192)])
    lp = lp.numpy().reshape(xx.shape)
    return np.maximum(lp, lp.max() - 12) if log_scale else np.exp(lp)


def density_max(log_prob, bounds: tuple[float, float, float, float], n: int = 200) -> float:
    """The largest value of a density on the heatmap's grid (a shared ``vmax``)."""
    return float(_density_image(log_prob, bounds, n).max())


def data_vs_samples(data: Tensor, samples: Tensor, bounds: tuple[float, float, float, float] | None = None,
                    titles: tuple[str, str] = ("data", "model samples"), n_show: int = 2000,
                    axes=None) -> np.ndarray:
    """Two scatter plots side by side, on the same axes limits: data, then model samples."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, pts, title in zip(axes, (data, samples), titles):
        p = pts[:n_show].detach().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_xlabel("$x_1$")
        if bounds is not None:
            ax.set_xlim(bounds[0], bounds[1])
            ax.set_ylim(bounds[2], bounds[3])
    axes[0].set_ylabel("$x_2$")
    return np.asarray(axes)


@torch.no_grad()
def layer_warp(model, x: Tensor, bounds: tuple[float, float, float, float] = (-3, 3, -3, 3),
               n_lines: int = 11, layers: list[int] | None = None, n_show: int = 1500,
               title: str | None = None) -> np.ndarray:
    """Data and a square grid pushed through the flow, one panel per layer: ``model.trajectory``.

    Panel 0 is the input; panel k shows the output of coupling k, ending at ``z``, which
    should look like N(0, I). Points are coloured by their input ``x_1`` so you can follow
    them; each grid line is drawn as it bends. ``layers`` picks which panels to show.
    """
    x = x[:n_show]
    traj = [t.cpu().numpy() for t in model.trajectory(x)]
    x0, x1, y0, y1 = bounds
    t = torch.linspace(0, 1, 200)
    lines = []
    for v in np.linspace(x0, x1, n_lines):
        lines.append(torch.stack([torch.full_like(t, float(v)), y0 + (y1 - y0) * t], dim=1))
    for v in np.linspace(y0, y1, n_lines):
        lines.append(torch.stack([x0 + (x1 - x0) * t, torch.full_like(t, float(v))], dim=1))
    line_traj = [[p.cpu().numpy() for p in model.trajectory(line)] for line in lines]
    layers = list(range(len(traj))) if layers is None else layers
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 2.8), squeeze=False)
    colour = traj[0][:, 0]
    for ax, k in zip(axes[0], layers):
        for lt in line_traj:
            ax.plot(lt[k][:, 0], lt[k][:, 1], color="0.6", lw=0.6)
        ax.scatter(traj[k][:, 0], traj[k][:, 1], c=colour, s=1.5, cmap="coolwarm")
        ax.set_title("input" if k == 0 else f"after layer {k}")
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return axes[0]


def latent_layout(model, axes=None, channel_names: list[str] | None = None):
    """Which pixels and channels each latent of a multi-scale ``RealNVP`` holds.

    One row per latent ``z_1, ..., z_K`` (:meth:`~nvp_edu.models.RealNVP.encode`), one
    column per image channel: a pixel is dark where that latent lands when the latents
    are put back in place (``merge_latents``). Uses only the layout, not the weights.

    Example:
        >>> from nvp_edu.models import RealNVP
        >>> axes = latent_layout(RealNVP(3, 8, num_scales=2, mid_channels=4, num_blocks=1))
        >>> axes.shape
        (2, 3)
    """
    shapes = model.latent_shapes()
    C = model.in_channels
    names = channel_names or (["R", "G", "B"] if C == 3 else [f"channel {c}" for c in range(C)])
    if axes is None:
        _, axes = plt.subplots(len(shapes), C, figsize=(1.9 * C + 0.4, 1.9 * len(shapes)),
                               squeeze=False)
    for k in range(len(shapes)):
        latents = [torch.full((1, *s), float(j == k)) for j, s in enumerate(shapes)]
        where = model.merge_latents(latents)[0]
        share = where.mean().item()
        for c in range(C):
            ax = axes[k, c]
            ax.imshow(where[c].numpy(), cmap="Greys", vmin=0, vmax=1.25)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_title(names[c], fontsize=9)
            if c == 0:
                last = " (final scale)" if k == len(shapes) - 1 else ""
                ax.set_ylabel(f"z_{k + 1}{last}\n{share:.0%} of the numbers", fontsize=8)
    return axes
