"""What is trained: the preset's model, the variational dequantizer, their weight average.

``build_model(preset, ...)`` is :class:`~nvp_edu.models.RealNVP` with the preset's sizes
(``paper``: 2 scales, 64 features, 8 residual blocks, the paper's CIFAR-10 model).
``--dequant variational`` adds Flow++'s learned noise ``q(u | x)``
(:mod:`nvp_edu.vardeq`), trained jointly by the same optimizer. ``--ema`` keeps an
exponential moving average of the weights, which is what is evaluated and selected.
For several processes the trained modules are wrapped in DistributedDataParallel, and
with ``--compile`` in ``torch.compile``.

Example:
    >>> model = build_model("tiny", in_channels=1, image_size=8)
    >>> sum(p.numel() for p in model.parameters()) > 0
    True
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import RealNVP
from .distributed import Dist
from .settings import PRESETS


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
        from ..vardeq import VariationalDequantizer
    except ImportError as e:
        raise ValueError(f"--dequant variational needs nvp_edu.vardeq ({e}); use --dequant "
                         "uniform") from e
    return VariationalDequantizer(in_channels, levels)


def make_ema(model: nn.Module, dequantizer: nn.Module | None,
             decay: float) -> tuple[torch.optim.swa_utils.AveragedModel, nn.Module]:
    """``(ema, source)``: the average and what it averages. With a variational dequantizer
    the flow and q(u|x) are averaged together, so an evaluation pairs the averaged flow
    with the averaged q it was trained beside."""
    source = model if dequantizer is None else nn.ModuleDict({"flow": model,
                                                              "dequantizer": dequantizer})
    ema = torch.optim.swa_utils.AveragedModel(
        source, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
        use_buffers=True)
    return ema, source


def wrap(module: nn.Module | None, env: Dist) -> nn.Module | None:
    """``module`` in DistributedDataParallel when there are several processes (its
    gradients are then averaged over ranks)."""
    if module is None or env.world == 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
