"""The pitch tracker behind codec v2's pitch-locked head (s2slib.codec.pitch) and its training loss."""

from __future__ import annotations

import math

import pytest
import torch

from s2slib.codec.pitch import f0_from_logit, frame_pitch, pitch_loss

SR = 16000


def _voiced(f0: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds), dtype=torch.float64) / SR
    return sum(torch.sin(2 * math.pi * f0 * k * t + k) / k for k in range(1, 8)).float()[None]  # (1, T)


@pytest.mark.parametrize("f0", [73.3, 118.0, 151.7, 233.0, 380.0])
def test_frame_pitch_finds_f0_within_a_few_cents_and_calls_it_voiced(f0):
    est, voiced = frame_pitch(_voiced(f0), SR, hop=320, n_fft=640)
    assert est.shape == voiced.shape == (1, 50)
    steady = est[0, 3:]  # after the frames that still hold the zeros before the start
    cents = 1200 * torch.log2(steady / f0).abs()
    assert float(cents.max()) < 5
    assert bool(voiced[0, 3:].all())


def test_noise_and_silence_are_unvoiced_and_quiet_frames_follow_the_loud_ones():
    g = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.randn(1, SR, generator=g)
    assert frame_pitch(noise, SR, 320, 640)[1].float().mean() < 0.1
    assert not frame_pitch(torch.zeros(1, SR), SR, 320, 640)[1].any()
    quiet_then_loud = torch.cat([1e-3 * _voiced(150.0, 0.5), _voiced(150.0, 0.5)], dim=-1)
    voiced = frame_pitch(quiet_then_loud[None], SR, 320, 640)[1][0]  # (B, 1, T) works too
    assert not voiced[3:24].any() and voiced[28:].all()  # 60 dB below the loudest: not voiced


def test_frame_pitch_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="too short"):
        frame_pitch(torch.zeros(1, 3200), SR, hop=160, n_fft=320, fmin=60.0)  # 267 lags in 320 samples
    with pytest.raises(ValueError, match="fmin"):
        frame_pitch(torch.zeros(1, 3200), SR, 320, 640, fmin=400.0, fmax=100.0)
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        frame_pitch(torch.zeros(3200), SR, 320, 640)


def test_pitch_loss_is_zero_at_the_target_and_its_gradient_points_there():
    f0 = torch.tensor([[100.0, 200.0, 300.0, 150.0]])
    voiced = torch.tensor([[True, True, True, False]])
    octaves = torch.log2(f0 / 50) / math.log2(10)  # sigmoid of the logit
    logit = torch.log(octaves / (1 - octaves))
    assert torch.allclose(f0_from_logit(logit), f0, rtol=1e-4)
    exact = torch.stack([logit, torch.tensor([[9.0, 9.0, 9.0, -9.0]])], dim=1).requires_grad_()  # (1, 2, 4)
    terms = pitch_loss(exact, f0, voiced)
    assert float(terms["f0"].detach()) < 1e-4 and float(terms["voicing"].detach()) < 1e-3
    off = torch.stack([logit + 0.5, torch.zeros(1, 4)], dim=1).requires_grad_()
    terms = pitch_loss(off, f0, voiced)
    (terms["f0"] + terms["voicing"]).backward()
    assert (off.grad[0, 0, :3] > 0).all() and off.grad[0, 0, 3] == 0  # lower the F0; the unvoiced frame: no pull
    assert (off.grad[0, 1, :3] < 0).all() and off.grad[0, 1, 3] > 0  # voicing up where voiced, down where not
    none = pitch_loss(off.detach(), f0, torch.zeros_like(voiced))
    assert float(none["f0"]) == 0.0  # a batch without voiced frames
