"""What a run reports: metrics lines, the progress bar, sample grids, the summary.

Every record goes to ``metrics.jsonl`` in the run folder (rank 0 only) and to the
trainer's in-memory ``history`` (the curves :func:`nvp_edu.training.loop.train` returns).
Train lines carry bits/dim through the ledger (:func:`nvp_edu.ledger.bits_per_dim`) of the
batch's NLL, the loss with the L2 term, the gradient norm, the learning rate and images/s.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..ledger import bits_per_dim as ledger_bits_per_dim
from .objective import from_model_space
from .plots import plot_metrics, save_grid

if TYPE_CHECKING:
    from .loop import Trainer


def log_train(trainer: "Trainer", r: dict[str, Tensor]) -> None:
    """A train line: the step's losses, gradient norm, learning rate and throughput."""
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    now = time.perf_counter()
    ips = trainer.window_steps * trainer.batch * trainer.env.world / (now - trainer.window_start)
    nll = r["nll"].item()
    bpd = float(ledger_bits_per_dim(nll, trainer.dims, trainer.levels))
    trainer._log({"kind": "train", "step": trainer.step,
                  "epoch": trainer.step / trainer.steps_per_epoch, "loss": r["loss"].item(),
                  "nll_nats": nll, "bpd": bpd, "grad_norm": r["grad_norm"].item(),
                  "img_per_s": ips, "lr": trainer.optimizer.param_groups[0]["lr"]})
    trainer.history["step"].append(trainer.step)
    trainer.history["train_bpd"].append(bpd)
    trainer.bar.set_postfix(bpd=f"{bpd:.3f}", img_s=f"{ips:.1f}", refresh=False)
    trainer.window_start, trainer.window_steps = time.perf_counter(), 0


def record_evaluation(trainer: "Trainer", bpd: float, on_val: bool) -> None:
    """An eval line, the history, a sample grid and the curves (rank 0)."""
    key = "val_bpd" if on_val else "test_bpd"
    trainer._log({"kind": "eval", "step": trainer.step,
                  "epoch": trainer.step / trainer.steps_per_epoch, key: bpd})
    trainer.history["eval_step"].append(trainer.step)
    trainer.history["eval_bpd"].append(bpd)
    write_samples(trainer)
    if trainer.folder is not None and trainer.cfg.plots:
        plot_metrics(trainer.out)
    if trainer.cfg.progress:
        trainer.bar.write(f"step {trainer.step}: {'validation' if on_val else 'held-out'} "
                          f"{bpd:.4f} bits/dim")


def write_samples(trainer: "Trainer") -> None:
    """``samples/step_NNNNNNN.png``: the evaluated model's samples at temperature 1."""
    cfg = trainer.cfg
    n = cfg.num_samples if cfg.num_samples is not None else trainer.preset["num_samples"]
    model = trainer.eval_model
    if not (trainer.folder is not None and cfg.plots and n and hasattr(model, "sample")):
        return
    g = torch.Generator(device=trainer.device).manual_seed(2024)
    y = model.sample(n, temperature=1.0, generator=g)  # eval mode inside
    save_grid(from_model_space(y), trainer.out / "samples" / f"step_{trainer.step:07d}.png",
              f"{cfg.dataset} samples, step {trainer.step}, T=1.0")


def summary(trainer: "Trainer", test_bpd: float | None, ranks: list[dict]) -> dict[str, Any]:
    """The run's figures and settings, as ``summary.json`` holds them."""
    cfg, wall = trainer.cfg, time.perf_counter() - trainer.t_start
    deq_params = sum(p.numel() for m in trainer.trained_modules()[1:] for p in m.parameters())
    return {"dataset": cfg.dataset, "preset": cfg.preset, "steps": trainer.step,
            "epochs": trainer.step / trainer.steps_per_epoch, "world_size": trainer.env.world,
            "device": str(trainer.device), "precision": trainer.precision.name,
            "compile": cfg.compile, "channels_last": trainer.channels_last,
            "batch_per_process": trainer.batch, "test_bpd": test_bpd,
            "best_val_bpd": trainer.best["bpd"] if trainer.best else None,
            "best_step": trainer.best["step"] if trainer.best else None,
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "norm": cfg.norm, "invconv": cfg.invconv, "dequant": cfg.dequant,
            "dequantizer_params": deq_params, "ranks": ranks,
            "ranks_in_sync": len({r["fingerprint"] for r in ranks}) == 1, "wall_s": wall,
            "mean_img_per_s": trainer.images_seen / max(wall, 1e-9)}
