"""The course runner: execute the numbered notebooks headlessly with papermill, in order, into one run directory.

Usage::

    python -m s2slib.course run [--profile smoke|laptop|gpu] [--only 03] [--from 03]
                                [--device auto|cpu|cuda] [--out runs/NAME] [-p 02.max_steps=50 ...]
    python -m s2slib.course list [--profile P]        # notebooks, their parameters and the profile's values
    python -m s2slib.course prepare --profile smoke --out DIR   # parameterized copies, not executed (for nbval)

Parameters of notebook ``0N_name.ipynb`` come from the ``0N_name:`` section of ``notebooks/params/<profile>.yaml``,
then from ``-p`` overrides (``-p KEY=VALUE`` applies to every notebook that declares ``KEY``; ``-p 02.KEY=VALUE`` to
notebook 02 only). Every key must name a parameter its notebook declares: papermill would silently ignore a typo.
The runner also injects ``run_dir``, ``profile`` and ``device`` into every notebook that declares them, so all the
notebooks of a run share one run directory (see :mod:`s2slib.run`).

At the end it writes ``summary.md`` and ``summary.json`` into the run directory: each notebook's status, wall time
and the headline metrics it recorded. When a notebook fails, the runner names the cell, points at the executed
notebook that holds the traceback, stops, and exits non-zero; ``--from`` resumes there.
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
from s2slib.run import RunDir

PROFILES = ("smoke", "laptop", "gpu")
INJECTED = ("run_dir", "profile", "device")


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

    lines = [
        f"# Course run summary: {run.path.name}",
        "",
        f"profile `{meta['profile']}`, device `{meta['device']}`, commit `{meta.get('commit')}`, "
        f"finished {meta['finished']}",
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
) -> tuple[list[NotebookResult], RunDir]:
    """Run the selected notebooks in order; returns their results and the run directory.

    Stops at the first failure (later notebooks need its artifacts). See the module docstring for the options.
    """
    from s2slib.runtime import default_profile

    profile = profile or default_profile()
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

    run = RunDir.open(out, profile)
    injected = {"run_dir": str(run.path), "profile": profile, "device": device}
    # Resolve and check every notebook's parameters before executing anything: a typo should cost seconds, not the
    # hour spent on the notebooks before it.
    plan = [(nb, notebook_parameters(nb, declared[nb], sections, parsed, injected, profile)) for nb in chosen]

    out_dir = run.subdir("notebooks")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t_course = time.perf_counter()
    results: list[NotebookResult] = []
    print(f"Course run: profile {profile}, device {device}, {len(plan)} notebook(s) -> {run.path}", flush=True)
    failed = False
    for i, (nb, params) in enumerate(plan, 1):
        output = out_dir / nb.name
        if failed:
            results.append(NotebookResult(nb.stem, "not run", parameters=params))
            continue
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k not in INJECTED)
        print(f"\n[{i}/{len(plan)}] {nb.stem}  ({shown or 'defaults'})", flush=True)
        t0 = time.perf_counter()
        result = NotebookResult(nb.stem, "ok", output=str(output), parameters=params)
        try:
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
        results.append(result)
        if result.status == "ok":
            print(f"    ok in {result.wall_s:.1f} s (course elapsed {time.perf_counter() - t_course:.0f} s)", flush=True)
        else:
            err = result.error
            print(
                f"\nFAILED: {nb.stem}, cell {err['cell']} (In [{err['exec_count']}]): "
                f"{err['ename']}: {err['evalue'].splitlines()[0] if err['evalue'] else ''}\n"
                f"    The executed notebook with the full traceback: {output}\n"
                f"    After fixing it, resume with: python -m s2slib.course run --profile {profile} "
                f"--out {run.path} --from {nb.stem[:2]}",
                file=sys.stderr,
                flush=True,
            )
    meta = {
        "profile": profile,
        "device": device,
        "commit": _git_commit(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_s": round(time.perf_counter() - t_course, 2),
    }
    json_path, md_path = write_summary(run, results, meta)
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


def describe(profile: str, notebooks_dir: Path | None = None) -> str:
    """A table of notebooks, their declared parameters, defaults and this profile's values."""
    notebooks_dir = Path(notebooks_dir or paths.notebooks_dir())
    sections = load_profile(notebooks_dir / "params", profile)
    lines = []
    for nb in discover(notebooks_dir):
        lines.append(nb.stem)
        chosen = sections.get(nb.stem, {})
        for name, default in declared_parameters(nb).items():
            value = f" -> {chosen[name]!r} ({profile})" if name in chosen else ""
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
    r.add_argument("--out", help="run directory (default: runs/<profile>, or under $S2S_RUNS_DIR / $S2S_DATA_DIR)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="[NB.]KEY=VALUE", help="override a parameter")
    r.add_argument("--notebooks", type=Path, help="folder of notebooks (default: the course's notebooks/)")
    r.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p = sub.add_parser("prepare", help="write parameterized notebooks without running them (for nbval)")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("-p", "--param", action="append", default=[], metavar="[NB.]KEY=VALUE")
    lst = sub.add_parser("list", help="show the notebooks and their parameters")
    lst.add_argument("--profile", choices=PROFILES, default="laptop")
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
            )
            return 1 if any(r.status == "failed" for r in results) else 0
        if args.command == "prepare":
            for path in prepare(args.profile, args.out, overrides=args.param):
                print(path)
            return 0
        print(describe(args.profile))
        return 0
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
