"""benchmarks/toy2d.py: per-dataset defaults, the MLP-depth option and the JSON it prints."""
import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "toy2d.py"


def _load():
    spec = importlib.util.spec_from_file_location("toy2d", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_model_depth():
    toy2d = _load()
    deep = toy2d.build_model(couplings=2, hidden=8, mlp_depth=3)
    linears = [m for m in deep.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 4  # 3 hidden layers + output, per coupling
    assert len([m for m in toy2d.build_model(2, 8).modules() if isinstance(m, torch.nn.Linear)]) == 2 * 3
    x = torch.randn(5, 2)
    torch.testing.assert_close(deep.inverse(deep(x)[0]), x)  # still a flow (identity at start)


def test_smoke_run_prints_one_json_line(capsys, one_thread):
    toy2d = _load()
    assert toy2d.main(["--dataset", "checkerboard", "--n-train", "300", "--steps", "3",
                       "--couplings", "2", "--hidden", "8", "--no-baselines"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["config"]["lr"] == toy2d.DEFAULTS["checkerboard"]["lr"]  # per-dataset default
    assert out["config"]["mlp_depth"] == 2 and out["config"]["steps"] == 3
    assert abs(out["kl_test"] - (out["test_nll"] - out["true_density_test_nll"])) < 2e-4
    assert set(toy2d.DEFAULTS) == {"moons", "circles", "8gaussians", "checkerboard"}
