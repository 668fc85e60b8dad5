"""Pieces every trainer of the course shares: distributed setup, the learning-rate schedule, mixed precision and the
training log.

The trainers themselves (``s2slib.codec.train`` and later stages) are single classes that the notebooks, the command
lines, ``torchrun`` and the tests all call; this module keeps what they have in common in one place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from s2slib import atomic
from s2slib.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from s2slib.runtime import pick_device, seed_everything


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``), if any.

    NCCL on CUDA, gloo on CPU (which is how the tests run DistributedDataParallel with two processes on a laptop).
    A single process without those variables gets ``DistInfo()`` and no process group.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def cosine_with_warmup(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0 to 1 over ``warmup_steps``, then a cosine decay to
    ``min_ratio`` at ``max_steps`` (Loshchilov & Hutter, "SGDR", 2017, without restarts)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast(device: torch.device, enabled: bool, cpu_bf16: bool = False):
    """Mixed precision on CUDA (bfloat16 where supported, else float16); on CPU bfloat16 only with ``cpu_bf16``
    (see :func:`cpu_bf16_choice`), else a no-op. Disabled entirely when ``enabled`` is False."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_bf16 else contextlib.nullcontext()
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that multiply bfloat16 natively


def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX, read from Linux's ``cpuinfo``). Where
    it does not (older x86, and machines without ``/proc/cpuinfo``), bfloat16 matrix products are emulated and
    slower than float32."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def cpu_bf16_choice(choice: str | bool) -> bool:
    """``"auto"``, ``"on"`` or ``"off"`` (or a bool) -> whether CPU training runs under bfloat16 autocast.
    ``"auto"`` turns it on where the CPU has native bfloat16 (:func:`cpu_has_native_bf16`): measured on the course's
    2-core AVX-512 BF16 machine, a fine-tuning step of notebook 06 takes 35 % less time. Weights, optimizer state and
    losses stay float32; matrix products and attention run in bfloat16 (8 bits of mantissa)."""
    if isinstance(choice, bool):
        return choice
    options = {"on": True, "off": False}
    if choice == "auto":
        return cpu_has_native_bf16()
    if choice not in options:
        raise ValueError(f"cpu_bf16 must be 'auto', 'on' or 'off', got {choice!r}")
    return options[choice]


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    """float16 autocast needs loss scaling; bfloat16 (and CPU float32) does not."""
    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()


class History:
    """The training log: one JSON object per line in ``history.jsonl`` (``step`` plus whatever was logged).

    On resume, entries after the checkpoint's step are dropped, so the log matches the weights exactly.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None, write: bool = True):
        self.path = Path(path)
        self.write = write
        self.rows: list[dict[str, Any]] = []
        if self.path.exists() and resume_step is not None:
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            for i, line in enumerate(lines):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    if i == len(lines) - 1:  # a run killed while appending: the half line is newer than the checkpoint
                        break
                    raise ValueError(f"{self.path}:{i + 1}: the training log is damaged ({exc.msg}); give the run "
                                     "another output folder, or repair that line") from exc
                if row.get("step", 0) <= resume_step:
                    self.rows.append(row)
        if write:
            atomic.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.write:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of every logged row that has ``key``."""
        rows = [r for r in self.rows if key in r]
        return [r["step"] for r in rows], [r[key] for r in rows]


def gather_rng_states(info: DistInfo) -> list[dict[str, Any]] | None:
    """Every process's random generators, gathered on rank 0 (``None`` elsewhere; every rank must call it).

    Ranks draw different numbers (dropout, quantizer dropout, dead-code resets), so rank 0's state alone cannot
    resume the others exactly: a checkpoint stores one state per rank.
    """
    mine = rng_state()
    if not info.enabled:
        return [mine]
    states = [None] * info.world_size if info.is_main else None
    dist.gather_object(mine, states, dst=0)
    return states


def save_training_checkpoint(path: Path, state: Callable[[], dict[str, Any]], kind: str, info: DistInfo) -> Path | None:
    """Write a trainer's checkpoint atomically with every rank's random generators (``rng_ranks``): rank 0 writes
    ``state()`` and returns the path, the other ranks return None; under DDP every rank must call it."""
    rngs = gather_rng_states(info)
    if not info.is_main:
        return None
    return save_checkpoint(path, {**state(), "rng_ranks": rngs}, kind=kind)


def restore_rng_states(state: dict[str, Any], info: DistInfo, seed: int, step: int) -> bool:
    """Restore this rank's generators from a checkpoint's ``rng_ranks`` (or ``rng``); True when the resume is exact.

    A checkpoint saved by another number of processes cannot continue each stream: the run goes on with fresh
    per-rank streams seeded from ``seed`` and ``step`` (and this returns False).
    """
    ranks = state.get("rng_ranks", [state["rng"]])
    if len(ranks) == info.world_size:
        set_rng_state(ranks[info.rank])
        return True
    seed_everything(seed + 1000 * step + info.rank)
    return False


@dataclass
class RunStart:
    """Where a trainer starts: its device, its place in the job, its output folder and the checkpoint it resumes
    (``None`` for a fresh run)."""

    device: torch.device
    dist: DistInfo
    out_dir: Path
    state: dict[str, Any] | None


def start_run(device: str, out_dir: str | os.PathLike, seed: int, checkpoint_name: str, kind: str,
              resume: bool = True) -> RunStart:
    """What every trainer does first: pick the device, join the ``torchrun`` job if any (each rank on its own GPU),
    create ``out_dir``, seed this rank's generators, and load ``out_dir/checkpoint_name`` (a checkpoint of ``kind``)
    when ``resume`` and it exists."""
    dev = pick_device(device)
    info = setup_distributed(dev)
    if info.enabled and dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed + info.rank)
    ckpt = out / checkpoint_name
    state = load_checkpoint(ckpt, kind=kind) if resume and ckpt.exists() else None
    return RunStart(dev, info, out, state)


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with its fused kernel wherever every parameter allows it (floating
    point, on CPU or CUDA): one pass over the weights per step instead of a dozen ``foreach`` passes. The update is
    the same up to float rounding; on 2 CPU cores it cut codec v2's optimizer step (11 M parameters, gradient
    clipping included) from 81 ms to 30 ms, a tenth of a training step. ``params`` as for any optimizer: tensors,
    or parameter groups (dicts with ``"params"``)."""
    params = list(params)
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    fused = all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors) or None
    optimizer = torch.optim.AdamW(params, fused=fused, **kwargs)
    if fused:
        # The fused kernel writes the weights without moving their version counters (PyTorch 2.11), so a cache
        # keyed on them (the quantizer's projections and lookup tables, s2slib.codec.quantize._tensor_key) would
        # never see the update: validation between steps would run on stale tables. Move them after every step.
        optimizer.register_step_post_hook(lambda opt, args, kw: torch.autograd.graph.increment_version(tensors))
    return optimizer


def schedule_and_scaler(optimizer: torch.optim.Optimizer, cfg: Any, device: torch.device):
    """The learning-rate schedule (:func:`cosine_with_warmup` from ``cfg``'s ``warmup_steps``, ``max_steps``,
    ``min_lr_ratio``) and the loss scaler (active only where :func:`needs_grad_scaler` says so, from ``cfg.amp``)."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio))
    return scheduler, torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device, cfg.amp))


def optimisation_state(optimizer, scheduler, scaler, step: int) -> dict[str, Any]:
    """What a checkpoint holds to continue training exactly, besides the model and the generators."""
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "rng": rng_state()}


def restore_optimisation(state: dict[str, Any], optimizer, scheduler, scaler, info: DistInfo, seed: int) -> int:
    """Inverse of :func:`optimisation_state` (and every rank's generators, :func:`restore_rng_states`); the step."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    step = int(state["step"])
    restore_rng_states(state, info, seed, step)
    return step
