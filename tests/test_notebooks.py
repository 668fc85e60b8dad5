"""The course notebooks follow the course's conventions (CONTRIBUTING.md, "Writing a notebook").

nbval executes them at the smoke profile as part of `make test`; these checks are about their shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from s2slib import course, paths

NOTEBOOKS = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
PARAMS = paths.notebooks_dir() / "params"


def test_there_are_course_notebooks():
    assert NOTEBOOKS, "no notebooks/0N_*.ipynb found"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(nb_path: Path):
    nb = json.loads(nb_path.read_text())
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "commit notebooks without outputs"
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).lstrip().startswith("# ")
    last = "".join(cells[-1]["source"]).lower()
    assert cells[-1]["cell_type"] == "markdown" and "summary" in last and "exercise" in last
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = course.declared_parameters(nb_path)
    assert {"run_dir", "profile", "device"} <= set(declared), "the runner injects run_dir, profile and device"
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert ":" in line.split("=")[0] and "#" in line, f"typed and commented: {line!r}"


@pytest.mark.parametrize("profile", course.PROFILES)
def test_every_profile_key_is_a_declared_parameter(profile):
    sections = yaml.safe_load((PARAMS / f"{profile}.yaml").read_text()) or {}
    stems = {p.stem: p for p in NOTEBOOKS}
    for section, values in sections.items():
        assert section in stems, f"{profile}.yaml has a section for a notebook that does not exist: {section}"
        declared = course.declared_parameters(stems[section])
        unknown = set(values or {}) - set(declared)
        assert not unknown, f"{profile}.yaml, {section}: not declared by the notebook: {sorted(unknown)}"
    assert set(stems) <= set(sections), f"{profile}.yaml should set every notebook's sizes"
