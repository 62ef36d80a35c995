"""A small training loop for the multi-scale Real NVP on scikit-learn's 8x8 digits (CPU).

Used by notebooks 7-8 and ``benchmarks/digits.py``; the general trainer (checkpoints,
CIFAR-10, several GPUs) is :mod:`nvp_edu.train`. The objective is the bits/dim of the
ledger (:mod:`nvp_edu.ledger`): fresh dequantization noise every step, logit with
``alpha = 0.05``, and all log-dets counted, so the training loss and the held-out figure
are the same quantity.

Regularization follows the paper (section 4.1): Adam, L2 ``5e-5`` on the weight-norm
scale parameters, gradient clipping at norm 100; plus a validation split carved from the
training images for early stopping (the test split is never looked at while training)
and, optionally, an exponential moving average (EMA) of the weights.

Example:
    >>> from nvp_edu.data import load_digits_split
    >>> train, _ = load_digits_split()
    >>> cfg = DigitsConfig(mid_channels=8, num_blocks=1, epochs=1)
    >>> model, history = train_digits(train[:128], cfg, progress=False)
    >>> len(history.val_bpd), history.best_epoch
    (1, 1)
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .batchnorm import recompute_running_stats
from .config import seed_everything
from .data import DIGITS_LEVELS
from .ledger import LN2, evaluate_bits_per_dim
from .models import RealNVP
from .nets import param_groups
from .preprocess import Preprocess


@dataclass
class DigitsConfig:
    """Everything that defines a digits run (printed by the benchmark)."""

    num_scales: int = 2
    mid_channels: int = 32
    num_blocks: int = 2
    batch_norm: bool = True
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    scale_l2: float = 5e-5      # L2 on weight-norm scales (the paper's only weight decay)
    grad_clip: float = 100.0
    val_fraction: float = 0.1   # carved from the training split, for early stopping
    ema: float | None = None    # e.g. 0.99: evaluate an exponential moving average
    recalibrate: bool = True    # recompute batch-norm running stats before evaluating
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """What happened during training: per-step training bits/dim, per-epoch validation."""

    train_bpd: list[float] = field(default_factory=list)
    val_bpd: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def make_model(cfg: DigitsConfig) -> RealNVP:
    """The paper's multi-scale model at digits size: 1 channel, 8x8."""
    return RealNVP(1, 8, cfg.num_scales, cfg.mid_channels, cfg.num_blocks, cfg.batch_norm)


def training_bpd(model: nn.Module, x_int: Tensor, levels: int = DIGITS_LEVELS) -> Tensor:
    """Mean bits/dim of a batch with fresh noise, differentiable (the training loss).

    ``-(log p_model(y) + log-det of dequantize and logit) / (D ln 2)``: the ledger's total.
    """
    y, pre_log_det = Preprocess(levels)(x_int)
    nll = -(model.log_prob(y) + pre_log_det)
    return nll.mean() / (y[0].numel() * LN2)


def split_validation(train_int: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed random ``fraction`` of the training images, held out for early stopping."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {fraction}")
    perm = torch.randperm(len(train_int), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(fraction * len(train_int)))
    return train_int[perm[n_val:]], train_int[perm[:n_val]]


def finalize_batch_norm(model: nn.Module, train_int: Tensor, batch_size: int = 256,
                        seed: int = 0) -> None:
    """Exact running statistics from the training images (see ``recompute_running_stats``)."""
    g = torch.Generator().manual_seed(seed)
    pre = Preprocess(DIGITS_LEVELS)
    pre.dequantizer.generator = g
    batches = [pre(b)[0] for b in train_int.split(batch_size)]
    recompute_running_stats(model, batches)


def train_digits(train_int: Tensor, cfg: DigitsConfig, model: nn.Module | None = None,
                 progress: bool = True) -> tuple[nn.Module, History]:
    """Train on integer digits ``(N, 1, 8, 8)``; return the best model (by validation
    bits/dim, in eval mode) and its :class:`History`.

    With ``cfg.val_fraction = 0`` there is no early stopping: the last model is returned.
    """
    from tqdm.auto import tqdm

    seed_everything(cfg.seed)
    model = model if model is not None else make_model(cfg)
    fit_int, val_int = split_validation(train_int, cfg.val_fraction, cfg.seed)
    opt = torch.optim.Adam(param_groups(model, cfg.scale_l2), lr=cfg.lr)
    ema = None
    if cfg.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
            use_buffers=True)
    history, best_state, best_val = History(), None, math.inf
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), disable=not progress, desc="epochs")
    for epoch in bar:
        model.train()
        for idx in torch.randperm(len(fit_int)).split(cfg.batch_size):
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = training_bpd(model, fit_int[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            history.train_bpd.append(loss.item())
        if len(val_int):
            candidate = ema.module if ema is not None else model
            if cfg.recalibrate and cfg.batch_norm:
                finalize_batch_norm(candidate, fit_int)
            val = evaluate_bits_per_dim(candidate, val_int, DIGITS_LEVELS, draws=1, seed=epoch)
            history.val_bpd.append(val)
            bar.set_postfix(train=f"{history.train_bpd[-1]:.3f}", val=f"{val:.3f}")
            if val < best_val:
                best_val, history.best_epoch = val, epoch
                best_state = copy.deepcopy(candidate.state_dict())
    history.seconds = time.perf_counter() - start
    final = ema.module if ema is not None else model
    if best_state is not None:
        final.load_state_dict(best_state)
    else:
        history.best_epoch = cfg.epochs
        if cfg.recalibrate and cfg.batch_norm:
            finalize_batch_norm(final, fit_int)
    return final.eval(), history
