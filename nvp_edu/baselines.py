"""Baselines in bits/dim: what a flow's number must beat to mean anything.

Each baseline is a density of 8-bit (or ``levels``-level) images, scored in the same units
as the flow (notebook 6): bits per dimension of the *discrete* test images.

- :func:`uniform_bpd`: every pixel value equally likely, ``log2(levels)`` (8 bits/dim for
  256 levels): a model has learnt something only below this.
- :func:`pixel_histogram_bpd`: every sub-pixel drawn independently from one histogram per
  colour channel (fitted on the training images): knows which colours are common, nothing
  about neighbours.
- :func:`gaussian_bpd`: one full-covariance Gaussian on the dequantized images, fitted on
  the training images (Ledoit-Wolf shrinkage, so that it also works with few images): knows every linear correlation between pixels (smoothness, colour
  correlation), nothing non-linear (edges, textures). Its continuous density scores the
  discrete images through the same dequantization bound as the flow (paper, section 4.1).

Example:
    >>> x = torch.randint(0, 4, (500, 1, 2, 2), dtype=torch.uint8)
    >>> round(uniform_bpd(4), 3), round(pixel_histogram_bpd(x, x, 4), 2)
    (2.0, 2.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .preprocess import dequantize


def uniform_bpd(levels: int) -> float:
    """Bits/dim of the uniform distribution over ``levels`` values: ``log2(levels)``."""
    return math.log2(levels)


def _check_images(train: Tensor, test: Tensor, levels: int) -> None:
    for name, x in (("train", train), ("test", test)):
        if x.dim() != 4 or x.dtype != torch.uint8:
            raise ValueError(f"{name} must be uint8 images (N, C, H, W); got "
                             f"{x.dtype} of shape {tuple(x.shape)}")
        if int(x.max()) >= levels:
            raise ValueError(f"{name} holds the value {int(x.max())}, but levels={levels}")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {tuple(train.shape[1:])} "
                         f"vs {tuple(test.shape[1:])}")


def pixel_histogram_bpd(train: Tensor, test: Tensor, levels: int) -> float:
    """Bits/dim of the test images under independent sub-pixels, one histogram per channel.

    The histograms count every training sub-pixel of a channel, plus one (add-one
    smoothing, so an unseen value costs finitely many bits).
    """
    _check_images(train, test, levels)
    bits = 0.0
    for c in range(train.shape[1]):
        counts = torch.bincount(train[:, c].flatten().long(), minlength=levels).double() + 1
        log2_p = torch.log2(counts / counts.sum())
        bits -= float(log2_p[test[:, c].flatten().long()].sum())
    return bits / test.numel()


def ledoit_wolf(centered: Tensor) -> Tensor:
    """The Ledoit-Wolf covariance of centered samples ``(n, D)``: the sample covariance S
    shrunk towards ``mu I`` (``mu`` = mean variance) by the weight that minimises the
    expected squared error (Ledoit and Wolf 2004; scikit-learn's ``ledoit_wolf``).

    With about as many images as dimensions (3072 for 32x32 colour) S itself is nearly
    singular and scores new images terribly; with many more images the weight goes to 0.
    """
    n, D = centered.shape
    S = centered.T @ centered / n
    mu = torch.trace(S) / D
    delta = ((S - mu * torch.eye(D, dtype=S.dtype)) ** 2).sum() / D
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2
    beta = ((centered ** 2).sum(1) ** 2).sum() - n * (S ** 2).sum()
    weight = float(torch.clamp(beta / (n ** 2 * D) / delta, 0, 1))
    return (1 - weight) * S + weight * mu * torch.eye(D, dtype=S.dtype)


@dataclass
class Gaussian:
    """A full-covariance Gaussian density on dequantized images ``(x + u) / levels``."""

    mean: Tensor  # (D,)
    chol: Tensor  # (D, D), lower-triangular: covariance = chol @ chol.T
    levels: int

    @classmethod
    def fit(cls, train: Tensor, levels: int, seed: int = 0) -> "Gaussian":
        """Mean and (Ledoit-Wolf) covariance, in float64, of dequantized images."""
        _check_images(train, train, levels)
        xt = dequantize(train.flatten(1).double(), levels, torch.Generator().manual_seed(seed))
        if len(xt) <= xt.shape[1]:
            raise ValueError(f"a full covariance of {xt.shape[1]} dimensions needs more than "
                             f"{xt.shape[1]} training images; got {len(xt)}")
        mean = xt.mean(0)
        return cls(mean, torch.linalg.cholesky(ledoit_wolf(xt - mean)), levels)

    def bpd(self, test: Tensor, seed: int = 1) -> float:
        """Bits/dim of integer images: ``(NLL + D ln levels) / (D ln 2)``, as for the flow,
        with fixed dequantization noise from ``seed``."""
        _check_images(test, test, self.levels)
        if test[0].numel() != len(self.mean):
            raise ValueError(f"images of {test[0].numel()} numbers, but the Gaussian was fitted "
                             f"on {len(self.mean)}")
        xs = dequantize(test.flatten(1).double(), self.levels, torch.Generator().manual_seed(seed))
        D = len(self.mean)
        white = torch.linalg.solve_triangular(self.chol, (xs - self.mean).T, upper=False)
        log_det = 2 * torch.log(torch.diagonal(self.chol)).sum()
        nll = 0.5 * (white ** 2).sum(0) + 0.5 * log_det + 0.5 * D * math.log(2 * math.pi)
        return float((nll.mean() + D * math.log(self.levels)) / (D * math.log(2)))


def gaussian_bpd(train: Tensor, test: Tensor, levels: int, seed: int = 0) -> float:
    """Bits/dim of the test images under one full-covariance Gaussian fitted on the
    training images (:class:`Gaussian`; fit it once with ``Gaussian.fit`` to score many
    sets)."""
    _check_images(train, test, levels)
    return Gaussian.fit(train, levels, seed).bpd(test, seed + 1)
