"""What came after Real NVP, measured under one harness (issue 12): print one JSON document.

    PYTHONPATH=. python benchmarks/successors.py                      # 4 variants x 3 seeds
    PYTHONPATH=. python benchmarks/successors.py --epochs 2 --seeds 1 # a smoke run
    PYTHONPATH=. python benchmarks/successors.py --variants realnvp actnorm+vardeq

Every variant is notebook 7's multi-scale Real NVP on scikit-learn's 8x8 digits (the
``digits`` preset: 2 scales, 32 features, 2 residual blocks) trained by the course's one
trainer with the settings of ``benchmarks/digits.py`` (lr 1e-2 cosine, batch 64, EMA 0.98,
batch-norm recalibration, 10% validation split for model selection), plus what later papers
added, one switch at a time (a variant is ``realnvp`` or ``+``-joined switches):

- ``actnorm``: Glow's actnorm instead of the batch-norm flow layers (Kingma & Dhariwal
  2018, section 3.1); the s/t networks keep their batch norms;
- ``invconv``: Glow's invertible 1x1 convolutions (section 3.2) before each coupling on a
  squeezed tensor;
- ``vardeq``: Flow++'s variational dequantization (Ho et al. 2019, section 3.1), figures
  are bits/dim of the variational bound; skipped when ``nvp_edu.vardeq`` is not there.

**Budget: equal steps.** Every run trains the same number of epochs (``--epochs``) of the
same batch size, so the variants see the same data the same number of times; their cost
differs and is reported as seconds per epoch (wall clock of the run, per-epoch
validation included, divided by the epochs). Each variant runs for each seed ``0..seeds-1``
(weights, data order and noise); the held-out figure is the test split's bits/dim (20% of
the digits, never used for selection), averaged over ``--draws`` dequantization draws.

Measured 2026-11-29 with reduced budgets only (1 thread, on a 2-core machine shared with
other jobs: the seconds per epoch there say nothing about the variants' cost; ``vardeq``
with ``nvp_edu/vardeq.py`` of the parallel branch, commit 38e4854). Held-out bits/dim,
mean +- std over seeds:

- 3 epochs (60 steps), seeds 0-2: realnvp 2.761 +- 0.020, actnorm 2.719 +- 0.012,
  actnorm+invconv 2.624 +- 0.011, actnorm+invconv+vardeq 2.645 +- 0.012 (bound);
- 8 epochs (160 steps), seeds 0-1: realnvp 2.123 +- 0.0007, actnorm+invconv
  2.099 +- 0.001, actnorm+invconv+vardeq 2.068 +- 0.0004 (bound).

The full default run, 2026-11-29, on an idle 2-core machine, as two processes (1 thread each),
``--variants realnvp actnorm`` and ``--variants actnorm+invconv actnorm+invconv+vardeq``,
20 epochs (400 steps), seeds 0-2, 5 test draws; held-out bits/dim per seed, mean +- std,
seconds per epoch (mean over seeds):

- realnvp                 2.0485 2.0435 2.0514   2.048 +- 0.004   5.4 s
- actnorm                 2.0329 2.0333 2.0377   2.035 +- 0.003   5.0 s
- actnorm+invconv         2.0174 2.0134 2.0220   2.018 +- 0.004   5.4 s
- actnorm+invconv+vardeq  1.9755 1.9712 1.9805   1.976 +- 0.005   6.0 s (bound; +88,172
  dequantizer parameters)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from digits import add_training_args, run_flow  # benchmarks/digits.py: one run, its figures
from nvp_edu.models import RealNVP

SWITCHES = ("actnorm", "invconv", "vardeq")
DEFAULT_VARIANTS = ("realnvp", "actnorm", "actnorm+invconv", "actnorm+invconv+vardeq")


def parse_variant(name: str) -> set[str]:
    """``"actnorm+invconv"`` -> ``{"actnorm", "invconv"}``; ``"realnvp"`` -> none."""
    switches = set() if name == "realnvp" else set(name.split("+"))
    unknown = switches - set(SWITCHES)
    if unknown or not switches and name != "realnvp":
        raise SystemExit(f"error: variant {name!r}: use realnvp or +-joined switches from "
                         f"{', '.join(SWITCHES)}")
    return switches


def run_variant(args: argparse.Namespace, switches: set[str], seed: int) -> dict:
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    torch.manual_seed(seed)
    model = RealNVP(1, 8, args.num_scales, args.mid_channels, args.num_blocks,
                    batch_norm=not args.no_batch_norm,
                    norm="actnorm" if "actnorm" in switches else "batch",
                    invconv="invconv" in switches)
    return run_flow(args, model, dequant="variational" if "vardeq" in switches else "uniform")


def summarize(runs: list[dict], epochs: int, switches: set[str], args: argparse.Namespace) -> dict:
    test = [r["test_bpd"] for r in runs]
    return {
        "test_bpd": test,
        "mean": round(statistics.fmean(test), 4),
        "std": round(statistics.stdev(test), 4) if len(test) > 1 else None,
        "best_val_bpd": [round(r["best_val_bpd"], 4) for r in runs],
        "train_bpd": [r["train_bpd"] for r in runs],
        "params": runs[0]["params"],
        "dequantizer_params": runs[0]["dequantizer_params"],
        "seconds_per_epoch": [round(r["train_seconds"] / epochs, 2) for r in runs],
        "steps": runs[0]["steps"],
        "config": {"norm": "actnorm" if "actnorm" in switches else "batch",
                   "invconv": "invconv" in switches,
                   "dequant": "variational" if "vardeq" in switches else "uniform",
                   **{k: v for k, v in vars(args).items()
                      if k not in ("seed", "seeds", "variants", "draws", "threads")}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(parser)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.set_defaults(threads=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: dict = {"benchmark": "successors", "dataset": "digits (scikit-learn, 8x8, 17 levels)",
                 "budget": f"equal steps: {args.epochs} epochs of batch {args.batch_size}",
                 "seeds": list(range(args.seeds)), "test_draws": args.draws,
                 "threads": args.threads, "variants": {}}
    start = time.perf_counter()
    for name in args.variants:
        switches = parse_variant(name)
        runs = [run_variant(args, switches, seed) for seed in range(args.seeds)]
        out["variants"][name] = summarize(runs, args.epochs, switches, args)
        print(f"{name}: {out['variants'][name]['test_bpd']}", file=sys.stderr, flush=True)
    out["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
