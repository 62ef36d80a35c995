"""Checks that a flow is what it claims: invertible, with the right log-det.

The oracle is ``torch.autograd``: for one sample ``x`` of ``D`` numbers, the Jacobian
``J = dy/dx`` is a ``D x D`` matrix and ``log|det J|`` is what a flow layer must return.
Everything runs in float64 on a copy of the layer, so rounding cannot hide or fake an
error. Layers that use batch statistics (batch norm in training mode) mix samples; the
checks put the copy in eval mode, where every sample is transformed on its own.

A passing check prints its verdict against the tolerance, not the error itself: the
error of a correct float64 layer is rounding (1e-16 .. 1e-12), and rounding differs from
one CPU to the next, so a printed "4.4e-16" is not a fact about the layer. The exact
value is kept in ``max_error`` for whoever wants to look.

Example:
    >>> from nvp_edu.models import RealNVP2D
    >>> report = check_flow(RealNVP2D(num_couplings=2, hidden=8), torch.randn(4, 2))
    >>> report.passed
    True
    >>> print(report)
    [PASS] inverse: inverse max error below 1e-06 (float64)
    [PASS] log-det: log-det matches autograd: True (max error below 1e-06, float64)
    >>> report.inverse.max_error < 1e-12   # the number itself: rounding, machine-dependent
    True
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class CheckResult:
    """Outcome of a check: ``passed``, the largest error and a message for a learner.

    A passing message states the tolerance it was checked against; ``max_error`` holds
    the measured value (rounding noise when the layer is right, and CPU-dependent).
    """

    name: str
    passed: bool
    max_error: float
    message: str
    details: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.name}: {self.message}"


@dataclass
class FlowReport:
    """Both checks of :func:`check_flow`."""

    inverse: CheckResult
    log_det: CheckResult

    @property
    def passed(self) -> bool:
        return self.inverse.passed and self.log_det.passed

    def __str__(self) -> str:
        return f"{self.inverse}\n{self.log_det}"


def _float64_copy(flow: nn.Module) -> nn.Module:
    return copy.deepcopy(flow).double().eval()


def autograd_log_det(flow: nn.Module, x: Tensor) -> Tensor:
    """``log|det dy/dx|`` per sample from the full autograd Jacobian, in float64.

    ``flow`` is called on one sample at a time (batch of 1), so the Jacobian is exactly
    ``D x D`` with ``D`` the number of entries in a sample.
    """
    flow = _float64_copy(flow)
    x = x.detach().double()
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]

        def f(v: Tensor) -> Tensor:
            y, _ = flow(v.view_as(xi))
            return y.reshape(-1)

        jac = torch.autograd.functional.jacobian(f, xi.reshape(-1))
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


def check_inverse(flow: nn.Module, x: Tensor, atol: float = 1e-6) -> CheckResult:
    """Does ``flow.inverse(flow(x)[0])`` give back ``x``? (float64 copy, eval mode)."""
    f64 = _float64_copy(flow)
    x = x.detach().double()
    with torch.no_grad():
        y, _ = f64(x)
        x_back = f64.inverse(y)
    if x_back.shape != x.shape:
        return CheckResult("inverse", False, float("inf"),
                           f"inverse returned shape {tuple(x_back.shape)}, expected "
                           f"{tuple(x.shape)}")
    err = (x_back - x).abs()
    max_err = err.max().item()
    if not torch.isfinite(err).all():
        return CheckResult("inverse", False, float("inf"),
                           "inverse(forward(x)) contains NaN or inf: does the inverse divide "
                           "by exp(s) where it should multiply by exp(-s)?")
    if max_err <= atol:
        return CheckResult("inverse", True, max_err,
                           f"inverse max error below {atol:.0e} (float64)")
    flat = err.reshape(err.shape[0], -1)
    sample = int(flat.max(dim=1).values.argmax())
    entry = int(flat[sample].argmax())
    return CheckResult(
        "inverse", False, max_err,
        f"inverse(forward(x)) differs from x by {max_err:.3g} (sample {sample}, entry {entry}). "
        "Does the inverse undo the steps in reverse order: subtract t first, then divide by "
        "exp(s)? Are s and t computed from the entries that the forward pass left unchanged?",
        {"sample": sample, "entry": entry},
    )


def check_log_det(flow: nn.Module, x: Tensor, atol: float = 1e-6) -> CheckResult:
    """Does the flow's log-det equal autograd's ``log|det J|`` for every sample?"""
    f64 = _float64_copy(flow)
    x = x.detach().double()
    with torch.no_grad():
        y, claimed = f64(x)
    if claimed.shape != (x.shape[0],):
        return CheckResult("log-det", False, float("inf"),
                           f"log_det has shape {tuple(claimed.shape)}; a flow returns one "
                           f"log-det per sample, shape ({x.shape[0]},)")
    if not torch.isfinite(claimed).all():
        bad = int((~torch.isfinite(claimed)).nonzero()[0])
        return CheckResult("log-det", False, float("inf"),
                           f"your log-det is {claimed[bad].item()} on sample {bad}: is it the log "
                           "of a negative determinant? The formula needs log|det|, with the "
                           "absolute value")
    true = autograd_log_det(flow, x)
    if not torch.isfinite(true).all():
        bad = int((~torch.isfinite(true)).nonzero()[0])
        return CheckResult("log-det", False, float("inf"),
                           f"the Jacobian is singular on sample {bad} (log|det| = -inf): the "
                           "map is not invertible there")
    diff = claimed - true
    max_err = diff.abs().max().item()
    if max_err <= atol:
        return CheckResult("log-det", True, max_err,
                           f"log-det matches autograd: True (max error below {atol:.0e}, float64)")
    worst = int(diff.abs().argmax())
    off = diff[worst].item()
    hint = "Is every term of the log-det there, with the right sign?"
    if torch.allclose(claimed, -true, atol=atol * 10):
        hint = ("It is exactly minus the true value: is the sign of s right? (forward adds "
                "+sum(s); the inverse's log-det is -sum(s))")
    elif claimed.abs().max() <= atol and true.abs().max() > atol:
        hint = ("Your log-det is 0 but the map changes volume: did you forget the sum of s?")
    elif torch.allclose(claimed, 2 * true, atol=atol * 10):
        hint = "It is twice the true value: are the kept entries' s values counted too?"
    return CheckResult(
        "log-det", False, max_err,
        f"your log-det is off by {off:+.3g} nats on sample {worst} (yours {claimed[worst].item():.4f}, "
        f"autograd {true[worst].item():.4f}). {hint}",
        {"sample": worst, "claimed": claimed.tolist(), "autograd": true.tolist()},
    )


def check_flow(flow: nn.Module, x: Tensor, atol: float = 1e-6) -> FlowReport:
    """Run :func:`check_inverse` and :func:`check_log_det`; print the report to read it."""
    return FlowReport(check_inverse(flow, x, atol), check_log_det(flow, x, atol))
