"""Exercises of notebook 2: densities of 2-D toys and of a trained flow.

Exercises 1-3 are ``check(name, fn)`` exercises (a formula as code). Exercises 4-7 ask the
learner to predict, diagnose or explain first; each has its own checker that prints ✅ or ❌
with a message: :func:`check_untrained_nll`, :func:`check_forgotten_log_det`,
:func:`check_coupling_fix` (a bug hunt in :class:`BuggyCoupling` with
``nvp_edu.checks.check_flow``) and :func:`check_leak_bound`; 7(b) and 7(c) are questions for
``answer(name, value)``: ``leak_term`` and ``rotation_where``. ``HINTS`` has one hint per
exercise name, for ``nvp_edu.exercises.hint``.

Example:
    >>> import torch
    >>> from nvp_edu.exercises import check
    >>> check("standardized_log_prob", lambda lp_u, std: lp_u - torch.log(std).sum())
    ✅ standardized_log_prob: correct on 3 random test cases.
    True
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..coupling import AffineCoupling
from ..flows import Sequential
from ..masks import alternating_vector_mask
from . import Exercise, Question, register, register_question

TOPIC = "2-D toy flows"


def _close(a: Tensor, b: Tensor) -> bool:
    return isinstance(b, Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-5)


# 1. NLL in data units after standardization ---------------------------------------------

def standardized_log_prob(log_prob_u: Tensor, std: Tensor) -> Tensor:
    """``log p_X(x)`` from ``log p_U(u)``, ``u = (x - mean) / std``: ``log p_U(u) - sum_i log std_i``."""
    return log_prob_u - torch.log(std).sum()


def _mutates_log_prob_u(log_prob_u, std):
    return log_prob_u.sub_(torch.log(std).sum())  # the caller's tensor is changed


register(Exercise(
    name="standardized_log_prob",
    topic=TOPIC,
    reference=standardized_log_prob,
    make_inputs=lambda gen: (torch.randn(7, generator=gen, dtype=torch.float64) - 1,
                             0.2 + 2 * torch.rand(2, generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: _close(e + 2 * torch.log(i[1]).sum(), g),
         "wrong sign: u = (x - mean)/std has du/dx = 1/std, so log|det du/dx| = -sum log std."),
        (lambda i, e, g: _close(i[0], g), "you returned log p_U(u): the log-det of the scaling "
                                          "is missing."),
        (lambda i, e, g: _close(e - torch.log(i[1]).sum(), g),
         "std, not variance: the scaling divides by std."),
    ],
    mistakes=[
        lambda lp, std: lp + torch.log(std).sum(),        # sign flipped
        lambda lp, std: lp,                               # forgot the scaling
        lambda lp, std: lp - 2 * torch.log(std).sum(),    # used the variance
        lambda lp, std: lp - torch.log(std.prod()) / 2,   # halved
        _mutates_log_prob_u,
    ],
))


# 2. the ring of Gaussians: a mixture density with logsumexp ------------------------------

def mixture_log_prob(x: Tensor, centres: Tensor, std: float) -> Tensor:
    """``log p(x)`` of an equal-weight mixture of ``N(c_k, std^2 I)`` in 2-D, shape ``(N,)``.

    ``log p(x) = logsumexp_k(-|x - c_k|^2 / (2 std^2)) - log K - log(2 pi std^2)``.
    """
    d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return (torch.logsumexp(-d2 / (2 * std ** 2), dim=1) - math.log(len(centres))
            - math.log(2 * math.pi * std ** 2))


def _mixture_inputs(gen: torch.Generator) -> tuple:
    k = int(torch.randint(3, 8, (1,), generator=gen))  # the number of components varies
    centres = 2 * torch.randn(k, 2, generator=gen, dtype=torch.float64)
    x = (centres[torch.randint(0, k, (9,), generator=gen)]
         + 0.5 * torch.randn(9, 2, generator=gen, dtype=torch.float64))
    return x, centres, 0.4 + 0.3 * torch.rand((), generator=gen).item()


def _mutates_x__mixture(x, centres, std):
    x /= std  # in place: work in units of std
    d2 = ((x[:, None, :] - centres[None, :, :] / std) ** 2).sum(-1)
    return (torch.logsumexp(-d2 / 2, dim=1) - math.log(len(centres))
            - math.log(2 * math.pi * std ** 2))


register(Exercise(
    name="mixture_log_prob",
    topic=TOPIC,
    reference=mixture_log_prob,
    make_inputs=_mixture_inputs,
    hints=[
        (lambda i, e, g: _close(e + math.log(len(i[1])), g),
         "the mixture weights 1/K are missing (subtract log K)."),
        (lambda i, e, g: _close(e + 0.5 * math.log(2 * math.pi * i[2] ** 2), g),
         "a 2-D Gaussian's normalizer is 2 pi std^2 (one factor sqrt(2 pi) std per coordinate)."),
        (lambda i, e, g: any(_close(e + math.log(len(i[1]) / k), g) for k in range(1, 11)),
         "the number of components K is len(centres), and it differs between test cases: "
         "do not write a fixed K."),
    ],
    mistakes=[
        lambda x, c, s: mixture_log_prob(x, c, s) + math.log(len(c)),          # no 1/K
        lambda x, c, s: mixture_log_prob(x, c, s) + 0.5 * math.log(2 * math.pi * s ** 2),  # 1-D normalizer
        lambda x, c, s: (-((x[:, None] - c[None]) ** 2).sum(-1) / (2 * s ** 2)).max(1).values
        - math.log(2 * math.pi * s ** 2),                                      # nearest component only
        lambda x, c, s: mixture_log_prob(x, c, 0.5),                           # ignores std
        lambda x, c, s: mixture_log_prob(x, c, s) + math.log(len(c)) - math.log(5),  # K fixed at 5
        _mutates_x__mixture,
    ],
))


# 3. one 2-D affine coupling (paper, Eq. 4-6) --------------------------------------------

def affine_coupling_2d(x: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Keep ``x_1``; ``y_2 = x_2 exp(s) + t`` (``s, t`` of shape ``(N,)``, computed from ``x_1``).

    Returns ``(y, log_det)`` with ``log_det = s`` (the Jacobian is triangular, Eq. 6).
    """
    y = torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], dim=1)
    return y, s


def _mutates_x__coupling_2d(x, s, t):
    x[:, 1] = x[:, 1] * torch.exp(s) + t  # writes into the caller's x
    return x, s


register(Exercise(
    name="affine_coupling_2d",
    topic=TOPIC,
    reference=affine_coupling_2d,
    make_inputs=lambda gen: (torch.randn(6, 2, generator=gen, dtype=torch.float64),
                             torch.randn(6, generator=gen, dtype=torch.float64),
                             torch.randn(6, generator=gen, dtype=torch.float64)),
    hints=[
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and _close(-e[1], g[1]),
         "log_det has the wrong sign: forward multiplies by exp(s), so it adds s."),
        (lambda i, e, g: isinstance(g, tuple) and len(g) == 2 and _close(torch.exp(e[1]), g[1]),
         "the log-det is s itself (log of exp(s)), not exp(s)."),
    ],
    mistakes=[
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], 1), -s),
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s) + t], 1), torch.exp(s)),
        lambda x, s, t: (torch.stack([x[:, 0], (x[:, 1] + t) * torch.exp(s)], 1), s),
        lambda x, s, t: (torch.stack([x[:, 0] * torch.exp(s), x[:, 1] * torch.exp(s) + t], 1), s),
        lambda x, s, t: (torch.stack([x[:, 0], x[:, 1] * torch.exp(s)], 1), s),  # ignores t
        _mutates_x__coupling_2d,
    ],
))


# ---------------------------------------------------------------------------------------
# Exercises that ask for a prediction or a diagnosis. They are not `check(...)` exercises
# (the answer is a number or a repaired class, not a function of random inputs): each has
# its own checker, which prints ✅ or ❌ with a message and returns True/False.
# ---------------------------------------------------------------------------------------

def _verdict(name: str, ok: bool, message: str) -> bool:
    print(("✅ " if ok else "❌ ") + f"{name}: {message}")
    return ok


def _is_number(value: object) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# 4. Predict a number: the NLL of an untrained flow --------------------------------------

def untrained_flow_nll(train: Tensor, test: Tensor) -> float:
    """Measured held-out NLL (nats, data units) of an untrained ``RealNVP2D`` behind a
    :class:`~nvp_edu.toys.Standardize` fitted on ``train``.

    Every coupling starts as the identity (zero-initialized output layers give s = t = 0),
    so the model is ``N(u; 0, I)`` for ``u = (x - mean) / std``: a Gaussian with diagonal
    covariance, and its NLL is ``log(2 pi) + mean |u|^2 / 2 + sum_i log std_i``.
    """
    from ..models import RealNVP2D
    from ..toys import Standardize, StandardizedModel, nll
    model = StandardizedModel(RealNVP2D(num_couplings=2, hidden=8), Standardize.fit(train))
    return nll(model, test)


def check_untrained_nll(prediction: float, train: Tensor, test: Tensor) -> bool | None:
    """Compare a predicted held-out NLL of the untrained flow with the measured one (±0.02)."""
    name = "untrained_nll"
    if prediction is None:
        print(f"⏳ {name}: not attempted yet (set `prediction` to a number).")
        return None
    if not _is_number(prediction):
        return _verdict(name, False, f"the prediction should be a number, got {prediction!r}.")
    truth = untrained_flow_nll(train, test)
    log_std = torch.log(train.double().std(dim=0)).sum().item()
    p = float(prediction)
    if abs(p - truth) <= 0.02:
        return _verdict(name, True, f"measured {truth:.4f} nats, you predicted {p:.4f}. An "
                        "identity flow is the Gaussian N(mean, diag(std^2)): log(2 pi) + 1 "
                        f"(standardized data, D = 2) plus sum log std = {log_std:+.4f}.")
    if abs(p - (truth - log_std)) <= 0.02:
        msg = ("that is the NLL of the standardized points u. The density of x pays the "
               "change of variables: add sum_i log std_i (use the training set's std).")
    elif abs(p - (truth - 2 * log_std)) <= 0.02:
        msg = "the log std term has the wrong sign: log p_X(x) = log p_U(u) - sum_i log std_i."
    elif abs(p - (truth + log_std)) <= 0.02:
        msg = "the std term is counted twice (variance instead of std?)."
    elif abs(p - (0.5 * math.log(2 * math.pi) + 0.5 + log_std)) <= 0.02:
        msg = "a 2-D standard Gaussian has log(2 pi), not log(2 pi)/2: one 1/2 log(2 pi) per coordinate."
    else:
        msg = ("not within 0.02 of the measured value. What density is a flow whose every "
               "coupling is the identity? Write its -log p for standardized data, then change "
               "units with the standardization's log-det.")
    return _verdict(name, False, f"you predicted {p:.4f}; {msg}")


# 5. Predict a number: the NLL without the standardization's log-det ----------------------

def check_forgotten_log_det(prediction: float, density, test: Tensor) -> bool | None:
    """Compare a predicted 'NLL without the standardization log-det' with the measured one.

    ``density`` is a :class:`~nvp_edu.toys.StandardizedModel`; the measured value is
    ``-mean log p_U(u)`` on ``test``: the flow's NLL of the standardized points, which is what
    a training loop that forgot the log-det (or a progress bar in standardized units) shows.
    """
    from ..toys import nll
    name = "forgotten_log_det"
    if prediction is None:
        print(f"⏳ {name}: not attempted yet (set `prediction` to a number).")
        return None
    if not _is_number(prediction):
        return _verdict(name, False, f"the prediction should be a number, got {prediction!r}.")
    u = density.standardize(test)[0]
    truth = nll(density.model, u)
    right = nll(density, test)
    shift = truth - right
    p = float(prediction)
    if abs(p - truth) <= 0.005:
        return _verdict(name, True, f"measured {truth:.4f} nats, you predicted {p:.4f}: "
                        f"{shift:+.4f} nats from the data-units NLL {right:.4f}, i.e. "
                        "-sum_i log std_i. " + ("Every std here is below 1: the standardized points are "
                        "more spread out, so their NLL is higher." if shift > 0 else
                        "The standardized points are less spread out, so their NLL is lower."))
    if abs(p - (right - shift)) <= 0.005:
        msg = ("wrong direction: NLL_U = NLL_X - sum_i log std_i; with std < 1 the "
               "standardized points are more spread out than the data, so their NLL is higher.")
    else:
        msg = ("not within 0.005 of the measured value. NLL_U = NLL_X - sum_i log std_i; "
               "the std is the training set's (density.standardize.std).")
    return _verdict(name, False, f"you predicted {p:.4f}; {msg}")


# 6. Find the bug with nvp_edu.checks ---------------------------------------------------

class BuggyCoupling(AffineCoupling):
    """An affine coupling with ONE bug. Its map is right; find what is wrong with
    :func:`nvp_edu.checks.check_flow`, then repair it in a subclass (``_s_t`` returns the
    ``s`` and ``t`` that :class:`~nvp_edu.coupling.AffineCoupling` uses)."""

    def _s_t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self._conditioner(x)
        s = self.scale * torch.tanh(raw_s)
        t = t * (1 - self.mask)
        return s, t


def _randomize(layer: AffineCoupling, seed: int) -> AffineCoupling:
    """Give the zero-initialized output layer random weights, so that s and t are not 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    return layer


def coupling_pair(cls: type = BuggyCoupling, hidden: int = 16, seed: int = 0) -> Sequential:
    """Two couplings of class ``cls`` (alternating masks) with random weights: a flow to check."""
    return Sequential(*[_randomize(cls(alternating_vector_mask(2, invert=k == 1), hidden=hidden),
                                   seed + k) for k in range(2)])


def check_coupling_fix(cls: type) -> bool | None:
    """Does the learner's repaired coupling class pass both checks and keep the same map?

    Builds two couplings of ``cls`` with random weights, runs ``check_flow`` on random points,
    and compares the map with :class:`~nvp_edu.coupling.AffineCoupling` carrying the same weights.
    """
    name = "coupling_bug"
    if cls is None:
        print(f"⏳ {name}: not attempted yet (define your repaired class).")
        return None
    if not (isinstance(cls, type) and issubclass(cls, AffineCoupling)):
        return _verdict(name, False, "pass the repaired class itself (a subclass of "
                        "BuggyCoupling), not an instance.")
    from ..checks import check_flow
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    try:
        flow = coupling_pair(cls)
        report = check_flow(flow, x)
        reference = coupling_pair(AffineCoupling)
        with torch.no_grad():
            same_map = torch.allclose(flow(x)[0], reference(x)[0], atol=1e-5)
    except NotImplementedError:
        print(f"⏳ {name}: not attempted yet (replace the `raise NotImplementedError`).")
        return None
    except Exception as err:  # the learner's code crashed: say how
        return _verdict(name, False, f"your class raised {type(err).__name__}: {err}")
    if not report.passed:
        return _verdict(name, False, f"check_flow still fails:\n{report}")
    if not same_map:
        return _verdict(name, False, "both checks pass, but your layer computes a different "
                        "map from AffineCoupling with the same weights: the bug was not in "
                        "y, only in what the layer claims about it.")
    return _verdict(name, True, "inverse and log-det pass. The bug: s was not masked, so the "
                    "kept coordinate's s, which scales nothing, was added to the log-det. "
                    "Training would then reward a large s on the kept entry for free.")


# 8. A leak costs KL by itself -------------------------------------------------------------

def leak_bound(p_gap: float, q_gap: float) -> float:
    """``KL(Bernoulli(p_gap) || Bernoulli(q_gap))`` in nats: a lower bound on ``KL(p || q)``
    when ``p_gap`` and ``q_gap`` are the masses that ``p`` and ``q`` put on one region
    (data-processing inequality: coarsening the plane to {gap, rest} cannot increase KL)."""
    out = 0.0
    for a, b in ((p_gap, q_gap), (1 - p_gap, 1 - q_gap)):
        if a > 0:
            out += a * math.log(a / b)
    return out


def check_leak_bound(answer: float, p_gap: float, q_gap: float) -> bool | None:
    """Compare the learner's bound with :func:`leak_bound` (±0.005 nats); shares as fractions."""
    name = "leak_bound"
    if answer is None:
        print(f"⏳ {name}: not attempted yet (set your number).")
        return None
    if not _is_number(answer):
        return _verdict(name, False, f"the answer should be a number, got {answer!r}.")
    if not (0 <= p_gap < 1 and 0 < q_gap < 1):
        return _verdict(name, False, "pass the shares as fractions in [0, 1) (6.07% is 0.0607), "
                        f"got p_gap={p_gap!r}, q_gap={q_gap!r}.")
    truth, a = leak_bound(p_gap, q_gap), float(answer)
    if abs(a - truth) <= 0.005:
        return _verdict(name, True, f"{truth:.4f} nats. Nearly all of it is -log(1 - q_gap) = "
                        f"{-math.log(1 - q_gap):.4f}: the modes hold only 1 - q_gap of the "
                        "flow's mass, so each point there is under-weighted.")
    if abs(a - leak_bound(q_gap, p_gap)) <= 0.005:
        msg = "that is KL(q || p): the arguments are swapped (the data's p comes first)."
    elif p_gap > 0 and abs(a - p_gap * math.log(p_gap / q_gap)) <= 0.005:
        msg = "you kept only the gap term; the modes' term (1 - p) log((1 - p)/(1 - q)) is the big one."
    else:
        msg = ("not within 0.005 nats. KL(Bern(a) || Bern(b)) = a log(a/b) + (1-a) log((1-a)/(1-b)), "
               "with a the true share and b the flow's.")
    return _verdict(name, False, f"you answered {a:.4f}; {msg}")


# 7(b), 7(c). Which term pays for a gap; where a rotation helps ------------------------------

register_question(Question(
    name="leak_term", topic=TOPIC,
    choices={
        "a": "log N(f(x); 0, I): f sends the gap's points far out into the Gaussian's tail",
        "b": "log|det J_f(x)|: f squeezes the gap into a thin sliver of z-space, so |det J_f| "
             "is tiny there, while next door, in the modes, f expands; |det J_f| must change "
             "by a large factor over a short distance",
        "c": "both terms, always in equal parts",
        "d": "neither: a density with gaps needs a discontinuous f, which a flow cannot be",
    },
    correct="b",
    why=("Since f is continuous and invertible, the gap between two neighbouring modes maps to the "
         "region of z-space between the modes' images, which sits in the bulk of N(0, I), not in "
         "its tail: log N(f(x)) stays moderate there. q(x) can only be small if f contracts the "
         "gap to a thin sliver (log|det J_f| very negative), while it expands the modes around it "
         "(log|det J_f| positive). A map whose volume change jumps by orders of magnitude within "
         "0.1 is steep, and an affine coupling changes volume by exp(s(x_1)) with a smooth, "
         "bounded s: many layers and much training are needed."),
    hint="The gap lies between two modes. Where in z-space must f put the points between the "
         "images of two modes, if f is continuous? Is that in the Gaussian's tail?",
    feedback={
        "a": "the gap lies between the images of two modes, and f is continuous: its image lies "
             "between them too, in the bulk of the Gaussian, not in its tail.",
        "c": "nothing forces a split; the prior term stays moderate between the modes' images, "
             "so the log-det does the work.",
        "d": "the true density of the ring is positive everywhere (no true gap, only a very "
             "small density), and a smooth f can make it as small as we like: the cost is "
             "steepness, not continuity.",
    },
))

register_question(Question(
    name="rotation_where", topic=TOPIC,
    choices={
        "a": "it lowers the KL by more than the spread between seeds on both toys",
        "b": "on the ring of 8 Gaussians only, not on the checkerboard",
        "c": "on neither: a rotation has log-det 0 and no parameters, so it changes nothing",
        "d": "on the checkerboard only, not on the ring",
    },
    correct="b",
    why=("The measurement of benchmarks/toy2d.py (16 couplings, 8,000 steps, 3 seeds each, gap to the "
         "exact density on the test points): ring 0.230 +- 0.072 plain, 0.129 +- 0.023 with a "
         "45-degree rotation after every pair of couplings, every rotated seed better than every "
         "plain seed on validation; checkerboard 0.167 +- 0.039 plain, 0.222 +- 0.056 rotated "
         "(worse on average, within the spread). The ring's modes and the bridges between them "
         "lie along all directions, so couplings that can only move points along the two axes "
         "gain from seeing rotated coordinates; the checkerboard's edges lie along the axes, which "
         "is exactly what axis-aligned couplings are good at, and a rotation tilts them."),
    hint="A coupling moves points along one axis by an amount that depends on the other. Which "
         "toy's structure lies along the axes, and which runs around a circle?",
    feedback={
        "a": "the checkerboard's edges lie along the axes, the directions in which plain "
             "couplings already move points: a rotation tilts the edges away from them.",
        "c": "the rotation adds no parameters and no log-det, but it changes which directions "
             "the following couplings can stretch along: the model family changes.",
        "d": "the other way round: the checkerboard is aligned with the axes, the ring is not.",
    },
))


HINTS: dict[str, str] = {
    "standardized_log_prob": "u = (x - mean) / std is a flow; its log|det du/dx| is "
                             "-sum_i log std_i. Add it to log p_U(u).",
    "mixture_log_prob": "log p(x) = log (1/K) sum_k N(x; c_k, std^2 I); write each "
                        "component's log-density and combine them with torch.logsumexp "
                        "over k, then subtract log K.",
    "affine_coupling_2d": "The Jacobian of (x1, x2) -> (x1, x2 exp(s) + t) is triangular "
                          "with diagonal (1, exp(s)): its log-det is s.",
    "untrained_nll": "At initialization s = t = 0 in every coupling, so z = u: the density of "
                     "u is N(0, I), whose expected NLL for unit-variance u is "
                     "log(2 pi) + 1 in 2-D. Then convert to x's units.",
    "forgotten_log_det": "NLL_X = NLL_U + sum_i log std_i. Which of the two is larger when "
                         "every std is below 1?",
    "leak_bound": "Two outcomes, 'in a gap' and 'not': the true distribution gives them "
                  "p_gap and 1 - p_gap, the flow q_gap and 1 - q_gap. KL of two Bernoullis: "
                  "sum over both outcomes of p log(p/q).",
    "coupling_bug": "Run print(check_flow(coupling_pair(), x)). Which check fails? Compare "
                    "BuggyCoupling._s_t with AffineCoupling._s_t (inspect.getsource): what "
                    "happens to s at the entries the mask keeps?",
}
