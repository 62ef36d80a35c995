"""Notebook 2's training loop: fit a 2-D flow by maximum likelihood, on standardized data.

The loop is deliberately plain, because it is what notebook 2 teaches: draw a minibatch,
``loss = -mean log p(batch)``, Adam with a one-cycle learning-rate schedule, clip the
gradient norm at 100 (the paper's official code), optionally average the weights.

Flows train on standardized data ``u = (x - mean) / std`` (:class:`Standardize`, itself a
flow); by the change of variables (paper, Eq. 3) ``log p_X(x) = log p_U(u) - sum_i log
std_i``, which :class:`StandardizedModel` and :func:`nll` add, so that every NLL is in the
original data units, comparable with scikit-learn's baselines (:func:`nvp_edu.toys.fit_baselines`).

The image models of notebooks 4-10 have their own trainer (:mod:`nvp_edu.training.loop`):
the same idea with dequantization, bits/dim, checkpoints and resume.

Example:
    >>> from nvp_edu.models import RealNVP2D
    >>> density, losses = fit_density(RealNVP2D(num_couplings=2, hidden=16),
    ...                               torch.randn(256, 2), steps=5, progress=False)
    >>> len(losses), nll(density, torch.randn(64, 2)) > 0
    (5, True)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..base import Flow


class Standardize(Flow):
    """``u = (x - mean) / std`` per coordinate: an affine flow, ``log|det| = -sum_i log std_i``.

    Put it in front of a model so that the model sees unit-scale data while log-densities
    stay in the units of ``x`` (change of variables, paper Eq. 3).

    Example:
        >>> x = torch.randn(100, 2) * 3 + 1
        >>> st = Standardize.fit(x)
        >>> u, log_det = st(x)
        >>> torch.allclose(st.inverse(u), x, atol=1e-5), bool(log_det[0] < 0)
        (True, True)
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.shape != std.shape or mean.dim() != 1:
            raise ValueError(f"mean and std must be vectors of one shape; got {tuple(mean.shape)} "
                             f"and {tuple(std.shape)}")
        if not (std > 0).all():
            raise ValueError(f"std must be positive; got {std.tolist()}")
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    @classmethod
    def fit(cls, x: Tensor) -> "Standardize":
        """Mean and std of the training data ``x`` (N, D): fit on train only, reuse everywhere."""
        return cls(x.mean(dim=0), x.std(dim=0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        log_det = -torch.log(self.std.to(x.dtype)).sum().expand(x.shape[0])
        return u, log_det

    def inverse(self, u: Tensor) -> Tensor:
        return u * self.std.to(u.dtype) + self.mean.to(u.dtype)


class StandardizedModel(nn.Module):
    """A density model of ``x`` made of a :class:`Standardize` and a model of ``u``.

    ``log_prob(x) = model.log_prob(u) - sum log std``, ``sample(n)`` maps back to ``x`` units,
    ``trajectory(x)`` is the model's layer-by-layer trajectory in ``u`` units.
    """

    def __init__(self, model: nn.Module, standardize: Standardize) -> None:
        super().__init__()
        self.model, self.standardize = model, standardize

    def log_prob(self, x: Tensor) -> Tensor:
        u, log_det = self.standardize(x)
        return self.model.log_prob(u) + log_det

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        return self.standardize.inverse(self.model.sample(n, temperature, generator))

    def trajectory(self, x: Tensor) -> list[Tensor]:
        return self.model.trajectory(self.standardize(x)[0])


@torch.no_grad()
def nll(model: nn.Module, x: Tensor, batch_size: int = 8192) -> float:
    """Mean negative log-likelihood ``-mean log p(x)`` in nats (per 2-D point).

    ``model`` needs ``log_prob``; give a :class:`StandardizedModel` (or standardized
    ``x``) so that the figure is in the units you mean.
    """
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        total -= model.log_prob(x[i:i + batch_size]).double().sum().item()
    model.train(was_training)
    return total / len(x)


def ema_with_warmup(decay: float):
    """An ``avg_fn`` for ``torch.optim.swa_utils.AveragedModel``: ``avg <- d avg + (1 - d) p``.

    The decay warms up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average does not keep a share of the early, poorly trained weights (with a fixed
    d = 0.999, 4,000 steps leave 2% of the start in, which visibly hurts a sharp 2-D density).
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must lie in (0, 1); got {decay}")

    def avg_fn(avg: Tensor, param: Tensor, num_averaged: Tensor) -> Tensor:
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        return avg + (1 - d) * (param - avg)

    return avg_fn


def fit(model: nn.Module, train: Tensor, steps: int = 4000, batch_size: int = 512,
        lr: float = 2e-3, weight_decay: float = 0.0, ema_decay: float | None = None,
        grad_clip: float | None = 100.0, schedule: str = "onecycle", seed: int = 0,
        progress: bool = True, desc: str = "training", shown_shift: float = 0.0) -> list[float]:
    """Maximum likelihood: minimize ``-mean log p(batch)`` with Adam(W); returns the losses.

    ``train`` should already be in the units the model works in (standardized). Each step
    draws ``batch_size`` rows of ``train`` at random (with a seeded generator). The learning
    rate follows a one-cycle schedule (warm up to ``lr``, cosine down) or a cosine decay
    (``schedule="cosine"``). With ``ema_decay`` the model ends with the moving average of
    its weights. Gradient-norm clipping at 100 follows the paper's official code.
    ``shown_shift`` is added to the loss that the progress bar shows (not to the returned
    losses): :func:`fit_density` passes the standardization's ``sum log std`` so that the bar
    shows the NLL in data units, the units of :func:`nll`.

    Example:
        >>> from nvp_edu.models import RealNVP2D
        >>> model = RealNVP2D(num_couplings=2, hidden=16)
        >>> losses = fit(model, torch.randn(256, 2), steps=5, batch_size=64, progress=False)
        >>> len(losses)
        5
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got steps={steps}, "
                         f"batch_size={batch_size}")
    if train.dim() != 2:
        raise ValueError(f"train must have shape (N, D); got {tuple(train.shape)}")
    if schedule not in ("onecycle", "cosine"):
        raise ValueError(f"schedule must be 'onecycle' or 'cosine'; got {schedule!r}")
    from tqdm.auto import tqdm

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    ema = (torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_with_warmup(ema_decay))
           if ema_decay else None)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        idx = torch.randint(0, len(train), (batch_size,), generator=gen)
        loss = -model.log_prob(train[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        losses.append(loss.item())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item() + shown_shift:.3f}")
    if ema is not None:
        with torch.no_grad():
            for avg, p in zip(ema.module.parameters(), model.parameters()):
                p.copy_(avg)
    model.eval()
    return losses


def fit_density(model: nn.Module, train: Tensor, **fit_kwargs) -> tuple[StandardizedModel, list[float]]:
    """Standardize ``train``, :func:`fit` ``model`` on it, wrap both as a density of ``x``.

    Returns ``(density, losses)``; the losses, and the loss the progress bar shows, are
    converted to the data units (``sum_i log std_i`` added: minus the standardization's
    log-det), so they are comparable with :func:`nll` on held-out data.

    Example:
        >>> from nvp_edu.models import RealNVP2D
        >>> density, losses = fit_density(RealNVP2D(num_couplings=2, hidden=16),
        ...                               3 * torch.randn(256, 2), steps=5, progress=False)
        >>> density.log_prob(torch.zeros(4, 2)).shape
        torch.Size([4])
    """
    standardize = Standardize.fit(train)
    shift = torch.log(standardize.std).sum().item()  # -log-det of the standardization
    losses = fit(model, standardize(train)[0], shown_shift=shift, **fit_kwargs)
    return StandardizedModel(model, standardize), [loss + shift for loss in losses]
