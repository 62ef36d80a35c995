"""Run-wide settings: fast mode and the device helper."""
from __future__ import annotations

import os
import random

import torch


def fast_mode() -> bool:
    """True when ``NVP_EDU_FAST=1``: notebooks shrink data and steps so CI finishes quickly.

    The notebooks run the same cells either way; only sizes change.
    """
    return os.environ.get("NVP_EDU_FAST", "0").strip().lower() in ("1", "true", "yes", "on")


def pick(full, fast):
    """``fast`` in fast mode, else ``full``: ``steps = pick(4000, 200)``."""
    return fast if fast_mode() else full


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, else Apple MPS, else CPU. ``prefer`` (e.g. ``"cpu"``) overrides."""
    if prefer is not None and prefer != "auto":
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if installed) and torch so a notebook reruns identically."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
