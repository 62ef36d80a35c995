"""Pretrained models: small checkpoints trained by the course's own trainer, shipped in
``data/pretrained/``, so that a learner on a laptop (and CI, in fast mode) sees what a
trained model does in seconds.

Each model is two files: ``NAME.pt``, the weights (a ``state_dict``; floating-point
parameters stored in float16 to keep the repository small, batch-norm statistics in
float32), and ``NAME.json``, its card: the architecture, the exact command, seed, steps,
hardware and time that produced it, the held-out figures it reached, and the SHA-256 of
the weights file. :func:`load` checks the SHA-256 before ``torch.load`` reads a byte
(``weights_only=True`` besides), so a truncated or altered file is an error that says
which file and what to do, never a silently different model.

``scripts/make_pretrained.py`` writes both files from a finished run folder of
``python -m nvp_edu.train``; the card's ``command`` line reproduces the run.

Example:
    >>> sorted(available())
    ['digits', 'photos']
    >>> model = load("digits")               # RealNVP in eval mode, float32, verified
    >>> z = torch.randn(2, 1, 8, 8)
    >>> torch.allclose(model(model.inverse(z))[0], z, atol=1e-4)
    True
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .checkpoint import file_sha256
from .models import RealNVP

ENV_DIR = "NVP_EDU_PRETRAINED"  # a folder to read the files from instead of data/pretrained


class PretrainedFileError(RuntimeError):
    """A pretrained model's file is missing or damaged (the message says which and why)."""


def pretrained_dir() -> Path:
    """``$NVP_EDU_PRETRAINED`` if set, else ``data/pretrained`` of this checkout."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return Path(__file__).resolve().parent.parent / "data" / "pretrained"


def available(root: Path | None = None) -> list[str]:
    """Names of the models whose card is in the folder."""
    return sorted(p.stem for p in (root or pretrained_dir()).glob("*.json"))


def card(name: str, root: Path | None = None) -> dict[str, Any]:
    """The model's card (``NAME.json``): architecture, command, seed, steps, hardware,
    time, held-out figures and the weights' SHA-256."""
    root = root or pretrained_dir()
    path = root / f"{name}.json"
    if not path.is_file():
        names = ", ".join(available(root)) or "none"
        raise ValueError(f"no pretrained model {name!r} in {root} (available: {names})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedFileError(f"the card {path} is damaged ({err}); restore it with "
                                  f"git checkout -- {path.name} in its folder") from err


def verified_weights_path(name: str, root: Path | None = None) -> Path:
    """The weights file of ``name``, after checking that it exists and its SHA-256."""
    root = root or pretrained_dir()
    info = card(name, root)
    path = root / info["file"]
    retrain = f"or retrain it: {info['command']}"
    if not path.is_file():
        raise PretrainedFileError(f"the weights of pretrained model {name!r} are missing: "
                                  f"expected {path} (it ships with the repository: "
                                  f"git checkout -- data/pretrained/{info['file']}; {retrain})")
    actual = file_sha256(path)
    if actual != info["sha256"]:
        raise PretrainedFileError(
            f"the weights of pretrained model {name!r} are damaged: {path} has SHA-256 "
            f"{actual[:16]}..., its card expects {info['sha256'][:16]}... (a truncated "
            f"download or an edited file); restore it with git checkout -- "
            f"data/pretrained/{info['file']}, {retrain}")
    return path


def build(info: dict[str, Any]) -> RealNVP:
    """The untrained model of a card's architecture."""
    arch = dict(info["model"])
    if arch.pop("class") != "RealNVP":
        raise ValueError(f"unknown model class in the card: {info['model']}")
    return RealNVP(**arch)


def load(name: str, device: str | torch.device = "cpu", root: Path | None = None) -> RealNVP:
    """The pretrained ``RealNVP`` called ``name``, verified, in float32 and eval mode."""
    info = card(name, root)
    path = verified_weights_path(name, root)
    model = build(info)
    load_compact_state(model, torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def load_compact_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`compact_state` into ``model``, each tensor back in the model's own
    dtype (float32 parameters, integer counters)."""
    reference = model.state_dict()
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})


def compact_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What :func:`load` reads: floating-point parameters in float16, running statistics
    of batch norm (``running_*``) in float32 (their small variances need the range)."""
    return {k: (v.float() if "running_" in k else v.half()) if v.is_floating_point() else v
            for k, v in state.items()}
