"""The benchmark script runs and reports what it promises (its numbers are read by people, not asserted here)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("preset, flags, frame_ms, latency_ms, folded", [
    ("tiny", [], 5.0, 5.0, True),  # the seed design in miniature: one 5 ms frame of latency
    ("fast50_tiny", ["--no-fold"], 20.0, 40.0, False),  # 50 frames/s, plus one hop of overlap-add
])
def test_codec_benchmark_reports_both_codecs(preset, flags, frame_ms, latency_ms, folded):
    proc = subprocess.run(
        [sys.executable, "-m", "s2slib.bench", "codec", "--preset", preset, "--seconds", "0.5", "--repeats", "1",
         *flags],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["speedup_vs_encodec"] > 0 and result["threads"] == 1
    assert result["stream_ms_per_20ms"] > 0 and result["latency_ms"] == latency_ms
    ours = result["ours"]
    assert preset in ours["model"] and ours["weight_norm_folded"] is folded
    for key in ("parameters", "encode_rtf", "decode_rtf"):
        assert ours[key] > 0 and result["encodec_24khz"][key] > 0
    assert ours["frame_ms"] == frame_ms and ours["stream_step_ms_1_frame"]["median"] > 0
    assert ours[f"stream_step_ms_{20 / frame_ms:g}_frames"]["median"] == result["stream_ms_per_20ms"]
    assert "untrained" in result["encodec_24khz"]["model"]  # random EnCodec weights are labelled as such
    ratio = (result["encodec_24khz"]["encode_rtf"] + result["encodec_24khz"]["decode_rtf"]) / (
        ours["encode_rtf"] + ours["decode_rtf"])
    assert abs(ratio - result["speedup_vs_encodec"]) < 1e-9

