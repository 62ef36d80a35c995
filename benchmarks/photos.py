"""Held-out bits/dim on the photos (notebook 9's offline data): the baselines beside a flow;
one JSON line.

    PYTHONPATH=. python benchmarks/photos.py                  # baselines + pretrained model
    PYTHONPATH=. python benchmarks/photos.py --run runs/09_cifar10   # + a finished run folder

The test set is every 32x32 patch (stride 16) of the two held-out photographs
(``nvp_edu.photos``: chelsea and grace_hopper, 1,575 patches); the baselines are fitted on
the training photographs (29,157 patches, stride 8). Figures, all in bits/dim of the
discrete test images:

- ``uniform``, ``pixel_histogram``, ``gaussian`` (full covariance, Ledoit-Wolf):
  ``nvp_edu.baselines``;
- ``pretrained``: the shipped ``photos`` model (``nvp_edu.pretrained``), with the
  trainer's evaluation noise (seed 12345), so it reproduces the card's ``test_bpd``;
- ``run``: with ``--run``, the ``test_bpd`` that finished run folder reported
  (``summary.json``; the notebook's laptop run writes ``runs/09_cifar10``) and its steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from nvp_edu import pretrained
from nvp_edu.baselines import Gaussian, pixel_histogram_bpd, uniform_bpd
from nvp_edu.photos import PHOTOS_LEVELS, load_photos_split
from nvp_edu.train import mean_bpd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="a finished run folder to report")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train, test = load_photos_split()
    out = {"train_patches": len(train), "test_patches": len(test),
           "uniform": uniform_bpd(PHOTOS_LEVELS),
           "pixel_histogram": pixel_histogram_bpd(train, test, PHOTOS_LEVELS),
           "gaussian": Gaussian.fit(train, PHOTOS_LEVELS).bpd(test)}
    model = pretrained.load("photos")
    out["pretrained"] = mean_bpd(model, test, PHOTOS_LEVELS, torch.Generator().manual_seed(12345))
    out["pretrained_steps"] = pretrained.card("photos")["steps"]
    if args.run is not None:
        summary_path = args.run / "summary.json"
        if not summary_path.is_file():
            p.error(f"{summary_path} not found: --run needs a finished run folder")
        summary = json.loads(summary_path.read_text())
        out["run"], out["run_steps"] = summary["test_bpd"], summary["steps"]
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
