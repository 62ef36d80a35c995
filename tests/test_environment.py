"""environment.yml (conda, Binder) is checked statically against pyproject.toml.

conda cannot be installed or reach its channels on the CI machines, so the file is not
solved here; instead its shape is checked with PyYAML, every spec is parsed with
py-rattler's ``MatchSpec`` (the conda spec grammar), and its packages and lower bounds
must be those of pyproject.toml (conda's ``pytorch`` is pip's ``torch``).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
yaml = pytest.importorskip("yaml")
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PYTHON_PACKAGES = {"python", "pip"}


def _env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _split(spec: str) -> tuple[str, str | None]:
    """'numpy>=1.24' -> ('numpy', '1.24'): name and lower bound (None if unbounded)."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    name, rest = m.group(1).lower(), m.group(2)
    low = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", rest)
    return name, low.group(1) if low else None


def _conda_specs() -> list[str]:
    return [d for d in _env()["dependencies"] if isinstance(d, str)]


def _pip_specs() -> list[str]:
    subs = [d["pip"] for d in _env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    return subs[0] if subs else []


def test_shape():
    env = _env()
    assert env["name"] == "nvp-edu"
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert isinstance(deps, list) and all(isinstance(d, (str, dict)) for d in deps)
    dicts = [d for d in deps if isinstance(d, dict)]
    assert len(dicts) == 1 and list(dicts[0]) == ["pip"], "one `pip:` sub-list expected"
    assert "pip" in deps, "conda must install pip before the pip: sub-list can run"
    assert "-e ." in _pip_specs(), "the pip: sub-list must install the course package (-e .)"


def test_conda_specs_parse():
    try:
        from rattler import MatchSpec
    except ImportError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(f"py-rattler not importable ({err}); pip install -e '.[test]'")
    for spec in _conda_specs():
        parsed = MatchSpec(spec)
        assert parsed.name.normalized == _split(spec)[0], spec
    with pytest.raises(Exception):
        MatchSpec("numpy>=>1")  # the parser does reject a broken spec


def test_python_range_matches_pyproject():
    python = next(s for s in _conda_specs() if _split(s)[0] == "python")
    assert _split(python)[1] == _pyproject()["project"]["requires-python"].lstrip(">=")


def test_same_packages_and_lower_bounds_as_pyproject():
    project = _pyproject()["project"]
    pip_side = {name: low for name, low in map(_split, project["dependencies"]
                                               + project["optional-dependencies"]["test"])}
    env_side = {}
    for spec in _conda_specs():
        name, low = _split(spec)
        if name not in NOT_PYTHON_PACKAGES:
            env_side[CONDA_TO_PIP.get(name, name)] = low
    for spec in _pip_specs():
        if spec != "-e .":
            name, low = _split(spec)
            env_side[name] = low
    assert sorted(env_side) == sorted(pip_side), (
        f"only in environment.yml: {sorted(set(env_side) - set(pip_side))}; "
        f"only in pyproject.toml: {sorted(set(pip_side) - set(env_side))}")
    differ = {n: (env_side[n], pip_side[n]) for n in pip_side if env_side[n] != pip_side[n]}
    assert not differ, f"lower bounds differ (environment.yml, pyproject.toml): {differ}"
