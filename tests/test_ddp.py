"""Multi-process training with torchrun + DistributedDataParallel (gloo backend, on CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvp_edu.checkpoint import load_checkpoint
from nvp_edu.train import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(out, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", "--master_port=0", "--rdzv_backend=c10d",
           "--rdzv_endpoint=127.0.0.1:0", "-m", "nvp_edu.train",
           "--dataset", "synthetic", "--preset", "tiny", "--device", "cpu",
           "--batch-size", "4", "--limit-train", "32", "--limit-test", "8",
           "--num-samples", "4", "--log-every", "1", "--no-progress", "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_torchrun_two_ranks_stay_in_sync_and_rank0_writes_once(tmp_path):
    out = tmp_path / "ddp"
    r = _torchrun(out, "--max-steps", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # stop and resume: every rank restores its own random state from rank 0's checkpoint
    r = _torchrun(out, "--max-steps", "3", "--resume")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stderr.count("resumed from") == 1  # rank 0 reports it, once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert [rk["rank"] for rk in summary["ranks"]] == [0, 1]
    assert all(rk["steps"] == 3 for rk in summary["ranks"])
    assert summary["ranks_in_sync"], summary["ranks"]
    # one process logs: each step once, and one summary line on stdout
    steps = [rec["step"] for rec in read_metrics(out) if rec["kind"] == "train"]
    assert steps == [1, 2, 3]
    assert r.stdout.count('"world_size": 2') == 1
    # 32 images / 2 ranks / batch 4 = 4 steps per epoch; images/s counts both ranks
    assert summary["epochs"] == 0.75
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng_per_rank"]) == 2
    # each rank drew its own noise: the two saved generator states differ
    g0, g1 = (s["generators"]["aug"] for s in ckpt["rng_per_rank"])
    assert not torch.equal(g0, g1)


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_actnorm_initializes_the_same_on_every_rank(tmp_path):
    # each rank sees other images: without averaging the init over ranks, the replicas'
    # actnorm parameters would differ from the first step on
    out = tmp_path / "ddp"
    r = _torchrun(out, "--max-steps", "2", "--norm", "actnorm", "--invconv")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["norm"] == "actnorm" and summary["ranks_in_sync"], summary["ranks"]
