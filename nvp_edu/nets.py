"""The networks that compute ``s`` and ``t`` inside a coupling layer.

Because the coupling's log-det is just ``sum(s)`` (paper, Eq. 6), ``s`` and ``t`` never
need to be inverted or differentiated in closed form: any network works. The paper uses
deep residual networks with batch normalization and weight normalization (section 3.6,
section 4.1). The last layer of every network starts at zero, so ``s = t = 0`` and every
coupling starts as the identity map: training begins from a well-conditioned flow.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def zero_init(layer: nn.Module) -> nn.Module:
    """Set a layer's weight and bias to zero (the coupling then starts as the identity)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Fully connected ``s, t`` network for vector data: ``in_dim -> hidden x depth -> out_dim``.

    Example:
        >>> import torch
        >>> net = MLP(2, 4, hidden=16)
        >>> net(torch.randn(3, 2)).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.SiLU()]
            d = hidden
        layers.append(zero_init(nn.Linear(d, out_dim)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def wn_conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Module:
    """A weight-normalized convolution (Salimans & Kingma 2016; used by the paper)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    return weight_norm(conv)


def param_groups(model: nn.Module, l2: float) -> list[dict]:
    """Optimizer groups: weight-norm scales ``g`` with L2 ``l2``, everything else without.

    The paper (section 4.1) puts an L2 penalty of 5e-5 on the weight-normalization scale
    parameters only. ``weight_norm`` stores ``w = g * v / |v|`` with ``g`` as ``original0``.
    """
    scales, rest = [], []
    for name, p in model.named_parameters():
        (scales if name.endswith("parametrizations.weight.original0") else rest).append(p)
    return [{"params": scales, "weight_decay": l2}, {"params": rest, "weight_decay": 0.0}]


class ResidualBlock(nn.Module):
    """``x + conv(relu(bn(conv(relu(bn(x))))))``: the pre-activation residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), wn_conv(channels, channels),
            nn.BatchNorm2d(channels), nn.ReLU(), wn_conv(channels, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """The paper's ``s, t`` network for images: conv in, ``num_blocks`` residual blocks, conv out.

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``; the output convolution
    starts at zero.

    Example:
        >>> import torch
        >>> net = ResNet(3, 6, mid_channels=8, num_blocks=1)
        >>> net(torch.randn(2, 3, 4, 4)).shape
        torch.Size([2, 6, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int = 64,
                 num_blocks: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            wn_conv(in_channels, mid_channels),
            *[ResidualBlock(mid_channels) for _ in range(num_blocks)],
            nn.BatchNorm2d(mid_channels), nn.ReLU(),
            zero_init(nn.Conv2d(mid_channels, out_channels, 3, padding=1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
