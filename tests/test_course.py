"""The course runner (python -m s2slib.course), exercised on the small fixture notebooks in tests/course_fixtures.

Fixture 01 writes an artifact into the run directory, 02 reads it (and fails on request), 03 runs last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s2slib import course

FIXTURES = Path(__file__).parent / "course_fixtures"


def run(tmp_path, *args):
    """Run the CLI as a user would; returns (exit code, stdout+stderr)."""
    cmd = [sys.executable, "-m", "s2slib.course", "run", "--notebooks", str(FIXTURES), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def summary(out: Path) -> dict:
    return {nb["name"]: nb for nb in json.loads((out / "summary.json").read_text())["notebooks"]}


def test_profile_parameters_and_overrides_are_injected(tmp_path):
    out = tmp_path / "run"
    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "--only", "01", "-p", "message=namaste")
    assert code == 0, log
    made = json.loads((out / "made.json").read_text())
    assert made == {"n_items": 5, "message": "namaste", "device": "auto"}  # 5 from smoke.yaml, message from -p

    code, log = run(tmp_path, "--profile", "laptop", "--out", str(out), "--only", "01", "-p", "01.n_items=7")
    assert code == 0, log
    assert json.loads((out / "made.json").read_text())["n_items"] == 7  # command line beats the profile file


def test_artifacts_flow_between_notebooks_and_summary_is_written(tmp_path):
    out = tmp_path / "run"
    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "--device", "cpu")
    assert code == 0, log
    nbs = summary(out)
    assert [nbs[k]["status"] for k in ("01_make", "02_use", "03_after")] == ["ok", "ok", "ok"]
    assert nbs["02_use"]["metrics"] == {"total": 10.0}  # 5 items made by 01, scaled by 2.0 in 02
    assert nbs["01_make"]["parameters"]["device"] == "cpu"
    assert all(nb["wall_s"] > 0 for nb in nbs.values())
    md = (out / "summary.md").read_text()
    assert "| 02_use | ok |" in md and "total=10" in md
    for name in nbs:  # executed notebooks are kept in the run directory
        assert (out / "notebooks" / f"{name}.ipynb").is_file()


def test_failure_names_notebook_and_cell_then_from_resumes(tmp_path):
    out = tmp_path / "run"
    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "-p", "02.fail=true")
    assert code == 1
    assert "FAILED: 02_use" in log and "ValueError: asked to fail" in log
    assert str(out / "notebooks" / "02_use.ipynb") in log
    assert "--from 02" in log
    nbs = summary(out)
    assert nbs["01_make"]["status"] == "ok"
    assert nbs["02_use"]["status"] == "failed"
    assert nbs["02_use"]["error"]["ename"] == "ValueError"
    assert nbs["02_use"]["error"]["cell"] is not None
    assert nbs["03_after"]["status"] == "not run"
    assert not (out / "after.txt").exists()
    executed = json.loads((out / "notebooks" / "02_use.ipynb").read_text())
    assert any(o.get("ename") == "ValueError" for c in executed["cells"] for o in c.get("outputs", []))

    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "--from", "02")
    assert code == 0, log
    assert "[1/2] 02_use" in log  # 01 was not run again
    nbs = summary(out)
    assert {k: v["status"] for k, v in nbs.items()} == {"01_make": "ok", "02_use": "ok", "03_after": "ok"}
    assert (out / "after.txt").read_text() == "done"


def test_misspelled_parameters_are_rejected_before_anything_runs(tmp_path):
    out = tmp_path / "run"
    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "-p", "02.scal=3")
    assert code == 2
    assert "declares no parameter 'scal'" in log and "Did you mean 'scale'" in log
    assert not (out / "notebooks").exists() or not any((out / "notebooks").iterdir())

    code, log = run(tmp_path, "--profile", "smoke", "--out", str(out), "-p", "n_itemz=3")
    assert code == 2 and "n_itemz" in log

    bad = tmp_path / "nbs"
    bad.mkdir()
    for nb in FIXTURES.glob("*.ipynb"):
        (bad / nb.name).write_bytes(nb.read_bytes())
    (bad / "params").mkdir()
    (bad / "params" / "smoke.yaml").write_text("01_make:\n  n_item: 3\n")
    with pytest.raises(course.CourseError, match="n_item"):
        course.run_course("smoke", notebooks_dir=bad, out=tmp_path / "run2", progress=False)


def test_selection_by_number_or_name():
    nbs = course.discover(FIXTURES)
    assert [p.stem for p in course.select(nbs, only=["2"])] == ["02_use"]
    assert [p.stem for p in course.select(nbs, only=["03_after", "01"])] == ["01_make", "03_after"]
    assert [p.stem for p in course.select(nbs, start="02")] == ["02_use", "03_after"]
    with pytest.raises(course.CourseError, match="no such notebook"):
        course.select(nbs, start="09")
    with pytest.raises(course.CourseError, match="unknown profile"):
        course.run_course("fast", notebooks_dir=FIXTURES)
