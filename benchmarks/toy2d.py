"""Held-out NLL of RealNVP2D on a 2-D toy, against scikit-learn baselines and the true entropy.

    PYTHONPATH=. python benchmarks/toy2d.py --dataset moons
    PYTHONPATH=. python benchmarks/toy2d.py --dataset moons --coupling spline --couplings 4 --steps 10000
    PYTHONPATH=. python benchmarks/toy2d.py --dataset 8gaussians --rotation 45

Trains on CPU in full mode and prints ONE JSON line: ``test_nll`` (nats per point, in the
original data units, on an independent test draw), ``val_nll`` (what any tuning looked at),
``true_entropy`` (the best possible NLL), ``true_density_test_nll`` (the exact density's
NLL on the same test points: ``test_nll`` minus it estimates the KL divergence),
``gmm_test_nll`` / ``kde_test_nll`` (scikit-learn ``GaussianMixture`` / ``KernelDensity``
fitted in the same run on the same training data, hyperparameters chosen on the validation
split), ``train_seconds``, ``params`` and the config.

Default config: alternating affine couplings (``RealNVP2D``), SiLU MLPs of 128 (last layer
zero-initialized), 20,000 training points, batch 512, Adam with a one-cycle schedule,
gradient-norm clip 100, 1 torch thread; per dataset (``DEFAULTS``): moons 8 couplings with
3 hidden layers per MLP, 6,000 steps, peak lr 2e-3; circles 8 couplings, 2 layers, 4,000
steps, lr 2e-3; 8gaussians and checkerboard 16 couplings, 2 layers, 8,000 steps, lr 3e-3.
``--rotation 45`` puts a fixed 45-degree rotation of the plane after every second coupling
(``nvp_edu.rotation.Rotation``, log-det 0); ``--coupling spline`` trains notebook 10's
``SplineFlow2D`` instead (``--couplings`` of them, ``--bins`` bins, 2-layer MLPs).

In short (details below): on moons a flow can be as good as scikit-learn's tuned
``GaussianMixture`` within 3 minutes, but not with affine couplings. ``--coupling spline
--couplings 4 --steps 10000`` scored test 0.2857 against the mixture's 0.2860 in the same
run after 119 s of training (validation: 0.2985 against 0.2959, within the noise between
draws); the best affine flow found stays ~0.01 nats behind. ``kl_test`` is ``test_nll`` minus the exact
density's NLL on the same points; ``flow_minus_gmm_test`` > 0 means the mixture is better.

Measured 2026-11-28 (then the default: 2 layers, 4,000 steps, lr 1e-2) on a 2-core machine
shared with four other training jobs (so times are inflated), moons, seed 0 unless said:

    lr 2e-3 (FACTS.md's config)       val 0.3184  test 0.3033
    lr 2e-3, seed 1                    val 0.3124  test 0.3254
    lr 5e-3                            val 0.3228  test 0.3132
    lr 1e-2 (default)                  val 0.3116  test 0.3005   train 86 s
    lr 1e-2, seed 1                    val 0.3023  test 0.3166
    lr 2e-3, batch 1024                val 0.3152  test 0.3041
    lr 2e-3, 6,000 steps               val 0.3160  test 0.3049
    lr 2e-3, EMA 0.999 (warm-up)       val 0.3189  test 0.3039
    lr 1e-2, EMA 0.999 (warm-up)       val 0.3125  test 0.3012
    lr 1e-2, 7,000 steps               val 0.3211  test 0.3023   train 307 s

The learning rate was the only knob that moved validation NLL by more than the noise
between draws of 20,000 points (~0.01 nats; compare ``true_density_val_nll``, the exact
density on the same points: 0.2903 for seed 0's validation draw, 0.2809 for its test
draw); batch size, a longer schedule and weight EMA did not.

Issue 11 asked for a flow at least as good as the tuned ``GaussianMixture`` on moons (test
0.286 in the same run, i.e. 0.005 nats above the exact density) within 3 minutes of
training. Tried 2026-11-29, moons, seed 0, choices by validation NLL only (exact density on
the validation points: 0.2903), on a 2-core machine shared with three other agents' jobs
(load average 4 to 15, so every time below is inflated several-fold; the default config
runs ~90 steps/s on an idle core):

    config (changes from the 2026-11-28 default)         val      val - exact   train s
    none (8 couplings, depth 2, lr 1e-2, 4,000 steps)    0.3290   0.039         220
    cosine schedule, lr 5e-3, 8,000 steps, EMA 0.999     0.3500   0.060         272
    hidden 256, lr 2e-3, 5,000 steps, EMA 0.999          0.3122   0.022         489
    MLPs 3 hidden layers deep, lr 2e-3, 6,000 steps      0.3112   0.021         925
    16 couplings, hidden 64, lr 5e-3                     0.3236   0.033         584
    100,000 training points (train NLL 0.3088)           0.3178   0.028         510

The same default config scored val 0.3116 on 2026-11-28 and 0.3290 now (the package's
code changed in between): at lr 1e-2 a single run moves by ~0.02, more than most knobs.
The deeper MLPs at lr 2e-3 had the best validation NLL and are now the moons default; its
test NLL, looked at once: see the JSON line quoted in README.md. The last row says why
more data would not help: with 100,000 points the flow's NLL on its own training set is
~0.02 nats above the exact density's (~0.29 on any large draw), so the gap is bias
(underfitting), not overfitting. The target was NOT met: the flow stays ~0.02 nats (val)
above the exact density, four times the tuned mixture's gap (test: 0.286 - 0.2809 =
0.005). A Gaussian mixture suits "points on arcs plus Gaussian noise" well: 20 to 80
narrow ellipses laid along the arcs.

Later on 2026-11-29 (a machine without other agents; each run beside 1 to 3 other 1-thread
jobs of this search, so the seconds are only indicative). The affine flow, moons, seed 0,
from a scratch sweep with the same models (other random initializations than this script's),
gap = NLL minus the exact density's on the same points:

    config (8 couplings, MLP depth 3, lr 2e-3, 6,000 steps unless said)   val gap  train gap
    + 45-degree rotation after every second coupling                      0.021    0.015
    12 couplings, depth 2, rotations                                      0.017    0.011
    12 couplings, depth 2, width 256, lr 1e-3, rotations                  0.019    0.013
    16 couplings, depth 2, width 64, lr 3e-3, rotations                   0.015    0.008
    12 couplings, depth 2, batch 2,048, lr 3e-3, rotations                0.014    0.006
    the same, weight decay 1e-2                                           0.016    0.008
    the same, width 64                                                    0.017    0.009

The best affine flow got the validation gap from 0.021 to 0.014, against the mixture's
0.0056 (validation NLL 0.2959). Its gap on its own training points fell to 0.006 while the
validation gap stayed at 0.014: with 20,000 points the affine flow starts to overfit before
it stops underfitting. The rotations helped early (1,500 steps: val gap 0.034 with, 0.080
without) but not at 6,000 steps (0.021 either way).

Spline couplings do match the mixture (``--coupling spline``: notebook 10's ``SplineFlow2D``,
8 bins on [-4, 4], 2-layer MLPs of 128, peak lr 2e-3), moons, seed 0, this script; the
mixture in the same runs: test 0.2860, validation 0.2959:

    spline couplings, steps     params    test     val      train s
    4, 4,000                    78,940    0.2890   0.3003    49 (1 other job)
    4, 10,000                   78,940    0.2857   0.2985   239 (2-3 other jobs); 119 (1)
    6, 8,000                   118,410    0.2862   0.2986   289 (2-3 other jobs)

On the test points the spline flow ties the mixture (-0.0003 and +0.0002 nats); on the
validation points it is 0.0026 behind. Both differences are within the noise between two
draws of 20,000 points (the spline flow's gap to the exact density is 0.008 on the
validation draw and 0.005 on the test draw; the mixture's 0.0056 and 0.0051), so "as good
as the tuned mixture" holds for a spline flow, up to that noise, and not for the affine one.

The two sharp toys, same day. A scratch sweep (seed 0, validation gap; other
initializations than this script's) had found 16 couplings at lr 3e-3 for 8,000 steps far
better than the old default (8 couplings, lr 1e-2, 4,000 steps; notebook 2 measured KL
0.462 and 0.350 with it), and 45-degree rotations helpful on the ring, which is not
aligned with the axes. The 16 couplings, lr and steps are now the default, without
rotations (the paper's alternating masks only). This script, 3 seeds each, gap to the
exact density (val; test), mean and standard deviation over the seeds, then each seed:

    toy, 16 couplings             val gap         test gap        val gap, seeds 0 1 2
    8gaussians                    0.235 +- 0.060  0.230 +- 0.072  0.206  0.304  0.196
    8gaussians, --rotation 45     0.126 +- 0.015  0.129 +- 0.023  0.128  0.140  0.109
    checkerboard                  0.165 +- 0.041  0.167 +- 0.039  0.202  0.171  0.121
    checkerboard, --rotation 45   0.220 +- 0.058  0.222 +- 0.056  0.163  0.218  0.279

(~200 s of training each, two 1-thread runs side by side.) On the ring every rotated seed
beats every plain seed; on the checkerboard, whose edges lie along the axes, the rotations
do not help (worse on average, within the spread). Neither toy gets close to its exact
density with affine couplings at this budget: what remains is measured in notebook 2,
section 2.5 (mass leaking into the gaps, smeared edges); notebook 10's spline couplings
get much closer in fewer steps (``benchmarks/splines2d.py``).

Circles, same day, seed 0, validation gap (test gap), seconds with 2 other jobs on the 2
cores: the default (8 couplings, MLP depth 2, lr 2e-3, 4,000 steps) 0.092 (0.090), 74 s;
16 couplings, lr 3e-3, 8,000 steps 0.232 (0.239), 223 s; MLP depth 3, lr 2e-3, 6,000
steps 0.423 (0.429), 134 s. The recipes that helped the other toys did worse here (one
seed each: a choice of recipe, not a measured comparison), so the circles default stays.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from nvp_edu.config import seed_everything
from nvp_edu.models import RealNVP2D
from nvp_edu.splines import SplineFlow2D
from nvp_edu.toys import TOYS, fit_baselines, fit_density, get_toy, make_splits, nll


# Chosen on the validation split (val NLL at lr 1e-2 / 2e-3, 8 couplings, MLP depth 2, 4,000
# steps): moons 0.312 / 0.318, 8gaussians 0.779 / 1.016, checkerboard 2.295 / 2.356, circles
# 1.190 / 0.707 (2026-11-28). Moons re-chosen on 2026-11-29; 8gaussians and checkerboard
# re-chosen on 2026-11-29 with 16 couplings (tables in the docstring).
DEFAULTS = {
    "moons": dict(lr=2e-3, steps=6000, mlp_depth=3, couplings=8),
    "circles": dict(lr=2e-3, steps=4000, mlp_depth=2, couplings=8),
    "8gaussians": dict(lr=3e-3, steps=8000, mlp_depth=2, couplings=16),
    "checkerboard": dict(lr=3e-3, steps=8000, mlp_depth=2, couplings=16),
}


def build_model(couplings: int, hidden: int, mlp_depth: int = 2, rotation: float = 0.0,
                coupling: str = "affine", bins: int = 8) -> torch.nn.Module:
    """``RealNVP2D`` (affine couplings, optionally a fixed rotation after every pair) or,
    with ``coupling="spline"``, ``SplineFlow2D`` (rational-quadratic splines, notebook 10)."""
    if coupling == "spline":
        if rotation:
            raise ValueError("--rotation applies to the affine RealNVP2D only")
        return SplineFlow2D(num_couplings=couplings, hidden=hidden, bins=bins)
    return RealNVP2D(num_couplings=couplings, hidden=hidden, mlp_depth=mlp_depth,
                     rotation=rotation)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="moons", choices=sorted(TOYS))
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--couplings", type=int, default=None,
                        help="default: per dataset (DEFAULTS)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--mlp-depth", type=int, default=None,
                        help="hidden layers of each coupling's s, t network (RealNVP2D uses 2; "
                             "default: per dataset, see DEFAULTS)")
    parser.add_argument("--rotation", type=float, default=0.0,
                        help="degrees: a fixed rotation of the plane after every second "
                             "coupling (0: off, the paper's alternating masks only)")
    parser.add_argument("--coupling", default="affine", choices=["affine", "spline"],
                        help="spline: SplineFlow2D, rational-quadratic spline couplings")
    parser.add_argument("--bins", type=int, default=8, help="spline bins (--coupling spline)")
    parser.add_argument("--steps", type=int, default=None, help="default: per dataset (DEFAULTS)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default: per dataset, see DEFAULTS)")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay of weights (0: off)")
    parser.add_argument("--schedule", default="onecycle", choices=["onecycle", "cosine"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--progress", action="store_true", help="show a tqdm bar on stderr")
    args = parser.parse_args(argv)

    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.coupling == "spline":
        args.mlp_depth = None  # SplineFlow2D's MLPs have their own depth (2): not an option here
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    toy = get_toy(args.dataset)
    data = make_splits(toy, n_train=args.n_train, seed=args.seed)
    model = build_model(args.couplings, args.hidden, args.mlp_depth, args.rotation,
                        args.coupling, args.bins)
    start = time.perf_counter()
    density, losses = fit_density(model, data.train, steps=args.steps, batch_size=args.batch_size,
                                  lr=args.lr, weight_decay=args.weight_decay,
                                  ema_decay=args.ema or None, schedule=args.schedule,
                                  seed=args.seed, progress=args.progress)
    train_seconds = time.perf_counter() - start
    result = {
        "dataset": args.dataset,
        "test_nll": round(nll(density, data.test), 4),
        "val_nll": round(nll(density, data.val), 4),
        "train_nll": round(nll(density, data.train), 4),
        "true_entropy": round(toy.true_entropy(), 4),
        # the exact density on the same points: test_nll minus this estimates KL(p || model)
        # with far less noise than test_nll minus the entropy
        "true_density_test_nll": round(-toy.log_prob(data.test).mean().item(), 4),
        "true_density_val_nll": round(-toy.log_prob(data.val).mean().item(), 4),
        "final_batch_loss": round(sum(losses[-100:]) / len(losses[-100:]), 4),
        "train_seconds": round(train_seconds, 1),
        "params": sum(p.numel() for p in model.parameters()),
    }
    result["kl_test"] = round(result["test_nll"] - result["true_density_test_nll"], 4)
    if not args.no_baselines:
        base = fit_baselines(data.train, data.val, data.test, seed=args.seed)
        result.update({k: round(v, 4) if isinstance(v, float) else v for k, v in base.items()})
        result["gmm_kl_test"] = round(result["gmm_test_nll"] - result["true_density_test_nll"], 4)
        # > 0: the flow is worse than the tuned Gaussian mixture on the same test points
        result["flow_minus_gmm_test"] = round(result["test_nll"] - result["gmm_test_nll"], 4)
    result["config"] = {k: v for k, v in vars(args).items() if k not in ("progress",)}
    result["config"]["n_val"], result["config"]["n_test"] = len(data.val), len(data.test)
    result["torch_threads"] = torch.get_num_threads()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
