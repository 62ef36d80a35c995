"""The flow protocol every invertible layer follows, and composition.

A normalizing flow is an invertible map ``f`` from data ``x`` to latents ``z``. By the
change-of-variables formula (Real NVP paper, Eq. 2-3)

    log p_X(x) = log p_Z(f(x)) + log |det df/dx|

so every layer returns, next to its output, the log-absolute-determinant of its Jacobian,
one number per sample. Composing layers adds their log-dets (chain rule: the determinant
of a product is the product of determinants).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Flow(nn.Module):
    """An invertible layer: ``y, log_det = flow(x)`` and ``x = flow.inverse(y)``.

    ``log_det`` has shape ``(batch,)``: ``log |det dy/dx|`` for each sample.

    Example:
        >>> from nvp_edu.flows import Squeeze
        >>> x = torch.randn(2, 1, 4, 4)
        >>> y, log_det = Squeeze()(x)  # any Flow: forward returns (output, log-det)
        >>> torch.equal(Squeeze().inverse(y), x), log_det.shape
        (True, torch.Size([2]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Sequential(Flow):
    """Compose flows: ``f = f_K o ... o f_1``. Log-dets add; ``inverse`` runs backwards.

    Example:
        >>> from nvp_edu.flows import AffineCoupling, Sequential
        >>> from nvp_edu.masks import alternating_vector_mask
        >>> flow = Sequential(AffineCoupling(alternating_vector_mask(2)),
        ...                   AffineCoupling(alternating_vector_mask(2, invert=True)))
        >>> x = torch.randn(5, 2)
        >>> y, log_det = flow(x)
        >>> torch.allclose(flow.inverse(y), x, atol=1e-6)
        True
    """

    def __init__(self, *layers: Flow) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Flow:
        return self.layers[i]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y

    def trajectory(self, x: Tensor) -> list[Tensor]:
        """The input followed by the output of every layer (for layer-by-layer figures)."""
        out = [x]
        for layer in self.layers:
            x, _ = layer(x)
            out.append(x)
        return out


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: per-sample totals of a log-det term."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


_DTYPE_METHOD = {torch.float16: "half", torch.bfloat16: "bfloat16", torch.float32: "float",
                 torch.float64: "double"}


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no per-device query
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def check_input(x: Tensor, module: nn.Module | None, who: str) -> None:
    """Refuse input a flow would mangle silently or fail on deep inside, in one line.

    Integer (or bool) tensors are pixels that were never dequantized: a flow would treat
    the integers as reals and report log-densities of the wrong space (or NaN). A float
    dtype other than the parameters' fails inside a layer with a message about matmul
    or "mixed dtype"; under autocast a mismatch is expected and allowed. An empty batch
    has no per-sample log-det to give. ``module=None``: no dtype comparison.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"{who} needs floating-point input; got a {x.dtype} tensor: dequantize "
                        "integer pixels first (nvp_edu.preprocess: Preprocess, or dequantize "
                        "then Logit)")
    p = None if module is None else next(module.parameters(), None)
    if p is not None and p.dtype != x.dtype and not _autocast_enabled(x.device.type):
        raise TypeError(f"{who}'s parameters are {p.dtype} but its input is {x.dtype}: convert "
                        f"one to match, the input with x.{_DTYPE_METHOD.get(p.dtype, 'to')}() or "
                        f"the model with model.{_DTYPE_METHOD.get(x.dtype, 'to')}()")
    if x.shape[0] == 0:
        raise ValueError(f"{who} got an empty batch (shape {tuple(x.shape)}): pass at least "
                         "one sample")
