"""Killed runs resume exactly, and a kill never costs the last good checkpoint.

Every kill here is a real ``SIGKILL`` of a child process and of every process below it (torchrun's workers, the data
loader's workers) once a checkpoint is on disk, which is what a pre-empted pod or an out-of-memory kill does.
The resumed run must then end bit-identical to a run that was never interrupted: weights, codebooks and their EMA
statistics, optimizer moments, scheduler, generators, and the training log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from s2slib.atomic import atomic_path
from s2slib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds a run's processes through /proc")


# ---------------------------------------------------------------- helpers
def assert_identical(a: Any, b: Any, where: str = "state") -> None:
    """``a`` and ``b`` are equal to the bit: tensors with ``torch.equal``, containers item by item."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def training_log(out: Path) -> list[dict[str, Any]]:
    """The rows of ``history.jsonl`` without their wall-clock ``seconds``."""
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...); ``None`` once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(int(stat.parent.name))
        if fields and int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def kill_tree(pid: int) -> None:
    """``SIGKILL`` ``pid`` and every process below it, as a pod's end does, and wait until they are all gone.
    torchrun starts its workers in sessions of their own, so a process-group kill would miss them: stop each process
    top-down (a stopped process starts no more children), then kill them all."""
    stopped, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            os.kill(p, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        stopped.append(p)
        todo += children(p)
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    while time.time() < deadline:
        alive = [p for p in stopped if (fields := proc_stat(p)) is not None and fields[0] != "Z"]  # zombies are dead
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {alive} outlived SIGKILL")


def kill_after_checkpoint(cmd: list[str], ckpt: Path, min_step: int, log: Path, timeout: float = 120) -> int:
    """Start ``cmd``, ``SIGKILL`` it and every process it started as soon as ``ckpt`` holds step ``min_step`` or later,
    and return the step of the checkpoint left on disk."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists() and load_checkpoint(ckpt)["step"] >= min_step:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
        proc.wait()
    return int(load_checkpoint(ckpt)["step"])


def free_port() -> int:
    with socket.socket() as s:  # a free loopback port for the rendezvous (torchrun's port 0 does not pick one)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, worker: str = "ddp_codec_worker.py") -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), str(ROOT / "tests" / worker), *args]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# ---------------------------------------------------------------- DDP: two gloo processes
@pytest.mark.slow
@linux_only
def test_killed_ddp_run_resumes_bit_identical(codec_manifests, tmp_path):
    """torchrun with two processes, killed after a checkpoint and resumed, ends exactly where an uninterrupted
    two-process run of the same length ends, on both ranks."""
    train, val = map(str, codec_manifests)
    steps = 10  # a checkpoint every 2 steps (see the worker)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(torchrun(train, val, str(straight), "--resume-run", str(steps)))

    first = [torch.load(straight / f"first_batch_rank{r}_step0.pt", weights_only=True) for r in (0, 1)]
    assert first[0].shape == first[1].shape and not torch.equal(first[0], first[1])  # the ranks draw different crops

    # a delay after each step (no number changes) leaves time to kill it between two checkpoints
    saved = kill_after_checkpoint(torchrun(train, val, str(killed), "--resume-run", str(steps), "--step-delay", "0.3"),
                                  killed / "run" / "checkpoint.pt", 4, tmp_path / "killed.log")
    assert 4 <= saved < steps and not (killed / "final_rank0.pt").exists()
    run(torchrun(train, val, str(killed), "--resume-run", str(steps)))
    resumed_first = [torch.load(killed / f"first_batch_rank{r}_step{saved}.pt", weights_only=True) for r in (0, 1)]
    assert not torch.equal(resumed_first[0], resumed_first[1])

    # rank 0's checkpoint: model (codebooks and EMA statistics included), optimizer, scheduler, step, generators
    assert_identical(load_checkpoint(straight / "run" / "checkpoint.pt"),
                     load_checkpoint(killed / "run" / "checkpoint.pt"))
    for r in (0, 1):  # and what each rank holds in memory at the end
        assert_identical(torch.load(straight / f"final_rank{r}.pt", weights_only=True),
                         torch.load(killed / f"final_rank{r}.pt", weights_only=True), f"rank{r}")
    assert training_log(straight / "run") == training_log(killed / "run")


@pytest.mark.slow
@linux_only
def test_killed_ddp_s2s_pretraining_resumes_bit_identical(tmp_path):
    """The S2S trainer under torchrun (two gloo processes, dropout on), killed after a checkpoint and resumed, ends
    exactly where an uninterrupted run ends: checkpoint, each rank's weights and optimizer, and the log."""
    steps, worker = 8, "ddp_s2s_worker.py"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(torchrun(str(straight), str(steps), worker=worker))
    first = [torch.load(straight / f"first_batch_rank{r}_step0.pt", weights_only=True) for r in (0, 1)]
    assert not torch.equal(first[0], first[1])  # the ranks draw different examples

    saved = kill_after_checkpoint(torchrun(str(killed), str(steps), "--step-delay", "0.3", worker=worker),
                                  killed / "run" / "checkpoint.pt", 2, tmp_path / "killed.log")
    assert 2 <= saved < steps and not (killed / "final_rank0.pt").exists()
    run(torchrun(str(killed), str(steps), worker=worker))
    assert_identical(load_checkpoint(straight / "run" / "checkpoint.pt"),
                     load_checkpoint(killed / "run" / "checkpoint.pt"))
    for r in (0, 1):
        assert_identical(torch.load(straight / f"final_rank{r}.pt", weights_only=True),
                         torch.load(killed / f"final_rank{r}.pt", weights_only=True), f"rank{r}")
    assert training_log(straight / "run") == training_log(killed / "run")


# ---------------------------------------------------------------- one process, two data-loader workers
TRAIN_WITH_WORKERS = """
import sys, time
from s2slib.codec.config import CodecConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer
train, val, out, step_delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cfg = CodecTrainConfig(max_steps=12, batch_size=2, segment_s=0.25, warmup_steps=1, val_every=4, val_items=1,
                       val_max_s=0.5, ckpt_every=2, log_every=1, num_workers=2)
trainer = CodecTrainer(CodecConfig.tiny(), cfg, train, val, out, device="cpu")
step = trainer.train_step
def slow_step(wav):  # a pause after each step changes no number; it leaves time to kill the run between checkpoints
    row = step(wav)
    time.sleep(step_delay)
    return row
trainer.train_step = slow_step
trainer.fit(progress=False)
"""


@pytest.mark.slow
@linux_only
def test_killed_run_with_loader_workers_resumes_exactly(codec_manifests, tmp_path):
    """``num_workers=2``: the run (and its two loader processes) killed mid-run and resumed ends with the weights,
    optimizer and log of a run with the same workers that was never interrupted."""
    train, val = map(str, codec_manifests)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    script = [sys.executable, "-c", TRAIN_WITH_WORKERS, train, val]
    run([*script, str(straight), "0"])
    saved = kill_after_checkpoint([*script, str(killed), "0.3"], killed / "checkpoint.pt", 4, tmp_path / "killed.log")
    assert 4 <= saved < 12 and not (killed / "codec.pt").exists()
    run([*script, str(killed), "0"])

    assert_identical(load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt"))
    log = training_log(straight)
    assert [r["step"] for r in log if "loss_mel" in r] == list(range(1, 13))
    assert [r["step"] for r in log if "val_mel_distance" in r] == [4, 8, 12]
    assert training_log(killed) == log  # every logged float equal: losses, gradient norms, validation metrics


# ---------------------------------------------------------------- a kill in the middle of a save
SAVE_THEN_HANG = """
import io, sys, time
import torch
from s2slib.checkpoint import save_checkpoint
target, step = sys.argv[1], int(sys.argv[2])
real_save = torch.save
def half_then_hang(obj, f):  # write the first half of the checkpoint's bytes, then stall: the test kills us here
    buf = io.BytesIO()
    real_save(obj, buf)
    with open(f, "wb") as fh:
        fh.write(buf.getvalue()[: buf.getbuffer().nbytes // 2])
    print("writing", flush=True)
    time.sleep(120)
torch.save = half_then_hang
save_checkpoint(target, {"step": step, "weights": torch.randn(100_000)}, kind="test")
"""


def start_hanging_save(target: Path, step: int) -> subprocess.Popen:
    """A process that is half-way through saving ``target`` (it stays there until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", SAVE_THEN_HANG, str(target), str(step)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing", "the writer died before it started writing"
    return proc


def stray_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids of POSIX")
def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    """A writer killed mid-save leaves the previous checkpoint in place and loadable; its half-written temporary file
    is never read, does not stop the next save, and that save deletes it (a running writer's file stays)."""
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"step": 1, "weights": torch.arange(10.0)}, kind="test")

    killed, alive = start_hanging_save(target, 2), start_hanging_save(target, 3)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        strays = stray_files(tmp_path)
        assert len(strays) == 2 and all(p.stat().st_size > 0 for p in strays)  # two half-written saves
        with pytest.raises(CheckpointError):  # what they hold is truncated: it must never be taken for the file
            load_checkpoint(strays[0])
        state = load_checkpoint(target, kind="test")
        assert state["step"] == 1 and torch.equal(state["weights"], torch.arange(10.0))

        save_checkpoint(target, {"step": 4}, kind="test")  # the next save works, and clears the dead writer's file
        assert load_checkpoint(target)["step"] == 4
        left = stray_files(tmp_path)
        assert len(left) == 1 and f".{alive.pid}@" in left[0].name  # the running writer's file is not touched
    finally:
        alive.kill()
        alive.wait()
    save_checkpoint(target, {"step": 5}, kind="test")
    assert stray_files(tmp_path) == [] and load_checkpoint(target)["step"] == 5


def test_stray_temp_files_of_other_machines_expire(tmp_path):
    """A temporary file named by a writer on another machine (a pre-empted pod sharing the folder) cannot be checked
    for a running process: it is kept while fresh and deleted once nobody has written to it for a day."""
    target = tmp_path / "checkpoint.pt"
    fresh = tmp_path / ".checkpoint.pt.123@another-pod.0a1b2c3d.tmp.pt"
    old = tmp_path / ".checkpoint.pt.456@another-pod.4e5f6a7b.tmp.pt"
    unrelated = tmp_path / ".checkpoint.pt.notes.tmp.pt"  # not named by atomic_path: never touched
    for p in (fresh, old, unrelated):
        p.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    os.utime(unrelated, (day_ago, day_ago))
    save_checkpoint(target, {"step": 1}, kind="test")
    assert stray_files(tmp_path) == sorted([fresh, unrelated])


def test_atomic_files_get_the_usual_permissions(tmp_path):
    """A file written through a temporary name is as readable as one written directly (umask, not 0600)."""
    with atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("{}")
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode == (tmp_path / "b.json").stat().st_mode


def test_corrupt_checkpoint_error_does_not_advise_deleting_it(tmp_path):
    """The error about a damaged checkpoint says what is wrong and what to do, and never to delete the user's file."""
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"step": 1, "weights": torch.randn(1000)}, kind="test")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(target)
    message = str(err.value)
    assert str(target) in message and "truncated or corrupt" in message
    assert "another checkpoint" in message and "another output folder" in message
    assert "delete" not in message.lower()
    assert target.read_bytes() == data[: len(data) // 2]  # and the file is left as it was


def test_history_survives_a_half_written_last_line(tmp_path):
    """A kill during ``History.log``'s append leaves half a line; resuming drops it (it is newer than any
    checkpoint) instead of failing, while damage elsewhere is reported with the file and line."""
    from s2slib.training import History

    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    history = History(path, resume_step=2)
    assert [r["step"] for r in history.rows] == [1, 2]
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n'
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n{"step": 3, "loss": 0.3}\n')
    with pytest.raises(ValueError, match=r"history.jsonl:2"):
        History(path, resume_step=3)
