"""Where the course keeps things: the repository's bundled data, the download cache, runs and figures.

Nothing is hard-wired to one machine. Three environment variables move the heavy parts, e.g. to a pod's volume:

``S2S_DATA_DIR``
    Root for everything the course downloads or generates (default: the repository itself). Downloads and the
    synthesis cache go to ``$S2S_DATA_DIR/data/cache``, runs to ``$S2S_DATA_DIR/runs``.
``S2S_RUNS_DIR``
    Overrides only the runs folder.
``S2S_FIGURES_DIR``
    Where :func:`s2slib.figures.save_figure` publishes figures (default: the repository's ``figures/``).

The bundled inputs (``data/text``, ``data/samples``) always come from the repository checkout.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository checkout that holds this package (``s2slib`` is installed editable from it)."""
    return Path(__file__).resolve().parents[1]


def bundled_data_dir() -> Path:
    """The repository's ``data/`` folder with the bundled text corpus and real Telugu samples."""
    path = repo_root() / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"The course's bundled data folder {path} is missing. Run the course from a clone of the repository "
            "(pip install -e . inside it), not from a copy of the package alone."
        )
    return path


def data_home() -> Path:
    """Root for generated and downloaded data and runs (``$S2S_DATA_DIR`` or the repository)."""
    env = os.environ.get("S2S_DATA_DIR")
    return Path(env).expanduser().resolve() if env else repo_root()


def cache_dir() -> Path:
    """Downloads, extracted corpora and the synthesis cache: ``<data_home>/data/cache``."""
    return data_home() / "data" / "cache"


def runs_dir() -> Path:
    """Parent folder of run directories: ``$S2S_RUNS_DIR`` or ``<data_home>/runs``."""
    env = os.environ.get("S2S_RUNS_DIR")
    return Path(env).expanduser().resolve() if env else data_home() / "runs"


def figures_dir() -> Path:
    """Where figures are published under stable names: ``$S2S_FIGURES_DIR`` or the repository's ``figures/``."""
    env = os.environ.get("S2S_FIGURES_DIR")
    return Path(env).expanduser().resolve() if env else repo_root() / "figures"


def notebooks_dir() -> Path:
    """The course notebooks ``notebooks/0N_*.ipynb``."""
    return repo_root() / "notebooks"
