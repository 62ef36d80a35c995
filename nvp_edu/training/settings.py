"""The settings of a run (:class:`Config`, the CLI's flags), the presets, and their checks.

Every setting is checked before anything runs (:func:`validate`): a count that is zero or
negative, a fraction out of range, an ``--out`` that is empty or a file, a ``--device``
that is not there (never a silent fallback to the CPU). Each error is one line naming the
flag, what it needs and what it got.

Example:
    >>> validate(Config(out=None, batch_size=0))
    Traceback (most recent call last):
    ...
    ValueError: --batch-size must be at least 1; got 0
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..models import NORMS

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
DATASETS = ("cifar10", "photos", "digits", "synthetic")
DEQUANTS = ("uniform", "variational")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Config:
    """Every setting of a run (the CLI's flags; see ``python -m nvp_edu.train --help``)."""

    dataset: str = "synthetic"
    preset: str = "tiny"
    out: str | None = "runs/default"
    max_steps: int | None = None
    epochs: int | None = None
    resume: bool = False
    resume_from_previous: bool = False  # resume; from .prev if checkpoint.pt is damaged/gone
    overwrite: bool = False  # a fresh run may replace the run already in ``out``
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "auto"  # auto: bf16 on Ampere+, fp16 + scaler on older CUDA, else fp32
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


@dataclass
class TrainResult:
    """What :func:`nvp_edu.training.loop.train` hands back."""

    model: nn.Module  # the selected model (the EMA if on; best on validation if split), eval mode
    summary: dict[str, Any]  # also written to summary.json
    history: dict[str, list[float]] = field(default_factory=dict)  # this session's curves
    dequantizer: nn.Module | None = None  # q(u|x) of --dequant variational (its EMA if on)

    def __getitem__(self, key: str) -> Any:  # result["test_bpd"] reads the summary
        return self.summary[key]

    def __repr__(self) -> str:
        keys = ("dataset", "preset", "steps", "test_bpd", "best_val_bpd")
        return "TrainResult(" + ", ".join(f"{k}={self.summary.get(k)!r}" for k in keys) + ")"


def flag(name: str) -> str:
    """The CLI flag of a Config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _check_count(cfg: Config, name: str, minimum: int, optional: bool = False,
                 meaning: str = "", maximum: int | None = None) -> None:
    """``cfg.<name>`` is a whole number >= ``minimum`` (or None if ``optional``)."""
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{flag(name)} must be a whole number; got {value!r}")
    if value < minimum:
        raise ValueError(f"{flag(name)} must be at least {minimum}{meaning}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{flag(name)} must be at most {maximum}; got {value}")


def _check_number(cfg: Config, name: str, low: float, high: float, closed: str,
                  optional: bool = False) -> None:
    """``cfg.<name>`` is a real number in the interval; ``closed`` names its closed ends."""
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{flag(name)} must be a number; got {value!r}")
    above = value >= low if "low" in closed else value > low
    below = value <= high if "high" in closed else value < high
    if not (above and below):  # NaN fails both
        interval = (("[" if "low" in closed else "(") + f"{low:g}, {high:g}"
                    + ("]" if "high" in closed else ")"))
        raise ValueError(f"{flag(name)} must be in {interval}; got {value}")


def _check_choice(cfg: Config, name: str, choices: Sequence[str]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{flag(name)} must be one of {', '.join(choices)}; got {value!r}")


def check_out(out: str | None) -> None:
    """The run folder is named, and is a folder or can become one (no file in the way)."""
    if out is None:
        return
    if not str(out).strip():  # Path("") is ".", the current folder: never meant
        raise ValueError("--out is empty: name the run folder (e.g. --out runs/digits)")
    for folder in (Path(out), *Path(out).parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == Path(out) else f": {folder} is a file"
                raise NotADirectoryError(f"--out {out} cannot be a run folder{where} (an "
                                         "existing file is in the way): choose another --out")
            return


def check_device(device: str) -> None:
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


def validate(cfg: Config) -> None:
    """Refuse every setting that would be silently replaced, crash later, or fall back."""
    _check_choice(cfg, "dataset", DATASETS)
    _check_choice(cfg, "preset", sorted(PRESETS))
    _check_choice(cfg, "precision", PRECISIONS)
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
    if cfg.resume and cfg.overwrite or cfg.resume_from_previous and cfg.overwrite:
        raise ValueError("--overwrite starts a new history and --resume continues the old "
                         "one: give one of them")
    check_out(cfg.out)
    check_device(cfg.device)
