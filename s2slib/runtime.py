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
