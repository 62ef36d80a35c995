"""One trainer for every image model of the course: digits, the mask study, CIFAR-10.

    python -m nvp_edu.train --dataset cifar10 --preset paper --out runs/cifar
    python -m nvp_edu.train --dataset digits --preset digits --out runs/digits --val-fraction 0.1 --ema 0.98
    python -m nvp_edu.train --dataset synthetic --preset tiny --out runs/smoke --max-steps 20
    torchrun --nproc_per_node=4 -m nvp_edu.train --dataset cifar10 --preset paper --out runs/c4

From Python (notebooks 4, 6-10): ``result = train(Config(...), model=...)`` returns the
selected model, the run's summary and its history.

This module is the front door; the trainer itself is the package :mod:`nvp_edu.training`,
one concern per module (start with :mod:`nvp_edu.training.loop`):

=====================  ===============================================================
``settings``           ``Config`` (every flag), the presets, their checks
``objective``          NLL in nats per image, the L2 term, bits/dim through the ledger
``data``               datasets, ``--val-fraction`` split, flips, batch-norm recalibration
``setup``, ``model``   what a run is made of: model, dequantizer, EMA, optimizer
``loop``               a step, evaluation, EMA, selection; the stops
``precision``          ``--precision auto|fp32|bf16|fp16`` (fp16 with a gradient scaler)
``distributed``        ``torchrun`` + DistributedDataParallel
``run_folder``         ``--out``: the lock, metrics, summary, ``--overwrite``
``resume``             checkpoints and the rules of ``--resume``
``signals``, ``cli``   Ctrl-C/SIGTERM, and this command line
=====================  ===============================================================

Flags at a glance (``--help`` for all): ``--max-steps``, ``--epochs``, ``--eval-every``,
``--ckpt-every``, ``--resume``, ``--resume-from-previous``, ``--overwrite``, ``--device``,
``--precision``, ``--compile``, ``--channels-last``, ``--val-fraction``, ``--ema``,
``--recalibrate``, ``--norm``, ``--invconv``, ``--dequant``, ``--debug``.
"""
from __future__ import annotations

import sys

from .preprocess import dequantize  # noqa: F401
from .training.cli import main, parse_args  # noqa: F401
from .training.data import (load_data, random_hflip, recalibrate_batch_norm,  # noqa: F401
                            recalibration_images, split_validation, synthetic_images)
from .training.distributed import Dist, _Dist, fingerprint  # noqa: F401
from .training.loop import NonFiniteLossError, Trainer, train  # noqa: F401
from .training.model import build_dequantizer, build_model  # noqa: F401
from .training.objective import (_LOGIT, LOGIT_ALPHA, bits_per_dim,  # noqa: F401
                                 dequantized_model_space, from_model_space, l2_parameters,
                                 l2_penalty, mean_bpd, model_bpd, nll_nats, to_model_space)
from .training.plots import plot_metrics, save_grid  # noqa: F401
from .training.precision import choose_precision  # noqa: F401
from .training.resume import RUN_DEFINING  # noqa: F401
from .training.run_folder import (CHECKPOINT_NAME, RunFolderError, read_metrics,  # noqa: F401
                                  to_json as _to_json, truncate_metrics as _truncate_metrics)
from .training.settings import (DATASETS, DEQUANTS, PRECISIONS, PRESETS, Config,  # noqa: F401
                                TrainResult, validate as _validate)
from .training.signals import TrainingInterrupted  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
