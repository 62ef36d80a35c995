"""What a run is made of (:class:`Run`): data, model, optimizer, precision, schedule.

:class:`nvp_edu.training.loop.Trainer` adds the loop. Setting up is the same on every
rank (same seed: identical initial replicas); only rank 0 writes (the run folder is
claimed when the loop starts, not here). The data order is ``DistributedSampler``'s
permutation, a function of ``(seed, epoch)``, so the position in the run is fully given
by the step counter, which is what makes resume exact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import seed_everything
from .data import load_data, split_validation
from .distributed import Dist
from .model import build_dequantizer, build_model, make_ema, wrap
from .objective import l2_parameters
from .precision import Precision, configure_cuda_math
from .run_folder import RunFolder
from .settings import PRESETS, Config


class Run:
    """What a run is made of: its data, model, optimizer, precision and schedule."""

    def __init__(self, cfg: Config, env: Dist, model: nn.Module | None = None) -> None:
        self.cfg, self.env, self.device = cfg, env, env.device
        self.preset = PRESETS[cfg.preset]
        self.batch = cfg.batch_size or self.preset["batch_size"]
        self.out = Path(cfg.out) if cfg.out else None
        configure_cuda_math(self.device)
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else self.device.type == "cuda")
        seed_everything(cfg.seed)  # same on every rank: identical initial replicas
        train_x, test_x, self.levels, self.flip = load_data(cfg)
        fit_x, val_x = split_validation(train_x, cfg.val_fraction, cfg.seed)
        self.train_x, self.val_x, self.test_x = (t.to(self.device) for t in (fit_x, val_x, test_x))
        self.dims = self.train_x[0].numel()
        self.precision = Precision(cfg.precision, self.device, self.dims, self.levels)
        self.autocast = self.precision.autocast
        self._setup_model(model)
        # data order: DistributedSampler's permutation is a function of (seed, epoch), so
        # the position in the run is fully given by the step counter
        from torch.utils.data.distributed import DistributedSampler
        self.sampler = DistributedSampler(range(len(self.train_x)), num_replicas=env.world,
                                          rank=env.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {self.batch} x {env.world} process(es) is larger "
                             f"than the training set ({len(self.train_x)} images): lower "
                             "--batch-size or use more images (--limit-train, --val-fraction)")
        epochs = cfg.epochs if cfg.epochs is not None else self.preset["epochs"]
        self.total = epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total = min(self.total, cfg.max_steps) if cfg.epochs is not None else cfg.max_steps
        self.step, self.last_ckpt_step, self.bar, self.skipped_in_a_row = 0, None, None, 0
        self.best: dict[str, Any] | None = None  # {"bpd", "step", "state"} on validation
        self.history: dict[str, list[float]] = {"step": [], "train_bpd": [], "eval_step": [],
                                                "eval_bpd": []}
        self.folder: RunFolder | None = None

    def _setup_model(self, model: nn.Module | None) -> None:
        C, H, _ = self.train_x.shape[1:]
        if model is not None and (self.cfg.norm != "batch" or self.cfg.invconv):
            raise ValueError("--norm and --invconv choose the layers of the preset's model; a "
                             "model was passed in: build it with them instead (RealNVP(..., "
                             f"norm={self.cfg.norm!r}, invconv={self.cfg.invconv}))")
        self.model = (model if model is not None else build_model(
            self.cfg.preset, C, H, self.cfg.norm, self.cfg.invconv)).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dequantizer = (build_dequantizer(C, self.levels).to(self.device)
                            if self.cfg.dequant == "variational" else None)
        # every trained parameter, listed once: the optimizer and the clip share this list
        self.params = [p for m in self.trained_modules() for p in m.parameters()]
        # the official optimizer: Adam with default betas; no weight decay (L2 is in the loss)
        self.optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr)
        self.l2_params = l2_parameters(self.model)  # looked up once, not every step
        self.ema, self._ema_source = (make_ema(self.model, self.dequantizer, self.cfg.ema)
                                      if self.cfg.ema else (None, None))
        # dequantization noise and flips: one generator per rank, on the data's device
        self.aug = torch.Generator(device=self.device).manual_seed(
            self.cfg.seed * 1000 + self.env.rank + 1)
        self.net, self.deq_net = wrap(self.model, self.env), wrap(self.dequantizer, self.env)
        if self.cfg.compile:
            self.net = torch.compile(self.net, backend=self.cfg.compile_backend)

    def trained_modules(self) -> list[nn.Module]:
        """The flow, and the variational dequantizer if there is one."""
        return [self.model] + ([self.dequantizer] if self.dequantizer is not None else [])

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated, sampled and selected: the EMA of the weights if on."""
        if self.ema is None:
            return self.model
        return self.ema.module["flow"] if self.dequantizer is not None else self.ema.module

    @property
    def eval_dequantizer(self) -> nn.Module | None:
        """The dequantizer that goes with :attr:`eval_model`: its EMA if the EMA is on."""
        if self.ema is None or self.dequantizer is None:
            return self.dequantizer
        return self.ema.module["dequantizer"]
