"""One trainer for every image model of the course: digits, the mask study, CIFAR-10.

    python -m nvp_edu.train --dataset cifar10 --preset paper --out runs/cifar
    python -m nvp_edu.train --dataset digits --preset digits --out runs/digits --val-fraction 0.1 --ema 0.98
    python -m nvp_edu.train --dataset synthetic --preset tiny --out runs/smoke --max-steps 20
    torchrun --nproc_per_node=4 -m nvp_edu.train --dataset cifar10 --preset paper --out runs/c4

From Python (notebooks 4, 7, 8, 9): ``result = train(Config(...), model=...)`` returns the
selected model, the run's summary and its history.

**The objective is the official code's** (tensorflow/models, ``research/real_nvp``): the
mean negative log-likelihood in **nats per image** of the dequantized image in
``[0, 1)^D`` (the model runs in logit space, paper section 4.1, and the logit's log-det is
counted), plus the L2 term ``l2 * sum g^2`` over the weight-norm magnitudes and the
checkerboard couplings' scales (:func:`nvp_edu.nets.l2_parameters`; ``l2 = 5e-5``). The
gradient of that sum is clipped to global norm 100, then Adam (lr 1e-3, betas 0.9/0.999)
steps. Units matter: on a bits/dim loss (nats divided by ``D ln 2``, 2129 for CIFAR-10)
the same L2 coefficient would weigh ~2000x more against the likelihood and a clip at 100
would never act. What is logged and reported is bits/dim, computed by the ledger
(:func:`nvp_edu.ledger.bits_per_dim`) from the same NLL.

Options the notebooks use: a validation split carved from the training images
(``val_fraction``) with model selection on it (early stopping: the best evaluation is
kept, and the test split is evaluated once, at the end, on that model); an exponential
moving average of the weights (``ema``); batch-norm recalibration (``recalibrate``: exact
running statistics from training images before every evaluation, the cure for stale
averages of notebook 8). Without a validation split the held-out split is the test set,
evaluated at every evaluation, as in the paper's CIFAR-10 runs.

What came after Real NVP, as options of the same model and loop: ``norm="actnorm"``
(Glow's actnorm instead of the batch-norm flow layers), ``invconv=True`` (Glow's
invertible 1x1 convolutions; see :class:`~nvp_edu.models.RealNVP` for where), and
``dequant="variational"`` (Flow++'s variational dequantization): the noise ``u`` is drawn
from a learned ``q(u | x)`` (``nvp_edu.vardeq``, trained jointly by the same optimizer and
saved in the checkpoint) and the objective is the variational bound
``E_q[-log p((x + u) / L) + log q(u | x)]`` per image (``+ D ln L`` in bits/dim, as
always); with uniform noise ``log q = 0`` and it is the paper's objective.

What a run folder holds (``--out``): ``metrics.jsonl`` (one JSON object per logged step
and per evaluation), ``metrics.png``, ``samples/step_NNNNNNN.png``, ``checkpoint.pt``
(atomic, checksummed, ``weights_only``-loadable, resumable bit-for-bit with ``--resume``;
the one before it is kept as ``checkpoint.pt.prev``) and ``summary.json`` (strict JSON: a
figure that is not finite never gets there). ``out=None`` (Python only) keeps everything
in memory.

**Resuming** (``--resume``, ``Config(resume=True)``) continues from ``OUT/checkpoint.pt``:
model, optimizer, EMA, best model so far, every random state and the step. ``metrics.jsonl``
is cut back to the checkpoint's step (rewritten atomically; a last line cut short by a
kill is skipped with a warning). What a resumed run may change, taking effect from its
next step:

- ``--lr`` and ``--lr-schedule`` (the learning rate is set from the config before every
  step, :meth:`Trainer.learning_rate`; a cosine schedule follows the new total),
  ``--l2``, ``--grad-clip``, the ``--ema`` decay;
- ``--max-steps`` and ``--epochs`` (the total counts the steps already done; a total
  already reached only evaluates and writes the summary);
- ``--log-every``, ``--eval-every``, ``--ckpt-every``, ``--num-samples``, ``--limit-test``,
  ``--recalibrate``, ``--no-progress``, ``--no-plots``;
- ``--device``, ``--precision``, ``--compile``, ``--channels-last`` and the number of
  processes. On another device type or number of processes the run goes on, but not bit
  for bit: the dequantization noise and flips are reseeded (and kernels differ).

Refused, with an error naming the checkpoint's value and the new one, because they define
the run (its data, their split and order, the model, what a step and an epoch are):
``--dataset``, ``--preset``, ``--batch-size``, ``--seed``, ``--val-fraction``,
``--limit-train``, ``--ema`` on/off, ``--norm``, ``--invconv`` and ``--dequant``. Start a
new run (another ``--out``) to change them.

A damaged checkpoint (checksum mismatch, truncated) is never loaded and never
overwritten: ``--resume`` stops with an error naming it and the previous good one
(``checkpoint.pt.prev``); ``--resume-from-previous`` then keeps the damaged file as
``checkpoint.pt.damaged`` (for inspection), puts a copy of the previous one in its place
and continues from there. A non-finite loss or gradient stops the run before that step
changes anything (batch-norm running averages included), and so does a non-finite
evaluation, or non-finite weights when a checkpoint is due: :class:`NonFiniteLossError`
names the step and the last good checkpoint, which is left as it was.

Settings are checked before anything runs (:func:`_validate`): a count that is zero or
negative, a fraction out of range, an ``--out`` that is a file, a ``--device`` that is not
there (never a silent fallback to the CPU). The CLI reports each error a user can cause
as one line, ``error: ...``, with exit status 2 (1 when data files are missing);
``--debug`` shows the traceback instead.

GPU path: ``--precision bf16`` runs the s/t networks under bf16 autocast while the
coupling's ``exp(s)``, every log-det and the prior stay in float32; channels_last memory
format and TF32 on CUDA; ``--compile`` wraps the model in ``torch.compile``.

Multi-GPU: under ``torchrun`` each process trains on its shard of every epoch
(``DistributedSampler``) with DistributedDataParallel; ``--batch-size`` is per process.
Rank 0 alone evaluates and writes logs, samples and checkpoints; the checkpoint keeps
every rank's random state. Batch norm is **not** synchronized across ranks: each rank's
``BatchNormFlow`` normalizes its own mini-batch and counts the log-det of exactly that
map, so every rank optimizes an exact flow likelihood of its own batch. Running averages
are broadcast from rank 0 at every forward (DDP's ``broadcast_buffers``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import numbers
import os
import shutil
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .batchnorm import BatchNormFlow, recompute_running_stats
from .checkpoint import (PREV_SUFFIX, CheckpointCorruptError, atomic_open, capture_rng_state,
                         load_checkpoint, restore_rng_state, save_checkpoint)
from .config import seed_everything
from .ledger import bits_per_dim as ledger_bits_per_dim
from .models import NORMS, RealNVP
from .nets import l2_parameters, l2_penalty
from .preprocess import LOGIT_ALPHA, Logit, dequantize
from .prior import standard_normal_log_prob

PRESETS: dict[str, dict[str, int]] = {
    # the paper's CIFAR-10 model: "downscale only once", 8 residual blocks, 64 features
    "paper": dict(num_scales=2, mid_channels=64, num_blocks=8, batch_size=64, epochs=100,
                  num_samples=64),
    # notebooks 7-8 and benchmarks/digits.py: 8x8 digits on a laptop CPU
    "digits": dict(num_scales=2, mid_channels=32, num_blocks=2, batch_size=64, epochs=20,
                   num_samples=64),
    # CIFAR-10 or the photos on a laptop CPU: about 10-15 minutes on 2-4 cores
    "laptop": dict(num_scales=2, mid_channels=32, num_blocks=2, batch_size=32, epochs=1,
                   num_samples=36),
    # small enough for CI on two CPU cores
    "tiny": dict(num_scales=2, mid_channels=8, num_blocks=1, batch_size=16, epochs=1,
                 num_samples=16),
}
CHECKPOINT_NAME = "checkpoint.pt"
DATASETS = ("cifar10", "photos", "digits", "synthetic")


# Preprocessing (notebook 6, nvp_edu.preprocess): dequantization (paper section 4.1,
# "jittering") and the logit with the official code's constraint p = 0.05 + 0.9 x.
_LOGIT = Logit(LOGIT_ALPHA)


def to_model_space(x_uint8: Tensor, levels: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Integer images -> logit space: ``y = logit(alpha + (1 - 2 alpha)(x + u) / levels)``.

    Returns ``y`` (float32) and the per-sample log-det of ``(x + u)/levels -> y``.
    """
    return _LOGIT(dequantize(x_uint8, levels, generator))


def from_model_space(y: Tensor) -> Tensor:
    """Inverse of the logit: model space -> images in [0, 1] (clamped, for display)."""
    return _LOGIT.inverse(y.float()).clamp(0, 1)


def bits_per_dim(log_prob_model_space: Tensor, logit_log_det: Tensor, D: int,
                 levels: int) -> Tensor:
    """Bits/dim of the discrete data: ``(-(log p(y) + logdet) + D ln levels) / (D ln 2)``.

    ``log p(y) + logdet`` is the log-density of the dequantized data scaled to [0, 1]
    (see :func:`nvp_edu.ledger.bits_per_dim`).
    """
    return ledger_bits_per_dim(-(log_prob_model_space + logit_log_det), D, levels)


class NonFiniteLossError(RuntimeError):
    """A loss, gradient norm, evaluation or the weights became NaN/inf; training stopped
    without saving them, and the last good checkpoint was left as it was."""


@dataclass
class Config:
    """Every setting of a run (the CLI's flags; see ``python -m nvp_edu.train --help``)."""

    dataset: str = "synthetic"
    preset: str = "tiny"
    out: str | None = "runs/default"
    max_steps: int | None = None
    epochs: int | None = None
    resume: bool = False
    resume_from_previous: bool = False  # resume; if checkpoint.pt is damaged, from .prev
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"
    channels_last: bool | None = None
    data_root: str = "data"
    download: bool = True
    lr: float = 1e-3
    lr_schedule: str = "constant"
    l2: float = 5e-5
    grad_clip: float = 100.0
    val_fraction: float = 0.0
    ema: float | None = None
    recalibrate: bool = False
    recalibrate_images: int = 2048
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    num_samples: int | None = None
    plots: bool = True
    progress: bool = True
    norm: str = "batch"  # the flow's normalization layers: "batch" or Glow's "actnorm"
    invconv: bool = False  # Glow's invertible 1x1 convolutions (see RealNVP)
    dequant: str = "uniform"  # "uniform" (the paper) or "variational" (Flow++)


DEQUANTS = ("uniform", "variational")


@dataclass
class TrainResult:
    """What :func:`train` hands back."""

    model: nn.Module  # the selected model (the EMA if on; best on validation if split), eval mode
    summary: dict[str, Any]  # also written to summary.json
    history: dict[str, list[float]] = field(default_factory=dict)  # this session's curves
    dequantizer: nn.Module | None = None  # q(u|x) of --dequant variational (its EMA if on)

    def __getitem__(self, key: str) -> Any:  # result["test_bpd"] reads the summary
        return self.summary[key]

    def __repr__(self) -> str:
        keys = ("dataset", "preset", "steps", "test_bpd", "best_val_bpd")
        return "TrainResult(" + ", ".join(f"{k}={self.summary.get(k)!r}" for k in keys) + ")"


# -------------------------------------- validation -------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_count(cfg: Config, name: str, minimum: int, optional: bool = False,
                 meaning: str = "", maximum: int | None = None) -> None:
    """``cfg.<name>`` is a whole number >= ``minimum`` (or None if ``optional``)."""
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_flag(name)} must be a whole number; got {value!r}")
    if value < minimum:
        raise ValueError(f"{_flag(name)} must be at least {minimum}{meaning}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{_flag(name)} must be at most {maximum}; got {value}")


def _check_number(cfg: Config, name: str, low: float, high: float, closed: str,
                  optional: bool = False) -> None:
    """``cfg.<name>`` is a real number in the interval; ``closed`` names its closed ends."""
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_flag(name)} must be a number; got {value!r}")
    above = value >= low if "low" in closed else value > low
    below = value <= high if "high" in closed else value < high
    if not (above and below):  # NaN fails both
        interval = (("[" if "low" in closed else "(") + f"{low:g}, {high:g}"
                    + ("]" if "high" in closed else ")"))
        raise ValueError(f"{_flag(name)} must be in {interval}; got {value}")


def _check_choice(cfg: Config, name: str, choices: Sequence[str]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{_flag(name)} must be one of {', '.join(choices)}; got {value!r}")


def _check_out(out: str | None) -> None:
    """The run folder is a folder, or can become one (no file in the way)."""
    if out is None:
        return
    for folder in (Path(out), *Path(out).parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == Path(out) else f": {folder} is a file"
                raise NotADirectoryError(f"--out {out} cannot be a run folder{where} (an "
                                         "existing file is in the way): choose another --out")
            return


def _check_device(device: str) -> None:
    """The device exists here: never fall back to the CPU when a GPU was asked for."""
    if device in ("auto", "cpu"):
        return
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("--device mps: Apple's MPS is not available here; use --device "
                             "auto or --device cpu")
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available to this process "
                         "(torch.cuda.is_available() is False); use --device auto or cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this process sees {torch.cuda.device_count()} "
                         f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def _validate(cfg: Config) -> None:
    """Refuse every setting that would be silently replaced, crash later, or fall back.

    One line per error, naming the flag, what it needs and what it got.
    """
    _check_choice(cfg, "dataset", DATASETS)
    _check_choice(cfg, "preset", sorted(PRESETS))
    _check_choice(cfg, "precision", ("fp32", "bf16"))
    _check_choice(cfg, "lr_schedule", ("constant", "cosine"))
    _check_choice(cfg, "norm", NORMS)
    _check_choice(cfg, "dequant", DEQUANTS)
    if not isinstance(cfg.invconv, bool):
        raise TypeError(f"--invconv must be True or False; got {cfg.invconv!r}")
    for name in ("max_steps", "epochs", "batch_size", "limit_train", "limit_test"):
        _check_count(cfg, name, 1, optional=True)
    _check_count(cfg, "log_every", 1)
    _check_count(cfg, "eval_every", 0, meaning=" (0: once per epoch)")
    _check_count(cfg, "ckpt_every", 0, meaning=" (0: at evaluations and the end)")
    _check_count(cfg, "num_samples", 0, optional=True, meaning=" (0: no sample grids)")
    _check_count(cfg, "recalibrate_images", 1)
    _check_count(cfg, "seed", 0, maximum=2**32 - 1)  # NumPy's seed range
    _check_number(cfg, "lr", 0, math.inf, closed="")
    _check_number(cfg, "l2", 0, math.inf, closed="low")
    _check_number(cfg, "grad_clip", 0, math.inf, closed="high")
    _check_number(cfg, "val_fraction", 0, 1, closed="low")
    _check_number(cfg, "ema", 0, 1, closed="", optional=True)
    _check_out(cfg.out)
    _check_device(cfg.device)


# ----------------------------------------- data ----------------------------------------

def synthetic_images(n: int, seed: int, size: int = 32) -> Tensor:
    """CIFAR-shaped uint8 images (n, 3, size, size): smooth random colour fields plus noise.

    Deterministic in ``seed``. For smoke runs and CI where the real tarball is absent.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                       align_corners=False)
    noisy = smooth + 0.08 * torch.randn(n, 3, size, size, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def load_data(cfg: Config) -> tuple[Tensor, Tensor, int, bool]:
    """``(train, test, levels, flip)``: uint8 images (N, C, H, W), intensity levels, flips."""
    if cfg.dataset == "cifar10":
        from .cifar import CIFAR10
        train = CIFAR10(cfg.data_root, train=True, download=cfg.download).data
        test = CIFAR10(cfg.data_root, train=False, download=cfg.download).data
        levels, flip = 256, True
    elif cfg.dataset == "photos":
        from .photos import PHOTOS_LEVELS, load_photos_split
        train, test = load_photos_split()
        levels, flip = PHOTOS_LEVELS, True  # a mirrored photograph is still a photograph
    elif cfg.dataset == "synthetic":
        train, test = synthetic_images(2048, seed=1), synthetic_images(512, seed=2)
        levels, flip = 256, True
    elif cfg.dataset == "digits":
        from .data import DIGITS_LEVELS, load_digits_split
        train, test = load_digits_split()
        levels, flip = DIGITS_LEVELS, False  # a mirrored digit is not a digit
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    if cfg.limit_train is not None:
        train = train[:cfg.limit_train]
    if cfg.limit_test is not None:
        test = test[:cfg.limit_test]
    return train, test, levels, flip


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2 (the paper's augmentation)."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def split_validation(train_x: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed random ``fraction`` of the training images, held out for model selection."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {fraction}")
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(fraction * len(train_x)))
    return train_x[perm[n_val:]], train_x[perm[:n_val]]


# -------------------------------------- helpers ----------------------------------------

def build_model(preset: str, in_channels: int, image_size: int, norm: str = "batch",
                invconv: bool = False) -> RealNVP:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    p = PRESETS[preset]
    return RealNVP(in_channels, image_size, num_scales=p["num_scales"],
                   mid_channels=p["mid_channels"], num_blocks=p["num_blocks"], norm=norm,
                   invconv=invconv)


def build_dequantizer(in_channels: int, levels: int) -> nn.Module:
    """The learned noise distribution of ``--dequant variational`` (nvp_edu.vardeq).

    Imported here, not at the top: the rest of the trainer works without that module.
    """
    try:
        from .vardeq import VariationalDequantizer
    except ImportError as e:
        raise ValueError(f"--dequant variational needs nvp_edu.vardeq ({e}); use --dequant "
                         "uniform") from e
    return VariationalDequantizer(in_channels, levels)


def dequantized_model_space(x_uint8: Tensor, levels: int, generator: torch.Generator | None,
                            dequantizer: nn.Module | None = None
                            ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(y, logit log-det, log q)``: integer images in the model's logit space.

    Uniform noise from ``generator`` (``log q = None``: the density of ``u`` is 1 on
    ``[0, 1)^D``), or noise ``u`` drawn with ``generator`` by a variational
    ``dequantizer`` (Flow++, Ho et al. 2019, section 3.1; :mod:`nvp_edu.vardeq`):
    ``dequantizer(x_int, generator=...)`` returns ``x = (x_int + u) / levels`` in
    ``[0, 1]`` and ``log q(u | x_int)``, the log-density of ``u`` on ``[0, 1)^D``, shape
    ``(batch,)``.
    """
    if dequantizer is None:
        y, logit_ld = to_model_space(x_uint8, levels, generator)
        return y, logit_ld, None
    x, log_q = dequantizer(x_uint8, generator=generator)
    y, logit_ld = _LOGIT(x)
    return y, logit_ld, log_q.float()


def nll_nats(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator | None,
             autocast: Any = nullcontext(), channels_last: bool = False,
             dequantizer: nn.Module | None = None) -> Tensor:
    """Per-sample NLL in nats of the dequantized images in ``[0, 1)^D`` (the objective).

    ``-(log N(z) + log-dets of the flow + log-det of the logit)``; dequantization noise
    from ``generator``. With a variational ``dequantizer``, ``+ log q(u | x_int)``: the
    variational bound ``E_q[-log p(x_int + u) + log q(u | x_int)] >= -log P(x_int)``
    (Flow++, section 3.1; up to the ``D ln levels`` the ledger adds). Uniform noise is the
    case ``log q = 0``: the same bound with a fixed ``q``.
    """
    y, logit_ld, log_q = dequantized_model_space(x_uint8, levels, generator, dequantizer)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    with autocast:
        z, log_det = net(y)
    # the prior and the log-dets in float32 even when the s/t networks ran in bf16
    nll = -(standard_normal_log_prob(z.float()) + log_det.float() + logit_ld)
    return nll if log_q is None else nll + log_q


def model_bpd(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator | None,
              autocast: Any = nullcontext(), channels_last: bool = False,
              dequantizer: nn.Module | None = None) -> Tensor:
    """Per-sample bits/dim of integer images under ``net`` (through the ledger); with a
    variational ``dequantizer``, of its bound."""
    nll = nll_nats(net, x_uint8, levels, generator, autocast, channels_last, dequantizer)
    return ledger_bits_per_dim(nll, x_uint8[0].numel(), levels)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, images: Tensor, levels: int,
                           batch_size: int = 256, seed: int = 777,
                           dequantizer: nn.Module | None = None) -> None:
    """Exact batch-norm running statistics from integer training ``images`` (notebook 8):
    one fixed dequantization draw (from ``dequantizer`` if given), every batch weighted
    equally."""
    g = torch.Generator(device=images.device).manual_seed(seed)
    was_training = dequantizer is not None and dequantizer.training
    if dequantizer is not None:
        dequantizer.eval()  # draws noise; its own statistics stay as they are
    batches = [dequantized_model_space(xb, levels, g, dequantizer)[0]
               for xb in images.split(batch_size)]
    if dequantizer is not None:
        dequantizer.train(was_training)
    recompute_running_stats(model, batches)


def recalibration_images(train_x: Tensor, n: int, seed: int) -> Tensor:
    """The training images whose statistics :func:`recalibrate_batch_norm` recomputes:
    all of them if there are at most ``n``, else a fixed random ``n`` (seeded). Not the
    first ``n``: a dataset stored in order (the photos, photograph by photograph) would
    give the statistics of one photograph."""
    if len(train_x) <= n:
        return train_x
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:n]
    return train_x[pick.to(train_x.device)]


def fingerprint(model: nn.Module) -> float:
    """A number that differs when any parameter does (to compare replicas across ranks)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(model.parameters()):
        total += (i + 1) * p.detach().double().cpu().sum() + p.detach().double().cpu().pow(2).sum()
    return float(total)


def save_grid(images: Tensor, path: Path, title: str) -> None:
    """A grid of [0, 1] images as a PNG.

    Uses a bare ``matplotlib.figure.Figure`` (no pyplot): it never touches the backend,
    so figures inside a notebook keep displaying inline.
    """
    from matplotlib.figure import Figure

    from .plotting import image_grid
    n = images.shape[0]
    side = max(2.0, 0.6 * math.ceil(math.sqrt(n)))
    fig = Figure(figsize=(side, side + 0.3))
    image_grid(images, ax=fig.add_subplot(), title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``, in order.

    A line that is not a JSON object is skipped with a warning: the last line is cut short
    when a run is killed while appending to it, and a run started afresh in the same
    folder appends after it.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records, bad = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        warnings.warn(f"{path}: skipped line(s) {', '.join(map(str, bad))}, not a complete JSON "
                      "record (a run killed while writing it)", stacklevel=2)
    return records


def _json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None: strict JSON, readable anywhere
    (Python would write ``NaN``, which JSON does not have)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _to_json(obj: Any, **kwargs: Any) -> str:
    return json.dumps(_json_safe(obj), allow_nan=False, **kwargs)


def plot_metrics(run_dir: str | os.PathLike) -> Path:
    """``metrics.png``: train/held-out bits/dim and throughput against steps."""
    from matplotlib.figure import Figure

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig = Figure(figsize=(10, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([r["step"] for r in train], [r["bpd"] for r in train], label="train (batch)")
    for key, label in (("val_bpd", "validation"), ("test_bpd", "test")):
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax1.plot(*zip(*points), "o-", label=label)
    ax1.set(xlabel="step", ylabel="bits/dim", title="bits/dim")
    ax1.legend()
    ax2.plot([r["step"] for r in train], [r["img_per_s"] for r in train])
    ax2.set(xlabel="step", ylabel="images/s", title="throughput (all ranks)")
    fig.tight_layout()
    path = Path(run_dir) / "metrics.png"
    fig.savefig(path, dpi=100)
    return path


class _Dist:
    """Rank/world bookkeeping; a single process is world size 1."""

    def __init__(self, device_arg: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        _check_device(device_arg)  # never a silent fallback to the CPU
        want_cuda = device_arg in ("auto", "cuda") and torch.cuda.is_available()
        if device_arg.startswith("cuda:"):
            self.device = torch.device(device_arg)
        elif want_cuda:
            self.device = torch.device("cuda", self.local_rank if self.world > 1 else 0)
        elif device_arg == "mps" or (device_arg == "auto" and self.world == 1
                                     and getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
            self.device = torch.device("mps")
        else:
            self.device = torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: Tensor) -> bool:
        """True on every rank if the 0-d bool tensor ``flag`` is true on any rank.

        One host synchronization (the ``.item()``), shared by all ranks' flags.
        """
        t = flag.float().reshape(1)
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            # rank 0 still writes the summary after the last collective; tearing gloo down
            # on one rank while the other is busy aborts it ("terminate called ...")
            dist.barrier()
            dist.destroy_process_group()


# --------------------------------------- trainer ---------------------------------------

def train(cfg: Config, model: nn.Module | None = None) -> TrainResult:
    """Run (or resume) a training run.

    ``model``: any flow ``z, log_det = model(y)`` on the dataset's images in logit space;
    default: the preset's :class:`~nvp_edu.models.RealNVP`.
    """
    _validate(cfg)
    env = _Dist(cfg.device)
    try:
        return Trainer(cfg, env, model).run()
    finally:
        env.close()


class Trainer:
    """One run: data, model, optimizer and the loop. Read :meth:`run` first."""

    def __init__(self, cfg: Config, env: _Dist, model: nn.Module | None = None) -> None:
        self.cfg, self.env, self.device = cfg, env, env.device
        self.preset = PRESETS[cfg.preset]
        self.batch = cfg.batch_size or self.preset["batch_size"]
        self.out = Path(cfg.out) if cfg.out else None
        if self.out and env.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any float32 matmul/conv
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else self.device.type == "cuda")
        seed_everything(cfg.seed)  # same on every rank: identical initial replicas
        self._setup_data()
        self._setup_model(model)
        # data order: DistributedSampler's permutation is a function of (seed, epoch), so
        # the position in the run is fully given by the step counter
        from torch.utils.data.distributed import DistributedSampler
        self.sampler = DistributedSampler(range(len(self.train_x)), num_replicas=env.world,
                                          rank=env.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {self.batch} x {env.world} process(es) is larger "
                             f"than the training set ({len(self.train_x)} images): lower "
                             "--batch-size or use more images (--limit-train, --val-fraction)")
        epochs = cfg.epochs if cfg.epochs is not None else self.preset["epochs"]
        self.total = epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total = min(self.total, cfg.max_steps) if cfg.epochs is not None else cfg.max_steps
        self.step, self.last_ckpt_step, self.bar = 0, None, None
        self.best: dict[str, Any] | None = None  # {"bpd", "step", "state"} on validation
        self.history: dict[str, list[float]] = {"step": [], "train_bpd": [], "eval_step": [],
                                                "eval_bpd": []}

    # ---- setup ----
    def _setup_data(self) -> None:
        train_x, self.test_x, self.levels, self.flip = load_data(self.cfg)
        self.fit_x, self.val_x = split_validation(train_x, self.cfg.val_fraction, self.cfg.seed)
        self.train_x = self.fit_x.to(self.device)
        self.val_x, self.test_x = self.val_x.to(self.device), self.test_x.to(self.device)
        self.dims = self.train_x[0].numel()

    def _setup_model(self, model: nn.Module | None) -> None:
        C, H, _ = self.train_x.shape[1:]
        if model is not None and (self.cfg.norm != "batch" or self.cfg.invconv):
            raise ValueError("--norm and --invconv choose the layers of the preset's model; a "
                             "model was passed in: build it with them instead (RealNVP(..., "
                             f"norm={self.cfg.norm!r}, invconv={self.cfg.invconv}))")
        self.model = (model if model is not None else build_model(
            self.cfg.preset, C, H, self.cfg.norm, self.cfg.invconv)).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # --dequant variational: q(u|x) is trained with the flow, by the same optimizer
        self.dequantizer = (build_dequantizer(C, self.levels).to(self.device)
                            if self.cfg.dequant == "variational" else None)
        # every trained parameter (flow, and dequantizer if any), listed once: the optimizer
        # and the gradient clip of each step share this list
        self.params = [p for m in self._trained_modules() for p in m.parameters()]
        # the official optimizer: Adam with default betas; no weight decay (L2 is in the loss)
        self.optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.l2_params = l2_parameters(self.model)  # looked up once, not every step
        self.ema = None
        if self.cfg.ema:
            # with a variational dequantizer the flow and q(u|x) are averaged together, so an
            # evaluation pairs the averaged flow with the averaged q it was trained beside
            self._ema_source = (self.model if self.dequantizer is None else
                                nn.ModuleDict({"flow": self.model, "dequantizer": self.dequantizer}))
            self.ema = torch.optim.swa_utils.AveragedModel(
                self._ema_source,
                multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(self.cfg.ema),
                use_buffers=True)
        # dequantization noise and flips: one generator per rank, on the data's device
        self.aug = torch.Generator(device=self.device).manual_seed(
            self.cfg.seed * 1000 + self.env.rank + 1)
        self.net: nn.Module = self.model
        self.deq_net = self.dequantizer
        if self.env.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.dequantizer is not None:  # its gradients are averaged over ranks too
                self.deq_net = nn.parallel.DistributedDataParallel(self.dequantizer,
                                                                   device_ids=ids)
        if self.cfg.compile:
            self.net = torch.compile(self.net, backend=self.cfg.compile_backend)
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if self.cfg.precision == "bf16" else nullcontext())
        # the layers whose running averages a training forward moves (train_step's guard)
        self._batch_norms = [layer for m in self._trained_modules() for layer in m.modules()
                             if isinstance(layer, (BatchNormFlow, nn.modules.batchnorm._BatchNorm))]

    def _trained_modules(self) -> list[nn.Module]:
        """The flow, and the variational dequantizer if there is one."""
        return [self.model] + ([self.dequantizer] if self.dequantizer is not None else [])

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated, sampled and selected: the EMA of the weights if on."""
        if self.ema is None:
            return self.model
        return self.ema.module["flow"] if self.dequantizer is not None else self.ema.module

    @property
    def eval_dequantizer(self) -> nn.Module | None:
        """The dequantizer that goes with :attr:`eval_model`: its EMA if the EMA is on."""
        if self.ema is None or self.dequantizer is None:
            return self.dequantizer
        return self.ema.module["dequantizer"]

    # ---- the loop ----
    def run(self) -> TrainResult:
        if self.cfg.resume or self.cfg.resume_from_previous:
            self._resume()
        from tqdm import tqdm  # the text bar: works in terminals, logs and notebooks alike
        self.bar = tqdm(total=self.total, initial=self.step,
                        disable=not (self.env.main and self.cfg.progress),
                        desc=f"{self.cfg.dataset}/{self.cfg.preset}", unit="step",
                        mininterval=1.0 if sys.stderr.isatty() else 10.0)
        for m in self._trained_modules():
            m.train()
        self.t_start, self.images_seen = time.perf_counter(), 0
        self.window_start, self.window_steps = time.perf_counter(), 0
        while self.step < self.total:
            record = self.train_step(self._next_batch())
            self.step += 1
            self.images_seen += self.batch * self.env.world
            self.window_steps += 1
            self.bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == self.total:
                self._log_train(record)
            due_eval = (self.step % self.cfg.eval_every == 0 if self.cfg.eval_every
                        else self.step % self.steps_per_epoch == 0)
            if due_eval or self.step == self.total:
                self._evaluate_and_select()
            if (self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0) or due_eval \
                    or self.step == self.total:
                self._checkpoint()
                self.window_start = time.perf_counter()  # eval/checkpoint is not training time
        self.bar.close()
        return self._finish()

    def _next_batch(self) -> Tensor:
        epoch, i = divmod(self.step, self.steps_per_epoch)
        if epoch != getattr(self, "_order_epoch", None):
            self.sampler.set_epoch(epoch)
            self._order, self._order_epoch = list(self.sampler), epoch
        idx = torch.tensor(self._order[i * self.batch:(i + 1) * self.batch], device=self.device)
        xb = self.train_x[idx]
        return random_hflip(xb, self.aug) if self.flip else xb

    def train_step(self, xb: Tensor) -> dict[str, Tensor]:
        """One step of the official objective: nats per image + L2, clip, Adam.

        A NaN/inf loss or gradient changes nothing: no optimizer step, and the batch-norm
        running averages that this forward moved are put back; then NonFiniteLossError.
        """
        saved = self._save_batch_norm_state()
        nll = nll_nats(self.net, xb, self.levels, self.aug, self.autocast,
                       self.channels_last, self.deq_net).mean()
        loss = nll + self.cfg.l2 * l2_penalty(self.l2_params).to(nll.device)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        # one device-to-host sync per step: the guard must know before optimizer.step()
        bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))
        if self.env.any(bad):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for tensors, copies in saved:
                    for t, before in zip(tensors, copies):
                        t.copy_(before)
            self._stop(f"non-finite loss or gradient at step {self.step + 1} (loss "
                       f"{loss.item()}, grad norm {grad_norm.item()}): training stopped "
                       "without taking that step")
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self._ema_source)
        return {"loss": loss.detach(), "nll": nll.detach(), "grad_norm": grad_norm}

    def _save_batch_norm_state(self) -> list[tuple[list[Tensor], list[Tensor]]]:
        """``(buffers, their copies)`` per dtype: every batch norm's running averages (flow
        layers and the s/t networks' layers) and torch's batch counters.

        Looked up at each step: ``model.to()`` or ``.double()`` replaces buffer tensors.
        ``x * 1`` is an exact copy, and ``torch._foreach_mul`` makes it in a few fused
        kernels on a GPU, where a ``clone`` each would be hundreds of launches per step.
        """
        groups: dict[torch.dtype, list[Tensor]] = {}
        for m in self._batch_norms:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                t = getattr(m, name, None)
                if t is not None:
                    groups.setdefault(t.dtype, []).append(t)
        return [(ts, list(torch._foreach_mul(ts, 1))) for ts in groups.values()]

    def _last_good(self) -> str:
        if self.out is None:
            return "no checkpoint is kept (out=None)"
        if self.last_ckpt_step is None:
            return "no checkpoint was written yet"
        return (f"last good checkpoint: {self.out / CHECKPOINT_NAME} (step "
                f"{self.last_ckpt_step}), kept untouched")

    def _stop(self, what: str) -> NoReturn:
        """Raise NonFiniteLossError: ``what`` happened, where the last good state is."""
        if self.bar is not None:
            self.bar.close()
        again = ("Resume with --resume" if self.out and self.last_ckpt_step is not None
                 else "Run again")
        raise NonFiniteLossError(f"{what}; {self._last_good()}. {again}, e.g. with a lower --lr "
                                 "or --precision fp32.")

    def learning_rate(self) -> float:
        """``lr``, constant (the official code) or cosine-decayed to 0 over the run; a
        function of the step alone, so a resumed run follows the same schedule."""
        if self.cfg.lr_schedule == "constant":
            return self.cfg.lr
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * self.step / self.total))

    # ---- evaluation ----
    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: Tensor) -> float:
        """Mean bits/dim of ``x`` in eval mode; the same noise at every evaluation (with a
        variational dequantizer: bits/dim of the variational bound)."""
        dequantizer = self.eval_dequantizer if model is self.eval_model else self.dequantizer
        modules = [model] + ([dequantizer] if dequantizer is not None else [])
        for m in modules:
            m.eval()
        g = torch.Generator(device=self.device).manual_seed(12345)
        total = 0.0
        for xb in x.split(4 * self.batch):
            total += float(model_bpd(model, xb, self.levels, g, self.autocast,
                                     self.channels_last, dequantizer).sum())
        for m in modules:
            m.train()
        return total / len(x)

    def _evaluate_and_select(self) -> None:
        """Evaluate the held-out split; with a validation split, keep the best model.

        Rank 0 alone evaluates; every rank learns whether the figure is finite and stops
        if not (the weights of this step are then never saved).
        """
        model, on_val = self.eval_model, len(self.val_x) > 0
        bpd = 0.0
        if self.env.main:
            if self.cfg.recalibrate:
                recalibrate_batch_norm(model, recalibration_images(
                    self.train_x, self.cfg.recalibrate_images, self.cfg.seed),
                                       self.levels, dequantizer=self.eval_dequantizer)
            bpd = self.evaluate(model, self.val_x if on_val else self.test_x)
        if self.env.any(torch.tensor(not math.isfinite(bpd), device=self.device)):
            self._stop(self._not_finite_eval(bpd))
        if self.env.main:
            self._record_evaluation(model, bpd, on_val)

    def _not_finite_eval(self, bpd: float) -> str:
        value = f" ({bpd})" if self.env.main else ""
        return (f"the held-out bits/dim after step {self.step} is not finite{value}: the "
                "weights of that step give no finite likelihood (e.g. a learning rate far "
                "too high) and were NOT saved")

    def _record_evaluation(self, model: nn.Module, bpd: float, on_val: bool) -> None:
        """Log an evaluation, keep the best model on validation, write samples and plots."""
        key = "val_bpd" if on_val else "test_bpd"
        self._log({"kind": "eval", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                   key: bpd})
        self.history["eval_step"].append(self.step)
        self.history["eval_bpd"].append(bpd)
        if on_val and (self.best is None or bpd < self.best["bpd"]):
            self.best = {"bpd": bpd, "step": self.step,
                         "state": copy.deepcopy(model.state_dict())}
            if self.dequantizer is not None:  # the bound was measured with this q
                self.best["dequantizer"] = copy.deepcopy(self.eval_dequantizer.state_dict())
        self._write_samples()
        if self.out and self.cfg.plots:
            plot_metrics(self.out)
        if self.cfg.progress:
            self.bar.write(f"step {self.step}: {'validation' if on_val else 'held-out'} "
                           f"{bpd:.4f} bits/dim")

    # ---- logging, samples, checkpoints ----
    def _log(self, record: dict[str, Any]) -> None:
        if self.out and self.env.main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(_to_json(record) + "\n")

    def _log_train(self, r: dict[str, Tensor]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        ips = self.window_steps * self.batch * self.env.world / (now - self.window_start)
        nll = r["nll"].item()
        bpd = float(ledger_bits_per_dim(nll, self.dims, self.levels))
        self._log({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                   "loss": r["loss"].item(), "nll_nats": nll, "bpd": bpd,
                   "grad_norm": r["grad_norm"].item(), "img_per_s": ips,
                   "lr": self.optimizer.param_groups[0]["lr"]})
        self.history["step"].append(self.step)
        self.history["train_bpd"].append(bpd)
        self.bar.set_postfix(bpd=f"{bpd:.3f}", img_s=f"{ips:.1f}", refresh=False)
        self.window_start, self.window_steps = time.perf_counter(), 0

    def _write_samples(self) -> None:
        n = self.cfg.num_samples if self.cfg.num_samples is not None else self.preset["num_samples"]
        model = self.eval_model
        if not (self.out and self.cfg.plots and n and hasattr(model, "sample")):
            return
        g = torch.Generator(device=self.device).manual_seed(2024)
        y = model.sample(n, temperature=1.0, generator=g)  # eval mode inside
        save_grid(from_model_space(y), self.out / "samples" / f"step_{self.step:07d}.png",
                  f"{self.cfg.dataset} samples, step {self.step}, T=1.0")

    def _checkpoint(self) -> None:
        self._require_finite_weights()
        rngs = self.env.gather(capture_rng_state({"aug": self.aug}))  # every rank's state
        if self.out and self.env.main:
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "rng_per_rank": rngs, "step": self.step,
                     "epoch": self.step // self.steps_per_epoch, "world_size": self.env.world,
                     "device_type": self.device.type,
                     # the batch size as resolved (the preset's if none was given): resume
                     # compares it (module docstring)
                     "config": {**asdict(self.cfg), "batch_size": self.batch}}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            if self.dequantizer is not None:
                state["dequantizer"] = self.dequantizer.state_dict()
            if self.best is not None:
                state["best"] = self.best
            save_checkpoint(self.out / CHECKPOINT_NAME, state)
        self.last_ckpt_step = self.step

    def _require_finite_weights(self) -> None:
        """Never write NaN/inf weights over a good checkpoint (an optimizer step can blow up
        with a finite loss and gradient, e.g. with a huge learning rate)."""
        models = self._trained_modules() + ([self.ema.module] if self.ema is not None else [])
        tensors = [t for m in models for t in m.state_dict().values() if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if self.env.any(~finite):
            self._stop(f"the weights are not finite after step {self.step} (the optimizer "
                       "step blew up, e.g. a learning rate far too high): they were NOT saved")

    def _ema_state_of(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's EMA state in this run's layout. Checkpoints of --dequant variational
        written before the dequantizer was averaged too hold the flow's average only: it is
        kept, and the dequantizer's average starts from its checkpointed weights."""
        if self.dequantizer is None or any(k.startswith("module.flow.") for k in state):
            return state
        if self.env.main:
            print("--resume: this checkpoint's EMA averages the flow only (an earlier version); "
                  "the dequantizer's average starts from its current weights", file=sys.stderr)
        new = {("module.flow." + k[len("module."):] if k.startswith("module.") else k): v
               for k, v in state.items()}
        new.update({"module.dequantizer." + k: v.clone()
                    for k, v in self.dequantizer.state_dict().items()})
        return new

    def _resume(self) -> None:
        path = self.out / CHECKPOINT_NAME if self.out else None
        if path is None or not path.is_file():
            if self.env.main:
                print(f"--resume: no checkpoint at {path}; starting from scratch", file=sys.stderr)
            return
        ckpt = self._load_for_resume(path)
        _refuse_changed_settings(path, ckpt["config"], self.cfg)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.dequantizer is not None:
            self.dequantizer.load_state_dict(ckpt["dequantizer"])
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(self._ema_state_of(ckpt["ema"]))
        self.best = ckpt.get("best")
        self._restore_random_state(ckpt)
        self.step = self.last_ckpt_step = int(ckpt["step"])
        if self.env.main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)
            _truncate_metrics(self.out, self.step)

    def _load_for_resume(self, path: Path) -> dict[str, Any]:
        """The checkpoint, verified; a damaged one is never used nor overwritten.

        With ``resume_from_previous`` rank 0 keeps the damaged file as ``NAME.damaged`` and
        puts the previous good one in its place, and every rank loads that.
        """
        ckpt, error = None, None
        try:  # on the CPU: random states must be CPU tensors; load_state_dict copies later
            ckpt = load_checkpoint(path, map_location="cpu")
        except CheckpointCorruptError as err:
            error = err
        # a collective: every rank has read the file before rank 0 may replace it
        if not self.env.any(torch.tensor(error is not None, device=self.device)):
            return ckpt
        if error is None:  # only another rank failed to read the same file: give up too
            error = CheckpointCorruptError(path, "another process could not read it")
        if error.previous is None or not self.cfg.resume_from_previous:
            raise _damaged_checkpoint_error(error)
        if self.env.main:
            kept = _restore_previous(path, error.previous)
            print(f"--resume-from-previous: {path} is damaged, kept as {kept.name}; resuming "
                  f"from the previous checkpoint (step {error.previous_step})", file=sys.stderr)
        self.env.gather(None)  # a barrier: rank 0 has put the previous checkpoint in place
        return load_checkpoint(path, map_location="cpu")

    def _restore_random_state(self, ckpt: dict[str, Any]) -> None:
        """Every random state as saved; on another world size or device type (whose
        generators hold other states) the trainer's generator is reseeded instead."""
        per_rank = ckpt["rng_per_rank"]
        same_world = len(per_rank) == self.env.world
        saved_device = ckpt.get("device_type", self.device.type)
        if same_world and saved_device == self.device.type:
            restore_rng_state(per_rank[self.env.rank], {"aug": self.aug})
            return
        if same_world:
            restore_rng_state(per_rank[self.env.rank])  # torch, Python, NumPy: device-free
        self.aug.manual_seed(self.cfg.seed * 1000 + self.env.rank + 1 + ckpt["step"])
        if self.env.main:
            print(f"--resume: the checkpoint ran on {len(per_rank)} x {saved_device}, this run "
                  f"on {self.env.world} x {self.device.type}: dequantization noise and flips "
                  "are reseeded (the run goes on, not bit for bit)", file=sys.stderr)

    def _finish(self) -> TrainResult:
        """Load the selected model, evaluate it on the test split once, write the summary."""
        ranks = self.env.gather({"rank": self.env.rank, "steps": self.step,
                                 "fingerprint": fingerprint(self.model)})
        model = self.eval_model
        test_bpd = self.history["eval_bpd"][-1] if self.history["eval_bpd"] else None
        if self.best is not None:
            model.load_state_dict(self.best["state"])
            if "dequantizer" in self.best:
                self.eval_dequantizer.load_state_dict(self.best["dequantizer"])
        # with a validation split: the only look at the test split; without one, when
        # nothing was evaluated (a finished run resumed: nothing left to train)
        if self.env.main and (len(self.val_x) or test_bpd is None):
            test_bpd = self.evaluate(model, self.test_x)
            if not math.isfinite(test_bpd):
                self._stop(f"the test bits/dim of the selected model is not finite ({test_bpd})")
        wall = time.perf_counter() - self.t_start
        summary = {"dataset": self.cfg.dataset, "preset": self.cfg.preset, "steps": self.step,
                   "epochs": self.step / self.steps_per_epoch, "world_size": self.env.world,
                   "device": str(self.device), "precision": self.cfg.precision,
                   "compile": self.cfg.compile, "channels_last": self.channels_last,
                   "batch_per_process": self.batch, "test_bpd": test_bpd,
                   "best_val_bpd": self.best["bpd"] if self.best else None,
                   "best_step": self.best["step"] if self.best else None,
                   "params": sum(p.numel() for p in self.model.parameters()),
                   "norm": self.cfg.norm, "invconv": self.cfg.invconv,
                   "dequant": self.cfg.dequant, "dequantizer_params": sum(
                       p.numel() for m in self._trained_modules()[1:] for p in m.parameters()),
                   "ranks": ranks, "ranks_in_sync": len({r["fingerprint"] for r in ranks}) == 1,
                   "wall_s": wall, "mean_img_per_s": self.images_seen / max(wall, 1e-9)}
        if self.out and self.env.main:
            (self.out / "summary.json").write_text(_to_json(summary, indent=1))
            if self.cfg.plots and read_metrics(self.out):
                plot_metrics(self.out)
        dequantizer = self.eval_dequantizer
        if dequantizer is not None:
            dequantizer.eval()
        return TrainResult(model.eval(), summary, self.history, dequantizer)


# Settings that define a run: its data, their split and order, the model, what a step and
# an epoch are. Changed on resume they would not continue the run but start another from
# the middle of the first (another batch size even moves the epoch counter backwards).
RUN_DEFINING = ("dataset", "preset", "batch_size", "seed", "val_fraction", "limit_train", "ema",
                "norm", "invconv", "dequant")


def _run_defining(config: dict[str, Any]) -> dict[str, Any]:
    """The run-defining settings of a config (``asdict``) as they act: the preset's batch
    size when none is given; the EMA on or off (its decay may change)."""
    values = {k: config.get(k) for k in RUN_DEFINING}
    if values["batch_size"] is None:
        values["batch_size"] = PRESETS.get(config.get("preset"), {}).get("batch_size")
    values["ema"] = "on" if config.get("ema") else "off"
    return values


# run-defining settings added later: a checkpoint without them was trained with these
_LATER_DEFAULTS = {"norm": "batch", "invconv": False, "dequant": "uniform"}


def _refuse_changed_settings(path: Path, saved: dict[str, Any], cfg: Config) -> None:
    """ValueError naming every run-defining setting that differs from the checkpoint's."""
    saved = {**_LATER_DEFAULTS, **saved}
    old, new = _run_defining(saved), _run_defining(asdict(cfg))
    changed = [k for k in RUN_DEFINING if k in saved and old[k] != new[k]]
    if changed:
        def show(values: dict[str, Any]) -> str:
            return ", ".join(f"{_flag(k)} {'unset' if values[k] is None else values[k]}"
                             for k in changed)
        raise ValueError(f"--resume: {path} was trained with {show(old)}; got {show(new)}. "
                         "These settings define the run: resume with the checkpoint's values,"
                         " or start a new run in another --out")


def _damaged_checkpoint_error(err: CheckpointCorruptError) -> CheckpointCorruptError:
    """The loader's error, reworded for ``--resume``: what was kept and what to do next."""
    name = err.path.name
    head = (f"--resume: checkpoint {err.path} {err.verdict} and was NOT loaded ({err.reason});"
            " it is left as it is. ")
    if err.previous is None:
        tail = (f"There is no intact previous checkpoint ({name}{PREV_SUFFIX}): restore a copy "
                "of the file, or start a new run in another --out")
    else:
        step = f" (step {err.previous_step})" if err.previous_step is not None else ""
        tail = (f"The previous good checkpoint is {err.previous}{step}: add "
                f"--resume-from-previous to continue from it ({name} is then kept as "
                f"{name}.damaged)")
    err.args = (head + tail,)
    return err


def _restore_previous(path: Path, previous: Path) -> Path:
    """Keep the damaged ``path`` as ``NAME.damaged`` (or ``.damaged.N``) and put a copy of
    ``previous`` in its place, atomically: ``path`` never goes missing. Returns the kept
    file."""
    kept, n = path.with_name(path.name + ".damaged"), 0
    while kept.exists():
        n += 1
        kept = path.with_name(f"{path.name}.damaged.{n}")
    try:
        os.link(path, kept)  # a second name for the damaged bytes
    except OSError:  # no hard links here: copy
        shutil.copyfile(path, kept)
    with atomic_open(path) as f, open(previous, "rb") as src:
        shutil.copyfileobj(src, f)
    return kept


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop records logged after the checkpoint, so a resumed run never duplicates steps.

    Rewritten atomically: a kill during the rewrite leaves the old file, never an empty
    or half-written one.
    """
    keep = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    with atomic_open(out / "metrics.jsonl") as f:
        f.write("".join(_to_json(r) + "\n" for r in keep).encode())


# ------------------------------------------ CLI ----------------------------------------

def _add_optimization_args(p: argparse.ArgumentParser) -> None:
    """The objective, the optimizer and model selection."""
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (the official code) or cosine decay to 0 over the run")
    p.add_argument("--l2", type=float, default=5e-5,
                   help="coefficient of the L2 term sum(g^2) over the weight-norm magnitudes "
                        "and checkerboard scales, added to the NLL in nats (paper: 5e-5)")
    p.add_argument("--grad-clip", type=float, default=100.0,
                   help="max global norm of the gradient of nats-per-image + L2 (official: 100)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="carve this fraction of the training images out as a validation split;"
                        " evaluations use it and the best one is kept (the test split is "
                        "evaluated once, at the end)")
    p.add_argument("--ema", type=float, default=None,
                   help="evaluate an exponential moving average of the weights with this decay"
                        " (e.g. 0.98)")
    p.add_argument("--recalibrate", action="store_true",
                   help="recompute batch-norm running statistics from training images before "
                        "every evaluation")
    p.add_argument("--dequant", choices=DEQUANTS, default="uniform",
                   help="uniform: the paper's noise u ~ U[0,1); variational: noise from a "
                        "learned q(u|x) trained with the flow (Flow++), bits/dim of the bound")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Glow's layers in the preset's model (issue 12: what came after Real NVP)."""
    p.add_argument("--norm", choices=NORMS, default="batch",
                   help="the normalization flow after each coupling: batch (the paper's batch"
                        " norm) or actnorm (Glow's, initialized from the first batch); the "
                        "s/t networks keep their batch norms")
    p.add_argument("--invconv", action="store_true",
                   help="Glow's invertible 1x1 convolution before every coupling on a squeezed"
                        " tensor (channel-wise couplings and the final scale)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """What is trained, for how long, where, and resuming."""
    p.add_argument("--dataset", choices=DATASETS, default="synthetic",
                   help="cifar10: the official tarball in --data-root (downloaded if "
                        "missing); photos: 32x32 patches of nine bundled photographs, two held "
                        "out whole as the test set (offline stand-in for CIFAR-10); digits: scikit-learn's 8x8 digits; "
                        "synthetic: CIFAR-shaped random images for smoke runs")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="paper: RealNVP(num_scales=2, mid_channels=64, num_blocks=8), batch 64,"
                        " 100 epochs; digits: 32 features, 2 blocks, batch 64, 20 epochs; "
                        "laptop: 32 features, 2 blocks, batch 32 (CPU runs on 32x32 images);"
                        " tiny: 8 features, 1 block, batch 16, 1 epoch")
    p.add_argument("--out", required=True, help="run folder: metrics, samples, checkpoint")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (counting steps "
                        "before a resume)")
    p.add_argument("--epochs", type=int, default=None,
                   help="number of epochs (default: the preset's); with --max-steps, "
                        "whichever comes first")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt exactly where it stopped (model, "
                        "optimizer, EMA, every random state, step). May change, from the next"
                        " step on: --lr, --lr-schedule, --l2, --grad-clip, the --ema decay, "
                        "--max-steps, --epochs, --log-every, --eval-every, --ckpt-every, "
                        "--num-samples, --limit-test, --recalibrate, --no-progress, "
                        "--no-plots, --device, --precision, --compile, --channels-last and the"
                        " number of processes (another device type or number of processes "
                        "reseeds the noise: not bit for bit). Refused, naming old and new "
                        "value: --dataset, --preset, --batch-size, --seed, --val-fraction, "
                        "--limit-train, --ema on/off, --norm, --invconv, --dequant. A "
                        "damaged checkpoint is neither loaded nor overwritten: see "
                        "--resume-from-previous")
    p.add_argument("--resume-from-previous", action="store_true",
                   help="as --resume, but if OUT/checkpoint.pt is damaged, keep it as "
                        "checkpoint.pt.damaged and continue from the previous good checkpoint"
                        ", checkpoint.pt.prev")
    p.add_argument("--seed", type=int, default=0, help="seed for init, data order and noise")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps; a device "
                        "that is not there is an error, never a fallback")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step per process (default: the preset's)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast the s/t networks to bfloat16; log-dets and the prior "
                        "stay float32")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA, off on CPU)")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Data location, logging, evaluation, checkpoints and what is shown."""
    p.add_argument("--data-root", default="data", help="folder holding cifar-10-python.tar.gz")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail with instructions if the tarball is missing")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics lines")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between held-out evaluations (0: once per epoch); each "
                        "evaluation also saves samples and a checkpoint")
    p.add_argument("--ckpt-every", type=int, default=0,
                   help="extra checkpoint every N steps (0: only at evaluations and the end)")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N "
                   "training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test "
                   "images")
    p.add_argument("--num-samples", type=int, default=None, help="images per sample grid")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="no metrics.png and no sample grids")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no tqdm progress bar")
    p.add_argument("--debug", action="store_true",
                   help="on an error, show Python's full traceback instead of the one-line "
                        "message")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nvp_edu.train",
        description="Train the paper's multi-scale Real NVP (Dinh et al. 2017) and report "
                    "bits/dim. Multi-GPU: torchrun --nproc_per_node=N -m nvp_edu.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_run_args(p)
    _add_model_args(p)
    _add_optimization_args(p)
    _add_output_args(p)
    return p


def _parse(argv: Sequence[str] | None) -> tuple[Config, bool]:
    """The run's Config and ``--debug`` (how main reports errors, not a setting)."""
    args = vars(_parser().parse_args(argv))
    debug = args.pop("debug")
    return Config(**args), debug


def parse_args(argv: Sequence[str] | None = None) -> Config:
    return _parse(argv)[0]


# The errors a user can cause (settings, files, data, a diverging run): one line each,
# no traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, CheckpointCorruptError, NonFiniteLossError)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: 0 on success; on a user's error one line ``error: ...`` on stderr and exit
    status 1 for missing files (e.g. no CIFAR-10 tarball and no network), else 2."""
    cfg, debug = _parse(argv)
    try:
        summary = train(cfg).summary
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1 if isinstance(e, FileNotFoundError) else 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(_to_json({k: v for k, v in summary.items() if k != "ranks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
