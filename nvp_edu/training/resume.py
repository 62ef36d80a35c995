"""What a checkpoint holds, and how a run continues from one (``--resume``).

A checkpoint (``OUT/checkpoint.pt``, written by :func:`save`) holds the model, the
optimizer, the EMA, the best model so far, the fp16 gradient scaler, every rank's random
states and the step. :func:`resume` puts all of it back, so step ``k+1`` of a resumed run
is step ``k+1`` of an uninterrupted one, bit for bit; ``metrics.jsonl`` is cut back to the
checkpoint's step.

What a resumed run may change, from its next step: ``--lr``, ``--lr-schedule``, ``--l2``,
``--grad-clip``, the ``--ema`` decay, ``--max-steps``, ``--epochs``, logging, evaluation and
checkpoint intervals, ``--device``, ``--precision``, ``--compile``, ``--channels-last`` and
the number of processes (another device type or number of processes reseeds the noise:
not bit for bit). Refused, naming old and new value (:data:`RUN_DEFINING`): the settings
that define the run, its data, their split and order, the model, what a step and an
epoch are.

A damaged checkpoint is never loaded nor overwritten: ``--resume`` stops with an error
naming it and the previous good one (``checkpoint.pt.prev``); ``--resume-from-previous``
keeps the damaged file as ``checkpoint.pt.damaged``, puts a copy of the previous one in its
place and continues from there (also when ``checkpoint.pt`` is missing).
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import (PREV_SUFFIX, CheckpointCorruptError, atomic_open, capture_rng_state,
                          load_checkpoint, restore_rng_state, save_checkpoint)
from .run_folder import CHECKPOINT_NAME, truncate_metrics
from .settings import PRESETS, Config, flag

if TYPE_CHECKING:
    from .loop import Trainer

# Settings that define a run. Changed on resume they would not continue the run but start
# another from the middle of the first (another batch size even moves the epoch counter back).
RUN_DEFINING = ("dataset", "preset", "batch_size", "seed", "val_fraction", "limit_train", "ema",
                "norm", "invconv", "dequant")
# run-defining settings added later: a checkpoint without them was trained with these
_LATER_DEFAULTS = {"norm": "batch", "invconv": False, "dequant": "uniform"}


def run_defining(config: dict[str, Any]) -> dict[str, Any]:
    """The run-defining settings of a config (``asdict``) as they act: the preset's batch
    size when none is given; the EMA on or off (its decay may change)."""
    values = {k: config.get(k) for k in RUN_DEFINING}
    if values["batch_size"] is None:
        values["batch_size"] = PRESETS.get(config.get("preset"), {}).get("batch_size")
    values["ema"] = "on" if config.get("ema") else "off"
    return values


def refuse_changed_settings(path: Path, saved: dict[str, Any], cfg: Config) -> None:
    """ValueError naming every run-defining setting that differs from the checkpoint's."""
    saved = {**_LATER_DEFAULTS, **saved}
    old, new = run_defining(saved), run_defining(asdict(cfg))
    changed = [k for k in RUN_DEFINING if k in saved and old[k] != new[k]]
    if changed:
        def show(values: dict[str, Any]) -> str:
            return ", ".join(f"{flag(k)} {'unset' if values[k] is None else values[k]}"
                             for k in changed)
        raise ValueError(f"--resume: {path} was trained with {show(old)}; got {show(new)}. "
                         "These settings define the run: resume with the checkpoint's values,"
                         " or start a new run in another --out")


def damaged_checkpoint_error(err: CheckpointCorruptError) -> CheckpointCorruptError:
    """The loader's error, reworded for ``--resume``: what was kept and what to do next."""
    name = err.path.name
    head = (f"--resume: checkpoint {err.path} {err.verdict} and was NOT loaded ({err.reason});"
            " it is left as it is. ")
    if err.previous is None:
        tail = (f"There is no intact previous checkpoint ({name}{PREV_SUFFIX}): restore a copy "
                "of the file, or start a new run in another --out")
    else:
        step = f" (step {err.previous_step})" if err.previous_step is not None else ""
        tail = (f"The previous good checkpoint is {err.previous}{step}: add "
                f"--resume-from-previous to continue from it ({name} is then kept as "
                f"{name}.damaged)")
    err.args = (head + tail,)
    return err


def restore_previous(path: Path, previous: Path) -> Path | None:
    """Keep a damaged ``path`` as ``NAME.damaged`` (or ``.damaged.N``) and put a copy of
    ``previous`` in its place, atomically: ``path`` never goes missing. Returns the kept
    file (None if there was no ``path``)."""
    kept = None
    if path.exists():
        kept, n = path.with_name(path.name + ".damaged"), 0
        while kept.exists():
            n += 1
            kept = path.with_name(f"{path.name}.damaged.{n}")
        try:
            os.link(path, kept)  # a second name for the damaged bytes
        except OSError:  # no hard links here: copy
            shutil.copyfile(path, kept)
    with atomic_open(path) as f, open(previous, "rb") as src:
        shutil.copyfileobj(src, f)
    return kept


def require_finite_weights(trainer: "Trainer") -> None:
    """Never write NaN/inf weights over a good checkpoint (an optimizer step can blow up
    with a finite loss and gradient, e.g. with a huge learning rate)."""
    models = trainer.trained_modules() + ([trainer.ema.module] if trainer.ema is not None else [])
    tensors = [t for m in models for t in m.state_dict().values() if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    if trainer.env.any(~finite):
        trainer._stop(f"the weights are not finite after step {trainer.step} (the optimizer "
                      "step blew up, e.g. a learning rate far too high): they were NOT saved")


def save(trainer: "Trainer") -> None:
    """Write the trainer's state to ``OUT/checkpoint.pt`` (rank 0; every rank's RNG state)."""
    require_finite_weights(trainer)
    rngs = trainer.env.gather(capture_rng_state({"aug": trainer.aug}))
    if not (trainer.out and trainer.env.main):
        return
    state = {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "rng_per_rank": rngs, "step": trainer.step,
             "epoch": trainer.step // trainer.steps_per_epoch, "world_size": trainer.env.world,
             "device_type": trainer.device.type,
             # the batch size as resolved (the preset's if none was given): resume compares it
             "config": {**asdict(trainer.cfg), "batch_size": trainer.batch}}
    if trainer.ema is not None:
        state["ema"] = trainer.ema.state_dict()
    if trainer.dequantizer is not None:
        state["dequantizer"] = trainer.dequantizer.state_dict()
    if trainer.best is not None:
        state["best"] = trainer.best
    if trainer.precision.scaler is not None:  # fp16: the loss scale and its growth tracker
        state["scaler"] = trainer.precision.scaler.state_dict()
    save_checkpoint(trainer.out / CHECKPOINT_NAME, state)


def resume(trainer: "Trainer") -> None:
    """Continue from ``OUT/checkpoint.pt``: every state as saved, the metrics cut back."""
    path = trainer.out / CHECKPOINT_NAME
    ckpt = _load(trainer, path)
    refuse_changed_settings(path, ckpt["config"], trainer.cfg)
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    if trainer.dequantizer is not None:
        trainer.dequantizer.load_state_dict(ckpt["dequantizer"])
    if trainer.ema is not None and "ema" in ckpt:
        trainer.ema.load_state_dict(_ema_state_of(trainer, ckpt["ema"]))
    if trainer.precision.scaler is not None and "scaler" in ckpt:
        trainer.precision.scaler.load_state_dict(ckpt["scaler"])
    trainer.best = ckpt.get("best")
    _restore_random_state(trainer, ckpt)
    trainer.step = trainer.last_ckpt_step = int(ckpt["step"])
    if trainer.env.main:
        print(f"resumed from {path} at step {trainer.step}", file=sys.stderr)
        truncate_metrics(trainer.out, trainer.step)


def _load(trainer: "Trainer", path: Path) -> dict[str, Any]:
    """The checkpoint, verified; a damaged one is never used nor overwritten.

    With ``resume_from_previous`` rank 0 keeps the damaged file as ``NAME.damaged`` and
    puts the previous good one in its place, and every rank loads that.
    """
    ckpt, error = None, None
    try:  # on the CPU: random states must be CPU tensors; load_state_dict copies later
        ckpt = load_checkpoint(path, map_location="cpu")
    except FileNotFoundError:  # only --resume-from-previous gets here (see RunFolder)
        prev = path.with_name(path.name + PREV_SUFFIX)
        error = CheckpointCorruptError(path, "it is missing", prev, None)
    except CheckpointCorruptError as err:
        error = err
    # a collective: every rank has read the file before rank 0 may replace it
    if not trainer.env.flag(error is not None):
        return ckpt
    if error is None:  # only another rank failed to read the same file: give up too
        error = CheckpointCorruptError(path, "another process could not read it")
    if error.previous is None or not trainer.cfg.resume_from_previous:
        raise damaged_checkpoint_error(error)
    if trainer.env.main:
        kept = restore_previous(path, error.previous)
        what = f"is damaged, kept as {kept.name}" if kept else "is missing"
        print(f"--resume-from-previous: {path} {what}; resuming from the previous checkpoint"
              + (f" (step {error.previous_step})" if error.previous_step is not None else ""),
              file=sys.stderr)
    trainer.env.gather(None)  # a barrier: rank 0 has put the previous checkpoint in place
    return load_checkpoint(path, map_location="cpu")


def _restore_random_state(trainer: "Trainer", ckpt: dict[str, Any]) -> None:
    """Every random state as saved; on another world size or device type (whose
    generators hold other states) the trainer's generator is reseeded instead."""
    env, per_rank = trainer.env, ckpt["rng_per_rank"]
    same_world = len(per_rank) == env.world
    saved_device = ckpt.get("device_type", trainer.device.type)
    if same_world and saved_device == trainer.device.type:
        restore_rng_state(per_rank[env.rank], {"aug": trainer.aug})
        return
    if same_world:
        restore_rng_state(per_rank[env.rank])  # torch, Python, NumPy: device-free
    trainer.aug.manual_seed(trainer.cfg.seed * 1000 + env.rank + 1 + ckpt["step"])
    if env.main:
        print(f"--resume: the checkpoint ran on {len(per_rank)} x {saved_device}, this run "
              f"on {env.world} x {trainer.device.type}: dequantization noise and flips "
              "are reseeded (the run goes on, not bit for bit)", file=sys.stderr)


def _ema_state_of(trainer: "Trainer", state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's EMA state in this run's layout. Checkpoints of --dequant variational
    written before the dequantizer was averaged too hold the flow's average only: it is
    kept, and the dequantizer's average starts from its checkpointed weights."""
    if trainer.dequantizer is None or any(k.startswith("module.flow.") for k in state):
        return state
    if trainer.env.main:
        print("--resume: this checkpoint's EMA averages the flow only (an earlier version); "
              "the dequantizer's average starts from its current weights", file=sys.stderr)
    new = {("module.flow." + k[len("module."):] if k.startswith("module.") else k): v
           for k, v in state.items()}
    new.update({"module.dequantizer." + k: v.clone()
                for k, v in trainer.dequantizer.state_dict().items()})
    return new
