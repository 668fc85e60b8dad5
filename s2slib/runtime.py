"""Device choice and seeding, identical for notebooks, command lines and tests."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU. ``"cuda"`` without a GPU is an error, not a silent fallback."""
    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICE_CHOICES} (or 'cuda:N'), got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was asked for but PyTorch sees no CUDA GPU on this machine. "
            "Use device='auto' or 'cpu', or run on a GPU machine."
        )
    return torch.device(device)


def default_profile() -> str:
    """The course profile to use when none is given: ``gpu`` where CUDA is available, else ``laptop``."""
    return "gpu" if torch.cuda.is_available() else "laptop"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a rerun draws the same numbers."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, e.g. a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> int:
    """Give PyTorch ``threads`` CPU threads, at most one per available core; returns the number set.

    A profile written for a 16-core pod (``torch_threads: 8``) run on a 2-core laptop would otherwise start 8
    threads that take turns on 2 cores. A cap is announced, never silent.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    cores = available_cores()
    used = min(threads, cores)
    if used < threads:
        print(f"note: {threads} PyTorch threads asked for, but this machine gives this process {cores} core(s): "
              f"using {used}")
    torch.set_num_threads(used)
    return used
