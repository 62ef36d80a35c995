"""Images/s of one full training step of the paper's CIFAR-10 Real NVP; one JSON line.

A step is exactly the trainer's (``nvp_edu.train.Trainer.train_step``): dequantize +
logit, forward of RealNVP(3, 32, num_scales=2, mid_channels=64, num_blocks=8), prior +
log-dets in float32, NLL in nats + the L2 term, backward, gradient clipping at 100, the
NaN guard, Adam step.

    python benchmarks/throughput.py                       # current device, fp32
    python benchmarks/throughput.py --precision bf16 --channels-last --threads 2
    python benchmarks/throughput.py --profile             # op table on stderr first

Prints ``{"device", "dtype", "compile", "channels_last", "threads", "batch", "img_per_s",
"s_per_step", "peak_mem_mb", "flops_per_step", "achieved_tflops", "mfu"}``. FLOPs are
counted with ``torch.utils.flop_counter.FlopCounterMode`` over one step (forward and
backward: convolutions and matmuls; elementwise ops are not counted) -- on by default on
CUDA, ``--count-flops`` elsewhere. MFU divides achieved FLOP/s by the device's dense
peak for the dtype (known for a few GPUs; null otherwise).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from nvp_edu.train import Config, Trainer, _Dist, model_bpd

# dense peak TFLOP/s (no sparsity), per dtype: fp32 here means TF32 tensor cores
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 494.0}, "H100": {"bf16": 989.0, "fp32": 494.0},
    "A100": {"bf16": 312.0, "fp32": 156.0}, "L4": {"bf16": 121.0, "fp32": 60.0},
    "RTX 4090": {"bf16": 165.0, "fp32": 82.6},
}


def _peak(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks.get(precision)
    return None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="fp16: autocast with the trainer's gradient scaler")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (eager: graph capture only, for smoke tests)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for CUDA, off on CPU")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--preset", default="paper")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3 CPU, 20 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 1 CPU, 5 GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--count-flops", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--relu-inplace", action="store_true",
                   help="experiment: make every nn.ReLU in the s/t nets in-place (a "
                        "suggested change to nets.py, measured here without editing it)")
    p.add_argument("--profile", action="store_true",
                   help="profile one step with torch.profiler; top ops to stderr")
    a = p.parse_args(argv)

    from nvp_edu.config import get_device
    device = get_device(None if a.device == "auto" else a.device)
    gpu = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    channels_last = gpu if a.channels_last is None else a.channels_last
    steps = a.steps or (20 if gpu else 3)
    warmup = a.warmup if a.warmup is not None else (5 if gpu else 1)

    cfg = Config(dataset="synthetic", preset=a.preset, out=None, batch_size=a.batch,
                 precision=a.precision, compile=a.compile,
                 compile_backend=a.compile_backend, channels_last=channels_last,
                 device=str(device), limit_train=a.batch, limit_test=a.batch, progress=False)
    trainer = Trainer(cfg, _Dist(cfg.device))
    model = trainer.model
    if a.relu_inplace:  # safe after BatchNorm2d: its backward needs its input, not output
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True
    autocast, gen = trainer.autocast, trainer.aug
    x = torch.randint(0, 256, (a.batch, 3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0)).to(device)

    def step() -> None:
        trainer.train_step(x)

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
        with profile(activities=acts) as prof:
            step()
            sync()
        key = "self_cuda_time_total" if gpu else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=20), file=sys.stderr)
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu_times = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    s_per_step = statistics.median(times)

    flops = None
    if a.count_flops if a.count_flops is not None else gpu:
        from torch.utils.flop_counter import FlopCounterMode
        # count on the eager model: the counter sees aten ops, which compile would hide
        counter = FlopCounterMode(display=False)
        with counter:
            loss = model_bpd(model, x, 256, gen, autocast, channels_last).mean()
            loss.backward()
        trainer.optimizer.zero_grad(set_to_none=True)
        flops = counter.get_total_flops()
    achieved = flops / s_per_step / 1e12 if flops else None
    peak = _peak(device, a.precision)
    if gpu:
        peak_mem = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # the process's peak resident set (Linux reports KiB)
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": a.precision, "compile": a.compile, "channels_last": channels_last,
        "threads": torch.get_num_threads(), "relu_inplace": a.relu_inplace, "batch": a.batch, "preset": a.preset,
        "img_per_s": round(a.batch / s_per_step, 3), "s_per_step": round(s_per_step, 4),
        "s_per_step_all": [round(t, 4) for t in times],
        # CPU seconds this process used per step (all threads): on a shared machine this
        # is steadier than wall time; with 1 thread it is the unloaded wall time, roughly
        "cpu_s_per_step": round(statistics.median(cpu_times), 4),
        "peak_mem_mb": round(peak_mem, 1), "flops_per_step": flops,
        "achieved_tflops": round(achieved, 4) if achieved else None,
        "mfu": round(achieved / peak, 4) if achieved and peak else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
