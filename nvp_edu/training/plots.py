"""What a run shows: ``metrics.png`` (the curves) and ``samples/step_NNNNNNN.png``.

Both use a bare ``matplotlib.figure.Figure`` (no pyplot): it never touches the backend, so
figures inside a notebook keep displaying inline. Both files are written atomically
(:func:`nvp_edu.training.run_folder.write_figure`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from torch import Tensor

from .run_folder import read_metrics, write_figure


def save_grid(images: Tensor, path: Path, title: str) -> None:
    """A grid of [0, 1] images as a PNG."""
    from matplotlib.figure import Figure

    from ..plotting import image_grid
    n = images.shape[0]
    side = max(2.0, 0.6 * math.ceil(math.sqrt(n)))
    fig = Figure(figsize=(side, side + 0.3))
    image_grid(images, ax=fig.add_subplot(), title=title)
    write_figure(fig, path, dpi=100, bbox_inches="tight")


def plot_metrics(run_dir: str | os.PathLike) -> Path:
    """``metrics.png``: train/held-out bits/dim and throughput against steps."""
    from matplotlib.figure import Figure

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig = Figure(figsize=(10, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([r["step"] for r in train], [r["bpd"] for r in train], label="train (batch)")
    for key, label in (("val_bpd", "validation"), ("test_bpd", "test")):
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax1.plot(*zip(*points), "o-", label=label)
    ax1.set(xlabel="step", ylabel="bits/dim", title="bits/dim")
    ax1.legend()
    ax2.plot([r["step"] for r in train], [r["img_per_s"] for r in train])
    ax2.set(xlabel="step", ylabel="images/s", title="throughput (all ranks)")
    fig.tight_layout()
    path = Path(run_dir) / "metrics.png"
    write_figure(fig, path, dpi=100)
    return path
