"""The codec trainer, its checkpoints, the command line and DistributedDataParallel on CPU (gloo, two processes).

Everything runs the real trainer on the tiny preset for a few steps, on audio the tests synthesize.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s2slib.checkpoint import CheckpointError
from s2slib.codec.config import CodecConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer, load_codec
from s2slib.data import synth

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "నమస్కారం, ఎలా ఉన్నారు?"


def small_config(**kw) -> CodecTrainConfig:
    base = dict(max_steps=6, batch_size=2, segment_s=0.25, warmup_steps=2, val_every=3, val_items=2, ckpt_every=3,
                log_every=1, val_max_s=1.0)
    base.update(kw)
    return CodecTrainConfig(**base)


def test_training_reduces_loss_and_writes_outputs(codec_manifests, tmp_path):
    train, val = codec_manifests
    trainer = CodecTrainer(CodecConfig.tiny(), small_config(max_steps=30, lr=3e-3, val_every=30, ckpt_every=10),
                           train, val, tmp_path, device="cpu")
    history = trainer.fit(progress=False)
    steps, mel = history.series("loss_mel")
    assert steps[-1] == 30
    assert np.mean(mel[-5:]) < np.mean(mel[:5])  # it learns
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "codec.pt").is_file()
    val_rows = [r for r in history.rows if "val_mel_distance" in r]
    assert val_rows and val_rows[-1]["step"] == 30
    logged = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert logged == history.rows
    codec = load_codec(tmp_path / "codec.pt")
    assert codec.config == CodecConfig.tiny() and not codec.training


def test_resume_is_exact(codec_manifests, tmp_path, check_exact_resume):
    train, val = codec_manifests
    check_exact_resume(lambda out: CodecTrainer(CodecConfig.tiny(), small_config(), train, val, out, device="cpu"),
                       tmp_path, stop_after=3)


def test_a_pitch_locked_head_learns_the_measured_pitch_and_resumes_exactly(codec_manifests, tmp_path,
                                                                          check_exact_resume):
    """``phase="pitch"``: the trainer adds the pitch loss (F0 in octaves, voicing) against the pitch it measures on
    each crop, logs both terms, lowers them, and a resumed run equals an uninterrupted one."""
    import dataclasses

    train, val = codec_manifests
    config = dataclasses.replace(CodecConfig.fast50_tiny(), phase="pitch")
    trainer = CodecTrainer(config, small_config(max_steps=40, lr=3e-3, val_every=40, ckpt_every=40, segment_s=0.5),
                           train, val, tmp_path / "long", device="cpu")
    history = trainer.fit(progress=False)
    for key in ("loss_pitch_f0", "loss_pitch_voicing"):
        steps, values = history.series(key)
        assert steps[-1] == 40 and np.isfinite(values).all()
        assert np.mean(values[-5:]) < np.mean(values[:5]), key  # it learns the pitch
    assert load_codec(tmp_path / "long" / "codec.pt").config.phase == "pitch"
    check_exact_resume(lambda out: CodecTrainer(config, small_config(segment_s=0.5), train, val, out, device="cpu"),
                       tmp_path / "resume", stop_after=3)


def test_the_phase_advance_loss_is_logged_and_lowered_only_when_weighted(codec_manifests, tmp_path):
    """``advance_weight``: the trainer supervises the iSTFT head's turn per hop (``loss_phase_advance``) and lowers
    it; at the default weight 0 the term is not computed."""
    import dataclasses

    train, val = codec_manifests
    config = dataclasses.replace(CodecConfig.fast50_tiny(), phase="integrated")
    trainer = CodecTrainer(config, small_config(max_steps=30, lr=3e-3, val_every=30, ckpt_every=30, segment_s=0.5,
                                                advance_weight=5.0), train, val, tmp_path / "on", device="cpu")
    steps, values = trainer.fit(progress=False).series("loss_phase_advance")
    values = np.asarray(values)
    assert steps[-1] == 30 and np.isfinite(values).all() and values.max() <= 2
    assert np.mean(values[-5:]) < np.mean(values[:5])
    off = CodecTrainer(config, small_config(max_steps=2, segment_s=0.5), train, val, tmp_path / "off", device="cpu")
    assert off.fit(progress=False).series("loss_phase_advance") == ([], [])



def test_a_peak_locked_head_trains_with_the_frame_magnitude_loss_and_resumes_exactly(codec_manifests, tmp_path,
                                                                                    check_exact_resume):
    """``phase="peaks"`` with ``synthesis="wola"`` and ``frame_mag_weight``: the head predicts magnitudes only (its
    phase comes from them), the trainer logs the log-magnitude loss in the head's frames and lowers it, the
    checkpoint keeps the head's options, and a resumed run equals an uninterrupted one."""
    import dataclasses

    train, val = codec_manifests
    config = dataclasses.replace(CodecConfig.fast50_tiny(), phase="peaks", synthesis="wola")
    trainer = CodecTrainer(config, small_config(max_steps=30, lr=3e-3, val_every=30, ckpt_every=30, segment_s=0.5,
                                                frame_mag_weight=2.0), train, val, tmp_path / "on", device="cpu")
    steps, values = trainer.fit(progress=False).series("loss_frame_mag")
    assert steps[-1] == 30 and np.isfinite(values).all()
    assert np.mean(values[-5:]) < np.mean(values[:5])
    loaded = load_codec(tmp_path / "on" / "codec.pt").config
    assert (loaded.phase, loaded.synthesis) == ("peaks", "wola")
    check_exact_resume(lambda out: CodecTrainer(config, small_config(segment_s=0.5, frame_mag_weight=2.0), train, val,
                                                out, device="cpu"), tmp_path / "resume", stop_after=3)

def test_bad_checkpoints_get_clear_errors(codec_manifests, tmp_path):
    train, val = codec_manifests
    CodecTrainer(CodecConfig.tiny(), small_config(max_steps=2), train, val, tmp_path, device="cpu").fit(progress=False)
    other = CodecConfig.tiny()
    other.n_q = 2
    with pytest.raises(CheckpointError, match="different codec configuration"):
        CodecTrainer(other, small_config(max_steps=2), train, val, tmp_path, device="cpu")
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: len(ckpt.read_bytes()) // 2])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        CodecTrainer(CodecConfig.tiny(), small_config(max_steps=2), train, val, tmp_path, device="cpu")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_codec(ckpt)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "s2slib.codec", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def test_command_line_train_encode_decode_eval(codec_manifests, tmp_path):
    train, val = codec_manifests
    proc = run_cli("train", "--train-manifest", str(train), "--val-manifest", str(val), "--out", str(tmp_path / "c"),
                   "--preset", "tiny", "--max-steps", "3", "--batch-size", "2", "--segment-s", "0.25",
                   "--val-items", "1", "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    ckpt = tmp_path / "c" / "codec.pt"
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 3

    # a 22.05 kHz wav and an mp3 in a folder, plus a corrupt file that must be skipped, not fatal
    audio = tmp_path / "audio"
    audio.mkdir()
    wav = synth.synthesize(SENTENCE, "Priya")
    sf.write(audio / "a.wav", wav, synth.SAMPLE_RATE)
    sf.write(audio / "b.mp3", wav, synth.SAMPLE_RATE, format="MP3")
    (audio / "c.flac").write_bytes(b"fLaC but not really")

    proc = run_cli("encode", str(audio / "a.wav"), str(tmp_path / "a.codes"), "--checkpoint", str(ckpt), "--n-q", "2")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("decode", str(tmp_path / "a.codes"), str(tmp_path / "a_hat.wav"), "--checkpoint", str(ckpt))
    assert proc.returncode == 0, proc.stderr
    decoded, sr = sf.read(tmp_path / "a_hat.wav")
    assert sr == 16000 and abs(len(decoded) - len(wav) * 16000 / synth.SAMPLE_RATE) <= 1

    proc = run_cli("eval", "--checkpoint", str(ckpt), "--audio", str(audio))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("snr", "si_sdr", "mel_distance", "stoi", "bitrate_kbps", "n_files"):
        assert key in result
    assert result["n_files"] == 2 and str(audio / "c.flac") in result["skipped"]
    tiny = CodecConfig.tiny()
    assert result["bitrate_kbps"] == pytest.approx(tiny.n_q * np.log2(tiny.codebook_size) * 200 / 1000)

    proc = run_cli("decode", str(audio / "a.wav"), str(tmp_path / "x.wav"), "--checkpoint", str(ckpt))
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_distributed_data_parallel_on_cpu(codec_manifests, tmp_path):
    """torchrun with two gloo processes: the ranks stay in sync (weights, codebooks, discriminators) and rank 0
    writes the checkpoints, for the plain and the adversarial trainer."""
    train, val = codec_manifests
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:  # a free loopback port for the rendezvous (torchrun's port 0 does not pick one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port),
           str(ROOT / "tests" / "ddp_codec_worker.py"), str(train), str(val), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("rank", "gan_rank"):  # the plain trainer, then the adversarial one (codec and discriminators)
        a = torch.load(tmp_path / f"{name}0.pt", weights_only=True)
        b = torch.load(tmp_path / f"{name}1.pt", weights_only=True)
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), f"{name}: {key}"
    assert (tmp_path / "out" / "codec.pt").is_file() and (tmp_path / "gan" / "codec.pt").is_file()
