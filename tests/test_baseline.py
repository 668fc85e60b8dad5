"""The EnCodec baseline wrapper (untrained weights: shapes, resampling, bandwidths), its weight loading paths and the
comparison, offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2slib import baseline
from s2slib.baseline import (BANDWIDTHS, WeightsUnavailable, compare_codecs, latent_error_by_depth, load_encodec,
                             untrained_encodec)
from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encodec16():
    return untrained_encodec()


@pytest.mark.parametrize("bandwidth, n_q", list(zip(BANDWIDTHS, (2, 4, 8, 16, 32))))
def test_bandwidths_set_levels_and_bitrate(encodec16, bandwidth, n_q):
    encodec16.set_bandwidth(bandwidth)
    assert encodec16.n_q == n_q and encodec16.bitrate_kbps() == pytest.approx(bandwidth)
    wav = torch.randn(1, 1, 16000) * 0.1  # one second at 16 kHz
    codes = encodec16.encode(wav)
    assert list(codes.shape) == [1, n_q, 75]  # 75 frames per second at 24 kHz (hop 320)
    assert int(codes.max()) < 1024


def test_resampling_keeps_length_and_rate(encodec16):
    encodec16.set_bandwidth(6.0)
    for n in (16000, 12345):
        wav = torch.randn(2, 1, n) * 0.1
        out = encodec16.decode(encodec16.encode(wav), length=n)
        assert out.shape == (2, 1, n)
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000).view(1, 1, -1)
    x24 = baseline.resample(tone.numpy(), 16000, 24000)
    peak_bin = np.abs(np.fft.rfft(x24[0, 0])).argmax()
    assert abs(peak_bin * 24000 / x24.shape[-1] - 440) < 2  # still 440 Hz after 16 -> 24 kHz
    with pytest.raises(ValueError, match="bandwidths"):
        encodec16.set_bandwidth(5.0)
    assert not encodec16.pretrained and "timing only" in encodec16.weights_source


@pytest.fixture()
def weights_file(tmp_path, encodec16):
    """A state dict saved locally under the checkpoint's name; its hash prefix will not match the real one."""
    path = tmp_path / baseline.CHECKPOINT_NAME
    torch.save(encodec16.model.state_dict(), path)
    return path


def test_loading_path_with_a_local_weights_file(weights_file, monkeypatch, encodec16):
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    monkeypatch.setattr(baseline, "CHECKPOINT_NAME", f"encodec_24khz-{digest[:8]}.th")
    named = weights_file.with_name(baseline.CHECKPOINT_NAME)
    weights_file.rename(named)
    model = load_encodec(named, download=False)
    assert model.pretrained and str(named) in model.weights_source
    for (k, a), b in zip(encodec16.model.state_dict().items(), model.model.state_dict().values()):
        assert torch.equal(a, b), k

    monkeypatch.setenv("TORCH_HOME", str(named.parent / "torch_home"))  # the hub cache path, as encodec uses it
    cached = baseline.hub_checkpoint_path()
    cached.parent.mkdir(parents=True)
    named.rename(cached)
    assert "torch hub cache" in load_encodec(download=False).weights_source


def test_wrong_file_and_missing_weights_get_clear_errors(weights_file, monkeypatch, tmp_path):
    with pytest.raises(WeightsUnavailable, match="SHA-256 starts with"):
        load_encodec(weights_file, download=False)  # a file that is not Meta's checkpoint
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("S2S_ENCODEC_WEIGHTS", raising=False)
    with pytest.raises(WeightsUnavailable) as info:
        load_encodec(download=False)
    assert str(baseline.hub_checkpoint_path()) in str(info.value) and baseline.CHECKPOINT_URL in str(info.value)


def test_download_from_a_local_server(monkeypatch, tmp_path, encodec16):
    from fixtures_corpora import FileServer

    payload_path = tmp_path / "payload.th"
    torch.save(encodec16.model.state_dict(), payload_path)
    payload = payload_path.read_bytes()
    name = f"encodec_24khz-{hashlib.sha256(payload).hexdigest()[:8]}.th"
    monkeypatch.setattr(baseline, "CHECKPOINT_NAME", name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with FileServer({f"/{name}": payload}) as server:
        monkeypatch.setattr(baseline, "CHECKPOINT_URL", server.url(f"/{name}"))
        model = load_encodec()
    assert model.pretrained and "downloaded" in model.weights_source
    assert baseline.hub_checkpoint_path().read_bytes() == payload


def test_comparison_marks_encodec_quality_unavailable_offline(encodec16):
    course = Codec(CodecConfig.tiny()).eval()
    clips = [np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32) for i in range(2)]
    rows = compare_codecs(course, None, clips, bandwidths=(1.5, 6.0), timing_encodec=encodec16)
    ours = [r for r in rows if r.codec == "course codec"]
    theirs = [r for r in rows if r.codec.startswith("EnCodec")]
    assert [r.setting for r in ours] == [f"n_q={n}" for n in range(1, 5)]
    assert all(r.si_sdr is not None and r.stoi is not None for r in ours)
    assert [r.kbps for r in theirs] == [1.5, 6.0]
    assert all(r.si_sdr is None and r.mel_distance is None and r.stoi is None for r in theirs)  # never invented
    assert all("timing only" in r.weights and r.encode_rtf > 0 for r in theirs)


def test_compare_command_line_offline(tmp_path):
    import soundfile as sf

    from s2slib.codec.train import export_codec

    export_codec(Codec(CodecConfig.tiny()), tmp_path / "codec.pt")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.random.default_rng(0).normal(0, 0.1, 22050), 22050)
    env = {"TORCH_HOME": str(tmp_path / "th"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "s2slib.baseline", "compare", "--checkpoint", str(tmp_path / "codec.pt"),
                           "--audio", str(tmp_path / "audio"), "--no-download"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_files"] == 1 and out["encodec_quality_available"] is False
    assert "put" in out["encodec_note"].lower()
    assert {r["setting"] for r in out["rows"] if r["codec"].startswith("EnCodec")} == {f"{b} kbps" for b in BANDWIDTHS}


def _no_nan(token: str):
    raise ValueError(f"{token} in JSON output")


def test_comparison_skips_a_clip_too_short_for_stoi():
    course = Codec(CodecConfig.tiny()).eval()
    rng = np.random.default_rng(3)
    clips = [rng.normal(0, 0.1, 16000).astype(np.float32), rng.normal(0, 0.1, 3200).astype(np.float32)]  # 1 s, 0.2 s
    rows = compare_codecs(course, None, clips, course_levels=[1], clip_names=["long.wav", "short.wav"])
    (row,) = rows
    assert row.stoi is not None and np.isfinite(row.stoi)  # the mean of the clips that have a STOI
    assert [s.split(": ")[0] for s in row.skipped["stoi"]] == ["short.wav"] and "too short" in row.skipped["stoi"][0]
    json.loads(json.dumps([r.__dict__ for r in rows], allow_nan=False), parse_constant=_no_nan)
    only_short = compare_codecs(course, None, clips[1:], course_levels=[1])[0]
    assert only_short.stoi is None and only_short.skipped["stoi"][0].startswith("clip 0: ")


def test_compare_command_line_never_prints_nan(tmp_path):
    import soundfile as sf

    from s2slib.codec.train import export_codec

    export_codec(Codec(CodecConfig.tiny()), tmp_path / "codec.pt")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "short.wav", np.random.default_rng(1).normal(0, 0.1, 4000), 16000)  # 0.25 s
    env = {"TORCH_HOME": str(tmp_path / "th"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "s2slib.baseline", "compare", "--checkpoint", str(tmp_path / "codec.pt"),
                           "--audio", str(tmp_path / "audio"), "--no-download"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout, parse_constant=_no_nan)  # NaN or Infinity would raise
    ours = [r for r in out["rows"] if r["codec"] == "course codec"]
    assert ours and all(r["stoi"] is None and r["mel_distance"] is not None for r in ours)
    assert all(r["skipped"]["stoi"][0].startswith(str(tmp_path / "audio" / "short.wav")) for r in ours)


def test_latent_error_by_depth_falls_with_levels_and_is_zero_for_an_exact_quantizer():
    torch.manual_seed(0)
    course = Codec(CodecConfig.tiny())
    rng = np.random.default_rng(5)
    clips = [rng.normal(0, 0.1, 8000).astype(np.float32) for _ in range(2)]
    course.train()
    with torch.no_grad():  # one training pass: k-means puts every level's codebook on its residuals
        course(torch.from_numpy(np.stack(clips)).unsqueeze(1), n_q=course.config.n_q)
    errors = latent_error_by_depth(course.eval(), clips)
    assert len(errors) == course.config.n_q and all(0 <= e for e in errors)
    assert errors[-1] < errors[0] and all(b <= a + 1e-6 for a, b in zip(errors, errors[1:]))

    class Exact:  # a "codec" whose quantizer is lossless at every depth
        config = course.config

        def latent(self, x):
            return x[..., :64].view(1, 4, 16)

        def encode(self, x):
            return torch.zeros(1, self.config.n_q, 16, dtype=torch.long)

        def dequantize(self, codes):
            return self._z

    exact = Exact()
    exact._z = exact.latent(torch.from_numpy(clips[0]).view(1, 1, -1))
    assert latent_error_by_depth(exact, clips[:1]) == [0.0] * course.config.n_q
    with pytest.raises(ValueError, match="at least one clip"):
        latent_error_by_depth(course, [])
