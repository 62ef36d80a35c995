"""Precision per device: bf16 where the GPU has it natively, fp16 with a gradient scaler on
older GPUs, float32 otherwise (``--precision auto``, the default).

================================  ================  ==========================================
device                            ``auto`` picks    how
================================  ================  ==========================================
CUDA, compute capability >= 8     ``bf16``          autocast to bfloat16 (Ampere, Hopper, ...)
CUDA, capability < 8 (T4, V100)   ``fp16``          autocast to float16 + ``GradScaler``
CPU, Apple MPS                    ``fp32``          no autocast
================================  ================  ==========================================

Under autocast only the s/t networks run in the low precision: the coupling's ``exp(s)``,
every log-det and the prior stay in float32 (:func:`nvp_edu.training.objective.nll_nats`).
bf16 has float32's exponent range, so gradients neither overflow nor underflow; fp16's
largest value is 65504, so its gradients are multiplied by a *loss scale* before the
backward pass and divided again before the optimizer step; a step whose gradients
overflowed is skipped and the scale halved (``torch.amp.GradScaler``). The scaler's state
is saved in the checkpoint, so a resumed run continues exactly.

Example:
    >>> choose_precision("auto", torch.device("cuda"), capability=(7, 5))  # a T4
    'fp16'
    >>> choose_precision("auto", torch.device("cuda"), capability=(8, 0))  # an A100
    'bf16'
    >>> choose_precision("auto", torch.device("cpu"))
    'fp32'
    >>> initial_loss_scale(dims=3 * 32 * 32, levels=256)
    1.0
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FP16_MAX = 65504.0


def choose_precision(requested: str, device: torch.device,
                     capability: tuple[int, int] | None = None) -> str:
    """``requested`` unless it is ``"auto"``: then bf16 on CUDA with compute capability
    >= 8, fp16 on older CUDA, fp32 elsewhere. ``capability`` defaults to the device's."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    major, _ = capability if capability is not None else torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def initial_loss_scale(dims: int, levels: int) -> float:
    """The fp16 loss scale to start from: the largest power of two (at most 2^16) with
    which twice a uniform model's loss, ``2 D ln(levels)`` nats per image, stays below
    fp16's largest value 65504.

    Why not GradScaler's default 2^16: the loss is in nats *per image*, a sum over
    ``D`` dimensions (about 2e4 at the start on CIFAR-10), and the scaled loss and the
    gradients it sends back must fit in fp16; 2^16 would overflow every step until the
    scale had halved a dozen times (each of those steps skipped). The per-image loss also
    keeps gradients far from fp16's underflow, so a small scale loses nothing.
    """
    worst = 2 * dims * math.log(levels)
    return float(2 ** min(16, math.floor(math.log2(FP16_MAX / worst))))  # may be < 1


class Precision:
    """The autocast context and, for fp16, the gradient scaler of one run.

    ``autocast`` is entered around the flow's forward pass; ``scaler`` is None unless
    the precision is fp16.
    """

    def __init__(self, requested: str, device: torch.device, dims: int, levels: int,
                 capability: tuple[int, int] | None = None) -> None:
        self.requested = requested
        self.name = choose_precision(requested, device, capability)
        self.autocast: Any = (torch.autocast(device.type, dtype=DTYPES[self.name])
                              if self.name in DTYPES else nullcontext())
        self.scaler = (torch.amp.GradScaler(device.type, init_scale=initial_loss_scale(dims, levels))
                       if self.name == "fp16" else None)

    def describe(self) -> str:
        """One line for the start of a run: what was chosen, and why if ``auto`` chose."""
        how = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler",
               "fp32": "fp32"}[self.name]
        why = f" (--precision {self.requested})" if self.requested != "auto" else " (auto)"
        tail = "; log-dets and the prior in float32" if self.name != "fp32" else ""
        return f"precision: {how}{why}{tail}"


def configure_cuda_math(device: torch.device) -> None:
    """TF32 for any float32 matmul/convolution on CUDA, and cuDNN's autotuner."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
