"""The benchmark script runs and reports what it promises (its numbers are read by people, not asserted here)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("preset, flags, frame_ms, latency_ms, folded, int8", [
    ("tiny", ["--float-decoder"], 5.0, 5.0, True, False),  # the seed design in miniature: one 5 ms frame of latency
    ("fast50_tiny", ["--no-fold"], 20.0, 40.0, False, True),  # 50 frames/s, plus one hop of overlap-add
])
def test_codec_benchmark_reports_both_codecs(preset, flags, frame_ms, latency_ms, folded, int8):
    proc = subprocess.run(
        [sys.executable, "-m", "s2slib.bench", "codec", "--preset", preset, "--seconds", "0.5", "--repeats", "1",
         *flags],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["speedup_vs_encodec"] > 0 and result["threads"] == 1
    assert result["stream_ms_per_20ms"] > 0 and result["latency_ms"] == latency_ms
    if frame_ms == 20.0:  # the stft family: its matrix products' floor is measured; the seed design has none
        assert result["stream_matmul_floor_ms"] > 0
    else:
        assert result["stream_matmul_floor_ms"] is None
    ours = result["ours"]
    assert preset in ours["model"] and ours["weight_norm_folded"] is folded and ours["decoder_int8"] is int8
    if int8:  # the float decoder is measured beside the int8 one
        assert result["stream_ms_per_20ms_float"] > 0 and result["speedup_vs_encodec_float"] > 0
        assert result["ours_float_decoder"]["decoder_int8"] is False
    else:
        assert "stream_ms_per_20ms_float" not in result
    for key in ("parameters", "encode_rtf", "decode_rtf"):
        assert ours[key] > 0 and result["encodec_24khz"][key] > 0
    assert ours["frame_ms"] == frame_ms and ours["stream_step_ms_1_frame"]["median"] > 0
    assert ours[f"stream_step_ms_{20 / frame_ms:g}_frames"]["median"] == result["stream_ms_per_20ms"]
    assert "untrained" in result["encodec_24khz"]["model"]  # random EnCodec weights are labelled as such
    ratio = (result["encodec_24khz"]["encode_rtf"] + result["encodec_24khz"]["decode_rtf"]) / (
        ours["encode_rtf"] + ours["decode_rtf"])
    assert abs(ratio - result["speedup_vs_encodec"]) < 1e-9


def test_matmul_floor_covers_every_dense_layer_of_the_float_and_int8_codec():
    """The floor times each dense layer of the encoder and decoder once: the 1x1 input projections and every
    linear layer, float or int8 (a layer left out would make the floor look cheaper than it is)."""
    import torch

    from s2slib.bench import _dense_layers
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.layers import fold_weight_norm, quantize_decoder_int8
    from s2slib.codec.model import Codec

    config = CodecConfig.preset("fast50_tiny")
    codec = fold_weight_norm(Codec(config)).eval()
    per_stack = lambda blocks: 1 + 2 * blocks + 1  # proj_in, fc1 and fc2 per block, proj_out
    expected = per_stack(config.encoder_blocks) + per_stack(config.decoder_blocks)
    for model in (codec, quantize_decoder_int8(codec)):
        calls = _dense_layers(model.encoder) + _dense_layers(model.decoder)
        assert len(calls) == expected
        with torch.inference_mode():
            for layer, x in calls:
                assert layer(x).shape[0] == 1


def test_s2s_benchmark_reports_latency_and_labels_random_weights(tmp_path, monkeypatch):
    from s2slib.bench import main

    monkeypatch.setenv("S2S_RUNS_DIR", str(tmp_path))  # no laptop run there: random weights, said so
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["s2s", "--prompt-seconds", "0.5", "--answer-seconds", "0.3", "--threads", "1",
                     "--repeats", "1"]) == 0
    result = json.loads(out.getvalue())
    assert result["benchmark"] == "s2s" and "random weights" in result["model"] and "random" in result["codec"]
    assert result["first_audio_ms"] > 0 and result["frames_per_s"] > 0 and result["rtf"] > 0
    assert result["params"] > 1_000_000  # the laptop size, as the issue states it
    assert result["answer_seconds"] == pytest.approx(0.3, abs=0.021)  # forced length: same work every repeat
    assert result["tokens_per_s"] == result["spoken_q"] * result["frame_rate"] and result["spoken_q"] == result["n_q"]
