"""Adversarial codec training: discriminator shapes, GAN losses, alternating optimisation, resume after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from s2slib.checkpoint import load_checkpoint
from s2slib.codec.config import CodecConfig
from s2slib.codec.discriminators import DiscriminatorConfig, Discriminators
from s2slib.codec.losses import (feature_matching_loss, hinge_discriminator_loss, hinge_generator_loss,
                                 lsgan_discriminator_loss, lsgan_generator_loss)
from s2slib.codec.train import CodecTrainConfig, CodecTrainer, export_codec
from s2slib.codec.train_gan import CodecGANTrainer, GANTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_discriminator_shapes():
    cfg = DiscriminatorConfig.tiny()
    disc = Discriminators(cfg)
    wav = torch.randn(2, 1, 4001) * 0.1  # a length that is no multiple of any period
    logits, features = disc(wav)
    assert len(logits) == len(features) == len(cfg.periods) + len(cfg.fft_sizes) == 8
    assert disc.names[:5] == ["mpd_p2", "mpd_p3", "mpd_p5", "mpd_p7", "mpd_p11"]
    for p, feats, y in zip(cfg.periods, features, logits):
        assert all(f.shape[0] == 2 and f.shape[-1] == p for f in feats)  # folded by the period: last axis = p
        assert len(feats) == len(cfg.mpd_channels) + 1 and y.shape[0] == 2
        assert feats[0].shape[2] == -(-(-(-4001 // p)) // 3)  # ceil(T / p) rows, then stride 3
    for n, feats in zip(cfg.fft_sizes, features[5:]):
        frames = 4001 // (n // 4) + 1
        assert feats[0].shape == (2, cfg.stft_channels, frames, n // 2 + 1)  # (B, C, frames, freqs)
        assert len(feats) == len(cfg.stft_dilations) + 3
    seed = Discriminators(DiscriminatorConfig.seed())
    assert seed.num_parameters() > 10 * Discriminators(DiscriminatorConfig.laptop()).num_parameters()


def test_adversarial_losses():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert hinge_discriminator_loss(zeros, zeros) == pytest.approx(2.0)
    assert hinge_discriminator_loss([torch.full((2, 5), 3.0)], [torch.full((2, 5), -2.0)]) == 0  # past the margins
    assert hinge_generator_loss(ones) == 0 and hinge_generator_loss(zeros) == pytest.approx(1.0)
    assert lsgan_discriminator_loss(ones, zeros) == 0 and lsgan_discriminator_loss(zeros, ones) == pytest.approx(2.0)
    assert lsgan_generator_loss(ones) == 0 and lsgan_generator_loss(zeros) == pytest.approx(1.0)
    real = [[torch.randn(2, 3, 10), torch.randn(2, 4, 5)]]
    assert feature_matching_loss(real, real) == 0
    fake = [[r + 0.5 for r in real[0]]]
    scaled = feature_matching_loss([[10 * r for r in real[0]]], [[10 * f for f in fake[0]]])
    assert scaled == pytest.approx(float(feature_matching_loss(real, fake)), rel=1e-5)  # relative: scale-free
    fake_req = [[f.clone().requires_grad_() for f in fake[0]]]
    real_req = [[r.clone().requires_grad_() for r in real[0]]]
    feature_matching_loss(real_req, fake_req).backward()
    assert real_req[0][0].grad is None and fake_req[0][0].grad is not None  # trains the generator only


def gan_config(**kw) -> GANTrainConfig:
    base = dict(max_steps=6, batch_size=2, segment_s=0.25, warmup_steps=1, val_every=0, val_items=1, ckpt_every=3,
                log_every=1, disc_start_step=2, disc_preset="tiny", val_max_s=1.0)
    base.update(kw)
    return GANTrainConfig(**base)


def params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_alternating_optimization(codec_manifests, tmp_path):
    train, val = codec_manifests
    trainer = CodecGANTrainer(CodecConfig.tiny(), gan_config(), train, val, tmp_path, device="cpu")
    d0, g0 = params(trainer.disc), params(trainer.codec)
    trainer.fit(progress=False, stop_after=2)  # steps 0 and 1: before disc_start_step
    d1, g1 = params(trainer.disc), params(trainer.codec)
    assert all(torch.equal(d0[k], d1[k]) for k in d0), "discriminators must not move during the warm-up"
    assert any(not torch.equal(g0[k], g1[k]) for k in g0)
    trainer.fit(progress=False, stop_after=1)  # step 2: one discriminator step, then one generator step
    d2, g2 = params(trainer.disc), params(trainer.codec)
    assert any(not torch.equal(d1[k], d2[k]) for k in d1)
    assert any(not torch.equal(g1[k], g2[k]) for k in g1)
    rows = trainer.history.rows
    assert "loss_d" not in rows[1] and {"loss_d", "loss_g_adv", "loss_feat", "d_real", "d_fake"} <= set(rows[2])


def test_starts_from_the_notebook_02_codec(codec_manifests, tmp_path):
    train, val = codec_manifests
    base = CodecTrainer(CodecConfig.tiny(), CodecTrainConfig(max_steps=2, batch_size=2, segment_s=0.25, val_every=0,
                                                             warmup_steps=1), train, val, tmp_path / "c", device="cpu")
    base.fit(progress=False)
    trainer = CodecGANTrainer(CodecConfig.tiny(), gan_config(), train, val, tmp_path / "gan", device="cpu",
                              init_from=tmp_path / "c" / "codec.pt")
    start = load_checkpoint(tmp_path / "c" / "codec.pt")["model"]
    assert all(torch.equal(start[k], v) for k, v in trainer.codec.state_dict().items())


def gan_cli(train, val, out, max_steps):
    return [sys.executable, "-m", "s2slib.codec", "train-gan", "--train-manifest", str(train), "--val-manifest",
            str(val), "--out", str(out), "--preset", "tiny", "--disc-preset", "tiny", "--max-steps", str(max_steps),
            "--batch-size", "2", "--segment-s", "0.25", "--ckpt-every", "5", "--val-every", "0", "--log-every", "1",
            "--disc-start-step", "3", "--warmup-steps", "1", "--device", "cpu", "--no-progress"]


def test_killed_run_resumes_from_last_checkpoint(codec_manifests, tmp_path):
    train, val = codec_manifests
    steps = 30
    straight = subprocess.run(gan_cli(train, val, tmp_path / "straight", steps), capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(gan_cli(train, val, out, steps), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 10:
            break
        time.sleep(0.2)  # each look loads the checkpoint: do not take the run's CPU
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(ckpt)["step"]
    logged = [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert saved % 5 == 0 and saved >= 10 and max(logged) - saved < 5  # lost less than one checkpoint interval

    resumed = subprocess.run(gan_cli(train, val, out, steps), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(ckpt)
    assert a["step"] == b["step"] == steps
    for part in ("model", "disc"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"  # as if it had never been killed
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    training_rows = [r["step"] for r in rows if "loss_mel" in r]
    assert training_rows == list(range(1, steps + 1))  # the log was cut back to the checkpoint: no step twice
