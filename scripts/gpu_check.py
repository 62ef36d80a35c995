"""Prove the GPU path in one command: throughput, precision, compile, a short real training
and torchrun, as one JSON document on stdout (about 5 minutes on one GPU).

    python scripts/gpu_check.py             # on a machine with CUDA
    python scripts/gpu_check.py --smoke     # the same code paths on CPU, tiny sizes (< 2 min)

Sections of the JSON document:

- ``throughput``: images/s, seconds per step, peak memory and MFU of the paper preset's
  training step (``benchmarks/throughput.py``) at fp32 (TF32 on CUDA) and bf16, each
  without and with ``torch.compile``;
- ``training``: the paper preset trained on the photos (``nvp_edu.photos``) for about
  ``--train-seconds`` in bf16, held-out bits/dim at the start and the end, then the same
  number of steps in fp16 with the gradient scaler (the path of T4/V100 GPUs; its final
  loss scale) and in fp32 from the same seed, and the gaps to fp32;
- ``torchrun``: a few dozen steps over every visible GPU with DistributedDataParallel,
  whether the ranks' weights agree at the end;
- ``paper_run_estimate_hours``: 100 epochs of CIFAR-10 (50,000 images) at the best
  measured bf16 throughput, one GPU.

The smoke mode (tiny preset, CPU, gloo) runs in the test suite so this script cannot rot;
its figures mean nothing. A part that fails (an exception, or torchrun's non-zero exit) is
reported in the JSON as ``{"ok": false, ...}``, listed under ``failed``, named on stderr,
and the exit status is 1; the other parts still run.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nvp_edu.train import Config, Trainer, _Dist  # noqa: E402


def _throughput_module():
    spec = importlib.util.spec_from_file_location("throughput", ROOT / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def throughput(smoke: bool) -> list[dict]:
    bench = _throughput_module()
    # smoke: dynamo's graph capture with the eager backend (inductor's C++ build takes
    # minutes on a CPU); the GPU run compiles with inductor
    size = ["--preset", "tiny", "--batch", "8", "--steps", "1", "--warmup", "1",
            "--compile-backend", "eager"] if smoke else \
        ["--preset", "paper", "--batch", "64", "--steps", "20", "--warmup", "5", "--count-flops"]
    rows = []
    for precision in ("fp32", "bf16"):
        for compiled in (False, True):
            args = [*size, "--precision", precision] + (["--compile"] if compiled else [])
            start = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # stdout: one JSON document only
                r = bench.main(args)
            r["seconds_incl_compile"] = round(time.perf_counter() - start, 1)
            rows.append(r)
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rows


def _trainer(precision: str, steps: int, smoke: bool) -> Trainer:
    cfg = Config(dataset="photos", preset="tiny" if smoke else "paper", out=None,
                 precision=precision, max_steps=steps, eval_every=steps, seed=0,
                 limit_train=64 if smoke else None, limit_test=16 if smoke else None,
                 batch_size=8 if smoke else 64, progress=False, plots=False)
    return Trainer(cfg, _Dist("cpu" if smoke else "auto"))


def training(smoke: bool, seconds: float, img_per_s: float) -> dict:
    """bf16 for about ``seconds``, then fp16 (autocast + gradient scaler, the path of T4 and
    V100) and fp32 for the same steps: held-out bits/dim of each."""
    batch = 8 if smoke else 64
    steps = 4 if smoke else max(10, int(seconds * img_per_s / batch))
    out = {"dataset": "photos", "preset": "tiny" if smoke else "paper", "steps": steps}
    for precision in ("bf16", "fp16", "fp32"):
        trainer = _trainer(precision, steps, smoke)
        if smoke:
            # 4 steps cannot generalise from the first 64 patches (one photograph) to a
            # held-out one; the smoke run checks that each precision learns, so it scores
            # 16 of the images it trains on
            trainer.test_x = trainer.train_x[:16]
        start_bpd = trainer.evaluate(trainer.model, trainer.test_x)
        t = time.perf_counter()
        result = trainer.run()
        out[precision] = {"test_bpd_start": round(start_bpd, 4),
                          "test_bpd_end": round(result.summary["test_bpd"], 4),
                          "seconds": round(time.perf_counter() - t, 1)}
        if trainer.precision.scaler is not None:
            out[precision]["loss_scale_end"] = trainer.precision.scaler.get_scale()
    for precision in ("bf16", "fp16"):
        out[f"{precision}_minus_fp32_bpd"] = round(
            out[precision]["test_bpd_end"] - out["fp32"]["test_bpd_end"], 4)
    return out


def run_torchrun(smoke: bool) -> dict:
    nproc = 2 if smoke else max(torch.cuda.device_count(), 1)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", "--master_port=0", "--rdzv_backend=c10d",
               "--rdzv_endpoint=127.0.0.1:0", "-m", "nvp_edu.train", "--dataset", "photos",
               "--preset", "tiny" if smoke else "paper", "--max-steps", "3" if smoke else "40",
               "--out", tmp, "--no-plots", "--no-progress"]
        if smoke:
            cmd += ["--device", "cpu", "--batch-size", "4", "--limit-train", "32",
                    "--limit-test", "8"]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return {"ok": False, "nproc": nproc, "stderr_tail": r.stderr[-2000:]}
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    return {"ok": True, "nproc": nproc, "world_size": summary["world_size"],
            "steps": summary["steps"], "ranks_in_sync": summary["ranks_in_sync"],
            "mean_img_per_s": round(summary["mean_img_per_s"], 1),
            "seconds": round(time.perf_counter() - t, 1)}


def _part(report: dict, name: str, fn, *args) -> None:
    """Run one part into ``report[name]``; an exception is recorded, not raised, so that
    the other parts still run and the report says which part failed."""
    try:
        report[name] = fn(*args)
    except Exception as e:  # noqa: BLE001 (reported, and the exit status says so)
        report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}


def failed_parts(report: dict) -> list[str]:
    """The parts whose result says they failed (``"ok": False``)."""
    return [k for k, v in report.items() if isinstance(v, dict) and v.get("ok") is False]


def main(argv: list[str] | None = None) -> int:
    """Print the report (one JSON document); exit status 1 if any part failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: test the code paths")
    p.add_argument("--train-seconds", type=float, default=120.0)
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "training", "torchrun"])
    a = p.parse_args(argv)
    if not a.smoke and not torch.cuda.is_available():
        p.error("no CUDA device: run on a GPU machine, or use --smoke to test the code paths")
    if a.smoke:
        torch.set_num_threads(1)
    report: dict = {"smoke": a.smoke, "torch": torch.__version__,
                    "device": "cpu" if a.smoke else torch.cuda.get_device_name(),
                    "gpus": 0 if a.smoke else torch.cuda.device_count()}
    start = time.perf_counter()
    if "throughput" not in a.skip:
        _part(report, "throughput", throughput, a.smoke)
    rows = report.get("throughput", [])
    bf16 = [r["img_per_s"] for r in rows if isinstance(rows, list) and r["dtype"] == "bf16"]
    best = max(bf16) if bf16 else 1.0
    if bf16:
        report["paper_run_estimate_hours"] = round(100 * 50_000 / best / 3600, 2)
    if "training" not in a.skip:
        _part(report, "training", training, a.smoke, a.train_seconds, best)
    if "torchrun" not in a.skip:
        _part(report, "torchrun", run_torchrun, a.smoke)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    report["failed"] = failed_parts(report)
    print(json.dumps(report, indent=1))
    for name in report["failed"]:
        why = report[name].get("error") or report[name].get("stderr_tail", "")[-300:]
        print(f"error: gpu_check part {name!r} failed: {' '.join(why.split())}", file=sys.stderr)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
