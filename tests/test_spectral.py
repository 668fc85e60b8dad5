"""The shared spectral front end and its level-relative floor: shapes, the floor's definition, level invariance, and
the fix it exists for (digital silence no longer owns the gradient of the codec's spectral losses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from s2slib.codec.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, ReconstructionLoss, ReconstructionLossConfig
from s2slib.spectral import MultiResolutionSTFT, MultiScaleMel, floored_pair, relative_floor

SR = 16000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speech_with_silence() -> np.ndarray:
    """One second of real synthesized Telugu: 0.7 s of speech between 0.15 s of exact zeros on each side (30 %)."""
    from s2slib.audio import resample
    from s2slib.data import synth

    wav = resample(synth.synthesize("ఈ రోజు వాతావరణం చాలా బాగుంది.", "Priya"), synth.SAMPLE_RATE, SR)
    start = int(np.argmax(np.abs(wav) > 0.01))  # skip eSpeak's leading near-silence
    speech = wav[start: start + int(0.7 * SR)].astype(np.float32)
    pad = np.zeros(int(0.15 * SR), np.float32)
    return np.concatenate([pad, speech, pad])  # (16000,)


def test_shapes_of_both_front_ends():
    wav = torch.randn(2, 1, 4000)
    mels = MultiScaleMel(SR)(wav)
    assert [tuple(m.shape) for m in mels] == [(2, n, 4000 // (w // 4) + 1) for w, n in
                                              zip((64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160))]
    stfts = MultiResolutionSTFT((512, 1024))(wav[:, 0])  # (B, T) works too
    assert [tuple(s.shape) for s in stfts] == [(2, 257, 4000 // 128 + 1), (2, 513, 4000 // 256 + 1)]
    assert all(s.dtype == torch.float32 and (s >= 0).all() for s in stfts)
    with pytest.raises(ValueError, match="mono"):
        MultiScaleMel(SR)(torch.zeros(2, 2, 100))


def test_relative_floor_is_per_example_and_never_below_the_absolute_floor():
    mag = torch.zeros(3, 4, 5)
    mag[0, 1, 2] = 10.0  # peak 10 -> floor 10 * 10^(-60/20) = 0.01
    mag[1, 0, 0] = 1e-4  # a very quiet clip: 1e-7 would be below the absolute floor
    floor = relative_floor(mag, 1e-5, 60.0)
    assert floor.shape == (3, 1, 1)
    assert torch.allclose(floor.view(-1), torch.tensor([1e-2, 1e-5, 1e-5]))  # example 2 is all zeros
    assert torch.equal(relative_floor(mag, 1e-5, None), torch.full((3, 1, 1), 1e-5))  # the old absolute floor
    assert torch.equal(relative_floor(mag, 1e-5, 0), torch.full((3, 1, 1), 1e-5))
    est = torch.full_like(mag, 0.005)
    ref_f, est_f, floor = floored_pair(mag, est, 1e-5, 60.0)
    assert torch.allclose(est_f[0], torch.full((4, 5), 0.01))  # the estimate gets the *reference's* floor
    assert ref_f[0, 1, 2] == 10.0 and est_f[1, 0, 0] == 0.005
    with pytest.raises(ValueError, match="floor_db"):
        relative_floor(mag, 1e-5, -10.0)


def test_with_floor_db_none_the_mel_loss_is_dacs_absolute_floor_loss():
    g = torch.Generator().manual_seed(0)
    wav, est = torch.randn(2, 1, 3000, generator=g) * 0.1, torch.randn(2, 1, 3000, generator=g) * 0.1
    wav[0, 0, :1000] = 0.0
    expected = 0.0
    for w, n in zip((64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160)):
        mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=w, hop_length=w // 4, n_mels=n, power=1.0,
                                                   pad_mode="constant")
        expected += (mel(wav[:, 0]).clamp_min(1e-5).log10() - mel(est[:, 0]).clamp_min(1e-5).log10()).abs().mean()
    assert float(MultiScaleMelLoss(SR, floor_db=None)(wav, est)) == pytest.approx(float(expected) / 6, rel=1e-5)


@pytest.mark.parametrize("make, floor_db", [(lambda db: MultiScaleMelLoss(SR, floor_db=db), 60.0),
                                             (lambda db: MultiResolutionSTFTLoss(floor_db=db), 80.0)],
                         ids=["mel", "stft"])
def test_relative_floor_makes_the_losses_level_invariant(speech_with_silence, make, floor_db):
    ref = torch.from_numpy(speech_with_silence)[None, None]  # (1, 1, T)
    est = ref + 1e-3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    relative, absolute = make(floor_db), make(None)
    loud = float(relative(ref, est))
    assert float(relative(0.01 * ref, 0.01 * est)) == pytest.approx(loud, rel=1e-3)  # 40 dB quieter: same loss
    # with the absolute floor alone, the quiet copy's noise sinks towards 1e-5 / 1e-7 and the loss halves
    loud, quiet = float(absolute(ref, est)), float(absolute(0.01 * ref, 0.01 * est))
    assert quiet < 0.7 * loud  # measured: mel 0.99 -> 0.47, STFT 3.0 -> 2.0


def _silent_gradient_share(loss, ref: np.ndarray, est: np.ndarray) -> float:
    """Share of ``||d loss / d est||^2`` that falls on the samples where ``ref`` is exactly zero."""
    est_t = torch.from_numpy(est)[None, None].requires_grad_()  # (1, 1, T)
    loss(torch.from_numpy(ref)[None, None], est_t).backward()
    grad = est_t.grad[0, 0].numpy()
    silent = ref == 0
    return float((grad[silent] ** 2).sum() / (grad**2).sum())


@pytest.mark.parametrize("make, floor_db, old_min, new_max", [
    (lambda db: MultiScaleMelLoss(SR, floor_db=db), 60.0, 0.99, 0.05),  # measured 0.999 -> 0.017
    (lambda db: MultiResolutionSTFTLoss(floor_db=db), 80.0, 0.95, 0.2),  # measured 0.988 -> 0.090
], ids=["mel", "stft"])
def test_digital_silence_no_longer_owns_the_gradient(speech_with_silence, make, floor_db, old_min, new_max):
    """An estimate with faint noise (-60 dB re the speech's RMS) everywhere: with the absolute floor nearly all the
    gradient lands on the 30 % of samples that are digital silence in the reference; with the relative floor the
    noise there is below the floor and the gradient goes where the speech is."""
    ref = speech_with_silence
    assert np.mean(ref == 0) == pytest.approx(0.3, abs=0.01)
    rms = float(np.sqrt(np.mean(ref[ref != 0] ** 2)))
    est = ref + (1e-3 * rms * np.random.default_rng(2).standard_normal(ref.size)).astype(np.float32)
    old = _silent_gradient_share(make(None), ref, est)
    new = _silent_gradient_share(make(floor_db), ref, est)
    assert old > old_min
    assert new < new_max


def test_config_floors_round_trip_and_old_dicts_load():
    config = ReconstructionLossConfig(mel_floor_db=None, stft_floor_db=70.0)
    assert ReconstructionLossConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = ReconstructionLossConfig().to_dict()
    del old["mel_floor_db"], old["stft_floor_db"]  # a dict saved before these keys existed
    restored = ReconstructionLossConfig.from_dict(old)
    assert (restored.mel_floor_db, restored.stft_floor_db) == (60.0, 80.0)
    loss = ReconstructionLoss(SR, config)
    assert loss.mel.floor_db is None and loss.stft.floor_db == 70.0
    with pytest.raises(ValueError, match="stft_floor_db"):
        ReconstructionLossConfig(stft_floor_db=-3.0)


def _harmonics(freqs, phases=None, n=SR) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    phases = phases if phases is not None else range(len(freqs))
    return sum(torch.sin(2 * torch.pi * f * t + p) / (i + 1) for i, (f, p) in enumerate(zip(freqs, phases))).float()


def test_phase_derivative_loss_sees_a_comb_that_magnitude_losses_barely_separate():
    """Harmonics of 120 Hz against the same harmonics moved to the nearest multiple of 50 Hz (the comb an iSTFT
    head makes when its phase stands still): close in magnitude, far apart in phase derivatives."""
    from s2slib.codec.losses import PhaseDerivativeLoss

    f0 = 120.0
    harmonics = [f0 * k for k in range(1, 20)]
    ref = _harmonics(harmonics)[None, None]
    comb = _harmonics([round(f / 50) * 50 for f in harmonics])[None, None]
    loss = PhaseDerivativeLoss()
    assert loss(ref, ref) < 1e-3  # identical
    assert loss(ref, 0.1 * ref) < 0.01  # level does not matter, only the phase's changes
    assert loss(ref, torch.roll(ref, 16, -1)) < 0.05  # a 1 ms shift changes group delay a little
    assert loss(ref, comb) > 0.3
    noise = torch.randn(1, 1, SR, generator=torch.Generator().manual_seed(0)) * 0.3
    assert loss(ref, noise) > 0.4  # unrelated phase changes
    est = comb.clone().requires_grad_()
    loss(ref, est).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    silent = torch.zeros_like(ref, requires_grad=True)
    value = loss(ref, silent)
    value.backward()
    assert abs(value.item() - 1.0) < 1e-3 and torch.isfinite(silent.grad).all()  # no phase at all: 1; no NaN
    with pytest.raises(ValueError, match="floor_db"):
        PhaseDerivativeLoss(floor_db=0)


def test_reconstruction_loss_adds_the_phase_term_only_when_weighted():
    ref = _harmonics([120.0 * k for k in range(1, 10)], n=8000)[None, None]
    est = _harmonics([100.0 * k for k in range(1, 10)], n=8000)[None, None]
    assert "phase" not in ReconstructionLoss(SR)(ref, est)  # weight 0 by default: older runs are unchanged
    plain = ReconstructionLoss(SR)(ref, est)["total"]
    terms = ReconstructionLoss(SR, ReconstructionLossConfig(phase_weight=2.0, phase_fft_sizes=[512]))(ref, est)
    assert terms["phase"] > 0.3
    torch.testing.assert_close(terms["total"], plain + 2.0 * terms["phase"])
    config = ReconstructionLossConfig(phase_weight=2.0, phase_fft_sizes=[512])
    assert ReconstructionLossConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="weights"):
        ReconstructionLossConfig(phase_weight=-1.0)


def test_phase_advance_loss_is_zero_for_the_exact_turn_and_about_one_for_a_standing_or_random_phase():
    """The head-phase loss against the turn per hop measured on the reference: the reference's own phases score 0
    whatever their absolute value, a phase that stands still (the absolute head's comb) or a random one about 1,
    and its gradient reaches the phases."""
    from s2slib.codec.losses import phase_advance_loss
    from s2slib.codec.pitch import causal_spectrum

    hop, n_fft = 320, 640
    ref = _harmonics([130.0 * k for k in range(1, 25)], n=20 * hop)[None, None]
    spec = causal_spectrum(ref[:, 0], hop, n_fft)
    exact = torch.angle(spec).transpose(1, 2)  # (1, K, F)
    assert phase_advance_loss(exact, ref, hop, n_fft) < 1e-5
    assert phase_advance_loss(exact + 1.234, ref, hop, n_fft) < 1e-5  # a constant offset turns nothing
    assert phase_advance_loss(exact, 0.01 * ref, hop, n_fft) < 1e-5  # level does not matter
    standing = torch.zeros_like(exact, requires_grad=True)
    value = phase_advance_loss(standing, ref, hop, n_fft)
    value.backward()
    assert value > 0.7 and torch.isfinite(standing.grad).all() and standing.grad.abs().sum() > 0
    noise = torch.rand(exact.shape, generator=torch.Generator().manual_seed(0)) * 2 * torch.pi
    assert 0.8 < phase_advance_loss(noise, ref, hop, n_fft) < 1.2
    silent = phase_advance_loss(exact, torch.zeros_like(ref), hop, n_fft)
    assert torch.isfinite(silent) and silent == 0  # nothing to turn: no loss, no NaN
    with pytest.raises(ValueError, match="frames"):
        phase_advance_loss(exact[..., :-1], ref, hop, n_fft)
    with pytest.raises(ValueError, match="phases must be"):
        phase_advance_loss(exact[:, :-1], ref, hop, n_fft)



def test_frame_magnitude_loss_is_zero_for_the_exact_magnitudes_and_grows_with_error():
    """The head's log magnitudes against the reference's in the head's own frames: 0 for the exact ones, about the
    error for a gain error (natural log), blind to differences below the reference's relative floor, with a
    gradient, and clear errors for a wrong shape."""
    from s2slib.codec.losses import frame_magnitude_loss
    from s2slib.codec.pitch import causal_spectrum

    hop, n_fft = 320, 640
    noise = 1e-2 * torch.randn(20 * hop, generator=torch.Generator().manual_seed(0))  # every bin above the floor
    ref = (_harmonics([130.0 * k for k in range(1, 25)], n=20 * hop) + noise)[None, None]
    ref[..., 10 * hop:] = 0.0  # the second half is digital silence
    log_mag = causal_spectrum(ref[:, 0], hop, n_fft).abs().clamp_min(1e-12).log().transpose(1, 2)  # (1, K, F)
    assert frame_magnitude_loss(log_mag, ref, hop, n_fft) < 1e-5
    sound = torch.zeros_like(log_mag, dtype=torch.bool)
    sound[..., :11] = True  # frames 0-10 reach into the sounding half (frame t spans hops t - 1 and t)
    louder = torch.where(sound, log_mag + 0.5, log_mag)
    assert abs(float(frame_magnitude_loss(louder, ref, hop, n_fft)) - 0.275) < 0.01  # 0.5 in 11 of 20 frames
    assert float(frame_magnitude_loss(torch.where(sound, log_mag + 1.0, log_mag), ref, hop, n_fft)) > 0.5
    silent = torch.where(sound, log_mag, torch.full_like(log_mag, -40.0))  # silence rendered at any depth
    assert frame_magnitude_loss(silent, ref, hop, n_fft) < 1e-5
    est = torch.zeros_like(log_mag, requires_grad=True)
    frame_magnitude_loss(est, ref, hop, n_fft).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="frames"):
        frame_magnitude_loss(log_mag[..., :-1], ref, hop, n_fft)
    with pytest.raises(ValueError, match="log_mag must be"):
        frame_magnitude_loss(log_mag[:, :-1], ref, hop, n_fft)

def test_metrics_and_spectral_do_not_import_the_codec():
    code = ("import sys, s2slib.metrics, s2slib.spectral; "
            "print([m for m in sys.modules if m.startswith('s2slib.codec')])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
