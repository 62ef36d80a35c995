"""scripts/gpu_check.py runs its every code path on CPU (--smoke), so it cannot rot."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_prints_one_json_document():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--smoke"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)  # stdout is exactly one JSON document
    rows = report["throughput"]
    assert {(row["dtype"], row["compile"]) for row in rows} == {
        ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert all(row["img_per_s"] > 0 and row["peak_mem_mb"] > 0 for row in rows)
    train = report["training"]
    for precision in ("bf16", "fp16", "fp32"):
        assert train[precision]["test_bpd_end"] < train[precision]["test_bpd_start"]
    assert train["fp16"]["loss_scale_end"] > 0  # fp16 trained through the gradient scaler
    assert report["failed"] == []
    # the same steps from the same seed: bf16 and fp32 end close together
    assert abs(train["bf16_minus_fp32_bpd"]) < 0.1
    assert report["torchrun"]["ok"] and report["torchrun"]["world_size"] == 2
    assert report["torchrun"]["ranks_in_sync"]


def test_gpu_check_refuses_without_a_gpu_unless_smoke():
    import pytest
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the refusal is for CPU-only machines")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "no CUDA device" in r.stderr and "--smoke" in r.stderr
