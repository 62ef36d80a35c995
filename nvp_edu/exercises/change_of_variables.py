"""Exercises of notebook 1: the change-of-variables formula (Real NVP paper, Eq. 1-3).

For an invertible ``y = g(x)`` with inverse ``f = g^-1``:

    p_Y(y) = p_X(f(y)) * |det df/dy|,   log p_Y(y) = log p_X(f(y)) - log|det dg/dx| at x = f(y)

Example:
    >>> import torch
    >>> from nvp_edu.exercises import check
    >>> check("affine_1d_log_det", lambda x, a, b: torch.log(torch.abs(a)).expand_as(x))
    ✅ affine_1d_log_det: correct on 3 random test cases.
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import Exercise, Question, register, register_question

TOPIC = "change of variables"
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * z * z - HALF_LOG_2PI


def _negative_scale(gen: torch.Generator) -> Tensor:
    """A scale ``a`` in [-3, -0.3]: negative, so that a forgotten abs shows up (as NaN)."""
    return -(0.3 + 2.7 * torch.rand((), generator=gen, dtype=torch.float64))


def _size(gen: torch.Generator) -> int:
    """A batch size that differs between test cases (so a hard-coded size fails)."""
    return int(torch.randint(3, 10, (1,), generator=gen))


def _close(a: Tensor, b: Tensor) -> bool:
    return isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-5)


# 1. log|dy/dx| of y = a x + b -----------------------------------------------------------

def affine_1d_log_det(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``log|dy/dx|`` of ``y = a x + b`` at every entry of ``x``: ``log|a|`` (same shape as x)."""
    return torch.log(torch.abs(a)).expand_as(x)


def _ignores_x__affine(x, a, b):
    return torch.log(torch.abs(a)).expand(5)


def _mutates_x__affine(x, a, b):
    return x.copy_(torch.log(torch.abs(a)).expand_as(x))  # reuses the caller's x as output


register(Exercise(
    name="affine_1d_log_det",
    hint="dy/dx = a at every x, so the answer does not depend on x's values, only on its shape; a volume factor is |a|, never negative.",
    topic=TOPIC,
    reference=affine_1d_log_det,
    # a < 0 in every case, so a forgotten abs shows up (as NaN); x's length varies
    make_inputs=lambda gen: (torch.randn(_size(gen), generator=gen, dtype=torch.float64),
                             _negative_scale(gen), torch.randn((), generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: not torch.isfinite(torch.as_tensor(g)).all(),
         "a is negative here: log(a) is NaN. The volume change is |a|: use log|a|."),
        (lambda i, e, g: _close(-e, g), "the sign is flipped: stretching by |a| > 1 must give a "
                                        "positive log-det."),
        (lambda i, e, g: torch.as_tensor(g).shape != e.shape,
         "return one value per entry of x (torch.Tensor.expand_as helps)."),
    ],
    mistakes=[
        lambda x, a, b: torch.log(a).expand_as(x),            # missing abs
        lambda x, a, b: -torch.log(torch.abs(a)).expand_as(x),  # sign flipped
        lambda x, a, b: torch.log(torch.abs(a * x + b)),        # log of y, not of dy/dx
        lambda x, a, b: torch.abs(a).expand_as(x),              # no log
        _ignores_x__affine,                                     # a fixed length instead of x's
        _mutates_x__affine,                                     # right value, written into x
    ],
))


# 2. density of Y = a X + b for X ~ N(0, 1) ------------------------------------------------

def pushforward_gaussian_log_prob(y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``log p_Y(y)`` for ``Y = a X + b``, ``X ~ N(0, 1)``: ``log N((y - b)/a) - log|a|``."""
    return _normal_log_prob((y - b) / a) - torch.log(torch.abs(a))


def _mutates_y__pushforward(y, a, b):
    y -= b  # in place: the caller's y changes
    y /= a
    return _normal_log_prob(y) - torch.log(torch.abs(a))


register(Exercise(
    name="pushforward_gaussian_log_prob",
    hint='Density direction: go back with f(y) = (y - b) / a, evaluate log N there, then add log|df/dy| = -log|a|.',
    topic=TOPIC,
    reference=pushforward_gaussian_log_prob,
    make_inputs=lambda gen: (3 * torch.randn(_size(gen), generator=gen, dtype=torch.float64),
                             _negative_scale(gen), torch.randn((), generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: _close(e + 2 * torch.log(torch.abs(i[1])), g),
         "the log-det term has the wrong sign: a map that stretches (|a| > 1) spreads the mass "
         "thinner, so the density goes DOWN by log|a|."),
        (lambda i, e, g: _close(e + torch.log(torch.abs(i[1])), g),
         "the log-det term is missing: the density of y is p_X(f(y)) times |df/dy| = 1/|a|."),
        (lambda i, e, g: not torch.isfinite(torch.as_tensor(g)).all(),
         "NaN: a may be negative; take log|a|."),
    ],
    mistakes=[
        lambda y, a, b: _normal_log_prob((y - b) / a) + torch.log(torch.abs(a)),  # sign flipped
        lambda y, a, b: _normal_log_prob((y - b) / a),                           # no log-det
        lambda y, a, b: _normal_log_prob(a * y + b) - torch.log(torch.abs(a)),   # g instead of f
        lambda y, a, b: _normal_log_prob((y - b) / a) - torch.log(a),            # missing abs
        lambda y, a, b: _normal_log_prob(y / a) - torch.log(torch.abs(a)),       # ignores b
        _mutates_y__pushforward,
    ],
))


# 3. log|det A| of a 2-D linear map --------------------------------------------------------

def linear_2d_log_det(A: Tensor) -> Tensor:
    """``log|det A|`` of a 2x2 matrix: ``log|a11 a22 - a12 a21|`` (a scalar tensor)."""
    return torch.log(torch.abs(A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]))


def _matrix(gen: torch.Generator) -> tuple:
    # negative determinant (a reflection) with sizeable off-diagonal entries
    while True:
        A = torch.randn(2, 2, generator=gen, dtype=torch.float64)
        det = A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
        if det < -0.3 and A[0, 1].abs() > 0.3 and A[1, 0].abs() > 0.3:
            return (A,)


def _mutates_A(A):
    A[1] -= A[0] * (A[1, 0] / A[0, 0])  # Gaussian elimination in place: triangular, same det
    return torch.log(torch.abs(A[0, 0] * A[1, 1]))


register(Exercise(
    name="linear_2d_log_det",
    hint='Area scales by |det A| = |a11 a22 - a12 a21|; index a 2x2 tensor as A[0, 0], A[0, 1], ...',
    topic=TOPIC,
    reference=linear_2d_log_det,
    make_inputs=_matrix,
    hints=[
        (lambda i, e, g: not torch.isfinite(torch.as_tensor(g)).all(),
         "this A has a negative determinant (it flips orientation): area scales by |det A|."),
        (lambda i, e, g: _close(torch.log(torch.abs(torch.diagonal(i[0]))).sum(), g),
         "the product of the diagonal is the determinant only for a triangular matrix."),
    ],
    mistakes=[
        lambda A: torch.log(A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]),              # missing abs
        lambda A: torch.log(torch.abs(torch.diagonal(A))).sum(),                 # diagonal only
        lambda A: torch.log(torch.abs(A[0, 0] * A[1, 1] + A[0, 1] * A[1, 0])),   # + instead of -
        lambda A: -torch.linalg.slogdet(A).logabsdet,                            # sign flipped
        _mutates_A,                                                              # eliminates in A
    ],
))


# 4. log-normal: the density of exp(X) -----------------------------------------------------

def lognormal_log_prob(y: Tensor) -> Tensor:
    """``log p_Y(y)`` for ``Y = exp(X)``, ``X ~ N(0, 1)``, ``y > 0``: ``log N(log y) - log y``."""
    return _normal_log_prob(torch.log(y)) - torch.log(y)


def _mutates_y__lognormal(y):
    y.log_()  # in place: the caller's y now holds log y
    return _normal_log_prob(y) - y


register(Exercise(
    name="lognormal_log_prob",
    hint='f = log maps data y to the latent x; its derivative is 1/y, so log|df/dy| = -log y.',
    topic=TOPIC,
    reference=lognormal_log_prob,
    make_inputs=lambda gen: (torch.exp(1.5 * torch.randn(6, generator=gen, dtype=torch.float64)),),
    hints=[
        (lambda i, e, g: _close(e + 2 * torch.log(i[0]), g),
         "wrong sign of the log-det: f(y) = log y has df/dy = 1/y, so you ADD log(1/y) = -log y."),
        (lambda i, e, g: _close(e + torch.log(i[0]), g),
         "missing the log-det term log|df/dy| = -log y."),
    ],
    mistakes=[
        lambda y: _normal_log_prob(torch.log(y)) + torch.log(y),  # sign flipped
        lambda y: _normal_log_prob(torch.log(y)),                 # no log-det
        lambda y: _normal_log_prob(torch.exp(y)) + y,             # pushed through g, not f
        _mutates_y__lognormal,
    ],
))


# 5. predict a number: the density of 3X at 0 ---------------------------------------------

register_question(Question(
    name="density_of_3x_at_0",
    topic=TOPIC,
    correct=1 / (3 * math.sqrt(2 * math.pi)),
    why=("p_Y(0) = p_X(f(0)) |df/dy| = N(0; 0, 1) / 3 = 0.3989 / 3 = 0.1330: the map "
         "stretches lengths by 3, so the same probability mass is spread 3 times thinner."),
    hint="f(y) = y / 3 and |df/dy| = 1/3: evaluate the standard normal density at f(0) and "
         "multiply by 1/3.",
    feedback=[
        (1 / math.sqrt(2 * math.pi), "that is p_X(0), the density before the map: the "
         "formula also multiplies by |df/dy| = 1/3."),
        (3 / math.sqrt(2 * math.pi), "you multiplied by |dy/dx| = 3; the density of y is "
         "multiplied by |df/dy| = 1/3 (stretching spreads mass thinner, it does not pile it up)."),
        (math.log(1 / (3 * math.sqrt(2 * math.pi))), "that is log p_Y(0); the question asks for "
         "the density itself."),
    ],
))


# 6. find the bug: a flow whose log-det is evaluated at the wrong point -------------------

def sinh_log_det(x: Tensor) -> Tensor:
    """log|det dy/dx| of ``y = sinh(x)`` entrywise on ``x`` of shape (N, D): the Jacobian is
    diagonal with entries ``cosh(x_i)``, so the log-det is ``sum_i log cosh(x_i)``, shape (N,)."""
    return torch.log(torch.cosh(x)).sum(dim=1)


def _mutates_x__sinh(x):
    x.cosh_()  # in place: the caller's x now holds cosh(x)
    return torch.log(x).sum(dim=1)


register(Exercise(
    name="sinh_log_det",
    topic=TOPIC,
    reference=sinh_log_det,
    make_inputs=lambda gen: (2 * torch.randn(_size(gen), 1 + _size(gen) // 2, generator=gen,
                                             dtype=torch.float64),),
    hint="dy_i/dx_i = cosh(x_i), evaluated at the INPUT x of the forward pass; the Jacobian "
         "is diagonal, so sum the logs over each sample's entries (dim=1).",
    hints=[
        (lambda i, e, g: _close(torch.log(torch.cosh(torch.sinh(i[0]))).sum(dim=1), g),
         "that is the derivative evaluated at y = sinh(x), the bug of SinhFlow: dy/dx is "
         "cosh(x), at the input."),
        (lambda i, e, g: _close(-e, g), "sign: cosh(x) >= 1, sinh stretches, so the log-det is "
                                        "positive."),
        (lambda i, e, g: torch.as_tensor(g).shape == i[0].shape,
         "one log-det per sample: sum over the entries of a sample (dim=1), shape (N,)."),
    ],
    mistakes=[
        lambda x: torch.log(torch.cosh(torch.sinh(x))).sum(dim=1),  # at y, not x
        lambda x: -torch.log(torch.cosh(x)).sum(dim=1),             # sign flipped
        lambda x: torch.cosh(x).sum(dim=1),                         # no log
        lambda x: torch.log(torch.cosh(x)),                         # not summed per sample
        lambda x: torch.log(torch.cosh(x)).sum(),                   # summed over the batch too
        _mutates_x__sinh,
    ],
))

register_question(Question(
    name="sinh_flow_which_check",
    topic=TOPIC,
    choices={
        "a": "only the inverse check fails",
        "b": "only the log-det check fails",
        "c": "both checks fail",
        "d": "both checks pass",
    },
    correct="b",
    why=("asinh(sinh(x)) = x, so the inverse is right; but the log-det uses cosh(y) with "
         "y = sinh(x) where the derivative of sinh at the input x, cosh(x), is needed. The "
         "oracle compares with autograd's Jacobian of the forward pass, so only it fails."),
    hint="Check the two methods separately: does inverse undo forward exactly? Is the "
         "derivative of sinh taken at the point the forward pass received?",
    feedback={
        "a": "the map and its inverse are fine: asinh undoes sinh exactly. Look at the point "
             "where the derivative is evaluated.",
        "c": "the inverse check only runs forward then inverse on the points; the map and its "
             "inverse are fine.",
        "d": "log cosh(sinh x) equals log cosh(x) only at x = 0; on random x they differ.",
    },
))
