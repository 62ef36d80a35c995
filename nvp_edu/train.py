"""One trainer for the paper's multi-scale Real NVP: CIFAR-10, digits, or synthetic data.

    python -m nvp_edu.train --dataset cifar10 --preset paper --out runs/cifar
    python -m nvp_edu.train --dataset synthetic --preset tiny --out runs/smoke --max-steps 20
    torchrun --nproc_per_node=4 -m nvp_edu.train --dataset cifar10 --preset paper --out runs/c4

The objective is the paper's (section 4.1): bits/dim of dequantized data, with the model
run in logit space (section 4.1, "we model the density of logit(alpha + (1 - alpha) * x)")
and the logit's log-det counted:

    bpd = ( -log p_Z(f(y)) - log|det df/dy| - log|det dy/dx| + D ln(levels) ) / (D ln 2)

Optimizer as in the official code: Adam, lr 1e-3, L2 5e-5 on the weight-norm scale
parameters ``g`` (section 4.1, "L2 regularization on the weight scale parameters with
coefficient 5e-5"; applied as Adam's coupled weight decay on those parameters only,
i.e. the gradient of ``(5e-5 / 2) * ||g||^2`` is added), gradient clipping at norm 100,
horizontal flips for CIFAR-10.

What a run folder holds (``--out``): ``metrics.jsonl`` (one JSON object per logged step
and per evaluation), ``metrics.png`` (plots of it), ``samples/step_NNNNNNN.png``
(sample grids), ``checkpoint.pt`` (atomic, ``weights_only``-loadable, resumable
bit-for-bit with ``--resume``) and ``summary.json``.

GPU path: ``--precision bf16`` runs the s/t networks under bf16 autocast while the
coupling's ``exp(s)``, every log-det and the prior stay in float32 (the coupling casts
``s, t`` to float32; batch-norm flows and the prior compute in the dtype of the flow's
activations, which stay float32); channels_last memory format and TF32 on CUDA;
``--compile`` wraps the model in ``torch.compile``.

Multi-GPU: under ``torchrun`` each process trains on its shard of every epoch
(``DistributedSampler``) with DistributedDataParallel; ``--batch-size`` is per process.
Rank 0 alone writes logs, samples and checkpoints; the checkpoint keeps every rank's
random state. Batch norm is **not** synchronized across ranks (no SyncBatchNorm): each
rank's ``BatchNormFlow`` normalizes its own mini-batch and counts the log-det of exactly
that map, so every rank optimizes an exact flow likelihood of its own batch (with
SyncBatchNorm a sample's log-likelihood would depend on other GPUs' data, and the custom
flow layer would need its own all-reduce). The per-GPU batch (64 in the paper preset)
gives 64x32x32 values per channel, plenty for stable statistics. Running averages are
broadcast from rank 0 at every forward (DDP's ``broadcast_buffers``), so evaluation and
checkpoints use one consistent set.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import seed_everything
from .ledger import bits_per_dim as ledger_bits_per_dim
from .models import RealNVP
from .nets import param_groups
from .preprocess import LOGIT_ALPHA, Logit, dequantize
from .prior import standard_normal_log_prob

PRESETS: dict[str, dict[str, int]] = {
    # the paper's CIFAR-10 model: "downscale only once", 8 residual blocks, 64 features
    "paper": dict(num_scales=2, mid_channels=64, num_blocks=8, batch_size=64, epochs=100,
                  num_samples=64),
    # small enough for CI on two CPU cores
    "tiny": dict(num_scales=2, mid_channels=8, num_blocks=1, batch_size=16, epochs=1,
                 num_samples=16),
}
CHECKPOINT_NAME = "checkpoint.pt"


# Preprocessing (notebook 6, nvp_edu.preprocess): dequantization (paper section 4.1,
# "jittering") and the logit with the official code's constraint p = 0.05 + 0.9 x.
_LOGIT = Logit(LOGIT_ALPHA)


def to_model_space(x_uint8: Tensor, levels: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Integer images -> logit space: ``y = logit(alpha + (1 - 2 alpha)(x + u) / levels)``.

    Returns ``y`` (float32) and the per-sample log-det of ``(x + u)/levels -> y``.
    """
    return _LOGIT(dequantize(x_uint8, levels, generator))


def from_model_space(y: Tensor) -> Tensor:
    """Inverse of the logit: model space -> images in [0, 1] (clamped, for display)."""
    return _LOGIT.inverse(y.float()).clamp(0, 1)


def bits_per_dim(log_prob_model_space: Tensor, logit_log_det: Tensor, D: int,
                 levels: int) -> Tensor:
    """Bits/dim of the discrete data: ``(-(log p(y) + logdet) + D ln levels) / (D ln 2)``.

    ``log p(y) + logdet`` is the log-density of the dequantized data scaled to [0, 1]
    (see :func:`nvp_edu.ledger.bits_per_dim`).
    """
    return ledger_bits_per_dim(-(log_prob_model_space + logit_log_det), D, levels)


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; no step was taken with it."""


@dataclass
class Config:
    """Every setting of a run (the CLI's flags; see ``python -m nvp_edu.train --help``)."""

    dataset: str = "synthetic"
    preset: str = "tiny"
    out: str = "runs/default"
    max_steps: int | None = None
    epochs: int | None = None
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool | None = None
    data_root: str = "data"
    download: bool = True
    lr: float = 1e-3
    l2: float = 5e-5
    grad_clip: float = 100.0
    log_every: int = 10
    eval_every: int = 0
    ckpt_every: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    num_samples: int | None = None
    progress: bool = True


# ----------------------------------------- data ----------------------------------------

def synthetic_images(n: int, seed: int, size: int = 32) -> Tensor:
    """CIFAR-shaped uint8 images (n, 3, size, size): smooth random colour fields plus noise.

    Deterministic in ``seed``. For smoke runs and CI where the real tarball is absent.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                       align_corners=False)
    noisy = smooth + 0.08 * torch.randn(n, 3, size, size, generator=g)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def load_data(cfg: Config) -> tuple[Tensor, Tensor, int, bool]:
    """``(train, test, levels, flip)``: uint8 images (N, C, H, W), intensity levels, flips."""
    if cfg.dataset == "cifar10":
        from .cifar import CIFAR10
        train = CIFAR10(cfg.data_root, train=True, download=cfg.download).data
        test = CIFAR10(cfg.data_root, train=False, download=cfg.download).data
        levels, flip = 256, True
    elif cfg.dataset == "synthetic":
        train, test = synthetic_images(2048, seed=1), synthetic_images(512, seed=2)
        levels, flip = 256, True
    elif cfg.dataset == "digits":
        from .data import DIGITS_LEVELS, load_digits_split
        train, test = load_digits_split()
        levels, flip = DIGITS_LEVELS, False  # a mirrored digit is not a digit
    else:
        raise ValueError(f"dataset must be one of cifar10, digits, synthetic; got "
                         f"{cfg.dataset!r}")
    if cfg.limit_train:
        train = train[:cfg.limit_train]
    if cfg.limit_test:
        test = test[:cfg.limit_test]
    return train, test, levels, flip


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2 (the paper's augmentation)."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


# -------------------------------------- helpers ----------------------------------------

def build_model(preset: str, in_channels: int, image_size: int) -> RealNVP:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    p = PRESETS[preset]
    return RealNVP(in_channels, image_size, num_scales=p["num_scales"],
                   mid_channels=p["mid_channels"], num_blocks=p["num_blocks"])


def model_bpd(net: nn.Module, x_uint8: Tensor, levels: int, generator: torch.Generator,
              autocast: Any, channels_last: bool) -> Tensor:
    """Per-sample bits/dim of integer images under ``net`` (dequantized with ``generator``)."""
    y, logit_ld = to_model_space(x_uint8, levels, generator)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last)
    with autocast:
        z, log_det = net(y)
    # the prior and the log-dets in float32 even when the s/t networks ran in bf16
    log_p = standard_normal_log_prob(z.float()) + log_det.float()
    return bits_per_dim(log_p, logit_ld, x_uint8[0].numel(), levels)


def fingerprint(model: nn.Module) -> float:
    """A number that differs when any parameter does (to compare replicas across ranks)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(model.parameters()):
        total += (i + 1) * p.detach().double().cpu().sum() + p.detach().double().cpu().pow(2).sum()
    return float(total)


def save_grid(images: Tensor, path: Path, title: str) -> None:
    """A grid of [0, 1] images as a PNG.

    Uses a bare ``matplotlib.figure.Figure`` (no pyplot): it never touches the backend,
    so figures inside a notebook keep displaying inline.
    """
    from matplotlib.figure import Figure

    from .plotting import image_grid
    n = images.shape[0]
    side = max(2.0, 0.6 * math.ceil(math.sqrt(n)))
    fig = Figure(figsize=(side, side + 0.3))
    image_grid(images, ax=fig.add_subplot(), title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(run_dir: str | os.PathLike) -> Path:
    """``metrics.png``: train/held-out bits/dim and throughput against steps."""
    from matplotlib.figure import Figure

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig = Figure(figsize=(10, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([r["step"] for r in train], [r["bpd"] for r in train], label="train (batch)")
    if evals:
        ax1.plot([r["step"] for r in evals], [r["test_bpd"] for r in evals], "o-",
                 label="held-out")
    ax1.set(xlabel="step", ylabel="bits/dim", title="bits/dim")
    ax1.legend()
    ax2.plot([r["step"] for r in train], [r["img_per_s"] for r in train])
    ax2.set(xlabel="step", ylabel="images/s", title="throughput (all ranks)")
    fig.tight_layout()
    path = Path(run_dir) / "metrics.png"
    fig.savefig(path, dpi=100)
    return path


class _Dist:
    """Rank/world bookkeeping; a single process is world size 1."""

    def __init__(self, device_arg: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        want_cuda = device_arg in ("auto", "cuda") and torch.cuda.is_available()
        if device_arg not in ("auto", "cuda", "cpu", "mps") and not device_arg.startswith("cuda:"):
            raise ValueError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {device_arg!r}")
        if device_arg.startswith("cuda:"):
            self.device = torch.device(device_arg)
        elif want_cuda:
            self.device = torch.device("cuda", self.local_rank if self.world > 1 else 0)
        elif device_arg == "mps" or (device_arg == "auto" and self.world == 1
                                     and getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
            self.device = torch.device("mps")
        else:
            self.device = torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: Tensor) -> bool:
        """True on every rank if the 0-d bool tensor ``flag`` is true on any rank.

        One host synchronization (the ``.item()``), shared by all ranks' flags.
        """
        t = flag.float().reshape(1)
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            # rank 0 still writes the summary after the last collective; tearing gloo down
            # on one rank while the other is busy aborts it ("terminate called ...")
            dist.barrier()
            dist.destroy_process_group()


# --------------------------------------- trainer ---------------------------------------

def train(cfg: Config) -> dict[str, Any]:
    """Run (or resume) a training run; return the summary also written to ``summary.json``."""
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16; got {cfg.precision!r}")
    preset = PRESETS.get(cfg.preset)
    if preset is None:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {cfg.preset!r}")
    env = _Dist(cfg.device)
    try:
        return _train(cfg, preset, env)
    finally:
        env.close()


def _train(cfg: Config, preset: dict[str, int], env: _Dist) -> dict[str, Any]:
    device = env.device
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT_NAME
    batch = cfg.batch_size or preset["batch_size"]
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any float32 matmul/conv left
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"

    seed_everything(cfg.seed)  # same on every rank: identical initial replicas
    train_x, test_x, levels, flip = load_data(cfg)
    train_x, test_x = train_x.to(device), test_x.to(device)
    C, H, W = train_x.shape[1:]
    D = C * H * W
    model = build_model(cfg.preset, C, H).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(param_groups(model, cfg.l2), lr=cfg.lr)
    # dequantization noise and flips: one generator per rank, on the data's device
    aug = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + env.rank + 1)

    # data order: DistributedSampler's permutation is a function of (seed, epoch), so the
    # position in the run is fully given by the step counter (one process = 1 replica)
    from torch.utils.data.distributed import DistributedSampler
    sampler = DistributedSampler(range(len(train_x)), num_replicas=env.world, rank=env.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // batch
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch} x {env.world} process(es) is larger than the "
                         f"training set ({len(train_x)} images)")
    epochs = cfg.epochs if cfg.epochs is not None else preset["epochs"]
    total = epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if cfg.epochs is not None else cfg.max_steps

    step, last_ckpt_step = 0, None
    if cfg.resume and ckpt_path.is_file():
        # on the CPU: random states must be CPU tensors; load_state_dict copies to the device
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")
        for key in ("dataset", "preset"):
            if ckpt["config"][key] != getattr(cfg, key):
                raise ValueError(f"--resume: {ckpt_path} was trained with --{key} "
                                 f"{ckpt['config'][key]}; got --{key} {getattr(cfg, key)}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        per_rank = ckpt["rng_per_rank"]
        if len(per_rank) == env.world:
            restore_rng_state(per_rank[env.rank], {"aug": aug})
        else:  # another world size: the data split differs anyway; reseed deterministically
            aug.manual_seed(cfg.seed * 1000 + env.rank + 1 + ckpt["step"])
        step = last_ckpt_step = int(ckpt["step"])
        if env.main:
            print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
            _truncate_metrics(out, step)
    elif cfg.resume and env.main:
        print(f"--resume: no checkpoint at {ckpt_path}; starting from scratch", file=sys.stderr)

    net: nn.Module = model
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
                else nullcontext())

    def checkpoint() -> None:
        nonlocal last_ckpt_step
        rngs = env.gather(capture_rng_state({"aug": aug}))  # every rank's state, for resume
        if env.main:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng_per_rank": rngs, "step": step, "epoch": step // steps_per_epoch,
                "world_size": env.world,
                "config": asdict(cfg),
            })
        last_ckpt_step = step

    def evaluate() -> float:
        model.eval()
        g = torch.Generator(device=device).manual_seed(12345)  # same noise every evaluation
        total_bits, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(test_x), 4 * batch):
                xb = test_x[i:i + 4 * batch]
                total_bits += float(model_bpd(model, xb, levels, g, autocast, channels_last).sum())
                n += len(xb)
        model.train()
        return total_bits / n

    def write_samples() -> None:
        model.eval()
        g = torch.Generator(device=device).manual_seed(2024)
        n = cfg.num_samples or preset["num_samples"]
        with torch.no_grad():
            y = model.sample(n, temperature=1.0, generator=g)
        model.train()
        save_grid(from_model_space(y), out / "samples" / f"step_{step:07d}.png",
                  f"{cfg.dataset} samples, step {step}, T=1.0")

    def log(record: dict[str, Any]) -> None:
        if env.main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    from tqdm import tqdm  # the text bar: works in terminals, logs and notebooks alike
    bar = tqdm(total=total, initial=step, disable=not (env.main and cfg.progress),
               desc=f"{cfg.dataset}/{cfg.preset}", unit="step",
               mininterval=1.0 if sys.stderr.isatty() else 10.0)  # few lines in files/notebooks
    model.train()
    order: list[int] = []
    order_epoch = -1
    window_start, window_steps = time.perf_counter(), 0
    t_start, images_seen, test_bpd = time.perf_counter(), 0, None
    while step < total:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            sampler.set_epoch(epoch)
            order, order_epoch = list(sampler), epoch
        idx = torch.tensor(order[i * batch:(i + 1) * batch], device=device)
        xb = train_x[idx]
        if flip:
            xb = random_hflip(xb, aug)
        bpd = model_bpd(net, xb, levels, aug, autocast, channels_last)
        loss = bpd.mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # one device-to-host sync per step: the guard must know before optimizer.step()
        bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm))
        if env.any(bad):
            optimizer.zero_grad(set_to_none=True)
            bar.close()
            where = (f"last good checkpoint: {ckpt_path} (step {last_ckpt_step}), kept "
                     "untouched" if last_ckpt_step is not None else "no checkpoint was written "
                     "yet")
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {step + 1} (loss {loss.item()}, grad "
                f"norm {grad_norm.item()}): training stopped without taking that step; "
                f"{where}. Resume with --resume, e.g. with a lower --lr or --precision fp32.")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        images_seen += batch * env.world
        bar.update(1)
        end_of_epoch = step % steps_per_epoch == 0
        if step % cfg.log_every == 0 or step == total:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            ips = window_steps * batch * env.world / (now - window_start)
            rec = {"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                   "loss": loss.item(), "bpd": loss.item(), "grad_norm": grad_norm.item(),
                   "img_per_s": ips, "lr": optimizer.param_groups[0]["lr"]}
            log(rec)
            bar.set_postfix(bpd=f"{rec['bpd']:.3f}", img_s=f"{ips:.1f}", refresh=False)
            window_start, window_steps = time.perf_counter(), 0
        due_eval = (step % cfg.eval_every == 0) if cfg.eval_every else end_of_epoch
        if due_eval or step == total:
            if env.main:
                test_bpd = evaluate()
                log({"kind": "eval", "step": step, "epoch": step / steps_per_epoch,
                     "test_bpd": test_bpd})
                write_samples()
                plot_metrics(out)
                bar.write(f"step {step}: held-out {test_bpd:.4f} bits/dim")
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or due_eval or step == total:
            checkpoint()
            window_start = time.perf_counter()  # don't count eval/checkpoint time as training
    bar.close()

    ranks = env.gather({"rank": env.rank, "steps": step, "fingerprint": fingerprint(model)})
    summary = {"dataset": cfg.dataset, "preset": cfg.preset, "steps": step,
               "epochs": step / steps_per_epoch, "world_size": env.world,
               "device": str(device), "precision": cfg.precision, "compile": cfg.compile,
               "channels_last": channels_last, "batch_per_process": batch,
               "test_bpd": test_bpd, "ranks": ranks,
               "ranks_in_sync": len({r["fingerprint"] for r in ranks}) == 1,
               "wall_s": time.perf_counter() - t_start,
               "mean_img_per_s": images_seen / max(time.perf_counter() - t_start, 1e-9)}
    if env.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        if read_metrics(out):
            plot_metrics(out)
    return summary


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop records logged after the checkpoint, so a resumed run never duplicates steps."""
    keep = [r for r in read_metrics(out) if r["step"] <= step]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))


# ------------------------------------------ CLI ----------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m nvp_edu.train",
        description="Train the paper's multi-scale Real NVP (Dinh et al. 2017) and report "
                    "bits/dim. Multi-GPU: torchrun --nproc_per_node=N -m nvp_edu.train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=["cifar10", "digits", "synthetic"], default="synthetic",
                   help="cifar10: the official tarball in --data-root (downloaded if "
                        "missing); digits: scikit-learn's 8x8 digits; synthetic: CIFAR-shaped "
                        "random images for smoke runs")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="paper: RealNVP(num_scales=2, mid_channels=64, num_blocks=8), batch 64,"
                        " 100 epochs; tiny: mid_channels=8, num_blocks=1, batch 16, 1 epoch")
    p.add_argument("--out", required=True, help="run folder: metrics, samples, checkpoint")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (counting steps "
                        "before a resume)")
    p.add_argument("--epochs", type=int, default=None,
                   help="number of epochs (default: the preset's); with --max-steps, "
                        "whichever comes first")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt exactly where it stopped (model, "
                        "optimizer, every random state, step)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, data order and noise")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step per process (default: the preset's)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast the s/t networks to bfloat16; log-dets and the prior "
                        "stay float32")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA, off on CPU)")
    p.add_argument("--data-root", default="data", help="folder holding cifar-10-python.tar.gz")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail with instructions if the tarball is missing")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--l2", type=float, default=5e-5,
                   help="L2 on the weight-norm scale parameters (paper: 5e-5)")
    p.add_argument("--grad-clip", type=float, default=100.0, help="max gradient norm")
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
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no tqdm progress bar")
    return Config(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        summary = train(cfg)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:  # e.g. no CIFAR-10 tarball and no network: say what to do
        print(f"error: {e}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "ranks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
