"""Batch normalization as a flow layer (paper, section 3.7).

Per channel ``c`` with batch mean ``mu_c`` and (biased) batch variance ``var_c``:

    y = (x - mu) / sqrt(var + eps)
    log|det dy/dx| = -1/2 * sum_c log(var_c + eps) * (H * W)

(``H * W = 1`` for vectors). During training the batch statistics are used, and the
log-det is differentiated through them. Running averages of recent batches,
``running = (1 - momentum) * running + momentum * batch``, stand in at evaluation time and
for ``inverse``: then the layer is a fixed per-channel affine map, exact and
per-sample. Stale or wrong running statistics are the classic "training bits/dim fine,
test bits/dim explodes" bug.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from .base import Flow, check_input


class BatchNormFlow(Flow):
    """Batch normalization with its log-det, for ``(N, C)`` or ``(N, C, H, W)`` inputs.

    Args:
        num_features: ``C``.
        momentum: weight of the newest batch in the running averages (0.1, the official
            code's ``decay``: ``running -= 0.1 * (running - batch)``).
        eps: added to the variance for stability (1e-4, as officially).
        affine: add a learned positive scale ``exp(log_gamma)`` and shift ``beta``
            (log-det gains ``sum log gamma``). The paper uses none (default False).
        mask: a coupling's mask ``b``: normalize only the entries the coupling changed
            (``b = 0``), with the statistics of those entries, and pass the others
            through. The official code puts its batch norm inside each coupling, on the
            changed entries; ``RealNVP`` does the same with ``mask=coupling.mask``.
        lag: the paper's variant for very small batches (appendix E): in training,
            normalize with the running average *after* this batch's update,
            ``(1 - momentum) * running + momentum * batch``, and let gradients flow only
            through the batch part. The training-mode map then stays close to the
            evaluation-mode one when single batches are noisy. Off by default, as in the
            official code (``bn_lag=0``).

    Example:
        >>> bn = BatchNormFlow(3).eval()
        >>> x = torch.randn(5, 3)
        >>> y, log_det = bn(x)
        >>> torch.allclose(bn.inverse(y), x, atol=1e-6)
        True
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-4,
                 affine: bool = False, mask: Tensor | None = None, lag: bool = False) -> None:
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.lag = lag
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("mask", None if mask is None else mask.float())
        self.affine = affine
        if affine:
            self.log_gamma = nn.Parameter(torch.zeros(num_features))
            self.beta = nn.Parameter(torch.zeros(num_features))

    def _shape(self, x: Tensor) -> tuple[list[int], tuple[int, ...], int]:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNormFlow({self.num_features}) needs input (N, "
                             f"{self.num_features}) or (N, {self.num_features}, H, W); got "
                             f"shape {tuple(x.shape)}")
        if x.dim() == 2:
            return [0], (1, -1), 1
        return [0, 2, 3], (1, -1, 1, 1), x.shape[2] * x.shape[3]

    def _normalized_count(self, x: Tensor) -> Tensor:
        """How many entries of one sample each channel normalizes, shape ``(C,)``."""
        dims, _, pixels = self._shape(x)
        if self.mask is None:
            return x.new_full((self.num_features,), float(pixels))
        return (1 - self.mask).expand_as(x[:1]).sum(dim=dims).to(x.dtype)

    def _where_changed(self, new: Tensor, old: Tensor) -> Tensor:
        return new if self.mask is None else torch.where(self.mask.bool(), old, new)

    def _batch_stats(self, x: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and (biased) variance per channel over the normalized entries."""
        dims, view, _ = self._shape(x)
        if self.mask is None:
            return x.mean(dim=dims), x.var(dim=dims, unbiased=False)
        w = (1 - self.mask).to(x.dtype)
        n = (count * x.shape[0]).clamp(min=1)
        mean = (x * w).sum(dim=dims) / n
        var = ((x - mean.view(view)) * w).pow(2).sum(dim=dims) / n
        return mean, var

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        """``running += momentum * (batch - running)``, on the channels that normalize
        something; not at all when a batch statistic is NaN/inf.

        One bad batch (a NaN or inf anywhere in it) would otherwise poison the averages
        for good: every later evaluation and ``inverse`` would give NaN. Decided on the
        device with ``torch.where`` (no host sync).
        """
        finite = torch.isfinite(mean).all() & torch.isfinite(var).all()
        update = (count > 0) & finite
        for running, batch in ((self.running_mean, mean), (self.running_var, var)):
            batch = batch.detach().to(running.dtype)
            # lerp towards a NaN is NaN even with weight 0: choose the end point first
            target = torch.where(update, batch, running)
            running.lerp_(target, self.momentum)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_input(x, None, "BatchNormFlow")
        dims, view, pixels = self._shape(x)
        count = self._normalized_count(x)
        if self.training:
            if x.shape[0] * pixels < 2:
                raise ValueError("BatchNormFlow in training mode needs more than one value "
                                 f"per channel to estimate a variance; got shape {tuple(x.shape)}")
            mean, var = self._batch_stats(x, count)
            self._update_running_stats(mean, var, count)
            if self.lag:  # the updated running averages; detached: no gradient into the past
                mean = self.running_mean.to(x.dtype) + self.momentum * (mean - mean.detach())
                var = self.running_var.to(x.dtype) + self.momentum * (var - var.detach())
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps)
        log_det = -0.5 * (torch.log(var + self.eps) * count).sum()
        if self.affine:
            y = y * torch.exp(self.log_gamma).view(view) + self.beta.view(view)
            log_det = log_det + (self.log_gamma * count).sum()
        return self._where_changed(y, x), log_det.expand(x.shape[0]).to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        check_input(y, None, "BatchNormFlow")
        _, view, _ = self._shape(y)
        x = y
        if self.affine:
            x = (x - self.beta.view(view)) * torch.exp(-self.log_gamma).view(view)
        std = torch.sqrt(self.running_var.view(view) + self.eps)
        return self._where_changed(x * std + self.running_mean.view(view), y)


@torch.no_grad()
def recompute_running_stats(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Replace every batch norm's running statistics by exact averages over ``batches``.

    The cure for stale running averages (module docstring): after training, run the
    model in training mode over (a good part of) the training set with large batches,
    and give each batch equal weight, ``running = mean over batches of the batch
    statistic``. Covers :class:`BatchNormFlow` layers and the ``torch.nn`` batch norms
    inside the ``s, t`` networks. Restores momentum and the train/eval mode; returns the
    number of batches seen.

    Example:
        >>> bn = BatchNormFlow(2, momentum=1e-4)          # running stats barely move
        >>> data = 3 + 2 * torch.randn(1000, 2)
        >>> recompute_running_stats(bn, data.split(250))
        4
        >>> torch.allclose(bn.running_mean, data.mean(0), atol=1e-5)  # the exact mean
        True
    """
    flows = [m for m in model.modules() if isinstance(m, BatchNormFlow)]
    torch_bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in flows], [m.momentum for m in torch_bns]
    was_training = model.training
    for m in torch_bns:
        m.reset_running_stats()
        m.momentum = None  # torch's cumulative (equal-weight) average
    model.train()
    count = 0
    try:
        for k, x in enumerate(batches):
            for m in flows:
                m.momentum = 1.0 / (k + 1)  # running += (batch - running) / (k + 1): the mean
            model(x)
            count += 1
    finally:
        for m, mom in zip(flows, saved[0]):
            m.momentum = mom
        for m, mom in zip(torch_bns, saved[1]):
            m.momentum = mom
        model.train(was_training)
    return count
