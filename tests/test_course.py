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


# ----------------------------------------------------------------------------------------------------- dry run

PARAMS = Path(course.paths.notebooks_dir()) / "params"
COURSE_NOTEBOOKS = {p.stem: p for p in course.discover(course.paths.notebooks_dir())}


def test_dry_run_cuts_layer_over_the_gpu_profile():
    gpu = course.load_profile(PARAMS, "gpu")
    cuts = course.load_dry_run_cuts(PARAMS)
    dry = course.layer(gpu, cuts)
    # the pod's shapes are kept: model presets, batch sizes, crop lengths, data workers come from gpu.yaml
    for nb, keys in {"02_codec": ("preset", "seed_preset", "batch_size", "segment_s", "num_workers"),
                     "03_adversarial": ("disc_preset", "batch_size", "segment_s", "num_workers"),
                     "04_encodec": ("scratch_preset", "train_threads")}.items():
        for key in keys:
            assert key not in cuts[nb], f"the dry run must keep gpu.yaml's {nb}.{key}"
            assert dry[nb][key] == gpu[nb][key]
    assert dry["02_codec"]["preset"] == "fast50_gpu" and dry["02_codec"]["batch_size"] == 32
    assert dry["04_encodec"]["scratch_preset"] == "paper"
    # the work is cut to a few steps, a few clips, offline data
    for nb, key in [("02_codec", "max_steps"), ("02_codec", "seed_steps"), ("03_adversarial", "max_steps"),
                    ("04_encodec", "scratch_max_steps")]:
        assert 0 < dry[nb][key] <= 5 and dry[nb][key] != gpu[nb][key], f"{nb}.{key} is not cut"  # gpu 0: all
    assert 0 < dry["02_codec"]["eval_clips"] <= 4 and 0 < dry["04_encodec"]["n_clips"] <= 4
    assert dry["03_adversarial"]["disc_start_step"] < dry["03_adversarial"]["max_steps"]  # the discriminators train
    assert set(dry["01_data"]["sources"].split(",")) <= {"synthetic-te", "samples-te"}
    assert dry["04_encodec"]["allow_download"] is False
    # every notebook of the course has cuts: without them a "dry run" would train at full length
    assert set(COURSE_NOTEBOOKS) <= set(cuts), f"add their cuts to {course.DRY_RUN_CUTS}"


def test_dry_run_keys_are_declared_by_their_notebooks():
    cuts = course.load_dry_run_cuts(PARAMS)
    for section, values in cuts.items():
        if section not in COURSE_NOTEBOOKS:  # cuts may be written before their notebook
            continue
        unknown = set(values) - set(course.declared_parameters(COURSE_NOTEBOOKS[section]))
        assert not unknown, f"{course.DRY_RUN_CUTS}, {section}: not declared by the notebook: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["02_codec", "03_adversarial", "04_encodec"])
def test_training_notebooks_record_their_gpu_memory(name):
    cells = json.loads(COURSE_NOTEBOOKS[name].read_text())["cells"]
    last_code = "".join([c for c in cells if c["cell_type"] == "code"][-1]["source"])
    assert f'run.record_cuda_memory("{name}")' in last_code


def test_training_time_counts_only_the_steps_a_notebook_added():
    from s2slib.resources import training_time

    fresh = [{"step": 25, "seconds": 10.0}, {"step": 25, "val_x": 1.0}, {"step": 50, "seconds": 20.0}]
    assert training_time([], fresh) == {"steps": 50, "seconds": 20.0, "seconds_per_step": 0.4}
    assert training_time(fresh, fresh) is None  # nothing new (a rerun that found the run finished)
    # resumed from step 50: the old rows stay, a new fit() clock starts at 0
    resumed = fresh + [{"step": 75, "seconds": 5.0}, {"step": 100, "seconds": 10.0}]
    assert training_time(fresh, resumed) == {"steps": 50, "seconds": 10.0, "seconds_per_step": 0.2}
    # two fit() calls in one notebook: 0..50 in 20 s, then 50..100 in 10 s
    assert training_time([], resumed) == {"steps": 100, "seconds": 30.0, "seconds_per_step": 0.3}
    # a killed run's rows after the checkpoint (step 25) were dropped and trained again
    redone = fresh[:2] + [{"step": 50, "seconds": 12.0}]
    assert training_time(fresh, redone) == {"steps": 25, "seconds": 12.0, "seconds_per_step": 0.48}


def test_summary_shows_gpu_memory(tmp_path):
    run = course.RunDir.open(tmp_path / "run", "gpu")
    result = course.NotebookResult("02_codec", "ok", wall_s=1.0, resources={
        "peak_kernel_mb": 3000.0, "peak_total_mb": 4200.0, "cuda_peak_allocated_mb": 20480.0,
        "cuda_peak_reserved_mb": 24576.0, "training": [{"log": "codec/history.jsonl", "steps": 3, "seconds": 1.5,
                                                       "seconds_per_step": 0.5}]})
    meta = {"profile": "gpu", "device": "cuda", "finished": "now", "dry_run": False}
    _, md = course.write_summary(run, [result], meta)
    text = md.read_text()
    assert "| 02_codec | 2.93 GB | 4.10 GB | 20.00 GB / 24.00 GB | codec: 0.5 s/step (3 steps) |" in text
    assert "DRY RUN" not in text


def _notebook(path: Path, parameters: str, body: str) -> None:
    """A tiny course notebook: a title, a parameters cell, one code cell."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


DECLARE = 'run_dir: str = ""  # run directory\nprofile: str = "laptop"  # profile\ndevice: str = "auto"  # device\n'

TRAIN_BODY = '''
import json, subprocess, sys, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from s2slib.figures import save_figure
from s2slib.run import RunDir
run = RunDir.open(run_dir, profile)
held = np.ones(hold_mb * 2**20 // 8)  # touched pages: the kernel's peak includes them
# a child process holds 150 MB more while the kernel holds its own
subprocess.run([sys.executable, "-c", "import time; b = b'x' * (150 * 2**20); time.sleep(2)"], check=True)
(run / "made.json").write_text(json.dumps({"max_steps": max_steps, "width": width, "profile": profile,
                                           "dry_run": run.dry_run}))
with open(run.subdir("trainer") / "history.jsonl", "w") as fh:  # what a trainer writes: 4 steps in 3 s
    for row in ({"step": 2, "loss": 1.0, "seconds": 1.5}, {"step": 4, "loss": 0.9, "seconds": 3.0},
                {"step": 4, "val_loss": 0.5}):
        fh.write(json.dumps(row) + "\\n")
fig, ax = plt.subplots()
ax.plot([0, 1])
save_figure(fig, "01_train_curve", run)
run.record_cuda_memory("01_train")
run.record_metrics("01_train", {"steps": max_steps})
'''


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run of two tiny notebooks through the command line, with no --profile and no --out.

    ``01_train`` has dry-run cuts, holds memory, writes a training log and a figure; ``02_other`` has no cuts. A
    training log left in the folder from before must not be counted.
    """
    import os

    root = tmp_path_factory.mktemp("dry")
    nbs = root / "nbs"
    (nbs / "params").mkdir(parents=True)
    _notebook(nbs / "01_train.ipynb", DECLARE + "max_steps: int = 10  # steps\nwidth: int = 8  # model width\n"
              "hold_mb: int = 0  # memory to hold\n", TRAIN_BODY)
    _notebook(nbs / "02_other.ipynb", DECLARE, "from s2slib.run import RunDir\nRunDir.open(run_dir, profile)\n")
    (nbs / "params" / "gpu.yaml").write_text("01_train:\n  max_steps: 1000\n  width: 64\n  hold_mb: 200\n")
    (nbs / "params" / "gpu_dry_run.yaml").write_text("01_train:\n  max_steps: 4\n09_future:\n  max_steps: 1\n")
    env = {**os.environ, "S2S_RUNS_DIR": str(root / "runs"), "S2S_FIGURES_DIR": str(root / "published")}
    stale = root / "runs" / "gpu-dry-run" / "old" / "history.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"step": 100, "seconds": 50.0}) + "\n")
    cmd = [sys.executable, "-m", "s2slib.course", "run", "--notebooks", str(nbs), "--no-progress", "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return root, nbs, proc.returncode, proc.stdout + proc.stderr


def test_dry_run_defaults_to_gpu_in_its_own_folder_and_layers_its_cuts(dry_run):
    root, _, code, log = dry_run
    assert code == 0, log
    out = root / "runs" / "gpu-dry-run"
    assert not (root / "runs" / "gpu").exists()  # a real gpu run's folder is never touched
    made = json.loads((out / "made.json").read_text())
    assert made == {"max_steps": 4, "width": 64, "profile": "gpu", "dry_run": True}  # cut steps, gpu's width
    assert json.loads((out / "run.json").read_text())["dry_run"] is True
    assert (out / "figures" / "01_train_curve.png").is_file()
    assert not (root / "published").exists()  # a dry run's figures are never published


def test_dry_run_summary_reports_peak_memory_and_time_per_step(dry_run):
    root, _, code, log = dry_run
    assert code == 0, log
    out = root / "runs" / "gpu-dry-run"
    data = json.loads((out / "summary.json").read_text())
    nbs = {nb["name"]: nb for nb in data["notebooks"]}
    res = nbs["01_train"]["resources"]
    assert res["training"] == [{"log": "trainer/history.jsonl", "steps": 4, "seconds": 3.0, "seconds_per_step": 0.75}]
    assert res["peak_kernel_mb"] >= 200  # the 200 MB the kernel held
    assert res["peak_total_mb"] >= res["peak_kernel_mb"] + 100  # plus its child's 150 MB, held at the same time
    assert nbs["02_other"]["resources"]["training"] == []  # the old log in the folder is nobody's
    md = (out / "summary.md").read_text()
    assert "trainer: 0.75 s/step (4 steps)" in md
    row = next(line for line in md.splitlines() if line.startswith("| 01_train |") and "s/step" in line)
    assert row.count(" MB") + row.count(" GB") == 2, row  # kernel peak, with child processes


def test_dry_run_summary_says_it_is_a_dry_run(dry_run):
    root, _, code, log = dry_run
    assert code == 0, log
    out = root / "runs" / "gpu-dry-run"
    data = json.loads((out / "summary.json").read_text())
    assert data["dry_run"] is True and data["profile"] == "gpu"
    md = (out / "summary.md").read_text()
    assert md.startswith("# Course run summary: gpu-dry-run (DRY RUN)")
    assert "**DRY RUN**" in md and "say nothing about quality" in md
    # a notebook without cuts is named, in the log and in the summary; cuts for a future notebook break nothing
    assert "02_other has no section" in log and "02_other has no section" in md
    assert any("02_other" in w for w in data["warnings"]) and not any("09_future" in w for w in data["warnings"])


def test_dry_runs_and_real_runs_never_share_a_folder(dry_run, tmp_path):
    root, nbs, code, log = dry_run
    assert code == 0, log
    with pytest.raises(course.CourseError, match="holds a dry run"):
        course.run_course("gpu", notebooks_dir=nbs, out=root / "runs" / "gpu-dry-run", progress=False)
    course.RunDir.open(tmp_path / "real", "gpu")  # a real run's folder
    with pytest.raises(course.CourseError, match="holds a real run"):
        course.run_course("gpu", notebooks_dir=nbs, out=tmp_path / "real", progress=False, dry_run=True)
    assert not (tmp_path / "real" / "notebooks").exists()  # refused before anything ran


def test_a_stopped_run_keeps_the_summary_of_the_notebooks_it_finished(tmp_path, monkeypatch):
    """A pod that runs out of time or a Ctrl-C during notebook 02 still leaves 01's figures in the summary."""
    real = course._execute

    def execute(notebook, output, params, progress, kernel_name):
        if notebook.stem == "02_use":
            raise KeyboardInterrupt
        real(notebook, output, params, progress, kernel_name)

    monkeypatch.setattr(course, "_execute", execute)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        course.run_course("smoke", notebooks_dir=FIXTURES, out=out, progress=False)
    data = json.loads((out / "summary.json").read_text())
    assert data["finished"] is None
    assert [nb["name"] for nb in data["notebooks"]] == ["01_make"] and data["notebooks"][0]["status"] == "ok"
    assert "not finished" in (out / "summary.md").read_text()
