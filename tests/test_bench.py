"""The benchmark script runs and reports what it promises (its numbers are read by people, not asserted here)."""

import json
import subprocess
import sys


def test_codec_benchmark_reports_both_codecs():
    proc = subprocess.run(
        [sys.executable, "-m", "s2slib.bench", "codec", "--preset", "tiny", "--seconds", "0.5", "--repeats", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["speedup_vs_encodec"] > 0 and result["threads"] == 1
    for key in ("parameters", "encode_rtf", "decode_rtf"):
        assert result["ours"][key] > 0 and result["encodec_24khz"][key] > 0
    assert result["ours"]["frame_ms"] == 5.0 and result["ours"]["stream_step_ms_1_frame"]["median"] > 0
    assert "untrained" in result["encodec_24khz"]["model"]  # random EnCodec weights are labelled as such
    ratio = (result["encodec_24khz"]["encode_rtf"] + result["encodec_24khz"]["decode_rtf"]) / (
        result["ours"]["encode_rtf"] + result["ours"]["decode_rtf"])
    assert abs(ratio - result["speedup_vs_encodec"]) < 1e-9
