"""benchmarks/toy2d.py: per-dataset defaults, the MLP-depth option and the JSON it prints."""
import importlib.util
import json
from pathlib import Path

import pytest
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


def test_spline_and_rotation_options():
    toy2d = _load()
    spline = toy2d.build_model(couplings=2, hidden=8, coupling="spline", bins=4)
    assert type(spline).__name__ == "SplineFlow2D" and len(spline.flow) == 2
    rotated = toy2d.build_model(couplings=4, hidden=8, rotation=45.0)
    assert [type(m).__name__ for m in rotated.flow].count("Rotation") == 1
    with pytest.raises(ValueError, match="affine RealNVP2D only"):
        toy2d.build_model(couplings=2, hidden=8, coupling="spline", rotation=45.0)


def test_splines2d_smoke_run(capsys, one_thread):
    """splines2d.py runs end to end and prints its JSON (an import of a renamed name broke it once)."""
    spec = importlib.util.spec_from_file_location("splines2d", SCRIPT.parent / "splines2d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--toys", "moons", "--n-train", "300", "--steps", "2", "--hidden", "8",
                        "--affine-couplings", "2", "--spline-couplings", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = out["results"]["moons"]
    assert row["lr"] == module.LR["moons"]
    for kind in ("affine", "spline"):
        assert abs(row[kind]["kl_estimate"]
                   - (row[kind]["test_nll"] - row["true_density_test_nll"])) < 2e-4
