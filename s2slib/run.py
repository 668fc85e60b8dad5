"""The run directory: where one course run's notebooks hand artifacts to each other.

Every notebook of a run reads what earlier notebooks wrote and writes its own outputs into one folder::

    runs/<name>/
      run.json                 profile, creation time, and ``dry_run: true`` for a dry run
      notebooks/0N_*.ipynb     executed notebooks (written by the course runner)
      metrics/0N_*.json        headline metrics of each notebook (collected into summary.md / summary.json)
      resources/0N_*.json      each notebook kernel's peak GPU memory (:meth:`RunDir.record_cuda_memory`)
      figures/*.png            every figure of the run
      data/ codec/ ...         artifacts: manifests, checkpoints, audio examples
      summary.md summary.json  written by ``python -m s2slib.course run``

A notebook opens it with ``RunDir.open(run_dir, profile)``; an artifact another notebook must produce is fetched
with :meth:`RunDir.require`, which explains which notebook to run when it is missing.

A dry run (``python -m s2slib.course run --dry-run``: full-size models, a few steps) marks its folder in
``run.json``. Its checkpoints must never seed a real run, nor a dry run overwrite a real one's, so
:meth:`RunDir.open` refuses to open one kind of run as the other, and :attr:`RunDir.dry_run` keeps its figures from
being published (:func:`s2slib.figures.save_figure`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from s2slib import atomic, paths


class RunDir:
    """One course run's folder. ``profile`` is ``smoke``, ``laptop`` or ``gpu`` (recorded in ``run.json``);
    ``dry_run`` is true for a dry run's folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, profile: str, dry_run: bool = False):
        self.path = Path(path).expanduser().resolve()
        self.profile = profile
        self.dry_run = dry_run

    @classmethod
    def open(cls, run_dir: str | os.PathLike | None, profile: str, dry_run: bool | None = None) -> "RunDir":
        """Open (creating if needed) a run directory. An empty ``run_dir`` means ``<runs_dir>/<profile>``.

        ``dry_run`` None (what notebooks pass) takes the folder as it is; True or False (what the course runner
        passes) is recorded in a new folder, and raises ``ValueError`` for an existing folder of the other kind.
        """
        path = Path(run_dir) if run_dir else paths.runs_dir() / profile
        run = cls(path, profile)
        info = run.path / "run.json"
        if info.exists():
            run.dry_run = bool(json.loads(info.read_text(encoding="utf-8")).get("dry_run", False))
            if dry_run is not None and dry_run != run.dry_run:
                raise ValueError(
                    f"{run.path} holds a dry run (step counts cut to a few): a real run must not resume from its "
                    "checkpoints. Give the real run another folder (its default is runs/<profile>), or delete this one."
                    if run.dry_run else
                    f"{run.path} holds a real run: a dry run there would resume from or overwrite its checkpoints. "
                    "Leave out --out (a dry run's default folder is runs/<profile>-dry-run) or choose another folder."
                )
        run.dry_run = run.dry_run or bool(dry_run)
        for sub in ("metrics", "figures"):
            (run.path / sub).mkdir(parents=True, exist_ok=True)
        if not info.exists():
            atomic.write_json(info, {"profile": profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                     **({"dry_run": True} if run.dry_run else {})})
        return run

    def __repr__(self) -> str:
        dry = ", dry_run=True" if self.dry_run else ""
        return f"RunDir({str(self.path)!r}, profile={self.profile!r}{dry})"

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
                f"run directory, e.g. `python -m s2slib.course run --profile {self.profile}"
                f"{' --dry-run' if self.dry_run else ''} --out {self.path} --only {produced_by[:2]}`."
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
        return self._load("metrics", notebook)

    def record_cuda_memory(self, notebook: str) -> Path:
        """Write this process's CUDA memory high-water marks to ``resources/<notebook>.json``; the course summary shows
        them beside the host memory the runner measures from outside.

        Call it in the last cell of a notebook that trains: ``torch.cuda.max_memory_allocated`` (tensors) and
        ``max_memory_reserved`` (what PyTorch's caching allocator took from the GPU) can only be read inside the
        kernel. Without CUDA in use it writes ``{}``, so nothing stale from an earlier run stays behind.
        """
        values: dict[str, Any] = {}
        torch = sys.modules.get("torch")  # not imported: this kernel never used CUDA
        if torch is not None and torch.cuda.is_initialized():
            dev = torch.cuda.current_device()
            values = {
                "cuda_device": torch.cuda.get_device_name(dev),
                "cuda_peak_allocated_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1),
                "cuda_peak_reserved_mb": round(torch.cuda.max_memory_reserved(dev) / 2**20, 1),
                "cuda_total_mb": round(torch.cuda.get_device_properties(dev).total_memory / 2**20, 1),
            }
        return atomic.write_json(self.subdir("resources") / f"{notebook}.json", values)

    def load_resources(self, notebook: str) -> dict[str, Any]:
        """What :meth:`record_cuda_memory` wrote for a notebook (empty if nothing)."""
        return self._load("resources", notebook)

    def _load(self, folder: str, notebook: str) -> dict[str, Any]:
        path = self.path / folder / f"{notebook}.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))
