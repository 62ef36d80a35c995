"""scripts/_env.sh picks where torch comes from on purpose (README, "The three commands"):
an index the user names, else PyTorch's CPU-only index on a Linux machine without an
NVIDIA GPU (PyPI's Linux torch is the multi-GB CUDA build), else pip's default."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "_env.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_index(tmp_path: Path, *, gpu: bool, index_answers: bool, env: dict | None = None) -> str:
    """Run _env.sh's torch_index() with a fake nvidia-smi and a fake probe of the index."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if gpu:
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    # Only uname besides the fakes: a real nvidia-smi on the machine must not leak in.
    uname = shutil.which("uname")
    if not (bin_dir / "uname").exists():
        (bin_dir / "uname").symlink_to(uname)
    probe = bin_dir / "fake-python"
    probe.write_text(f"#!/bin/sh\nexit {0 if index_answers else 1}\n")
    probe.chmod(0o755)
    text = SCRIPT.read_text()
    start = text.index("torch_index() {")
    function = text[start:text.index("\n}\n", start) + 3]
    script = f'CPU_INDEX="{CPU_INDEX}"\nPYTHON="{probe}"\n{function}\ntorch_index\n'
    full_env = {"PATH": str(bin_dir), **(env or {})}
    return subprocess.run([shutil.which("bash"), "-c", script], env=full_env, capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the CPU index rule is for Linux")
def test_linux_without_gpu_takes_the_cpu_index(tmp_path):
    assert torch_index(tmp_path, gpu=False, index_answers=True) == CPU_INDEX


def test_gpu_or_unreachable_index_keeps_pips_default(tmp_path):
    assert torch_index(tmp_path, gpu=True, index_answers=True) == ""
    assert torch_index(tmp_path, gpu=False, index_answers=False) == ""


def test_named_index_wins(tmp_path):
    url = "https://download.pytorch.org/whl/cu126"
    for gpu in (True, False):
        assert torch_index(tmp_path, gpu=gpu, index_answers=True,
                           env={"NVP_EDU_TORCH_INDEX": url}) == url
