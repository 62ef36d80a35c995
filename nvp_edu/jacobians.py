"""Jacobian pictures of flow layers (notebooks 3 and 4): which outputs depend on which inputs.

For one sample ``x`` with ``D`` entries, ``J[i, j] = dy_i / dx_j`` (a ``D x D`` matrix,
computed by ``torch.autograd`` in float64). For a coupling layer, ordering the entries
"kept first, then changed" shows the block-triangular shape of the paper's Eq. 6:

    J = [[ I,        0         ],
         [ dy_2/dx_1, diag(exp(s)) ]]

Example:
    >>> from nvp_edu.flows import AffineCoupling
    >>> from nvp_edu.masks import alternating_vector_mask
    >>> layer = perturb_(AffineCoupling(alternating_vector_mask(4), hidden=8), 0.3)
    >>> J = jacobian(layer, torch.randn(1, 4))
    >>> order = kept_then_changed(layer.mask)
    >>> bool((J[order][:, order][:2, 2:] == 0).all())  # kept rows ignore changed inputs
    True
"""
from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn


def perturb_(module: nn.Module, std: float = 0.2, seed: int = 0) -> nn.Module:
    """Add N(0, std^2) noise to every parameter, in place (a stand-in for training).

    Couplings start as the identity (zero-initialized last layer); a picture of the
    identity's Jacobian would show nothing, so figures move the weights first.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen).to(p))
    return module


def jacobian(flow: nn.Module, x: Tensor) -> Tensor:
    """``dy/dx`` of one sample ``x`` (batch of 1, any shape) as a ``D x D`` float64 matrix.

    Runs a float64 copy of ``flow`` in eval mode (batch-norm layers use running averages).
    """
    if x.shape[0] != 1:
        raise ValueError(f"jacobian needs a single sample (batch of 1); got shape {tuple(x.shape)}")
    f64 = copy.deepcopy(flow).double().eval()
    x = x.detach().double()

    def f(v: Tensor) -> Tensor:
        return f64(v.view_as(x))[0].reshape(-1)

    return torch.autograd.functional.jacobian(f, x.reshape(-1))


def kept_then_changed(mask: Tensor, shape: tuple[int, ...] | None = None) -> Tensor:
    """Entry order that lists the kept entries (b = 1) first, then the changed ones.

    ``shape`` is one sample's shape when the mask broadcasts (e.g. a checkerboard mask
    over several channels).
    """
    b = mask[0] if shape is None else mask[0].expand(shape)
    flat = b.reshape(-1)
    return torch.cat([torch.nonzero(flat == 1).flatten(), torch.nonzero(flat == 0).flatten()])


def plot_jacobian(J: Tensor, order: Tensor | None = None, n_kept: int | None = None,
                  ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Heatmap of ``|J|`` (rows: outputs, columns: inputs), optionally reordered.

    ``n_kept`` draws lines between the kept and changed blocks.
    """
    if order is not None:
        J = J[order][:, order]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    A = J.abs().numpy()
    im = ax.imshow(A, cmap="magma_r", vmin=0, vmax=max(float(A.max()), 1e-12),
                   interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|dy_i / dx_j|")
    if n_kept is not None:
        for pos in (n_kept - 0.5,):
            ax.axhline(pos, color="tab:blue", lw=1)
            ax.axvline(pos, color="tab:blue", lw=1)
    ax.set_xlabel("input entry j (kept first, then changed)" if order is not None else "input entry j")
    ax.set_ylabel("output entry i")
    ax.set_title(title or "|dy_i / dx_j|")
    return ax
