"""Saving figures under stable names: the one helper every notebook uses.

``save_figure(fig, "02_codec_loss", run)`` writes ``<run>/figures/02_codec_loss.png`` and publishes the same file
to the repository's ``figures/`` (or ``$S2S_FIGURES_DIR``), so the README and the course pages always show the latest
figure of each name. Smoke runs (a few training steps, used by CI) and dry runs (full-size models, a few steps) only
write into their run directory: their figures say nothing and must not replace the published ones.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from s2slib import atomic, paths
from s2slib.run import RunDir

_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]*$")


def save_figure(fig, name: str, run: RunDir | None = None, dpi: int = 110) -> Path:
    """Save a matplotlib ``fig`` as ``<name>.png``; returns the path of the run's copy (or the published one).

    ``name`` is a stable identifier, by convention prefixed with the notebook number (``01_data_durations``).
    """
    if not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must be letters, digits, '_', '-' or '.', without a folder or suffix")
    publish = run is None or (run.profile != "smoke" and not run.dry_run)
    first = (run.figures_dir if run is not None else paths.figures_dir()) / f"{name}.png"
    with atomic.atomic_path(first) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if publish and run is not None:
        published = paths.figures_dir() / f"{name}.png"
        published.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(published) as tmp:
            shutil.copyfile(first, tmp)
    return first
