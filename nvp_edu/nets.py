"""The networks that compute ``s`` and ``t`` inside a coupling layer.

Because the coupling's log-det is just ``sum(s)`` (paper, Eq. 6), ``s`` and ``t`` never
need to be inverted or differentiated in closed form: any network works. For images the
paper uses deep residual networks with batch normalization and weight normalization
(section 3.6, section 4.1); :class:`ResNet` follows the official code (tensorflow/models,
``research/real_nvp``) layer for layer:

    input:  batch norm of the masked input (times 2 for a spatial mask),
            concatenated ReLU [relu(h), relu(-h)] (and the mask itself as one more channel)
    trunk:  3x3 conv in, ``num_blocks`` residual blocks; a 1x1 "skip" conv after the input
            conv and after every block, summed (the network's output reads every depth)
    output: batch norm, ReLU, 1x1 conv to ``out_channels``

One deliberate deviation: the output convolution starts at zero, so ``s = t = 0`` and
every coupling starts as the identity (the official code starts ``t`` random and ``s``
at zero through its coupling's scale). Training begins from a well-conditioned flow.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def zero_init(layer: nn.Module) -> nn.Module:
    """Set a layer's weight (or weight-norm magnitude) and bias to zero: output 0."""
    nn.init.zeros_(layer.magnitude if isinstance(layer, WNConv2d) else layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Fully connected ``s, t`` network for vector data: ``in_dim -> hidden x depth -> out_dim``.

    Example:
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


class WNConv2d(nn.Module):
    """A weight-normalized convolution (Salimans & Kingma 2016), as the paper uses.

    Each output channel's filter is ``w = g * v / |v|``: the direction ``v`` and the
    length ``g`` (``magnitude``) are learned separately. With ``magnitude=False`` the
    filters have unit length, as the official code's convolutions that a batch norm
    follows (their scale would be normalized away). ``g`` starts at ``k / sqrt(6)``
    (the official initialization, ``k`` the kernel size).

    Example:
        >>> conv = WNConv2d(3, 8, 3)
        >>> conv(torch.randn(2, 3, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
        >>> torch.allclose(conv.weight().flatten(1).norm(dim=1), conv.magnitude)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True, magnitude: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.direction = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size,
                                                  kernel_size).uniform_(-1, 1))
        self.magnitude = (nn.Parameter(torch.full((out_channels,), kernel_size / math.sqrt(6)))
                          if magnitude else None)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def weight(self) -> Tensor:
        w = self.direction / self.direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return w if self.magnitude is None else w * self.magnitude.view(-1, 1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.conv2d(x, self.weight(), self.bias, padding=self.padding)


class FiniteBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose running averages skip a batch with a NaN or inf in it.

    One bad batch (a NaN image, an overflow) would otherwise write NaN into the running
    averages for good, and every later evaluation and sample would be NaN; the flow's own
    :class:`~nvp_edu.batchnorm.BatchNormFlow` skips such batches the same way. The batch
    statistics update copies of the averages (torch's fused kernel, as usual); the copies
    are kept only if finite, decided on the device with ``torch.where`` (no host sync).
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        mean, var = self.running_mean.clone(), self.running_var.clone()
        # momentum None: torch's cumulative average, every batch weighted equally (what
        # nvp_edu.batchnorm.recompute_running_stats uses); a skipped batch is not counted
        factor = (self.momentum if self.momentum is not None
                  else 1.0 / float(self.num_batches_tracked + 1))
        y = nn.functional.batch_norm(x, mean, var, self.weight, self.bias, True, factor,
                                     self.eps)
        with torch.no_grad():
            finite = torch.isfinite(mean).all() & torch.isfinite(var).all()
            self.running_mean.copy_(torch.where(finite, mean, self.running_mean))
            self.running_var.copy_(torch.where(finite, var, self.running_var))
            self.num_batches_tracked.add_(finite.long())
        return y


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """The s/t networks' batch norm: learned shift, no learned scale (official code).

    eps 1e-4 and running averages with weight 0.1 on the newest batch, as there; a
    non-finite batch leaves the averages as they are (:class:`FiniteBatchNorm2d`).
    """
    bn = FiniteBatchNorm2d(channels, eps=1e-4, momentum=0.1, affine=False)
    bn.bias = nn.Parameter(torch.zeros(channels))  # F.batch_norm takes a bias without weight
    return bn


class ResidualBlock(nn.Module):
    """``x + conv(relu(bn(conv(relu(bn(x))))))``: the pre-activation residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            batch_norm(channels), nn.ReLU(),
            WNConv2d(channels, channels, 3, bias=False, magnitude=False),
            batch_norm(channels), nn.ReLU(),
            WNConv2d(channels, channels, 3),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """The paper's ``s, t`` network for images (official code's layout; module docstring).

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``; the output
    convolution starts at zero.

    Args:
        mask: the coupling's spatial mask ``(1, 1, H, W)``, if any: it is given to the
            network as one more input channel (the input is then ``b * x``, whose zeros
            are otherwise ambiguous), and the normalized input is doubled, as officially.

    Example:
        >>> from nvp_edu.masks import checkerboard_mask
        >>> net = ResNet(3, 6, mid_channels=8, num_blocks=1, mask=checkerboard_mask(4, 4))
        >>> net(torch.randn(2, 3, 4, 4)).shape
        torch.Size([2, 6, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int = 64,
                 num_blocks: int = 8, mask: Tensor | None = None) -> None:
        super().__init__()
        self.input_norm = batch_norm(in_channels)
        if mask is not None:
            self.register_buffer("mask", mask.float())
        else:
            self.mask = None
        net_in = 2 * in_channels + (mask is not None)
        self.conv_in = WNConv2d(net_in, mid_channels, 3, magnitude=False)
        self.skip_in = WNConv2d(mid_channels, mid_channels, 1)
        self.blocks = nn.ModuleList(ResidualBlock(mid_channels) for _ in range(num_blocks))
        self.skips = nn.ModuleList(WNConv2d(mid_channels, mid_channels, 1)
                                   for _ in range(num_blocks))
        self.out = nn.Sequential(batch_norm(mid_channels), nn.ReLU(),
                                 zero_init(WNConv2d(mid_channels, out_channels, 1)))

    def forward(self, x: Tensor) -> Tensor:
        h = self.input_norm(x)
        parts = [h, -h]  # concatenated ReLU: keeps the sign information a ReLU would drop
        if self.mask is not None:
            parts = [2 * h, -2 * h, self.mask.expand(x.shape[0], -1, -1, -1).to(h.dtype)]
        h = self.conv_in(torch.relu(torch.cat(parts, dim=1)))
        skip = self.skip_in(h)
        for block, skip_conv in zip(self.blocks, self.skips):
            h = block(h)
            skip = skip + skip_conv(h)
        return self.out(skip)
