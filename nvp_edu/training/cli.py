"""The command line: ``python -m nvp_edu.train`` (also under ``torchrun``).

    python -m nvp_edu.train --dataset cifar10 --preset paper --out runs/cifar
    python -m nvp_edu.train --dataset digits --preset digits --out runs/digits --val-fraction 0.1 --ema 0.98
    python -m nvp_edu.train --dataset synthetic --preset tiny --out runs/smoke --max-steps 20
    torchrun --nproc_per_node=4 -m nvp_edu.train --dataset cifar10 --preset paper --out runs/c4

Every error a user can cause (a setting, a file, the data, a full disk, a run folder in
use, a diverging run) is one line on stderr, ``error: ...``, with exit status 2 (1 when
data files are missing); ``--debug`` shows the traceback instead. Ctrl-C and SIGTERM save
a checkpoint after the step in flight and print the command that resumes (exit status
130 and 143, as a shell reports a signal).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from ..checkpoint import CheckpointCorruptError
from ..models import NORMS
from .loop import NonFiniteLossError, train
from .run_folder import RunFolderError, to_json
from .settings import DATASETS, DEQUANTS, PRECISIONS, PRESETS, Config
from .signals import TrainingInterrupted


def _add_optimization_args(p: argparse.ArgumentParser) -> None:
    """The objective, the optimizer and model selection."""
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (the official code) or cosine decay to 0 over the run")
    p.add_argument("--l2", type=float, default=5e-5,
                   help="coefficient of the L2 term sum(g^2) over the weight-norm magnitudes "
                        "and checkerboard scales, added to the NLL in nats (paper: 5e-5)")
    p.add_argument("--grad-clip", type=float, default=100.0,
                   help="max global norm of the gradient of nats-per-image + L2 (official: 100)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="carve this fraction of the training images out as a validation split;"
                        " evaluations use it and the best one is kept (the test split is "
                        "evaluated once, at the end)")
    p.add_argument("--ema", type=float, default=None,
                   help="evaluate an exponential moving average of the weights with this decay"
                        " (e.g. 0.98)")
    p.add_argument("--recalibrate", action="store_true",
                   help="recompute batch-norm running statistics from training images before "
                        "every evaluation")
    p.add_argument("--dequant", choices=DEQUANTS, default="uniform",
                   help="uniform: the paper's noise u ~ U[0,1); variational: noise from a "
                        "learned q(u|x) trained with the flow (Flow++), bits/dim of the bound")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """Glow's layers in the preset's model (issue 12: what came after Real NVP)."""
    p.add_argument("--norm", choices=NORMS, default="batch",
                   help="the normalization flow after each coupling: batch (the paper's batch"
                        " norm) or actnorm (Glow's, initialized from the first batch); the "
                        "s/t networks keep their batch norms")
    p.add_argument("--invconv", action="store_true",
                   help="Glow's invertible 1x1 convolution before every coupling on a squeezed"
                        " tensor (channel-wise couplings and the final scale)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """What is trained, for how long, where, and resuming."""
    p.add_argument("--dataset", choices=DATASETS, default="synthetic",
                   help="cifar10: the official tarball in --data-root (downloaded if "
                        "missing); photos: 32x32 patches of nine bundled photographs, two held "
                        "out whole as the test set (offline stand-in for CIFAR-10); digits: scikit-learn's 8x8 digits; "
                        "synthetic: CIFAR-shaped random images for smoke runs")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="paper: RealNVP(num_scales=2, mid_channels=64, num_blocks=8), batch 64,"
                        " 100 epochs; digits: 32 features, 2 blocks, batch 64, 20 epochs; "
                        "laptop: 32 features, 2 blocks, batch 32 (CPU runs on 32x32 images);"
                        " tiny: 8 features, 1 block, batch 16, 1 epoch")
    p.add_argument("--out", required=True, help="run folder: metrics, samples, checkpoint; one "
                   "trainer at a time (locked while training)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (counting steps "
                        "before a resume)")
    p.add_argument("--epochs", type=int, default=None,
                   help="number of epochs (default: the preset's); with --max-steps, "
                        "whichever comes first")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt exactly where it stopped (model, "
                        "optimizer, EMA, every random state, step). May change, from the next"
                        " step on: --lr, --lr-schedule, --l2, --grad-clip, the --ema decay, "
                        "--max-steps, --epochs, --log-every, --eval-every, --ckpt-every, "
                        "--num-samples, --limit-test, --recalibrate, --no-progress, "
                        "--no-plots, --device, --precision, --compile, --channels-last and the"
                        " number of processes (another device type or number of processes "
                        "reseeds the noise: not bit for bit). Refused, naming old and new "
                        "value: --dataset, --preset, --batch-size, --seed, --val-fraction, "
                        "--limit-train, --ema on/off, --norm, --invconv, --dequant. A "
                        "damaged checkpoint is neither loaded nor overwritten: see "
                        "--resume-from-previous")
    p.add_argument("--resume-from-previous", action="store_true",
                   help="as --resume, but if OUT/checkpoint.pt is damaged (or missing), keep it "
                        "as checkpoint.pt.damaged and continue from the previous good "
                        "checkpoint, checkpoint.pt.prev")
    p.add_argument("--overwrite", action="store_true",
                   help="a fresh run into a folder that holds a run: delete that run's files "
                        "first (a clean history); without it such a run is refused")
    p.add_argument("--seed", type=int, default=0, help="seed for init, data order and noise")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps; a device "
                        "that is not there is an error, never a fallback")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step per process (default: the preset's)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 autocast on CUDA with compute capability >= 8 (Ampere and "
                        "later), fp16 autocast with a gradient scaler on older CUDA GPUs (T4, "
                        "V100), fp32 on CPU and MPS; or name one. Only the s/t networks run "
                        "in bf16/fp16: log-dets and the prior stay float32")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA, off on CPU)")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Data location, logging, evaluation, checkpoints and what is shown."""
    p.add_argument("--data-root", default="data", help="folder holding cifar-10-python.tar.gz")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail with instructions if the tarball is missing")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics lines")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between held-out evaluations (0: once per epoch); each "
                        "evaluation also saves samples and a checkpoint")
    p.add_argument("--ckpt-every", type=int, default=0,
                   help="extra checkpoint every N steps (0: only at evaluations and the end)")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N "
                   "training images")
    p.add_argument("--limit-test", type=int, default=None, help="use only the first N test "
                   "images")
    p.add_argument("--num-samples", type=int, default=None, help="images per sample grid")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="no metrics.png and no sample grids")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no tqdm progress bar")
    p.add_argument("--debug", action="store_true",
                   help="on an error, show Python's full traceback instead of the one-line "
                        "message")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nvp_edu.train",
        description="Train the paper's multi-scale Real NVP (Dinh et al. 2017) and report "
                    "bits/dim. Multi-GPU: torchrun --nproc_per_node=N -m nvp_edu.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_run_args(p)
    _add_model_args(p)
    _add_optimization_args(p)
    _add_output_args(p)
    return p


def _parse(argv: Sequence[str] | None) -> tuple[Config, bool]:
    """The run's Config and ``--debug`` (how main reports errors, not a setting)."""
    args = vars(_parser().parse_args(argv))
    debug = args.pop("debug")
    return Config(**args), debug


def parse_args(argv: Sequence[str] | None = None) -> Config:
    return _parse(argv)[0]


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user can cause: one line each, no traceback. Anything else is a bug and
    keeps its traceback."""
    from ..cifar import ChecksumError  # a download that is not the tarball (e.g. a login page)
    return (ValueError, TypeError, OSError, CheckpointCorruptError, NonFiniteLossError,
            RunFolderError, ChecksumError)


def _resume_command(argv: Sequence[str] | None) -> str:
    """The command line that continues this run: the same flags, --resume, no --overwrite."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--overwrite"]
    if "--resume" not in args and "--resume-from-previous" not in args:
        args.append("--resume")
    return shlex.join(["python", "-m", "nvp_edu.train", *args])


def _say(message: str) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: 0 on success; on a user's error one line ``error: ...`` on stderr and exit
    status 1 for missing files (e.g. no CIFAR-10 tarball and no network), else 2."""
    cfg, debug = _parse(argv)
    try:
        summary = train(cfg, announce=True).summary
    except TrainingInterrupted as e:
        if debug:
            raise
        hint = f": {_resume_command(argv)}" if cfg.out and "saved" in str(e) else ""
        _say(f"{e}{hint}")
        return 128 + e.signum
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C during a step
        if debug:
            raise
        _say("interrupted (Ctrl-C) outside the steps or twice: stopped at once; the last "
             "checkpoint, if any, is intact" + (f"; to continue: {_resume_command(argv)}"
                                                 if cfg.out else ""))
        return 130
    except _user_errors() as e:
        if debug:
            raise
        _say(str(e))
        return 1 if isinstance(e, FileNotFoundError) else 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(to_json({k: v for k, v in summary.items() if k != "ranks"}))
    return 0
