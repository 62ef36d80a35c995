"""Activation normalization, Glow's replacement for batch norm (Kingma & Dhariwal 2018,
section 3.1, Table 1, row "Actnorm").

A per-channel affine map with learned parameters, the same for every sample and pixel:

    y = (x - loc) * exp(log_scale)                      (per channel c)
    log|det dy/dx| = H * W * sum_c log_scale_c          (H * W = 1 for vectors)
    x = y * exp(-log_scale) + loc                       (the inverse)

Batch norm (:mod:`nvp_edu.batchnorm`) normalizes with the statistics of each mini-batch,
so a sample's output depends on the rest of its batch, and train and eval mode are
different maps. Actnorm normalizes *once*: on the first training batch ("data-dependent
initialization") it sets

    loc_c = mean of channel c,     log_scale_c = -log(std_c + eps)

so that this batch comes out with zero mean and unit variance per channel. From then on
``loc`` and ``log_scale`` are ordinary parameters trained by gradient descent, and the
layer is the same map in training and in evaluation, for any batch size (even 1).

The buffer ``initialized`` records that this happened. It is part of the
``state_dict``, so a model loaded from a checkpoint is not initialized again from its
first new batch.

Example:
    >>> norm = ActNorm(3)
    >>> x = 5 + 2 * torch.randn(64, 3, 4, 4)
    >>> y, log_det = norm(x)                  # training mode: initializes from this batch
    >>> bool(norm.initialized), round(y.mean().item(), 4) == 0
    (True, True)
    >>> torch.allclose(norm.inverse(y), x, atol=1e-5)
    True
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .base import Flow, check_input


class ActNorm(Flow):
    """Per-channel ``y = (x - loc) * exp(log_scale)`` with data-dependent initialization.

    Works on ``(N, C)`` and ``(N, C, H, W)`` inputs. The first forward pass in training
    mode sets ``loc`` and ``log_scale`` from its batch (zero mean, unit variance per
    channel; under DistributedDataParallel from the batches of all processes, so every
    replica starts equal). Before that, ``forward`` in eval mode applies the parameters
    as they are (the identity at construction) and ``inverse`` raises ``RuntimeError``:
    sampling through an actnorm that has never seen data is a silent bug.

    Args:
        num_features: ``C``.
        eps: added to the standard deviation at initialization (Glow's code: 1e-6).

    Example:
        >>> norm = ActNorm(2)
        >>> _ = norm(torch.randn(100, 2) * 3)   # data-dependent init
        >>> x = torch.randn(5, 2)
        >>> y, log_det = norm.eval()(x)         # the same map in eval mode
        >>> torch.allclose(norm.inverse(y), x, atol=1e-6), log_det.shape
        (True, torch.Size([5]))
    """

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.loc = nn.Parameter(torch.zeros(num_features))
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        # a bool buffer: in the state_dict, untouched by .double()/.half()
        self.register_buffer("initialized", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"{self.num_features}, initialized={bool(self.initialized)}"

    def _view(self, x: Tensor) -> tuple[tuple[int, ...], int]:
        """The shape that broadcasts a per-channel vector over ``x``, and ``H * W``."""
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"ActNorm({self.num_features}) needs input (N, {self.num_features})"
                             f" or (N, {self.num_features}, H, W); got shape {tuple(x.shape)}")
        if x.dim() == 2:
            return (1, -1), 1
        return (1, -1, 1, 1), x.shape[2] * x.shape[3]

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``loc`` and ``log_scale`` so that ``x`` maps to zero mean, unit variance.

        Under ``torch.distributed`` the moments are averaged over all processes first.
        """
        dims = [0] if x.dim() == 2 else [0, 2, 3]
        x = x.detach().to(self.loc.dtype)
        mean = _mean_over_processes(x.mean(dim=dims))
        var = _mean_over_processes((x - mean.view(self._view(x)[0])).pow(2).mean(dim=dims))
        std = var.sqrt()
        self.loc.copy_(mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(x, self, "ActNorm")
        view, pixels = self._view(x)
        if self.training and not self.initialized:
            self.initialize(x)
        y = (x - self.loc.view(view)) * torch.exp(self.log_scale).view(view)
        log_det = pixels * self.log_scale.sum()
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        check_input(y, self, "ActNorm")
        view, _ = self._view(y)
        if not self.initialized:
            raise RuntimeError(
                f"ActNorm({self.num_features}).inverse: the layer has not been initialized. "
                "Its loc and scale are set from the first batch it sees in training mode "
                "(Glow, section 3.1): run a forward pass on a batch of data in train mode "
                "(or load a trained checkpoint) before inverting or sampling")
        return y * torch.exp(-self.log_scale).view(view) + self.loc.view(view)


def _mean_over_processes(t: Tensor) -> Tensor:
    """``t`` averaged over all processes under ``torch.distributed`` (else ``t``)."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t
