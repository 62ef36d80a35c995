"""Real NVP models: a vector flow for 2-D toys and the paper's multi-scale image flow.

Both are flows (``z, log_det = model(x)``, ``model.inverse(z)``) with a standard-normal
prior, so ``log_prob(x) = log N(z; 0, I) + log_det`` (paper, Eq. 3), in nats.
"""
from __future__ import annotations

import operator

import torch
from torch import Tensor, nn

from .actnorm import ActNorm
from .base import Flow, Sequential, check_input
from .batchnorm import BatchNormFlow
from .coupling import AffineCoupling
from .invconv import InvConv1x1
from .masks import alternating_vector_mask, channel_mask, checkerboard_mask
from .nets import MLP, ResNet
from .rotation import Rotation
from .prior import standard_normal_log_prob, standard_normal_sample
from .squeeze import Squeeze, factor_out_order


def _is_count(n: object) -> bool:
    """A whole number >= 1 (Python or NumPy integer, 0-d integer tensor), not a bool."""
    try:
        return not isinstance(n, bool) and operator.index(n) >= 1
    except TypeError:
        return False


class _Density(Flow):
    """``log_prob`` and ``sample`` for a flow whose ``forward`` maps data to N(0, I)."""

    def event_shape(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` in nats, shape ``(batch,)``, of ``x`` exactly as given."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det.float()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples: ``x = f^-1(z)``, ``z ~ N(0, T^2 I)`` (T = ``temperature``).

        Runs in eval mode (running batch-norm statistics) and restores the mode it found,
        so sampling never changes what the model has learned, in train mode or not.
        """
        if not _is_count(n):
            raise ValueError(f"sample(n) needs a whole number n >= 1 of samples; got {n!r}")
        ref = next(self.parameters(), None)
        ref = ref if ref is not None else next(self.buffers())
        # z in the model's own dtype: a model.double() samples in float64
        z = standard_normal_sample((operator.index(n), *self.event_shape()), temperature,
                                   ref.device, generator, dtype=ref.dtype)
        was_training = self.training
        self.eval()
        try:
            return self.inverse(z)
        finally:
            self.train(was_training)


class VectorFlow(_Density):
    """A density on vectors of size ``dim``: a stack of couplings ``self.flow`` and a
    standard-normal prior. Subclasses build ``self.flow``; this class checks shapes and
    runs it (shared by :class:`RealNVP2D` and ``nvp_edu.splines.SplineFlow2D``)."""

    dim: int
    flow: Sequential

    def event_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def _check(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name}(dim={self.dim}) needs input of shape (N, {self.dim}); "
                             f"got shape {tuple(x.shape)}")
        check_input(x, self, name)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        return self.flow(x)

    def inverse(self, z: Tensor) -> Tensor:
        self._check(z)
        return self.flow.inverse(z)

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """Input and the output of every coupling, for layer-by-layer warp figures."""
        self._check(x)
        return self.flow.trajectory(x)


class RealNVP2D(VectorFlow):
    """Real NVP for vectors: ``num_couplings`` affine couplings with alternating masks.

    Each coupling's ``s, t`` network is an MLP with ``mlp_depth`` hidden layers of ``hidden``
    units. With ``rotation`` (degrees, 2-D only) a fixed :class:`~nvp_edu.rotation.Rotation`
    of the plane follows every second coupling, so that later couplings act along new
    directions, not only the two axes (log-det 0, no parameters; not in the paper, which
    only alternates the masks).

    Example:
        >>> model = RealNVP2D(num_couplings=4, hidden=32)
        >>> x = torch.randn(8, 2)
        >>> z, log_det = model(x)
        >>> torch.allclose(model.inverse(z), x, atol=1e-5), model.log_prob(x).shape
        (True, torch.Size([8]))
        >>> len(RealNVP2D(num_couplings=4, hidden=8, rotation=45.0).flow)  # 4 couplings, 1 rotation
        5
    """

    def __init__(self, dim: int = 2, num_couplings: int = 8, hidden: int = 128,
                 mlp_depth: int = 2, rotation: float = 0.0) -> None:
        super().__init__()
        if rotation and dim != 2:
            raise ValueError(f"rotation mixes the two coordinates of the plane: it needs dim=2; "
                             f"got dim={dim}")
        self.dim = dim
        layers: list[Flow] = []
        for i in range(num_couplings):
            if rotation and i > 0 and i % 2 == 0:  # after each pair (one move along each axis)
                layers.append(Rotation(rotation))
            net = MLP(dim, 2 * dim, hidden=hidden, depth=mlp_depth)
            layers.append(AffineCoupling(alternating_vector_mask(dim, invert=i % 2 == 1), net))
        self.flow = Sequential(*layers)


NORMS = ("batch", "actnorm")


def _coupling_stack(masks: list[Tensor], in_channels: int, mid_channels: int, num_blocks: int,
                    norm: str | None, invconv: bool = False) -> Sequential:
    """Affine couplings, one per mask. Each is followed by a normalization flow if ``norm``
    is given: ``"batch"``, a batch norm on the entries the coupling changed (the official
    code's batch norm inside each coupling), or ``"actnorm"``, Glow's actnorm on every
    entry. With ``invconv`` each is preceded by an invertible 1x1 convolution (Glow's
    flow step: normalization, 1x1 convolution, coupling)."""
    layers: list[Flow] = []
    for mask in masks:
        if invconv:
            layers.append(InvConv1x1(in_channels))
        if mask.shape[1] > 1:  # channel mask: the net sees the kept half, predicts the other
            net = ResNet(in_channels // 2, in_channels, mid_channels, num_blocks)
        else:  # checkerboard: the net sees b * x and the mask itself
            net = ResNet(in_channels, 2 * in_channels, mid_channels, num_blocks, mask=mask)
        layers.append(AffineCoupling(mask, net))
        if norm == "batch":
            layers.append(BatchNormFlow(in_channels, mask=mask))
        elif norm == "actnorm":
            layers.append(ActNorm(in_channels))
    return Sequential(*layers)


def _unorder(x: Tensor, order: list[int]) -> Tensor:
    """Undo ``x[:, order]``: put channel ``k`` of ``x`` back at position ``order[k]``."""
    out = torch.empty_like(x)
    out[:, order] = x
    return out


class RealNVP(_Density):
    """The paper's multi-scale Real NVP for square images (section 3.6, Figure 4(b)).

    Each of the first ``num_scales - 1`` scales: 3 alternating checkerboard couplings,
    squeeze ``(C, S, S) -> (4C, S/2, S/2)``, 3 alternating channel-wise couplings, then
    half of the numbers are factored out to the prior; the other half goes on to the
    next scale. Which half: as in the official code, one colour of a spatial
    checkerboard of every channel goes on (sub-pixels (0,0) and (1,1) of each 2x2
    block) and the other leaves (see :func:`~nvp_edu.squeeze.factor_out_order`). The
    final scale: 4 alternating checkerboard couplings. The s/t width doubles at each
    coarser scale (and for the channel-wise couplings after a squeeze).
    CIFAR-10 in the paper: ``num_scales=2`` ("downscale only once"), 8 blocks, 64 features.

    ``forward`` returns ``z`` of the same shape as ``x`` (the factored-out latents put
    back in place); :meth:`encode` returns the latents and log-dets of each scale.

    Args:
        batch_norm: a normalization flow after every coupling (False: none).
        norm: which one: ``"batch"``, a :class:`BatchNormFlow` on the entries the coupling
            changed (paper, section 3.7), or ``"actnorm"``, Glow's :class:`ActNorm` on all
            entries (data-dependent initialization on the first training batch). The
            ``torch.nn.BatchNorm2d`` layers inside the ``s, t`` ResNets stay in both cases:
            ``norm`` swaps only the flow layers.
        invconv: Glow's invertible 1x1 convolution (:class:`InvConv1x1`) before every
            coupling that works on a squeezed tensor: the channel-wise couplings of each
            scale and the checkerboard couplings of the final scale. Not before the first
            scale's checkerboard couplings: there the channels are the raw colours (one for
            grey images), and Glow too mixes channels only after a squeeze. Needs
            ``num_scales >= 2``.

    Example:
        >>> model = RealNVP(in_channels=1, image_size=8, num_scales=2, mid_channels=8,
        ...                 num_blocks=1).eval()
        >>> x = torch.randn(2, 1, 8, 8)
        >>> z, log_det = model(x)
        >>> z.shape, torch.allclose(model.inverse(z), x, atol=1e-4)
        (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_scales: int = 2,
                 mid_channels: int = 64, num_blocks: int = 8, batch_norm: bool = True,
                 norm: str = "batch", invconv: bool = False) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1; got {num_scales}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
        if norm != "batch" and not batch_norm:
            raise ValueError(f"norm={norm!r} asks for a normalization layer but batch_norm=False "
                             "asks for none: pass one of them")
        if invconv and num_scales < 2:
            raise ValueError("invconv=True needs num_scales >= 2: the 1x1 convolutions go where "
                             "the image has been squeezed, and one scale never squeezes")
        factor = 2 ** (num_scales - 1)
        if image_size % factor or image_size // factor < 2:
            raise ValueError(f"image_size={image_size} cannot be squeezed {num_scales - 1} "
                             f"time(s): it must be a multiple of {factor} and at least "
                             f"{2 * factor}")
        self.in_channels, self.image_size, self.num_scales = in_channels, image_size, num_scales
        self.squeeze = Squeeze()
        self.scales = nn.ModuleList()
        flow_norm = norm if batch_norm else None
        c, s, mid = in_channels, image_size, mid_channels
        self.orders: list[list[int]] = []  # per scale: squeezed channels, kept half first
        for _ in range(num_scales - 1):
            self.orders.append(factor_out_order(c))
            checker = [checkerboard_mask(s, s, invert=i % 2 == 1) for i in range(3)]
            channel = [channel_mask(4 * c, invert=i % 2 == 1) for i in range(3)]
            self.scales.append(nn.ModuleDict({
                "checkerboard": _coupling_stack(checker, c, mid, num_blocks, flow_norm),
                "channelwise": _coupling_stack(channel, 4 * c, 2 * mid, num_blocks, flow_norm,
                                               invconv),
            }))
            c, s, mid = 2 * c, s // 2, 2 * mid
        final = [checkerboard_mask(s, s, invert=i % 2 == 1) for i in range(4)]
        self.final = _coupling_stack(final, c, mid, num_blocks, flow_norm, invconv)

    def event_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    def _check(self, x: Tensor) -> None:
        need = self.event_shape()
        if x.dim() != 4 or tuple(x.shape[1:]) != need:
            raise ValueError(f"RealNVP needs images of shape (N, {need[0]}, {need[1]}, "
                             f"{need[2]}); got shape {tuple(x.shape)}")
        check_input(x, self, "RealNVP")

    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """``(C, H, W)`` of each scale's latents, as :meth:`encode` returns them.

        Example: ``RealNVP(3, 32, num_scales=2).latent_shapes()`` is
        ``[(6, 16, 16), (6, 16, 16)]``: half of the 3x32x32 numbers leave at each scale.
        """
        shapes = []
        c, s = self.in_channels, self.image_size
        for _ in self.scales:
            c, s = 4 * c, s // 2
            shapes.append((c // 2, s, s))
            c //= 2
        shapes.append((c, s, s))
        return shapes

    def _check_latents(self, latents: list[Tensor]) -> None:
        need = self.latent_shapes()
        got = [tuple(z.shape[1:]) for z in latents]
        if len(latents) != len(need) or got != need:
            raise ValueError(f"RealNVP with {self.num_scales} scale(s) needs latents of shapes "
                             f"(N, C, H, W) with (C, H, W) = {need}; got {got}")
        for z in latents:
            check_input(z, self, "RealNVP")

    def encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Latents and log-dets per scale: ``([z_1, ..., z_K], [ld_1, ..., ld_K])``.

        ``z_k`` (k < K) is the half factored out at scale k, shape ``(N, 2C_k, S_k/2, S_k/2)``:
        the sub-pixels (0,1) of every channel, then (1,0); ``z_K`` is the output of the
        final scale.
        """
        self._check(x)
        latents, log_dets = [], []
        for scale, order in zip(self.scales, self.orders):
            x, ld = scale["checkerboard"](x)
            x, _ = self.squeeze(x)  # a permutation: log-det 0
            x, ld2 = scale["channelwise"](x)
            x, z = x[:, order].chunk(2, dim=1)  # factor out half (paper, Eq. 13-14)
            latents.append(z)
            log_dets.append(ld + ld2)
        x, ld = self.final(x)
        latents.append(x)
        log_dets.append(ld)
        return latents, log_dets

    def decode(self, latents: list[Tensor]) -> Tensor:
        """Inverse of :meth:`encode`: the image from the latents of every scale."""
        self._check_latents(latents)
        x = self.final.inverse(latents[-1])
        for scale, order, z in zip(reversed(self.scales), reversed(self.orders),
                                   reversed(latents[:-1])):
            x = _unorder(torch.cat([x, z], dim=1), order)
            x = scale["channelwise"].inverse(x)
            x = self.squeeze.inverse(x)
            x = scale["checkerboard"].inverse(x)
        return x

    def split_latents(self, z: Tensor) -> list[Tensor]:
        """Cut a full-size ``z`` (as returned by ``forward``) into the per-scale latents."""
        self._check(z)
        latents = []
        for order in self.orders:
            z, _ = self.squeeze(z)
            z, zk = z[:, order].chunk(2, dim=1)
            latents.append(zk)
        latents.append(z)
        return latents

    def merge_latents(self, latents: list[Tensor]) -> Tensor:
        """Put per-scale latents back in place: a tensor of the input's shape."""
        self._check_latents(latents)
        z = latents[-1]
        for order, zk in zip(reversed(self.orders), reversed(latents[:-1])):
            z = self.squeeze.inverse(_unorder(torch.cat([z, zk], dim=1), order))
        return z

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        latents, log_dets = self.encode(x)
        return self.merge_latents(latents), torch.stack(log_dets).sum(dim=0)

    def inverse(self, z: Tensor) -> Tensor:
        return self.decode(self.split_latents(z))
