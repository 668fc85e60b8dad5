"""Checkpoints that survive a killed run and cannot run code when loaded.

- **Atomic**: written to a temporary file beside the target, then renamed into place (``os.replace``), so a process
  killed mid-save (SIGKILL, a pre-empted pod) leaves the previous checkpoint intact. The temporary file such a kill
  leaves behind is never read, and the next save deletes it (:func:`s2slib.atomic.remove_stale_temps`): a checkpoint
  can be large, and a few killed saves must not fill the disk.
- **Safe to load**: ``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers; a checkpoint
  that tries to unpickle arbitrary objects is refused.
- **Self-describing**: every checkpoint stores its ``kind`` (``"codec"``, ``"codec_gan"``, ...), a format version and
  the configuration that rebuilds its model.
- **Exact resume**: :func:`rng_state` / :func:`set_rng_state` capture Python, NumPy and PyTorch generators as
  tensors and plain numbers (what ``weights_only`` accepts).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2slib.atomic import atomic_path, remove_stale_temps

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, of another kind, or for a different model."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], kind: str) -> Path:
    """Atomically save ``state`` (tensors, numbers, strings, lists, dicts) as a checkpoint of ``kind``.

    Temporary files that killed saves of ``path`` left behind are deleted first (those of running writers stay).
    """
    payload = {"kind": kind, "format_version": FORMAT_VERSION, **state}
    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, checking that it is one of ``kind``.

    Raises ``FileNotFoundError`` when missing and :class:`CheckpointError` with what to do when it is corrupt,
    truncated, unsafe, or of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a foreign or damaged file fails deep in the unpickler with many exception types
        raise CheckpointError(
            f"{path} is not a loadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). It may be "
            "truncated or corrupt (a full disk, an unfinished copy), or hold objects other than tensors (refused for "
            "safety). Point at another checkpoint (the run's codec.pt, or a copy you kept), or start a fresh run in "
            "another output folder; this file is left as it is."
        ) from exc
    if not isinstance(state, dict) or "kind" not in state:
        raise CheckpointError(f"{path} is not a course checkpoint (no 'kind' field); give a checkpoint.pt or "
                              "codec.pt written by s2slib.")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and state["kind"] not in kinds:
        raise CheckpointError(f"{path} holds a {state['kind']!r} checkpoint; expected {' or '.join(kinds)}. Check "
                              "which file this step wants (a training checkpoint.pt or an exported codec.pt).")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer version of s2slib (format {state['format_version']}, "
                              f"this one reads up to {FORMAT_VERSION}); update s2slib to load it.")
    return state


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and PyTorch's global generators, in a form ``weights_only`` can load."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
