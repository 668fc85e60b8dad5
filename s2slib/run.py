"""The run directory: where one course run's notebooks hand artifacts to each other.

Every notebook of a run reads what earlier notebooks wrote and writes its own outputs into one folder::

    runs/<name>/
      run.json                 profile and creation time
      notebooks/0N_*.ipynb     executed notebooks (written by the course runner)
      metrics/0N_*.json        headline metrics of each notebook (collected into summary.md / summary.json)
      figures/*.png            every figure of the run
      data/ codec/ ...         artifacts: manifests, checkpoints, audio examples
      summary.md summary.json  written by ``python -m s2slib.course run``

A notebook opens it with ``RunDir.open(run_dir, profile)``; an artifact another notebook must produce is fetched
with :meth:`RunDir.require`, which explains which notebook to run when it is missing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from s2slib import atomic, paths


class RunDir:
    """One course run's folder. ``profile`` is ``smoke``, ``laptop`` or ``gpu`` (recorded in ``run.json``)."""

    def __init__(self, path: str | os.PathLike, profile: str):
        self.path = Path(path).expanduser().resolve()
        self.profile = profile

    @classmethod
    def open(cls, run_dir: str | os.PathLike | None, profile: str) -> "RunDir":
        """Open (creating if needed) a run directory. An empty ``run_dir`` means ``<runs_dir>/<profile>``."""
        path = Path(run_dir) if run_dir else paths.runs_dir() / profile
        run = cls(path, profile)
        for sub in ("metrics", "figures"):
            (run.path / sub).mkdir(parents=True, exist_ok=True)
        info = run.path / "run.json"
        if not info.exists():
            atomic.write_json(info, {"profile": profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, profile={self.profile!r})"

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel

    def subdir(self, *parts: str) -> Path:
        """``<run>/<parts...>``, created if missing."""
        path = self.path.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def figures_dir(self) -> Path:
        return self.subdir("figures")

    @property
    def metrics_dir(self) -> Path:
        return self.subdir("metrics")

    def require(self, rel: str, produced_by: str) -> Path:
        """Path of an artifact an earlier notebook must have written; a clear error if it has not.

        ``produced_by`` names the notebook (``"01_data"``) so the message can say what to run.
        """
        path = self.path / rel
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: it is written by notebook {produced_by}. Run that notebook first into the same "
                f"run directory, e.g. `python -m s2slib.course run --profile {self.profile} --out {self.path} "
                f"--only {produced_by[:2]}`."
            )
        return path

    def record_metrics(self, notebook: str, metrics: dict[str, Any]) -> Path:
        """Merge ``metrics`` into ``metrics/<notebook>.json``; the course summary shows them as headline figures."""
        path = self.metrics_dir / f"{notebook}.json"
        merged = self.load_metrics(notebook)
        merged.update(metrics)
        return atomic.write_json(path, merged)

    def load_metrics(self, notebook: str) -> dict[str, Any]:
        """The metrics a notebook recorded (empty if none)."""
        path = self.path / "metrics" / f"{notebook}.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))
