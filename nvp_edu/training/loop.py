"""The training loop: a step, evaluation, the weight average (EMA), model selection.

Read :meth:`Trainer.run`, then :meth:`Trainer.train_step`. One step of the official
objective: the mean NLL in nats per image plus ``l2 * sum g^2``, its gradient clipped to
global norm 100, then Adam (lr 1e-3). Every ``eval_every`` steps (default: each epoch) the
held-out split is evaluated in bits/dim; with a validation split (``val_fraction``) the
best evaluation's model is kept and the test split is evaluated once, at the end, on it;
without one the held-out split is the test set, as in the paper's CIFAR-10 runs.

Where everything else lives (``nvp_edu/training/``):

- ``settings.py``: :class:`Config` (every flag), the presets, their checks;
- ``objective.py``: images to logit space, NLL in nats, bits/dim, the L2 term;
- ``data.py``: the datasets, the validation split, flips, batch-norm recalibration;
- ``setup.py``: what a run is made of; ``model.py``: the model, dequantizer and EMA;
- ``precision.py``: bf16 / fp16 with a gradient scaler / fp32, per device;
- ``distributed.py``: ranks under ``torchrun`` (DDP);
- ``run_folder.py``, ``plots.py``, ``report.py``: the run folder (lock, metrics,
  summary, figures) and what is logged;
- ``resume.py``: what a checkpoint holds and the rules of ``--resume``;
- ``signals.py``: Ctrl-C and SIGTERM; ``cli.py``: ``python -m nvp_edu.train``.

A non-finite loss or gradient stops the run before that step changes the weights, and so
does a non-finite evaluation, or non-finite weights when a checkpoint is due:
:class:`NonFiniteLossError` names the step and the last good checkpoint, left as it was.
(Under fp16 a non-finite gradient is the loss scale's business: the scaler skips that step.)

Example:
    >>> result = train(Config(out=None, max_steps=2, limit_train=32, limit_test=8,
    ...                       batch_size=8, progress=False))  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import sys
import time
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from . import report
from . import resume as resume_rules
from .data import random_hflip, recalibrate_batch_norm, recalibration_images
from .distributed import Dist, fingerprint
from .objective import l2_penalty, mean_bpd, nll_nats
from .plots import plot_metrics
from .run_folder import CHECKPOINT_NAME, claim_for_run, read_metrics
from .settings import Config, TrainResult, validate
from .setup import Run
from .signals import TrainingInterrupted, deferred_signals

MAX_SKIPPED_IN_A_ROW = 50  # fp16: this many overflowing steps in a row is divergence


class NonFiniteLossError(RuntimeError):
    """A loss, gradient norm, evaluation or the weights became NaN/inf; training stopped
    without saving them, and the last good checkpoint was left as it was."""


def train(cfg: Config, model: nn.Module | None = None, announce: bool = False) -> TrainResult:
    """Run (or resume) a training run; ``model`` defaults to the preset's RealNVP (any
    flow ``z, log_det = model(y)`` on the images in logit space works)."""
    validate(cfg)
    env = Dist(cfg.device)
    try:
        trainer = Trainer(cfg, env, model)
        if announce and env.main:
            print(trainer.precision.describe(), file=sys.stderr)
        return trainer.run()
    finally:
        env.close()


class Trainer(Run):
    """One run's loop: steps, evaluation, EMA, selection. Read :meth:`run` first; what a
    run is made of (data, model, optimizer, order of the batches) is :class:`Run`."""

    # ---- the loop ----
    def run(self) -> TrainResult:
        """Take the run folder, resume if asked, train to ``total`` steps, then report the
        selected model's test figure; the folder is given up however this ends."""
        self.folder = claim_for_run(self.out, self.cfg, self.env)
        try:
            if self.cfg.resume or self.cfg.resume_from_previous:
                resume_rules.resume(self)
            with deferred_signals() as signals:
                self._loop(signals)
            return self._finish()
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.folder is not None:
                self.folder.release()

    def _loop(self, signals: list[int]) -> None:
        from tqdm import tqdm  # the text bar: works in terminals, logs and notebooks alike
        self.bar = tqdm(total=self.total, initial=self.step,
                        disable=not (self.env.main and self.cfg.progress),
                        desc=f"{self.cfg.dataset}/{self.cfg.preset}", unit="step",
                        mininterval=1.0 if sys.stderr.isatty() else 10.0)
        for m in self.trained_modules():
            m.train()
        self.t_start, self.images_seen = time.perf_counter(), 0
        self.window_start, self.window_steps = time.perf_counter(), 0
        while self.step < self.total:
            record = self.train_step(self._next_batch())
            self.step += 1
            self.images_seen += self.batch * self.env.world
            self.window_steps += 1
            self.bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == self.total:
                report.log_train(self, record)
            due_eval = (self.step % self.cfg.eval_every == 0 if self.cfg.eval_every
                        else self.step % self.steps_per_epoch == 0)
            if due_eval or self.step == self.total:
                self._evaluate_and_select()
            if (self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0) or due_eval \
                    or self.step == self.total:
                self._checkpoint()
                self.window_start = time.perf_counter()  # eval/checkpoint is not training time
            if self.env.flag(bool(signals)) if self.env.world > 1 else signals:
                self._interrupted(signals[0] if signals else 15)

    def _next_batch(self) -> Tensor:
        epoch, i = divmod(self.step, self.steps_per_epoch)
        if epoch != getattr(self, "_order_epoch", None):
            self.sampler.set_epoch(epoch)
            self._order, self._order_epoch = list(self.sampler), epoch
        idx = torch.tensor(self._order[i * self.batch:(i + 1) * self.batch], device=self.device)
        xb = self.train_x[idx]
        return random_hflip(xb, self.aug) if self.flip else xb

    def train_step(self, xb: Tensor) -> dict[str, Tensor]:
        """One step of the official objective: nats per image + L2, clip, Adam.

        A NaN/inf loss or gradient takes no step and raises NonFiniteLossError (batch-norm
        running averages skip a non-finite batch by themselves). Under fp16 the gradient
        scaler multiplies the loss before ``backward`` and skips a step whose gradients
        overflowed (halving the scale) instead.
        """
        scaler = self.precision.scaler
        nll = nll_nats(self.net, xb, self.levels, self.aug, self.autocast,
                       self.channels_last, self.deq_net).mean()
        loss = nll + self.cfg.l2 * l2_penalty(self.l2_params).to(nll.device)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        # one device-to-host sync per step: the guard must know before optimizer.step()
        finite = torch.isfinite(loss.detach())
        if scaler is None:
            finite = finite & torch.isfinite(grad_norm)
        if self.env.any(~finite):
            self.optimizer.zero_grad(set_to_none=True)
            self._stop(f"non-finite loss or gradient at step {self.step + 1} (loss "
                       f"{loss.item()}, grad norm {grad_norm.item()}): training stopped "
                       "without taking that step")
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        skipped = self._optimizer_step(scaler)
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and not skipped:
            self.ema.update_parameters(self._ema_source)
        return {"loss": loss.detach(), "nll": nll.detach(), "grad_norm": grad_norm}

    def _optimizer_step(self, scaler: torch.amp.GradScaler | None) -> bool:
        """Adam's step (through the scaler under fp16); True if the scaler skipped it."""
        if scaler is None:
            self.optimizer.step()
            return False
        scale = scaler.get_scale()
        scaler.step(self.optimizer)
        scaler.update()
        skipped = scaler.get_scale() < scale  # the scale is halved exactly when it skips
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            self._stop(f"fp16: the gradients overflowed at {MAX_SKIPPED_IN_A_ROW} steps in a "
                       f"row up to step {self.step + 1} (loss scale {scaler.get_scale():g})")
        return skipped

    def learning_rate(self) -> float:
        """``lr``, constant (the official code) or cosine-decayed to 0 over the run; a
        function of the step alone, so a resumed run follows the same schedule."""
        if self.cfg.lr_schedule == "constant":
            return self.cfg.lr
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * self.step / self.total))

    # ---- evaluation and selection ----
    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: Tensor) -> float:
        """Mean bits/dim of ``x`` in eval mode; the same noise at every evaluation (with a
        variational dequantizer: bits/dim of the variational bound)."""
        dequantizer = self.eval_dequantizer if model is self.eval_model else self.dequantizer
        modules = [model] + ([dequantizer] if dequantizer is not None else [])
        for m in modules:
            m.eval()
        g = torch.Generator(device=self.device).manual_seed(12345)
        bpd = mean_bpd(model, x, self.levels, g, 4 * self.batch, autocast=self.autocast,
                       channels_last=self.channels_last, dequantizer=dequantizer)
        for m in modules:
            m.train()
        return bpd

    def _evaluate_and_select(self) -> None:
        """Rank 0 evaluates the held-out split (after recalibrating batch norm if asked) and,
        with a validation split, keeps the best model; every rank stops if it is not finite."""
        model, on_val = self.eval_model, len(self.val_x) > 0
        bpd = 0.0
        if self.env.main:
            if self.cfg.recalibrate:
                images = recalibration_images(self.train_x, self.cfg.recalibrate_images,
                                              self.cfg.seed)
                recalibrate_batch_norm(model, images, self.levels,
                                       dequantizer=self.eval_dequantizer)
            bpd = self.evaluate(model, self.val_x if on_val else self.test_x)
        if self.env.flag(not math.isfinite(bpd)):
            self._stop(f"the held-out bits/dim after step {self.step} is not finite"
                       f"{f' ({bpd})' if self.env.main else ''}: the weights of that step give "
                       "no finite likelihood (e.g. a learning rate far too high) and were NOT "
                       "saved")
        if not self.env.main:
            return
        report.record_evaluation(self, bpd, on_val)
        if on_val and (self.best is None or bpd < self.best["bpd"]):
            self.best = {"bpd": bpd, "step": self.step, "state": copy.deepcopy(model.state_dict())}
            if self.dequantizer is not None:  # the bound was measured with this q
                self.best["dequantizer"] = copy.deepcopy(self.eval_dequantizer.state_dict())

    def _finish(self) -> TrainResult:
        """Load the selected model, evaluate it on the test split once, write the summary."""
        ranks = self.env.gather({"rank": self.env.rank, "steps": self.step,
                                 "fingerprint": fingerprint(self.model)})
        model = self.eval_model
        test_bpd = self.history["eval_bpd"][-1] if self.history["eval_bpd"] else None
        if self.best is not None:
            model.load_state_dict(self.best["state"])
            if "dequantizer" in self.best:
                self.eval_dequantizer.load_state_dict(self.best["dequantizer"])
        # with a validation split: the only look at the test split; without one, when
        # nothing was evaluated (a finished run resumed: nothing left to train)
        if self.env.main and (len(self.val_x) or test_bpd is None):
            test_bpd = self.evaluate(model, self.test_x)
            if not math.isfinite(test_bpd):
                self._stop(f"the test bits/dim of the selected model is not finite ({test_bpd})")
        summary = report.summary(self, test_bpd, ranks)
        if self.folder is not None:
            self.folder.write_summary(summary)
            if self.cfg.plots and read_metrics(self.out):
                plot_metrics(self.out)
        if self.eval_dequantizer is not None:
            self.eval_dequantizer.eval()
        return TrainResult(model.eval(), summary, self.history, self.eval_dequantizer)

    # ---- the run folder, checkpoints and stops ----
    def _log(self, record: dict[str, Any]) -> None:
        if self.folder is not None:
            self.folder.log(record)

    def _checkpoint(self) -> None:
        resume_rules.save(self)  # refuses non-finite weights (NonFiniteLossError)
        self.last_ckpt_step = self.step

    def _last_good(self) -> str:
        if self.out is None:
            return "no checkpoint is kept (out=None)"
        if self.last_ckpt_step is None:
            return "no checkpoint was written yet"
        return (f"last good checkpoint: {self.out / CHECKPOINT_NAME} (step "
                f"{self.last_ckpt_step}), kept untouched")

    def _stop(self, what: str) -> NoReturn:
        """Raise NonFiniteLossError: ``what`` happened, where the last good state is."""
        again = ("Resume with --resume" if self.out and self.last_ckpt_step is not None
                 else "Run again")
        raise NonFiniteLossError(f"{what}; {self._last_good()}. {again}, e.g. with a lower --lr "
                                 "or --precision fp32.")

    def _interrupted(self, signum: int) -> NoReturn:
        """A signal arrived: checkpoint (unless one was just written) and say how to resume."""
        if self.last_ckpt_step != self.step:
            self._checkpoint()
        name = "SIGINT (Ctrl-C)" if signum == 2 else "SIGTERM" if signum == 15 else f"signal {signum}"
        saved = (f"checkpoint {self.out / CHECKPOINT_NAME} saved at step {self.step}; resume "
                 "with --resume" if self.out else "nothing saved (no run folder: out=None)")
        raise TrainingInterrupted(f"interrupted by {name} after step {self.step}: {saved}", signum)

