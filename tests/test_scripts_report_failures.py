"""Issue 20: the batch scripts name what failed and exit non-zero, without stopping early."""
import importlib.util
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_execute_notebooks_names_a_failing_notebook_and_goes_on(tmp_path, capsys, monkeypatch):
    script = load_script("execute_notebooks")
    paths = [tmp_path / "01_bad.ipynb", tmp_path / "02_good.ipynb"]
    for p in paths:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), p)
    bad_bytes = paths[0].read_bytes()
    ran = []

    def execute(path, fast, timeout):  # what nbconvert raises for a cell's exception
        ran.append(path.name)
        if "bad" in path.name:
            from nbconvert.preprocessors import CellExecutionError
            raise CellExecutionError("traceback ...", "ZeroDivisionError", "division by zero")
        return 1.0, nbformat.read(path, as_version=4)

    monkeypatch.setattr(script, "execute", execute)
    assert script.main([str(p) for p in paths]) == 1  # before the fix: the exception escaped
    assert ran == ["01_bad.ipynb", "02_good.ipynb"]  # the batch went on
    err = capsys.readouterr().err
    assert "error: 01_bad.ipynb failed (ZeroDivisionError: division by zero)" in err
    assert paths[0].read_bytes() == bad_bytes


def test_gpu_check_exits_non_zero_when_a_part_fails(capsys, monkeypatch):
    script = load_script("gpu_check")
    monkeypatch.setattr(script, "run_torchrun", lambda smoke: {"ok": False, "nproc": 2,
                                                               "stderr_tail": "rank 1 died"})
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    # before the fix: main returned the report and the script exited 0
    assert script.main(["--smoke", "--skip", "throughput", "training"]) == 1
    captured = capsys.readouterr()
    assert '"failed": [\n  "torchrun"\n ]' in captured.out
    assert "error: gpu_check part 'torchrun' failed: rank 1 died" in captured.err
