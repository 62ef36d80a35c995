"""Notebook 9's Colab cell, as far as it can be tested without Colab: with a stand-in for
``google.colab`` it clones the course, installs it, mounts the drive, points the run folder
at the drive and moves into the clone's notebooks; without it, it does nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

PROJECT = Path(__file__).resolve().parent.parent
CELL_ID = "c01ab0c1"


def colab_cell() -> str:
    nb = nbformat.read(PROJECT / "notebooks" / "09_cifar10.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.get("id") == CELL_ID)


def substitute(source: str, old: str, new: str) -> str:
    assert old in source, f"the Colab cell no longer contains {old!r}: update this test"
    return source.replace(old, new)


def run(source: str, tmp_path: Path, fake_colab: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if fake_colab:
        package = tmp_path / "fake" / "google" / "colab"
        package.mkdir(parents=True)
        (package.parent / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        (package / "drive.py").write_text(
            "import json, os\n"
            "def mount(path):\n"
            "    os.makedirs(path, exist_ok=True)\n"
            f"    open({str(tmp_path / 'mounted.json')!r}, 'w').write(json.dumps(path))\n")
        env["PYTHONPATH"] = str(tmp_path / "fake")
        source = "import google.colab\n" + source
    source += "\nprint('cwd:', os.getcwd()); print('runs:', os.environ.get('NVP_EDU_RUNS'))\n"
    return subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_does_nothing_outside_colab(tmp_path):
    result = run(colab_cell(), tmp_path, fake_colab=False)
    assert result.returncode == 0, result.stderr
    assert "on Colab: False" in result.stdout and "runs: None" in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="needs the course as a git repository")
def test_installs_the_course_and_keeps_runs_on_the_drive(tmp_path):
    source = colab_cell()
    source = substitute(source, '"https://github.com/YOUR-USER/YOUR-FORK"', repr(str(PROJECT)))
    source = substitute(source, 'Path("/content/nvp-edu")', f"Path({str(tmp_path / 'nvp-edu')!r})")
    source = substitute(source, 'Path("/content/drive")', f"Path({str(tmp_path / 'drive')!r})")
    # the install as Colab runs it, minus the download of the dependencies Colab already has
    source = substitute(source, '"install", "-q", "-e"',
                        '"install", "-q", "--dry-run", "--no-deps", "--no-build-isolation", "-e"')
    result = run(source, tmp_path, fake_colab=True)
    assert result.returncode == 0, result.stderr
    clone = tmp_path / "nvp-edu"
    assert (clone / "notebooks" / "09_cifar10.ipynb").is_file()
    assert (clone / "data" / "pretrained" / "photos.json").is_file()  # the pretrained models come along
    assert json.loads((tmp_path / "mounted.json").read_text()) == str(tmp_path / "drive")
    assert f"cwd: {clone / 'notebooks'}" in result.stdout
    assert f"runs: {tmp_path / 'drive' / 'MyDrive' / 'nvp-edu-runs'}" in result.stdout
    assert "on Colab: True" in result.stdout
