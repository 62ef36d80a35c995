"""Images as data: dequantization and the logit transform, as flows with log-dets.

Pixels are integers ``x_int in {0, ..., L-1}`` (``L = levels``: 256 for CIFAR-10, 17 for
scikit-learn's digits). A density model on the reals can put infinite density on those
points, so the paper (section 4.1) "jitters" them first:

    x = (x_int + u) / L,      u ~ U[0, 1)^D            (uniform dequantization)

Dividing by ``L`` is an affine map with log-det ``-D ln L``. For any density ``p`` on
``[0, 1)^D`` Jensen's inequality gives a bound on the discrete log-likelihood

    log P(x_int) >= E_u[ log p(x) ] - D ln L,

which is why bits/dim carry a constant ``log2 L`` (8 bits for 256 levels).

Next the paper maps ``[0, 1]`` to the real line with a logit, keeping away from the
boundary with ``alpha = 0.05``. We use the official code's form (also most ports'):

    p = alpha + (1 - 2 alpha) x        (so p in [0.05, 0.95])
    y = logit(p) = log p - log(1 - p)
    log|dy/dx| = sum_i [ log(1 - 2 alpha) - log p_i - log(1 - p_i) ]

(The paper's text writes ``alpha + (1 - alpha) x``; that leaves the upper end at 1, where
the logit is infinite, so the symmetric form is the one to use.)

Example:
    >>> pre = Preprocess(levels=17)
    >>> x_int = torch.randint(0, 17, (2, 1, 8, 8))
    >>> y, log_det = pre(x_int)
    >>> bool((pre.inverse(y) == x_int).all()), y.shape
    (True, torch.Size([2, 1, 8, 8]))
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Flow, Sequential, sum_except_batch

LOGIT_ALPHA = 0.05  # the paper's boundary constraint (section 4.1)


def _num_dims(x: Tensor) -> int:
    return x[0].numel()


def _check_pixels(x_int: Tensor, levels: int) -> None:
    """Refuse anything but whole numbers in ``0..levels-1`` (NaN and inf included).

    Integer dtypes (``torch.uint8``, ``torch.long``) are what is expected; a float tensor is
    accepted when every entry is a whole number (e.g. ``x_int.double()`` for autograd
    checks). One host sync when the input is fine; the details are computed only to
    explain a failure.
    """
    if x_int.is_complex():
        raise TypeError(f"pixel values must be real integers 0..{levels - 1}; got a complex "
                        f"tensor ({x_int.dtype})")
    if x_int.numel() == 0:
        return
    ok = (x_int >= 0) & (x_int <= levels - 1)
    if x_int.is_floating_point():
        ok &= x_int == torch.floor(x_int)  # False for NaN and inf too
    if bool(ok.all()):
        return
    x = x_int.detach()
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        raise ValueError(f"pixel values must be finite integers 0..{levels - 1}; got {n_nan} NaN "
                         f"and {n_inf} inf value(s) among {x.numel()} entries")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > levels - 1:
        raise ValueError(f"pixel values must lie in 0..{levels - 1} for levels={levels}; got "
                         f"values in {lo:g}..{hi:g}")
    frac = x != torch.floor(x)
    scaled = (" They look already scaled to [0, 1]: pass the raw integer pixels instead."
              if hi <= 1 else "")
    raise ValueError(f"pixel values must be whole numbers 0..{levels - 1} (an integer dtype is "
                     f"expected, e.g. torch.uint8 or torch.long); got non-integer value "
                     f"{x[frac][0].item():g} ({int(frac.sum())} of {x.numel()} entries)."
                     f"{scaled} Dequantization adds the noise and divides by levels itself.")


def _check_unit_interval(x: Tensor) -> None:
    """Refuse what the logit would turn into NaN: values outside ``[0, 1]``, NaN, integers."""
    if not x.is_floating_point():
        raise TypeError(f"Logit expects a floating-point tensor with values in [0, 1]; got dtype "
                        f"{x.dtype}. For integer pixels, dequantize first "
                        "(nvp_edu.preprocess.dequantize or Dequantize): it maps them into [0, 1).")
    if x.numel() == 0 or bool(((x >= 0) & (x <= 1)).all()):  # one host sync when fine
        return
    x = x.detach()
    nan = torch.isnan(x)
    n_nan, n_out = int(nan.sum()), int(((x < 0) | (x > 1)).sum())
    rest = x[~nan]
    found = (f"values in {rest.min().item():g}..{rest.max().item():g}" if rest.numel()
             else "only NaN")
    if n_nan and rest.numel():
        found += f" and {n_nan} NaN"
    raise ValueError(f"Logit expects values in [0, 1] (dequantized pixels); got {found} "
                     f"({n_out} of {x.numel()} entries outside [0, 1]). The logit of such "
                     "values is NaN: dequantize integer pixels with levels matching your data "
                     "(e.g. 256 for 8-bit images) before the logit.")


def dequantize(x_int: Tensor, levels: int, generator: torch.Generator | None = None,
               noise: bool = True) -> Tensor:
    """``(x_int + u) / levels`` with ``u ~ U[0, 1)`` (``u = 1/2`` if ``noise=False``).

    Returns a float tensor in ``[0, 1)`` (float32 unless ``x_int`` is float64).
    ``x_int`` should have an integer dtype; float input must hold whole numbers. NaN, inf,
    fractions and values outside ``0..levels-1`` raise ``ValueError`` naming what was found.

    Example:
        >>> dequantize(torch.tensor([[0, 16]]), 17, noise=False)
        tensor([[0.0294, 0.9706]])
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2; got {levels}")
    _check_pixels(x_int, levels)
    dtype = x_int.dtype if x_int.dtype == torch.float64 else torch.float32
    x = x_int.to(dtype)
    if noise:
        u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    else:
        u = torch.full_like(x, 0.5)
    return (x + u) / levels


class Dequantize(Flow):
    """Uniform dequantization ``x = (x_int + u) / L`` (paper, section 4.1, "jittering").

    Given the noise, ``x_int + u -> x`` is a scaling by ``1/L``: log-det ``-D ln L`` per
    sample. ``inverse`` recovers the integers by flooring (the noise is forgotten).

    Args:
        levels: ``L``, the number of pixel values (256 for 8-bit images, 17 for digits).
        noise: add ``u ~ U[0, 1)``; if False use the cell centre ``u = 1/2``.

    Example:
        >>> deq = Dequantize(256)
        >>> x_int = torch.randint(0, 256, (3, 3, 4, 4))
        >>> x, log_det = deq(x_int)
        >>> bool((deq.inverse(x) == x_int).all()), round(log_det[0].item() / 48, 4)
        (True, -5.5452)
    """

    def __init__(self, levels: int, noise: bool = True) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2; got {levels}")
        self.levels, self.noise = levels, noise
        self.generator: torch.Generator | None = None  # set for reproducible draws

    def forward(self, x_int: Tensor) -> tuple[Tensor, Tensor]:
        x = dequantize(x_int, self.levels, self.generator, self.noise)
        log_det = x.new_full((x.shape[0],), -_num_dims(x) * math.log(self.levels))
        return x, log_det

    def inverse(self, x: Tensor) -> Tensor:
        # clamp: (x_int + u) / L * L can round up to x_int + 1 when u is just below 1
        return torch.floor(x * self.levels).clamp(0, self.levels - 1).to(x.dtype)


class Logit(Flow):
    """``y = logit(alpha + (1 - 2 alpha) x)``: from ``[0, 1]`` to the real line.

    log-det per sample: ``sum_i [log(1 - 2 alpha) - log p_i - log(1 - p_i)]`` with
    ``p = alpha + (1 - 2 alpha) x``. ``alpha = 0.05`` keeps ``p`` in ``[0.05, 0.95]`` so
    pixels at 0 or 1 map to finite values (about -2.94 and +2.94). ``forward`` takes a
    floating-point tensor in ``[0, 1]`` and raises ``ValueError`` (naming the range found)
    for anything else, NaN included; ``inverse`` accepts any real ``y``.

    Example:
        >>> logit = Logit()
        >>> x = torch.rand(4, 1, 8, 8)
        >>> y, log_det = logit(x)
        >>> torch.allclose(logit.inverse(y), x, atol=1e-6)
        True
    """

    def __init__(self, alpha: float = LOGIT_ALPHA) -> None:
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5); got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_unit_interval(x)  # ValueError/TypeError instead of NaN; inverse takes any real
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        log_det = sum_except_batch(math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p))
        return y, log_det

    def inverse(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


class Preprocess(Sequential):
    """Integers to the model's input: :class:`Dequantize` then (optionally) :class:`Logit`.

    ``y, log_det = Preprocess(levels)(x_int)``; ``log_det`` is the dequantization's
    ``-D ln L`` plus the logit's log-det, so ``model.log_prob(y) + log_det`` is the
    log-density of the jittered integers ``x_int + u`` (a lower bound on ``log P(x_int)``
    on average over ``u``). :func:`nvp_edu.ledger.bits_per_dim_ledger` splits it up.

    Example:
        >>> pre = Preprocess(levels=256)
        >>> [type(layer).__name__ for layer in pre]
        ['Dequantize', 'Logit']
    """

    def __init__(self, levels: int, alpha: float | None = LOGIT_ALPHA, noise: bool = True) -> None:
        layers: list[Flow] = [Dequantize(levels, noise)]
        if alpha is not None:
            layers.append(Logit(alpha))
        super().__init__(*layers)
        self.levels = levels

    @property
    def dequantizer(self) -> Dequantize:
        return self.layers[0]

    @property
    def logit(self) -> Logit | None:
        return self.layers[1] if len(self.layers) > 1 else None
