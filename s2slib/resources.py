"""What a notebook costs to run: the peak memory of its kernel and the time per training step, measured from outside.

The course runner (:mod:`s2slib.course`) wraps each notebook's execution in a :class:`MemoryMonitor` and compares the
run directory's training logs before and after with :func:`snapshot_training_logs` and :func:`new_training`, so a
notebook needs no code of its own to be measured. Only GPU memory has to be read inside the kernel; notebooks that
train record it with :meth:`s2slib.run.RunDir.record_cuda_memory`.

Memory. The kernel is a child process of the runner (papermill starts it). About every half second it reads

- the kernel's resident-memory high-water mark (``VmHWM`` in ``/proc/<pid>/status`` on Linux: exact, whatever the
  sampling missed; elsewhere the largest resident size sampled), and
- the memory of the kernel and all its child processes together (data-loading workers, process pools, command-line
  tools it runs): proportional set size on Linux, so pages the forked workers share with the kernel count once;
  resident set size elsewhere, which counts shared pages in every process and so overstates. This one is sampled:
  a child that lives less than the sampling interval can be missed.

Time per step. Every trainer of the course appends rows to a ``history.jsonl`` (:class:`s2slib.training.History`);
its training rows carry ``step`` and ``seconds``, the wall time since that ``fit()`` began. Rows a notebook added are
the rows after the part of the log that was there before it ran (a resumed log keeps its old rows up to the
checkpoint, then grows). The seconds of each ``fit()`` over the steps it took give the time per step; a new ``fit()``
shows as ``seconds`` going back down. The first step's start-up (data workers, CUDA's kernel selection) and any
validation or checkpoint inside the loop are included, as they are in a long run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

TRAINING_LOG = "history.jsonl"  # the name every trainer gives its log (s2slib.training.History)
MB = 1024 * 1024


def _high_water_mark(pid: int) -> int | None:
    """Peak resident bytes of a process so far (Linux's ``VmHWM``), or None where the system does not say."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _footprint(proc: psutil.Process) -> int:
    """Bytes a process holds: proportional set size on Linux (shared pages split among their users), else RSS."""
    if sys.platform.startswith("linux"):
        try:
            return proc.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            pass
    return proc.memory_info().rss


class MemoryMonitor:
    """Samples the memory of this process's children (the kernel) and their descendants in a background thread,
    every ``interval_s`` seconds or less often when sampling itself would take more than a tenth of the time.

    Use as a context manager around the execution; :meth:`result` then gives ``peak_kernel_mb`` (the largest
    high-water mark of a direct child) and ``peak_total_mb`` (the largest sampled sum over all descendants), or an
    empty dict when no child process was ever seen.
    """

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-monitor", daemon=True)
        self._peak_kernel = 0
        self._peak_total = 0
        self._samples = 0

    def __enter__(self) -> "MemoryMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            t0 = time.perf_counter()
            self.sample()
            # reading a large process's page tables takes time (and the lock its page faults need): at most a tenth
            # of the time goes to sampling
            if self._stop.wait(max(self.interval_s, 10 * (time.perf_counter() - t0))):
                break

    def sample(self) -> None:
        """Read the children's memory once (the thread calls this every ``interval_s``)."""
        try:
            everyone = self._me.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for proc in everyone:
            try:
                total += _footprint(proc)
                if proc.ppid() == self._me.pid:  # a direct child: the kernel
                    hwm = _high_water_mark(proc.pid) or proc.memory_info().rss
                    self._peak_kernel = max(self._peak_kernel, hwm)
            except psutil.Error:  # it exited while being read
                continue
        if everyone:
            self._samples += 1
            self._peak_total = max(self._peak_total, total)

    def result(self) -> dict[str, Any]:
        if not self._samples:
            return {}
        return {
            "peak_kernel_mb": round(self._peak_kernel / MB, 1),
            "peak_total_mb": round(self._peak_total / MB, 1),
            "memory_measure": "pss" if sys.platform.startswith("linux") else "rss",
        }


# ------------------------------------------------------------------------------------------------ time per step


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of a training log; a damaged line (a run killed while appending) is skipped."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def snapshot_training_logs(root: str | os.PathLike) -> dict[Path, list[dict[str, Any]]]:
    """Every ``history.jsonl`` under ``root`` with its rows, to compare with after a notebook ran."""
    found = {}
    for folder, _, files in os.walk(root):
        if TRAINING_LOG in files:
            path = Path(folder) / TRAINING_LOG
            found[path] = _read_rows(path)
    return found


def training_time(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Steps and seconds the rows ``after`` added to a log that held ``before``; None when no training step was added.

    Returns ``{"steps", "seconds", "seconds_per_step"}``. Rows count as new after the longest common prefix of the
    two lists (a resumed log rewrites its rows up to the checkpoint unchanged).
    """
    kept = 0
    while kept < min(len(before), len(after)) and before[kept] == after[kept]:
        kept += 1
    is_train = lambda r: isinstance(r.get("step"), (int, float)) and isinstance(r.get("seconds"), (int, float))
    last_step = next((r["step"] for r in reversed(after[:kept]) if is_train(r)), 0)
    steps = seconds = 0.0
    start = last_clock = None
    for row in filter(is_train, after[kept:]):
        if last_clock is None or row["seconds"] < last_clock:  # a new fit(): its clock starts again from zero
            if start is not None:
                steps, seconds = steps + last_step - start, seconds + last_clock
            start = last_step
        last_step, last_clock = row["step"], row["seconds"]
    if start is None:
        return None
    steps, seconds = steps + last_step - start, seconds + last_clock
    if steps <= 0:
        return None
    return {"steps": int(steps), "seconds": round(seconds, 2), "seconds_per_step": round(seconds / steps, 4)}


def new_training(root: str | os.PathLike, before: dict[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The training that happened under ``root`` since :func:`snapshot_training_logs` returned ``before``.

    One entry per log that gained training steps: ``{"log": path relative to root, "steps", "seconds",
    "seconds_per_step"}``, in path order.
    """
    root = Path(root)
    out = []
    for path, rows in sorted(snapshot_training_logs(root).items()):
        timing = training_time(before.get(path, []), rows)
        if timing:
            out.append({"log": path.relative_to(root).as_posix(), **timing})
    return out
