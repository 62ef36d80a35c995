"""Uniform vs variational dequantization on scikit-learn's 8x8 digits: one JSON line.

    PYTHONPATH=. python benchmarks/vardeq_digits.py --steps 1000

A small multi-scale Real NVP is trained twice from the same initialization, with the same
batches and steps: once on uniformly dequantized digits (the course's objective), once
jointly with a :class:`nvp_edu.vardeq.VariationalDequantizer` on the variational bound
(Flow++ section 3.1). Held-out figures (the 360 test digits, 17 levels, bits/dim):

- ``uniform_bound``: the first model's uniform bound (the course's usual number),
- ``variational_bound``: the second model's bound ``E_q[-log p + log q] + D ln L``,
- ``variational_iw``: its importance-weighted estimate with ``--iw-draws`` draws,
- ``variational_model_uniform_bound``: the second model scored with uniform noise (what
  its density is worth without its own dequantizer).

A short run on a busy shared CPU: the figures compare the two objectives at equal steps;
they are not converged numbers (``benchmarks/digits.py`` trains the course's model fully).
This is a loop of its own, not the course trainer (``nvp_edu.train``), on purpose: it shows
the objective in a dozen lines.

Measured 2026-11-29 (defaults: RealNVP 2 scales, 32 features, 2 blocks; dequantizer with
32 hidden channels and 4 couplings; 400 steps of Adam at 3e-3, batch 64, seed 0; 16 draws
for every figure), on a 2-core machine shared with other jobs (load average ~13: about
340-370 s per run):

    uniform_bound                     2.0923   the course's objective and figure
    variational_bound                 2.0361   -0.056 bits/dim: the learned q fits p better
    variational_iw (K = 16)           1.9503   -0.086 more: the bound's remaining slack
    variational_model_uniform_bound   2.4459   that model, scored with uniform noise

One seed, one short run: no spread measured. The last line shows that the jointly trained
model has adapted to its own noise: its density is not flat inside a cell, which the
uniform bound penalizes (the gap of a bound is a KL divergence to p's within-cell shape).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
from torch import Tensor, nn

from nvp_edu.config import seed_everything
from nvp_edu.data import DIGITS_LEVELS, load_digits_split
from nvp_edu.ledger import evaluate_bits_per_dim
from nvp_edu.models import RealNVP
from nvp_edu.preprocess import Logit, dequantize
from nvp_edu.vardeq import VariationalDequantizer, importance_weighted_bpd, variational_bound_bpd

LOGIT = Logit()
D = 64


def log_p(model: nn.Module, x_deq: Tensor) -> Tensor:
    """The model's log-density of ``x_deq`` on ``[0, 1)^D``, logit log-det included."""
    y, logit_ld = LOGIT(x_deq)
    return model.log_prob(y) + logit_ld


def train(model: nn.Module, deq: VariationalDequantizer | None, x: Tensor, steps: int,
          batch_size: int, lr: float, seed: int) -> float:
    params = list(model.parameters()) + ([] if deq is None else list(deq.parameters()))
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        xb = x[torch.randint(0, len(x), (batch_size,), generator=gen)]
        if deq is None:  # uniform noise: log q = 0
            x_deq, log_q = dequantize(xb, DIGITS_LEVELS, gen), torch.zeros(batch_size)
        else:
            x_deq, log_q = deq(xb, generator=gen)
        loss = (-log_p(model, x_deq) + log_q).mean()  # nats per image, less the constant
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 100.0)
        opt.step()
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def variational_figures(model: nn.Module, deq: VariationalDequantizer, x: Tensor,
                        draws: int, seed: int) -> tuple[float, float]:
    """Mean variational bound over ``draws`` draws, and the ``draws``-draw IW estimate."""
    gen = torch.Generator().manual_seed(seed)
    lp, lq = [], []
    for _ in range(draws):
        x_deq, log_q = deq(x, generator=gen)
        lp.append(log_p(model, x_deq))
        lq.append(log_q)
    lp, lq = torch.stack(lp), torch.stack(lq)
    bound = variational_bound_bpd(lp, lq, D, DIGITS_LEVELS).mean().item()
    iw = importance_weighted_bpd(lp, lq, D, DIGITS_LEVELS).mean().item()
    return bound, iw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mid-channels", type=int, default=32)
    parser.add_argument("--num-blocks", type=int, default=2)
    parser.add_argument("--deq-hidden", type=int, default=32)
    parser.add_argument("--iw-draws", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    train_x, test_x = load_digits_split()

    base = RealNVP(1, 8, num_scales=2, mid_channels=args.mid_channels, num_blocks=args.num_blocks)
    uniform_model, var_model = base, copy.deepcopy(base)
    deq = VariationalDequantizer(1, DIGITS_LEVELS, hidden=args.deq_hidden)
    t_uniform = train(uniform_model, None, train_x, args.steps, args.batch_size, args.lr,
                      args.seed)
    t_var = train(var_model, deq, train_x, args.steps, args.batch_size, args.lr, args.seed)
    deq.eval()
    bound, iw = variational_figures(var_model, deq, test_x, args.iw_draws, args.seed)
    out = {
        "benchmark": "vardeq_digits",
        "uniform_bound": round(evaluate_bits_per_dim(uniform_model, test_x, DIGITS_LEVELS,
                                                     draws=args.iw_draws), 4),
        "variational_bound": round(bound, 4),
        "variational_iw": round(iw, 4),
        "variational_model_uniform_bound": round(evaluate_bits_per_dim(
            var_model, test_x, DIGITS_LEVELS, draws=args.iw_draws), 4),
        "train_seconds": {"uniform": round(t_uniform, 1), "variational": round(t_var, 1)},
        "config": vars(args),
        "torch_threads": torch.get_num_threads(),
        "note": "short runs on a busy shared 2-core machine; not converged",
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
