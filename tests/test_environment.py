"""pyproject.toml is the single source of the dependency list; environment.yml must agree with it."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "python=3.11" in conda and "pip" in conda
    assert ">=3.11" in project["requires-python"]
    assert [p for p in pip if p != "-e ."] == project["dependencies"], "environment.yml and pyproject.toml disagree"
    assert "-e ." in pip  # the course library itself


def test_torch_and_torchaudio_are_pinned_together():
    import torch
    import torchaudio

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.11.0" in deps and "torchaudio==2.11.0" in deps
    assert torch.__version__.split("+")[0] == "2.11.0"
    assert torchaudio.__version__.split("+")[0] == "2.11.0"
    import encodec  # noqa: F401  (imports torchaudio: fails when the pair is mismatched)
