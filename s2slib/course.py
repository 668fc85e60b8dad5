"""The course runner: execute the numbered notebooks headlessly with papermill, in order, into one run directory.

Usage::

    python -m s2slib.course run [--profile smoke|laptop|gpu] [--only 03] [--from 03] [--dry-run]
                                [--device auto|cpu|cuda] [--out runs/NAME] [-p 02.max_steps=50 ...]
    python -m s2slib.course list [--profile P] [--dry-run]   # notebooks, their parameters and the profile's values
    python -m s2slib.course prepare --profile smoke --out DIR   # parameterized copies, not executed (for nbval)

Parameters of notebook ``0N_name.ipynb`` come from the ``0N_name:`` section of ``notebooks/params/<profile>.yaml``,
then from ``-p`` overrides (``-p KEY=VALUE`` applies to every notebook that declares ``KEY``; ``-p 02.KEY=VALUE`` to
notebook 02 only). Every key must name a parameter its notebook declares: papermill would silently ignore a typo.
The runner also injects ``run_dir``, ``profile`` and ``device`` into every notebook that declares them, so all the
notebooks of a run share one run directory (see :mod:`s2slib.run`).

At the end it writes ``summary.md`` and ``summary.json`` into the run directory: each notebook's status, wall time,
the headline metrics it recorded, its peak memory and the time per step of every training it ran (measured from
outside the kernel, see :mod:`s2slib.resources`). When a notebook fails, the runner names the cell, points at the
executed notebook that holds the traceback, stops, and exits non-zero; ``--from`` resumes there.

``--dry-run`` (profile ``gpu`` unless ``--profile`` says otherwise) checks a pod run before paying for the pod: every
notebook runs at the profile's model sizes, batch sizes and segment lengths, with the step counts and the data cut
to a few and only offline sources, on whatever device this machine has. The cuts live in
``notebooks/params/gpu_dry_run.yaml``, layered over the profile's file (only the keys it lists change). A dry run
gets its own folder, ``runs/<profile>-dry-run``, marked as such (a real run never resumes from its checkpoints; see
:class:`s2slib.run.RunDir`), publishes no figures, and its summary says it is a dry run: read it for shapes, peak
memory and time per step, never for quality. ``make course PROFILE=gpu ARGS=--dry-run`` does the same.
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from s2slib import atomic, paths
from s2slib.resources import MemoryMonitor, new_training, snapshot_training_logs
from s2slib.run import RunDir

PROFILES = ("smoke", "laptop", "gpu")
INJECTED = ("run_dir", "profile", "device")
DRY_RUN_CUTS = "gpu_dry_run.yaml"  # in the params folder: what --dry-run changes over the profile's values


class CourseError(Exception):
    """A problem with how the course was asked to run (bad profile, unknown parameter, no such notebook)."""


@dataclass
class NotebookResult:
    """The outcome of one notebook in a run."""

    name: str
    status: str  # "ok" | "failed" | "not run"
    wall_s: float | None = None
    output: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    # peak_kernel_mb, peak_total_mb (s2slib.resources.MemoryMonitor), cuda_* (RunDir.record_cuda_memory) and
    # training: [{log, steps, seconds, seconds_per_step}] for every training log the notebook added steps to
    resources: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- notebooks and params


def discover(notebooks_dir: Path) -> list[Path]:
    """The course notebooks ``0N_*.ipynb`` (two leading digits), in order."""
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not found:
        raise CourseError(f"no course notebooks (named like 01_data.ipynb) in {notebooks_dir}")
    return found


def _matches(path: Path, key: str) -> bool:
    """A notebook is named on the command line by its number (``3``, ``03``) or its full stem (``03_adversarial``)."""
    key = key.strip()
    if key.isdigit():
        return path.stem[:2] == f"{int(key):02d}"
    return path.stem == key


def select(notebooks: list[Path], only: list[str] | None = None, start: str | None = None) -> list[Path]:
    """Keep the notebooks named by ``only`` (numbers or stems), or those from ``start`` on."""
    names = ", ".join(p.stem for p in notebooks)
    if only:
        chosen = [p for p in notebooks if any(_matches(p, k) for k in only)]
        missing = [k for k in only if not any(_matches(p, k) for p in notebooks)]
        if missing:
            raise CourseError(f"--only {', '.join(missing)}: no such notebook (have: {names})")
        return chosen
    if start:
        idx = [i for i, p in enumerate(notebooks) if _matches(p, start)]
        if not idx:
            raise CourseError(f"--from {start}: no such notebook (have: {names})")
        return notebooks[idx[0]:]
    return notebooks


def load_profile(params_dir: Path, profile: str) -> dict[str, dict[str, Any]]:
    """The ``{notebook stem: {param: value}}`` sections of ``<params_dir>/<profile>.yaml``."""
    path = params_dir / f"{profile}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in params_dir.glob("*.yaml"))
        raise CourseError(f"no parameter file for profile {profile!r}: {path} is missing (profiles here: {have})")
    return _read_sections(path)


def load_dry_run_cuts(params_dir: Path) -> dict[str, dict[str, Any]]:
    """The sections of ``<params_dir>/gpu_dry_run.yaml``: the step counts and sizes of work ``--dry-run`` cuts."""
    path = params_dir / DRY_RUN_CUTS
    if not path.is_file():
        raise CourseError(f"--dry-run needs {path}: one section per notebook with its cut step counts")
    return _read_sections(path)


def layer(base: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``over``'s keys replace ``base``'s, notebook by notebook; keys ``over`` does not list keep ``base``'s values."""
    return {nb: {**base.get(nb, {}), **over.get(nb, {})} for nb in {**base, **over}}


def _read_sections(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise CourseError(f"{path}: expected one mapping per notebook, like `02_codec: {{max_steps: 50}}`")
    return {str(k): dict(v or {}) for k, v in data.items()}


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Names and defaults of the parameters a notebook declares in its cell tagged ``parameters``."""
    import papermill as pm

    return {name: info.get("default") for name, info in pm.inspect_notebook(str(notebook)).items()}


def parse_overrides(items: list[str]) -> list[tuple[str | None, str, Any]]:
    """``["02.max_steps=50", "seed=1"]`` -> ``[("02", "max_steps", 50), (None, "seed", 1)]`` (values parsed as YAML)."""
    out = []
    for item in items:
        if "=" not in item:
            raise CourseError(f"-p {item!r}: expected KEY=VALUE or NOTEBOOK.KEY=VALUE")
        key, value = item.split("=", 1)
        nb, _, name = key.rpartition(".")
        out.append((nb or None, name.strip(), yaml.safe_load(value)))
    return out


def _check_keys(notebook: Path, keys, declared: dict[str, Any], where: str) -> None:
    for key in keys:
        if key not in declared:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise CourseError(
                f"{where}: {notebook.stem} declares no parameter {key!r}.{hint} "
                f"Its parameters: {', '.join(sorted(declared)) or '(none)'}."
            )


def notebook_parameters(
    notebook: Path,
    declared: dict[str, Any],
    profile_sections: dict[str, dict[str, Any]],
    overrides: list[tuple[str | None, str, Any]],
    injected: dict[str, Any],
    profile_name: str = "profile",
) -> dict[str, Any]:
    """Parameters to inject into one notebook: profile section, then overrides, then run-wide values.

    ``declared`` is :func:`declared_parameters` of the notebook; every key given must be one of them.
    """
    params = dict(profile_sections.get(notebook.stem, {}))
    _check_keys(notebook, params, declared, f"notebooks/params/{profile_name}.yaml")
    for nb, key, value in overrides:
        if nb is None:
            if key in declared:
                params[key] = value
        elif _matches(notebook, nb):
            _check_keys(notebook, [key], declared, f"-p {nb}.{key}")
            params[key] = value
    params.update({k: v for k, v in injected.items() if k in declared})
    return params


def check_overrides_used(declared: dict[Path, dict[str, Any]], overrides: list[tuple[str | None, str, Any]]) -> None:
    """A run-wide ``-p KEY=VALUE`` that no selected notebook declares is a typo: say so before running anything."""
    for nb, key, _ in overrides:
        if nb is None and not any(key in params for params in declared.values()):
            raise CourseError(f"-p {key}=...: none of the selected notebooks declares a parameter {key!r}")


# --------------------------------------------------------------------------------------------------- summary


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=paths.repo_root(), capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_mb(mb: float | None) -> str:
    if mb is None:
        return "-"
    return f"{mb / 1024:.2f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _format_training(training: list[dict[str, Any]]) -> str:
    """``codec: 4.1 s/step (3 steps); codec_gan: ...``: one entry per training log, named by its folder."""
    return "; ".join(
        f"{t['log'].rpartition('/')[0] or '.'}: {t['seconds_per_step']:.3g} s/step ({t['steps']} steps)"
        for t in training
    ) or "-"


def dry_run_note(meta: dict[str, Any]) -> str:
    """The warning at the top of a dry run's summary."""
    return (
        f"**DRY RUN** of the `{meta['profile']}` profile: its models, batch sizes and segment lengths, with the step "
        f"counts and the data cut to a few and offline sources only (`{meta.get('dry_run_cuts', DRY_RUN_CUTS)}`). "
        "The metrics below say nothing about quality: read this run for shapes, peak memory and time per step. "
        "Time per step includes the first step's start-up, so a long run is somewhat faster per step."
    )


def write_summary(run: RunDir, results: list[NotebookResult], meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md``. Results of notebooks not run this time are kept from before."""
    json_path = run.path / "summary.json"
    previous: dict[str, dict] = {}
    if json_path.exists():
        try:
            previous = {nb["name"]: nb for nb in json.loads(json_path.read_text())["notebooks"]}
        except (ValueError, KeyError, TypeError):
            previous = {}
    merged = dict(previous)
    for r in results:
        if r.status != "not run" or r.name not in merged:
            merged[r.name] = asdict(r)
    notebooks = [merged[k] for k in sorted(merged)]
    summary = {**meta, "notebooks": notebooks}
    atomic.write_json(json_path, summary)

    dry = bool(meta.get("dry_run"))
    lines = [f"# Course run summary: {run.path.name}{' (DRY RUN)' if dry else ''}", ""]
    if dry:
        lines += [f"> {dry_run_note(meta)}", ""]
    lines += [f"> Warning: {w}" for w in meta.get("warnings", [])] + ([""] if meta.get("warnings") else [])
    lines += [
        f"profile `{meta['profile']}`{' (dry run)' if dry else ''}, device `{meta['device']}`, "
        f"commit `{meta.get('commit')}`, "
        + (f"finished {meta['finished']}" if meta.get("finished") else
           f"**not finished**: started {meta.get('started')}, still running or stopped after the notebooks listed"),
        "",
        "| notebook | status | wall time | headline metrics |",
        "|---|---|---|---|",
    ]
    for nb in notebooks:
        wall = f"{nb['wall_s']:.1f} s" if nb.get("wall_s") is not None else "-"
        metrics = ", ".join(f"{k}={_format_value(v)}" for k, v in nb.get("metrics", {}).items()) or "-"
        status = nb["status"]
        if nb.get("error"):
            status += f" (cell {nb['error'].get('cell')}: {nb['error'].get('ename')})"
        lines.append(f"| {nb['name']} | {status} | {wall} | {metrics} |")
    lines += [
        "",
        "## Memory and time per step",
        "",
        "Kernel peak: the kernel's peak resident memory. With child processes: the largest total, sampled about "
        "every half second, of what the kernel and its children (data workers, tools it runs) held at once, with "
        "pages they share counted once (so it can read below the kernel's own peak). GPU peak: PyTorch's, "
        "allocated / reserved.",
        "",
        "| notebook | kernel peak | with child processes | GPU peak | time per step |",
        "|---|---|---|---|---|",
    ]
    for nb in notebooks:
        res = nb.get("resources") or {}
        gpu = (f"{_format_mb(res['cuda_peak_allocated_mb'])} / {_format_mb(res.get('cuda_peak_reserved_mb'))}"
               if res.get("cuda_peak_allocated_mb") is not None else "-")
        lines.append(f"| {nb['name']} | {_format_mb(res.get('peak_kernel_mb'))} | "
                     f"{_format_mb(res.get('peak_total_mb'))} | {gpu} | {_format_training(res.get('training', []))} |")
    md_path = atomic.write_text(run.path / "summary.md", "\n".join(lines) + "\n")
    return json_path, md_path


# ------------------------------------------------------------------------------------------------------- run


def _execute(notebook: Path, output: Path, params: dict[str, Any], progress: bool, kernel_name: str | None) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(notebook),
        str(output),
        parameters=params,
        progress_bar=progress,
        cwd=str(notebook.parent),
        kernel_name=kernel_name,
        request_save_on_cell_execute=True,
    )


def run_course(
    profile: str | None = None,
    only: list[str] | None = None,
    start: str | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    notebooks_dir: Path | None = None,
    params_dir: Path | None = None,
    progress: bool = True,
    kernel_name: str | None = None,
    dry_run: bool = False,
) -> tuple[list[NotebookResult], RunDir]:
    """Run the selected notebooks in order; returns their results and the run directory.

    Stops at the first failure (later notebooks need its artifacts). See the module docstring for the options;
    ``dry_run`` layers ``gpu_dry_run.yaml`` over the profile and defaults ``out`` to ``runs/<profile>-dry-run``.
    """
    from s2slib.runtime import default_profile

    profile = profile or ("gpu" if dry_run else default_profile())
    if profile not in PROFILES:
        raise CourseError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    notebooks_dir = Path(notebooks_dir or paths.notebooks_dir())
    params_dir = Path(params_dir or notebooks_dir / "params")
    all_notebooks = discover(notebooks_dir)
    chosen = select(all_notebooks, only, start)
    sections = load_profile(params_dir, profile)
    unknown = sorted(set(sections) - {p.stem for p in all_notebooks})
    if unknown:
        raise CourseError(f"{params_dir / (profile + '.yaml')}: sections for notebooks that do not exist: {unknown}")
    parsed = parse_overrides(overrides or [])
    declared = {nb: declared_parameters(nb) for nb in chosen}
    check_overrides_used(declared, parsed)
    warnings = []
    if dry_run:
        # Sections for notebooks not (yet) in the course are ignored: the cuts can be written before the notebook.
        cuts = load_dry_run_cuts(params_dir)
        for nb in chosen:
            _check_keys(nb, cuts.get(nb.stem, {}), declared[nb], f"notebooks/params/{DRY_RUN_CUTS}")
        sections = layer(sections, cuts)
        warnings = [
            f"{nb.stem} has no section in notebooks/params/{DRY_RUN_CUTS}: it runs at the {profile} profile's full "
            "step counts. Add its cuts there."
            for nb in chosen if nb.stem not in cuts
        ]
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        out = out or paths.runs_dir() / f"{profile}-dry-run"

    try:
        run = RunDir.open(out, profile, dry_run=dry_run)
    except ValueError as exc:  # a dry run's folder given to a real run, or the other way round
        raise CourseError(str(exc)) from exc
    injected = {"run_dir": str(run.path), "profile": profile, "device": device}
    # Resolve and check every notebook's parameters before executing anything: a typo should cost seconds, not the
    # hour spent on the notebooks before it.
    plan = [(nb, notebook_parameters(nb, declared[nb], sections, parsed, injected, profile)) for nb in chosen]

    out_dir = run.subdir("notebooks")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t_course = time.perf_counter()
    results: list[NotebookResult] = []
    kind = " (DRY RUN: full-size models, step counts cut to a few)" if dry_run else ""
    print(f"Course run: profile {profile}{kind}, device {device}, {len(plan)} notebook(s) -> {run.path}", flush=True)
    commit = _git_commit()

    def meta(finished: bool) -> dict[str, Any]:
        return {
            "profile": profile,
            "device": device,
            "commit": commit,
            "started": started,
            # None while notebooks are still running: the summary is rewritten after each one, so a run that is
            # stopped (a pod that runs out of time, Ctrl-C, a killed kernel) keeps the figures of those it finished
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S") if finished else None,
            "wall_s": round(time.perf_counter() - t_course, 2),
            "dry_run": dry_run,
            **({"dry_run_cuts": f"notebooks/params/{DRY_RUN_CUTS}", "warnings": warnings} if dry_run else {}),
        }

    failed = False
    for i, (nb, params) in enumerate(plan, 1):
        output = out_dir / nb.name
        if failed:
            results.append(NotebookResult(nb.stem, "not run", parameters=params))
            continue
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k not in INJECTED)
        print(f"\n[{i}/{len(plan)}] {nb.stem}  ({shown or 'defaults'})", flush=True)
        (run.path / "resources" / f"{nb.stem}.json").unlink(missing_ok=True)  # an earlier run's GPU figures
        logs_before = snapshot_training_logs(run.path)
        t0 = time.perf_counter()
        result = NotebookResult(nb.stem, "ok", output=str(output), parameters=params)
        monitor = MemoryMonitor()
        try:
            with monitor:
                _execute(nb, output, params, progress, kernel_name)
        except Exception as exc:  # papermill's execution error, a dead kernel, a timeout
            failed = True
            result.status = "failed"
            result.error = {
                "cell": getattr(exc, "cell_index", None),
                "exec_count": getattr(exc, "exec_count", None),
                "ename": getattr(exc, "ename", type(exc).__name__),
                "evalue": str(getattr(exc, "evalue", exc))[:2000],
            }
        result.wall_s = round(time.perf_counter() - t0, 2)
        result.metrics = run.load_metrics(nb.stem)
        # measured even for a failed notebook: the peak memory of a kernel that died is what explains it
        result.resources = {**monitor.result(), **run.load_resources(nb.stem),
                            "training": new_training(run.path, logs_before)}
        results.append(result)
        write_summary(run, results, meta(finished=False))
        res = result.resources
        print(f"    peak memory: kernel {_format_mb(res.get('peak_kernel_mb'))}, with child processes "
              f"{_format_mb(res.get('peak_total_mb'))}"
              + (f", GPU {_format_mb(res['cuda_peak_allocated_mb'])}" if "cuda_peak_allocated_mb" in res else "")
              + (f"; time per step: {_format_training(res['training'])}" if res["training"] else ""), flush=True)
        if result.status == "ok":
            print(f"    ok in {result.wall_s:.1f} s (course elapsed {time.perf_counter() - t_course:.0f} s)", flush=True)
        else:
            err = result.error
            print(
                f"\nFAILED: {nb.stem}, cell {err['cell']} (In [{err['exec_count']}]): "
                f"{err['ename']}: {err['evalue'].splitlines()[0] if err['evalue'] else ''}\n"
                f"    The executed notebook with the full traceback: {output}\n"
                f"    After fixing it, resume with: python -m s2slib.course run --profile {profile}"
                f"{' --dry-run' if dry_run else ''} --out {run.path} --from {nb.stem[:2]}",
                file=sys.stderr,
                flush=True,
            )
    json_path, md_path = write_summary(run, results, meta(finished=True))
    print(f"\n{md_path.read_text()}\nSummary written to {md_path} and {json_path}", flush=True)
    return results, run


def prepare(profile: str, out: Path, notebooks_dir: Path | None = None, overrides: list[str] | None = None) -> list[Path]:
    """Write parameterized, unexecuted copies of every notebook into ``out/notebooks`` sharing ``out/run``.

    nbval then executes them (``pytest --nbval-lax out/notebooks``): the CI runs the notebooks at this profile.
    """
    import papermill as pm

    notebooks_dir = Path(notebooks_dir or paths.notebooks_dir())
    notebooks = discover(notebooks_dir)
    sections = load_profile(notebooks_dir / "params", profile)
    parsed = parse_overrides(overrides or [])
    run = RunDir.open(Path(out) / "run", profile)
    injected = {"run_dir": str(run.path), "profile": profile, "device": "cpu"}
    written = []
    for nb in notebooks:
        params = notebook_parameters(nb, declared_parameters(nb), sections, parsed, injected, profile)
        target = Path(out) / "notebooks" / nb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(str(nb), str(target), parameters=params, prepare_only=True, progress_bar=False)
        written.append(target)
    return written


def describe(profile: str, notebooks_dir: Path | None = None, dry_run: bool = False) -> str:
    """A table of notebooks, their declared parameters, defaults and this profile's values (with the dry-run cuts)."""
    notebooks_dir = Path(notebooks_dir or paths.notebooks_dir())
    sections = load_profile(notebooks_dir / "params", profile)
    cuts = load_dry_run_cuts(notebooks_dir / "params") if dry_run else {}
    lines = []
    for nb in discover(notebooks_dir):
        lines.append(nb.stem + ("" if nb.stem in cuts or not dry_run else f"  (no dry-run cuts in {DRY_RUN_CUTS})"))
        chosen = layer(sections, cuts).get(nb.stem, {})
        for name, default in declared_parameters(nb).items():
            where = f"{profile}, dry run" if name in cuts.get(nb.stem, {}) else profile
            value = f" -> {chosen[name]!r} ({where})" if name in chosen else ""
            lines.append(f"    {name} = {default}{value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2slib.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the notebooks in order")
    r.add_argument("--profile", choices=PROFILES, help="default: gpu where CUDA is available, else laptop")
    r.add_argument("--only", action="append", metavar="NB", help="run only this notebook (number or name); repeatable")
    r.add_argument("--from", dest="start", metavar="NB", help="start at this notebook (resume after a failure)")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--dry-run", action="store_true",
                   help=f"the profile's model sizes (default profile: gpu) with step counts cut ({DRY_RUN_CUTS}), "
                        "to check shapes, peak memory and time per step before paying for a pod")
    r.add_argument("--out", help="run directory (default: runs/<profile>, or runs/<profile>-dry-run; under "
                                 "$S2S_RUNS_DIR / $S2S_DATA_DIR when set)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="[NB.]KEY=VALUE", help="override a parameter")
    r.add_argument("--notebooks", type=Path, help="folder of notebooks (default: the course's notebooks/)")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p = sub.add_parser("prepare", help="write parameterized notebooks without running them (for nbval)")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("-p", "--param", action="append", default=[], metavar="[NB.]KEY=VALUE")
    lst = sub.add_parser("list", help="show the notebooks and their parameters")
    lst.add_argument("--profile", choices=PROFILES, help="default: laptop (gpu with --dry-run)")
    lst.add_argument("--dry-run", action="store_true", help=f"show the values with {DRY_RUN_CUTS} layered over them")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            results, _ = run_course(
                profile=args.profile,
                only=args.only,
                start=args.start,
                device=args.device,
                out=args.out,
                overrides=args.param,
                notebooks_dir=args.notebooks,
                progress=not args.no_progress,
                dry_run=args.dry_run,
            )
            return 1 if any(r.status == "failed" for r in results) else 0
        if args.command == "prepare":
            for path in prepare(args.profile, args.out, overrides=args.param):
                print(path)
            return 0
        print(describe(args.profile or ("gpu" if args.dry_run else "laptop"), dry_run=args.dry_run))
        return 0
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
