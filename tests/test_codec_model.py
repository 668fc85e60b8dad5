"""Tests of the codec model: presets and shapes, layers, causality, streaming == offline, losses, config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.layers import (CausalConv1d, CausalConvTranspose1d, DecoderBlock, EncoderBlock, ResidualUnit,
                                 Snake1d)
from s2slib.codec.losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, ReconstructionLoss,
                                 ReconstructionLossConfig, waveform_l1)
from s2slib.codec.model import Codec

SR = 16000


def _randomise_snakes(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every Snake alpha away from its initial 1, so tests do not pass only for alpha == 1."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Snake1d):
                module.alpha.copy_(torch.rand(module.alpha.shape, generator=generator) * 1.5 + 0.5)


def _speechlike(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Amplitude-modulated noise plus a few harmonics: (batch, 1, length), within [-1, 1]."""
    t = torch.arange(length) / SR
    f0 = 100 + 150 * torch.rand(batch, 1, 1, generator=generator)
    harmonics = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 5))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 4 * t + 6 * torch.rand(batch, 1, 1, generator=generator)))
    noise = 0.1 * torch.randn(batch, 1, length, generator=generator)
    return (0.3 * envelope * (harmonics + noise)).clamp(-1, 1)


def _prepared_codec(config: CodecConfig, seed: int = 0, init_seconds: float = 2.0) -> Codec:
    """A codec with randomised Snakes and codebooks fitted by a few training passes, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    codec = Codec(config)
    _randomise_snakes(codec, g)
    codec.train()
    with torch.no_grad():
        for _ in range(3):  # k-means on the first batch, then EMA updates and dead-code resets
            codec(_speechlike(2, int(init_seconds * SR), g))
    return codec.eval()


# ---------------------------------------------------------------------------------------------------- presets
def test_seed_preset_shapes_and_size():
    config = CodecConfig.seed()
    assert config.hop_length == 80 and config.frame_rate == 200.0
    assert config.bitrate_kbps() == pytest.approx(16.0)
    codec = Codec(config).eval()
    n_params = codec.num_parameters()
    assert 28_500_000 < n_params < 29_200_000, f"seed preset has {n_params:,} parameters (measured 28,834,050)"
    with torch.inference_mode():
        codes = codec.encode(torch.zeros(1, 1, SR))
    assert list(codes.shape) == [1, 8, 200]


def test_seed_50hz_preset():
    config = CodecConfig.seed_50hz()
    assert config.hop_length == 320 and config.frame_rate == 50.0
    assert config.bitrate_kbps() == pytest.approx(4.0)
    assert config.bitrate_kbps(n_q=2) == pytest.approx(1.0)
    codec = Codec(config).eval()
    assert 14_000_000 < codec.num_parameters() < 15_000_000  # measured 14,591,234
    with torch.inference_mode():
        codes = codec.encode(torch.zeros(1, 1, SR))
    assert list(codes.shape) == [1, 8, 50]


@pytest.mark.parametrize("name, low, high", [("tiny", 3_000, 100_000), ("laptop", 500_000, 2_000_000)])
def test_small_presets_forward_shapes(name, low, high):
    config = CodecConfig.preset(name)
    codec = Codec(config)
    assert low < codec.num_parameters() < high, f"{name}: {codec.num_parameters():,} parameters"
    wav = _speechlike(2, SR, torch.Generator().manual_seed(0))
    out = codec.train()(wav)
    assert list(out.wav_hat.shape) == [2, 1, SR]
    assert list(out.codes.shape) == [2, config.n_q, 200]
    assert list(out.latent.shape) == [2, config.latent_dim, 200]
    assert out.vq_loss.ndim == 0 and torch.isfinite(out.vq_loss)
    assert out.wav_hat.abs().max() < 1  # tanh output


def test_presets_by_name_and_unknown():
    assert CodecConfig.preset("laptop") == CodecConfig.laptop()
    with pytest.raises(ValueError, match="unknown codec preset"):
        CodecConfig.preset("huge")


def test_length_not_multiple_of_hop_is_padded_and_trimmed():
    codec = Codec(CodecConfig.tiny()).eval()
    T = 5 * 80 + 13
    wav = _speechlike(1, T, torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = codec(wav)
        codes = codec.encode(wav)
        decoded = codec.decode(codes, length=T)
    assert out.wav_hat.shape[-1] == T
    assert codes.shape[-1] == 6  # ceil(413 / 80)
    assert torch.allclose(decoded, out.wav_hat, atol=1e-5)
    assert codec.decode(codes).shape[-1] == 6 * 80


def test_fewer_levels_encode_and_decode():
    codec = Codec(CodecConfig.tiny()).eval()
    wav = _speechlike(1, 800, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        codes = codec.encode(wav, n_q=2)
        assert list(codes.shape) == [1, 2, 10]
        assert torch.equal(codes, codec.encode(wav)[:, :2])  # the first levels do not depend on later ones
        assert codec.decode(codes).shape == (1, 1, 800)
        assert list(codec(wav, n_q=1).codes.shape) == [1, 1, 10]


def test_bad_inputs_raise_clear_errors():
    codec = Codec(CodecConfig.tiny()).eval()
    with pytest.raises(ValueError, match=r"wav.view\(1, 1, -1\)"):
        codec.encode(torch.zeros(800))
    with pytest.raises(ValueError, match="shape"):
        codec.encode(torch.zeros(1, 2, 800))
    with pytest.raises(ValueError, match="n_q must be between 1 and 4"):
        codec.encode(torch.zeros(1, 1, 800), n_q=5)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 64\)"):
        codec.decode(torch.full((1, 4, 3), 64))


def test_every_parameter_gets_a_gradient_under_quantizer_dropout():
    """All levels run even when examples are dropped to one level, so DDP sees every parameter used."""
    config = CodecConfig.tiny()
    config.quantizer_dropout = 1.0
    codec = Codec(config).train()
    out = codec(_speechlike(2, 800, torch.Generator().manual_seed(3)))
    (out.wav_hat.pow(2).mean() + out.vq_loss).backward()
    missing = [name for name, p in codec.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


# ---------------------------------------------------------------------------------------------------- layers
def test_snake_formula():
    snake = Snake1d(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 1.0, 3.0]).view(1, 3, 1))
    x = torch.linspace(-4, 4, 50).repeat(2, 3, 1)  # (2, 3, 50)
    alpha = torch.tensor([0.5, 1.0, 3.0]).view(1, 3, 1)
    expected = x + torch.sin(alpha * x) ** 2 / alpha
    assert torch.allclose(snake(x), expected, atol=1e-6)
    assert snake.alpha.shape == (1, 3, 1) and snake.alpha.requires_grad


@pytest.mark.parametrize("kernel_size, stride, dilation", [(7, 1, 1), (7, 1, 9), (4, 2, 1), (10, 5, 1), (1, 1, 1)])
def test_causal_conv_is_causal_and_output_length(kernel_size, stride, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 4, kernel_size, stride=stride, dilation=dilation)
    x = torch.randn(2, 3, 60)
    y = conv(x)
    assert y.shape == (2, 4, 60 // stride)
    cut = 31  # change inputs from sample 31 on
    x2 = x.clone()
    x2[..., cut:] = torch.randn(2, 3, 60 - cut)
    y2 = conv(x2)
    # output t reads inputs up to (t + 1) * stride - 1, so outputs t < ceil((cut + 1) / stride) - 1 are unchanged
    unchanged = (cut + 1 + stride - 1) // stride - 1 if stride > 1 else cut
    assert torch.equal(y[..., :unchanged], y2[..., :unchanged])
    assert not torch.allclose(y[..., unchanged:], y2[..., unchanged:])  # and the next output does see it


def test_causal_conv_transpose_is_causal():
    torch.manual_seed(0)
    up = CausalConvTranspose1d(3, 2, kernel_size=10, stride=5)
    x = torch.randn(1, 3, 8)
    y = up(x)
    assert y.shape == (1, 2, 40)
    x2 = x.clone()
    x2[..., 5:] = torch.randn(1, 3, 3)
    y2 = up(x2)
    assert torch.equal(y[..., :25], y2[..., :25])  # input frame 5 only touches outputs from 5 * stride on
    assert not torch.allclose(y[..., 25:30], y2[..., 25:30])  # ... and starts immediately (no extra delay)


def test_invalid_causal_conv_raises():
    with pytest.raises(ValueError, match="kernel_size >= stride"):
        CausalConv1d(1, 1, kernel_size=2, stride=4)
    with pytest.raises(ValueError, match="must be >= stride"):
        CausalConvTranspose1d(1, 1, kernel_size=2, stride=4)


@pytest.mark.parametrize(
    "make_layer, in_channels, length",
    [
        (lambda: CausalConv1d(3, 5, 7, dilation=3), 3, 120),
        (lambda: CausalConv1d(3, 5, 8, stride=4), 3, 120),
        (lambda: CausalConvTranspose1d(3, 2, 8, stride=4), 3, 24),
        (lambda: ResidualUnit(3, dilation=9), 3, 120),
        (lambda: EncoderBlock(3, 6, stride=2), 3, 120),
        (lambda: DecoderBlock(6, 3, stride=5), 6, 24),
    ],
    ids=["conv", "strided", "transposed", "residual", "encoder-block", "decoder-block"],
)
def test_layer_step_matches_forward(make_layer, in_channels, length):
    torch.manual_seed(0)
    layer = make_layer()
    _randomise_snakes(layer, torch.Generator().manual_seed(0))
    x = torch.randn(2, in_channels, length)
    with torch.no_grad():
        y = layer(x)
        state = layer.initial_state(2)
        outs = []
        for chunk in torch.split(x, [1, 0, 5, 2, 11, length - 19], dim=-1):  # includes an empty chunk
            out, state = layer.step(chunk, state)
            outs.append(out)
    assert torch.allclose(torch.cat(outs, dim=-1), y, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- latency
@pytest.mark.parametrize("preset", ["tiny", "fast50_tiny"])
def test_codec_is_causal_with_the_stated_latency(preset):
    """Changing samples from frame k on leaves every code before k alone, and the last sample of frame k already
    changes frame k's latent (the encoder waits for nothing more). Changed codes from frame k change no output
    sample before ``(k + 1) * hop - latency``: the frame itself for the ``conv`` family (latency one frame), one hop
    earlier for ``stft`` (one frame plus one hop of overlap-add, whose synthesis window starts a hop before)."""
    codec = _prepared_codec(CodecConfig.preset(preset), init_seconds=1.0)
    hop, latency = codec.hop_length, codec.config.latency_samples()
    wav = _speechlike(1, 12 * hop, torch.Generator().manual_seed(4))
    k = 7
    changed = wav.clone()
    changed[..., k * hop + hop - 1] += 0.5  # only the last sample of frame k
    with torch.inference_mode():
        latent, latent2 = codec.encoder(wav), codec.encoder(changed)
        assert torch.equal(latent[..., :k], latent2[..., :k])
        assert not torch.allclose(latent[..., k], latent2[..., k])
        codes = codec.encode(wav)
        other = codes.clone()
        other[..., k:] = (other[..., k:] + 1) % codec.config.codebook_size
        out, out2 = codec.decode(codes), codec.decode(other)
    first = (k + 1) * hop - latency  # the first sample frame k's output touches
    assert torch.equal(out[..., :first], out2[..., :first])
    assert not torch.allclose(out[..., first:first + hop], out2[..., first:first + hop])


# ---------------------------------------------------------------------------------------------------- streaming
def _stream(codec: Codec, wav: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``wav`` through a streaming encoder and decoder in chunks of ``sizes``, then flush both; return
    (codes, wav_hat). Checks on the way that each code frame comes as soon as its samples are in and that the decoder
    returns every sample no later frame adds to, and nothing more: it runs ``latency - hop`` samples behind (none for
    the ``conv`` family, one hop of overlap-add for ``stft``)."""
    hop = codec.hop_length
    lag = codec.config.latency_samples() - hop
    encoder, decoder = codec.streaming_encoder(batch_size=wav.shape[0]), codec.streaming_decoder(wav.shape[0])
    codes, audio = [], []
    pushed = 0
    for chunk in torch.split(wav, sizes, dim=-1):
        c = encoder.push(chunk)
        pushed += chunk.shape[-1]
        codes.append(c)
        frames = sum(x.shape[-1] for x in codes)
        assert frames == pushed // hop  # each frame as soon as it is complete
        audio.append(decoder.push(c))
        assert sum(a.shape[-1] for a in audio) == max(0, frames * hop - lag)
    codes.append(encoder.flush())
    audio += [decoder.push(codes[-1]), decoder.flush()]
    codes, audio = torch.cat(codes, dim=-1), torch.cat(audio, dim=-1)
    assert audio.shape[-1] == codes.shape[-1] * hop
    return codes, audio[..., : wav.shape[-1]]


def _chunk_plans(T: int, hop: int, generator: torch.Generator) -> dict[str, list[int]]:
    def split(size: int) -> list[int]:
        return [size] * (T // size) + ([T % size] if T % size else [])

    random_sizes, left = [], T
    while left:
        s = min(left, int(torch.randint(1, 3 * hop, (1,), generator=generator)))
        random_sizes.append(s)
        left -= s
    return {"frame": split(hop), "7": split(7), "37": split(37), "123": split(123), "random": random_sizes}


@pytest.mark.parametrize("preset, frames", [("tiny", 25), ("laptop", 25), ("fast50_tiny", 14), ("fast50", 14),
                                            ("fast50_tiny+peaks", 14)])
def test_streaming_equals_offline(preset, frames):
    name, _, phase = preset.partition("+")  # "+peaks": the head makes its phase from its magnitudes (wola synthesis)
    small = name.endswith("tiny")
    config = CodecConfig.preset(name)
    if phase:
        config = CodecConfig.from_dict({**config.to_dict(), "phase": phase, "synthesis": "wola"})
    codec = _prepared_codec(config, init_seconds=1.0 if small else 3.0)
    hop = codec.hop_length
    g = torch.Generator().manual_seed(5)
    T = frames * hop + 37  # the last frame is partial
    wav = _speechlike(2, T, g)
    with torch.inference_mode():
        offline_codes = codec.encode(wav)
        offline_wav = codec.decode(offline_codes, length=T)
    assert len(offline_codes.unique()) > 10  # the codes carry information: the comparison is not vacuous
    plans = _chunk_plans(T, hop, g)
    if small:
        plans["1"] = [1] * T
    worst = 0.0
    for name, sizes in plans.items():
        codes, audio = _stream(codec, wav, sizes)
        assert torch.equal(codes, offline_codes), f"{preset}, chunks of {name}: codes differ"
        err = (audio - offline_wav).abs().max().item()
        assert err < 1e-4, f"{preset}, chunks of {name}: max abs error {err:.2e}"
        worst = max(worst, err)
    print(f"{preset}: worst streaming max-abs error {worst:.2e}")


def test_streaming_decoder_accepts_any_number_of_frames_and_levels():
    codec = _prepared_codec(CodecConfig.tiny(), init_seconds=1.0)
    wav = _speechlike(1, 10 * 80, torch.Generator().manual_seed(6))
    with torch.inference_mode():
        codes = codec.encode(wav, n_q=2)
        offline = codec.decode(codes)
    decoder = codec.streaming_decoder()
    pieces = [decoder.push(c) for c in torch.split(codes, [0, 3, 1, 6], dim=-1)]
    assert pieces[0].shape == (1, 1, 0)
    assert torch.allclose(torch.cat(pieces, dim=-1), offline, atol=1e-5)


def test_streaming_encoder_flush_and_reset():
    codec = _prepared_codec(CodecConfig.tiny(), init_seconds=1.0)
    encoder = codec.streaming_encoder(n_q=3)
    assert encoder.push(torch.zeros(1, 1, 79)).shape == (1, 3, 0)  # frame not complete yet
    assert encoder.samples_pending == 79
    assert encoder.push(torch.zeros(1, 1, 1)).shape == (1, 3, 1)  # its last sample completes it
    assert encoder.flush().shape == (1, 3, 0)  # nothing pending
    encoder.push(torch.zeros(1, 1, 10))
    assert encoder.flush().shape == (1, 3, 1)  # the partial frame, zero-padded
    assert encoder.samples_pending == 0
    with pytest.raises(ValueError, match=r"chunk of shape \(1, 1, t\)"):
        encoder.push(torch.zeros(10))


# ---------------------------------------------------------------------------------------------------- losses
def test_losses_zero_for_identical_and_grow_with_error():
    g = torch.Generator().manual_seed(7)
    wav = _speechlike(2, 4000, g)
    slightly = wav + 0.01 * torch.randn(wav.shape, generator=g)
    badly = wav + 0.2 * torch.randn(wav.shape, generator=g)
    for loss in (MultiScaleMelLoss(SR), MultiResolutionSTFTLoss(), waveform_l1):
        assert float(loss(wav, wav)) < 1e-6
        assert 0 < float(loss(wav, slightly)) < float(loss(wav, badly))


def test_reconstruction_loss_terms_and_gradient():
    g = torch.Generator().manual_seed(8)
    wav = _speechlike(2, 4000, g)
    est = (wav + 0.05 * torch.randn(wav.shape, generator=g)).requires_grad_()
    config = ReconstructionLossConfig(stft_weight=0.0)
    terms = ReconstructionLoss(SR, config)(wav, est)
    assert set(terms) == {"mel", "l1", "total"}  # a zero weight skips the term
    assert torch.allclose(terms["total"], 15.0 * terms["mel"] + terms["l1"])
    terms["total"].backward()
    assert est.grad is not None and est.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        waveform_l1(wav, wav[..., :-1])


def test_loss_config_round_trip():
    config = ReconstructionLossConfig(mel_weight=5.0)
    assert ReconstructionLossConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown key"):
        ReconstructionLossConfig.from_dict({"mel_wieght": 1.0})


# ---------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("name", ["seed", "seed_50hz", "laptop", "tiny"])
def test_config_round_trip(name):
    config = CodecConfig.preset(name)
    restored = CodecConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.strides, tuple)


def test_config_errors_are_clear():
    data = CodecConfig.tiny().to_dict()
    data["hop"] = 80
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hop'\].*Valid keys"):
        CodecConfig.from_dict(data)
    with pytest.raises(ValueError, match="strides"):
        CodecConfig(strides=(2, 0))
    with pytest.raises(ValueError, match="activation"):
        CodecConfig(activation="relu")
    with pytest.raises(ValueError, match="quantizer_dropout"):
        CodecConfig(quantizer_dropout=1.5)
    with pytest.raises(ValueError, match="codebook_metric"):
        CodecConfig(codebook_metric="manhattan")


@pytest.mark.parametrize("option", [{"activation": "elu"}, {"codebook_metric": "cosine", "codebook_dim": None}])
def test_other_options_build_and_stream(option):
    config = CodecConfig(**{**CodecConfig.tiny().to_dict(), **option})
    codec = _prepared_codec(config, init_seconds=1.0)
    wav = _speechlike(1, 6 * 80 + 5, torch.Generator().manual_seed(9))
    with torch.inference_mode():
        offline = codec.encode(wav)
    codes, _ = _stream(codec, wav, [50] * 9 + [35])
    assert torch.equal(codes, offline)


# ------------------------------------------------------------------------------------- the stft family (codec v2)
def test_fast50_presets_rate_bitrate_and_latency():
    for name in ("fast50", "fast50_gpu", "fast50_tiny"):
        c = CodecConfig.preset(name)
        assert c.architecture == "stft" and c.hop_length == 320 and c.frame_rate == 50.0
        assert c.window_length == 640
        assert c.latency_samples() == 640  # one frame plus one hop of overlap-add: 40 ms
        assert c.comb_frequencies() == [50.0]
    assert CodecConfig.fast50().bitrate_kbps() == 4.0  # 8 levels x 10 bits x 50 frames/s
    assert CodecConfig.fast50().bitrate_kbps(1) == 0.5
    n = Codec(CodecConfig.fast50()).num_parameters()
    assert 5e6 < n < 30e6, n
    codec = Codec(CodecConfig.fast50_tiny()).eval()
    wav = _speechlike(2, 16000 + 123, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        codes = codec.encode(wav)
        assert codes.shape == (2, 4, 51)  # ceil(16123 / 320)
        assert codec.decode(codes, length=wav.shape[-1]).shape == wav.shape


def test_stft_architecture_config_errors():
    with pytest.raises(ValueError, match="strides=\\(hop,\\)"):
        CodecConfig(architecture="stft", strides=(4, 80))
    with pytest.raises(ValueError, match="multiple of the hop"):
        CodecConfig(architecture="stft", strides=(320,), n_fft=500)
    with pytest.raises(ValueError, match="architecture"):
        CodecConfig(architecture="wavenet")


def test_integrated_phase_keeps_a_steady_tone_coherent():
    """With ``phase="integrated"`` the head accumulates each bin's predicted frequency deviation, so a constant
    deviation gives a steady sinusoid across frames: overlap-added windows add up instead of cancelling."""
    from s2slib.codec.stft_io import ISTFTHead

    head = ISTFTHead(hop=80, n_fft=160, phase="integrated")
    K, F_ = head.n_bins, 40
    x = torch.full((1, 3 * K, F_), -30.0)
    k = 20  # a tone at bin 20 = 20 * 16000 / 160 = 2 kHz, exactly on the bin centre: zero deviation
    x[:, k] = 0.0
    x[:, K:] = 0.0  # deviations and offsets of every bin: zero
    wav = head(x)[0, 0, 160:-160]  # away from the edges
    spectrum = torch.fft.rfft(wav * torch.hann_window(len(wav)))
    peak = int(spectrum.abs().argmax())
    assert abs(peak * 16000 / len(wav) - 2000) < 50
    envelope = wav.reshape(-1, 8).abs().amax(dim=1)  # the tone's amplitude stays steady across frames
    assert float(envelope.min()) > 0.8 * float(envelope.max())


@pytest.mark.parametrize("phase, coherent", [("absolute", False), ("centred", True)])
def test_a_steady_prediction_on_an_odd_bin_is_a_tone_only_with_centred_phase(phase, coherent):
    """Hop ``n_fft / 2``: an odd bin's centre phase turns by an odd multiple of pi per hop. The same absolute phase in
    every frame makes the overlapping frames of an odd bin cancel (what put codec v2's energy on a 50 Hz comb); the
    same centred offset gives a steady tone."""
    from s2slib.codec.stft_io import ISTFTHead

    head = ISTFTHead(hop=80, n_fft=160, phase=phase)
    K, F_ = head.n_bins, 40
    x = torch.full((1, 2 * K, F_), -30.0)
    x[:, 21] = 0.0  # bin 21: 2.1 kHz, odd
    x[:, K:] = 0.3  # the same phase (offset) in every frame
    wav = head(x)[0, 0, 160:-160]
    envelope = wav.reshape(-1, 8).abs().amax(dim=1)
    if coherent:
        assert float(envelope.min()) > 0.8 * float(envelope.max())
    else:  # the frames cancel where they overlap: once per hop the level dips to a fifth (0.03 of 0.15 measured)
        assert float(envelope.min()) < 0.3 * float(envelope.max())


def test_a_per_frame_rotation_breaks_the_frame_rate_comb_of_a_standing_phase():
    """A head input that stands still (a flat magnitude and the same phase in every frame) repeats one waveform every
    hop: all its energy sits on multiples of the frame rate (50 Hz for codec v2's framing). The head's per-frame
    rotation (``CodecConfig.phase_rotation``) spreads it out at the level a random phase gives, and 0 changes
    nothing."""
    from s2slib.codec.stft_io import ISTFTHead
    from s2slib.metrics import comb_share

    plain = ISTFTHead(hop=320, n_fft=640)
    K, F_ = plain.n_bins, 250  # 5 s
    x = torch.zeros(1, 2 * K, F_)
    g = torch.Generator().manual_seed(0)
    x[:, K:] = torch.rand(1, K, 1, generator=g) * 2 * math.pi  # a fixed phase per bin, the same in every frame
    standing = plain(x)[0, 0, 640:-640].numpy()
    rotated = ISTFTHead(hop=320, n_fft=640, rotation=math.pi)(x)[0, 0, 640:-640].numpy()
    assert torch.equal(ISTFTHead(hop=320, n_fft=640, rotation=0.0)(x), plain(x))
    white = np.random.default_rng(0).standard_normal(len(standing))
    assert comb_share(standing, 16000, 50.0) > 0.9
    assert comb_share(rotated, 16000, 50.0) < 2 * comb_share(white, 16000, 50.0)
    noisy = x.clone()  # the level to expect: the same magnitudes under a random phase in every bin and frame
    noisy[:, K:] = torch.rand(1, K, F_, generator=g) * 2 * math.pi
    random_phase = plain(noisy)[0, 0, 640:-640].numpy()
    assert 0.7 < np.sqrt(np.mean(rotated ** 2) / np.mean(random_phase ** 2)) < 1.4
    with pytest.raises(ValueError, match="rotation"):
        ISTFTHead(hop=320, n_fft=640, rotation=4.0)
    with pytest.raises(ValueError, match="phase_rotation"):
        CodecConfig(phase_rotation=-1.0)


def test_pitch_head_puts_harmonics_at_the_predicted_f0_not_on_the_bin_centres():
    """``phase="pitch"``: the same magnitudes and offsets in every frame, F0 130 Hz, voiced. Each bin turns at the
    harmonic of 130 Hz nearest to it, so the output's energy sits on 130, 260, 390 Hz, between the bin centres
    (multiples of 25 Hz); unvoiced, the same input makes tones on the bin centres."""
    import math

    from s2slib.codec.stft_io import ISTFTHead
    from s2slib.metrics import comb_share

    head = ISTFTHead(hop=320, n_fft=640, phase="pitch", sample_rate=16000)
    K, F_ = head.n_bins, 150  # 3 s
    f0, share = 130.0, {}
    logit = math.log(math.log(f0 / 50) / math.log(10) / (1 - math.log(f0 / 50) / math.log(10)))  # sigmoid^-1
    for voicing in (8.0, -8.0):
        x = torch.full((1, head.in_channels, F_), -30.0)
        for h in (1, 2, 3):  # bins around each harmonic: 130 -> bins 5, 6; 260 -> 10, 11; 390 -> 15, 16
            for k in (math.floor(h * f0 / 25), math.ceil(h * f0 / 25)):
                x[:, k] = 0.0
        x[:, K: 2 * K] = 0.0  # offsets
        x[:, 2 * K] = logit
        x[:, 2 * K + 1] = voicing
        wav = head(x)[0, 0, 640:-640].numpy()
        share[voicing > 0] = (comb_share(wav, 16000, f0, width_hz=5.0), comb_share(wav, 16000, 25.0, width_hz=2.0))
        assert torch.allclose(torch.sigmoid(head.pitch_logits(x)[:, 1]), torch.sigmoid(torch.tensor(voicing)))
    assert share[True][0] > 0.8  # voiced: on the harmonics of 130 Hz
    assert share[False][0] < 0.5 and share[False][1] > 0.8  # unvoiced: on the bin centres



def test_peaks_finds_each_bins_nearest_peak_and_places_it_between_bins():
    """One frame's peaks (:func:`s2slib.codec.peak_phase.peaks`): two windowed tones at 10.3 and 30.75 bins own the
    bins nearest to them, their frequencies come out within a tenth of a bin, and a frame with no interior maximum
    falls back on its loudest bin."""
    from s2slib.codec.peak_phase import peaks
    from s2slib.codec.pitch import frame_spectrum

    n = 640
    t = torch.arange(n, dtype=torch.float64)
    frame = torch.cos(2 * math.pi * 10.3 * t / n) + 0.5 * torch.cos(2 * math.pi * 30.75 * t / n + 1.0)
    spec = frame_spectrum(frame[None, None].float(), torch.hann_window(n, periodic=True))[0]  # (1, K)
    owner, freq = peaks(spec.abs().clamp_min(1e-9).log())
    assert owner[0, 8:13].eq(owner[0, 10]).all() and owner[0, 28:33].eq(owner[0, 31]).all()
    assert abs(float(freq[0, 10]) - 10.3) < 0.1 and abs(float(freq[0, 31]) - 30.75) < 0.1
    rising = torch.arange(9, dtype=torch.float64)[None]  # no interior maximum: the top bin is the peak
    owner, freq = peaks(rising)
    assert owner.eq(8).all() and freq.eq(8).all()


def test_peak_locked_phase_turns_each_harmonic_at_its_own_frequency():
    """``phase="peaks"``: the exact magnitudes of harmonics of 130 Hz (between the 25 Hz bins) and nothing else.
    The peak-locked phase turns every harmonic at its frequency, so the overlapping frames add up to the original's
    level and the energy sits on the harmonics of 130 Hz; a phase that stands still puts it on the 50 Hz comb."""
    from s2slib.codec.pitch import causal_spectrum
    from s2slib.codec.stft_io import ISTFTHead
    from s2slib.metrics import comb_share

    hop, n_fft, sr = 320, 640, 16000
    t = torch.arange(150 * hop, dtype=torch.float64) / sr  # 3 s
    ref = sum(torch.cos(2 * math.pi * 130 * h * t + h * h) / h for h in range(1, 20)).float()
    spec = causal_spectrum(ref[None], hop, n_fft).transpose(1, 2)  # (1, K, F) complex
    log_mag = spec.abs().clamp_min(1e-9).log()
    peaks = ISTFTHead(hop, n_fft, phase="peaks")(log_mag)[0, 0, n_fft:-n_fft].numpy()
    plain = ISTFTHead(hop, n_fft)
    standing = plain(torch.cat([log_mag, torch.zeros_like(log_mag)], 1))[0, 0, n_fft:-n_fft].numpy()
    exact = plain(torch.cat([log_mag, torch.angle(spec)], 1))[0, 0, n_fft:-n_fft].numpy()  # the head's own level
    inner = ref[n_fft:-n_fft].numpy()
    assert 0.85 < np.sqrt(np.mean(peaks ** 2) / np.mean(exact ** 2)) < 1.15
    assert comb_share(peaks, sr, 130.0, width_hz=4.0) > 0.9
    assert comb_share(peaks, sr, 50.0) < 2 * comb_share(inner, sr, 50.0)
    assert comb_share(standing, sr, 50.0) > 0.5
    with pytest.raises(ValueError, match="bins"):
        ISTFTHead(hop, n_fft, phase="peaks")(log_mag[:, :-1])


@pytest.mark.parametrize("hop, n_fft", [(320, 640), (320, 1280)])
def test_wola_synthesis_gives_a_clip_back_from_its_own_spectrum(hop, n_fft):
    """``synthesis="wola"``: the front end's spectrum of a clip (magnitudes and phases) comes back as the clip, away
    from the start (where the causal padding's frames are missing); the Hann synthesis window windows it twice,
    so its level swings once per hop. Unknown windows are clear errors."""
    from s2slib.codec.pitch import causal_spectrum
    from s2slib.codec.stft_io import ISTFTHead, synthesis_window

    wav = torch.randn(1, 40 * hop, generator=torch.Generator().manual_seed(3))
    spec = causal_spectrum(wav, hop, n_fft).transpose(1, 2)  # (1, K, F)
    x = torch.cat([spec.abs().clamp_min(1e-9).log(), torch.angle(spec)], 1)
    inner = slice(n_fft, -n_fft)  # whole windows on both sides
    wola = ISTFTHead(hop, n_fft, synthesis="wola")(x)[0, 0]
    assert torch.allclose(wola[inner], wav[0, inner], atol=1e-4)
    hann = ISTFTHead(hop, n_fft)(x)[0, 0]
    assert (hann[inner] - wav[0, inner]).abs().max() > 0.1
    with pytest.raises(ValueError, match="synthesis"):
        ISTFTHead(hop, n_fft, synthesis="kaiser")
    with pytest.raises(ValueError, match="synthesis"):
        synthesis_window(hop, n_fft, "kaiser")
    with pytest.raises(ValueError, match="CodecConfig.synthesis"):
        CodecConfig(architecture="stft", strides=(320,), synthesis="kaiser")

def test_stft_io_layers_stream_like_their_forward():
    from s2slib.codec.stft_io import CausalSTFT, ISTFTHead

    g = torch.Generator().manual_seed(1)
    stft = CausalSTFT(hop=80, n_fft=320)
    wav = torch.randn(2, 1, 80 * 9, generator=g)
    feats = stft(wav)
    assert feats.shape == (2, 3 * 161, 9)
    state, pieces = stft.initial_state(2), []
    for chunk in torch.split(wav, [1, 79, 100, 300, 240], dim=-1):
        y, state = stft.step(chunk, state)
        pieces.append(y)
    assert torch.allclose(torch.cat(pieces, dim=-1), feats, atol=1e-5)

    for phase, rotation, synthesis in (("absolute", 0.0, "hann"), ("integrated", 0.0, "hann"), ("centred", 0.0, "hann"),
                                       ("pitch", 0.0, "hann"), ("peaks", 0.0, "wola"), ("peaks_offset", 0.0, "hann"),
                                       ("absolute", math.pi, "wola"),
                                       ("pitch", 1.0, "hann")):
        head = ISTFTHead(hop=80, n_fft=320, phase=phase, rotation=rotation, synthesis=synthesis)
        x = torch.randn(2, head.in_channels, 9, generator=g)
        offline = head(x)
        assert offline.shape == (2, 1, 9 * 80)
        state, pieces = head.initial_state(2), []
        for chunk in torch.split(x, [2, 0, 3, 4], dim=-1):
            y, state = head.step(chunk, state)
            pieces.append(y)
        pieces.append(head.finish(state))
        streamed = torch.cat(pieces, dim=-1)
        assert torch.allclose(streamed, offline, atol=1e-5), (phase, rotation, synthesis)
    head = ISTFTHead(hop=80, n_fft=320)
    # a frame's spectrum becomes a windowed burst over its own span: a lone impulse in frame 4 only touches
    # samples (4 + 1) * 80 - 320 .. (4 + 1) * 80
    spec = torch.full((1, head.in_channels, 9), -30.0)
    spec[:, 40, 4] = 0.0  # one bin, unit magnitude
    burst = head(spec)[0, 0]
    touched = (burst.abs() > 1e-6).nonzero()[:, 0]
    assert touched.min() >= 5 * 80 - 320 and touched.max() < 5 * 80


def test_orthogonal_projection_residual_shrinks_with_every_level():
    """The orthogonal projection (the default) makes each level's residual no longer than its input: the relative
    latent error falls with every added level, for a trained codec's quantizer too."""
    from s2slib.codec.quantize import OrthonormalBasis

    basis = OrthonormalBasis(16, 4)
    q = basis.basis()
    assert torch.allclose(q.T @ q, torch.eye(4), atol=1e-5)
    codec = _prepared_codec(CodecConfig.fast50_tiny())  # codebook_dim 4 in a latent of 16
    assert codec.config.quantizer_projection == "orthogonal"
    wav = _speechlike(2, 16000, torch.Generator().manual_seed(9))
    with torch.inference_mode():
        latent = codec.encoder(wav)
        errors = [float((codec.quantizer.decode(codec.quantizer.encode(latent, n)) - latent).norm() / latent.norm())
                  for n in range(1, codec.config.n_q + 1)]
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0]


def test_config_dicts_from_before_the_fixes_rebuild_their_own_model():
    """A seed-design checkpoint written before codec v2 has no upsampler/projection keys: its weights belong to
    transposed upsamplers and free projections, and that is what its config must rebuild."""
    old = CodecConfig.tiny().to_dict()
    for key in ("architecture", "upsampler", "quantizer_projection", "frame_dim", "encoder_blocks",
                "decoder_blocks", "block_kernel_size", "block_expansion", "n_fft"):
        old.pop(key)
    cfg = CodecConfig.from_dict(old)
    assert (cfg.architecture, cfg.upsampler, cfg.quantizer_projection) == ("conv", "transposed", "free")
    new = CodecConfig.from_dict(CodecConfig.tiny().to_dict())
    assert (new.upsampler, new.quantizer_projection) == ("nearest", "orthogonal")
    Codec(cfg).load_state_dict(Codec(cfg).state_dict())  # builds


def test_a_codec_loaded_under_inference_mode_caches_and_stays_right():
    """Servers and benchmarks build models under ``torch.inference_mode`` (tensors without version counters): the
    quantizer's caches (orthonormal bases, duplicate masks) must still be reused between calls and still follow new
    weights loaded in place."""
    reference = _prepared_codec(CodecConfig.fast50_tiny(), init_seconds=1.0)
    wav = _speechlike(1, 16000, torch.Generator().manual_seed(3))
    with torch.inference_mode():
        codec = Codec(CodecConfig.fast50_tiny()).eval()
        codec.encode(wav)  # caches built from the random weights
        codec.load_state_dict(reference.state_dict())  # new values in the same storage
        codes = codec.encode(wav)
        level = codec.quantizer.levels[0]
        basis = level.basis.basis()
        assert level.basis.basis() is basis  # cached, not recomputed
        assert torch.equal(codes, reference.encode(wav))


def test_int8_decoder_keeps_the_codes_and_stays_close_to_the_float_decoder():
    from s2slib.codec.layers import fold_weight_norm, quantize_decoder_int8

    torch.manual_seed(0)
    codec = fold_weight_norm(Codec(CodecConfig.preset("fast50_tiny"))).eval()
    fast = quantize_decoder_int8(codec).eval()
    assert type(fast.decoder) is type(codec.decoder) and fast is not codec
    assert any("quantized" in type(m).__module__ for m in fast.decoder.modules())  # the linear layers are int8
    assert not any("quantized" in type(m).__module__ for m in codec.modules())  # the original is untouched
    wav = torch.randn(1, 1, 3200) * 0.1
    with torch.inference_mode():
        codes = codec.encode(wav)
        assert torch.equal(fast.encode(wav), codes)  # the encoder stays float: the same tokens
        ref, out = codec.decode(codes), fast.decode(codes)
        snr = 10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum().clamp(min=1e-20))
        assert snr > 20, f"int8 decoder {float(snr):.1f} dB from the float decoder"
        dec = fast.streaming_decoder()
        streamed = torch.cat([dec.push(codes[..., i:i + 1]) for i in range(codes.shape[-1])], dim=-1)
        n = min(streamed.shape[-1], out.shape[-1])
        snr_stream = 10 * torch.log10(out[..., :n].pow(2).sum() / (out[..., :n] - streamed[..., :n]).pow(2).sum().clamp(min=1e-20))
        assert snr_stream > 20, f"streamed int8 decode {float(snr_stream):.1f} dB from the offline one"


def test_rephased_keeps_the_codecs_own_output_and_swaps_only_the_phase():
    """:func:`s2slib.codec.rephase.rephased`: ``own`` is what :meth:`Codec.decode` gives, every variant has the
    clip's length and stays in [-1, 1], the variants really differ, and the seed design (no iSTFT head) and a
    non-mono input are clear errors."""
    from s2slib.codec.rephase import REPHASINGS, rephased

    codec = _prepared_codec(CodecConfig.fast50_tiny(), init_seconds=1.0)
    wav = _speechlike(1, 16000 + 37, torch.Generator().manual_seed(4))
    with torch.inference_mode():
        decoded = codec.bounded(codec.decode(codec.encode(wav), length=wav.shape[-1]))[0, 0].numpy()
    out = rephased(codec, wav[0, 0].numpy())
    assert list(out) == list(REPHASINGS)
    assert np.allclose(out["own"], decoded, atol=1e-5)
    for name, est in out.items():
        assert est.shape == (wav.shape[-1],) and np.isfinite(est).all() and np.abs(est).max() <= 1.0, name
    for name in ("turned per frame", "peak-locked", "random", "exact"):
        assert not np.allclose(out[name], out["own"], atol=1e-4), name
    with pytest.raises(ValueError, match="architecture"):
        rephased(_prepared_codec(CodecConfig.tiny(), init_seconds=1.0), wav[0, 0].numpy())
    with pytest.raises(ValueError, match="mono"):
        rephased(codec, wav[0].numpy())


def test_reconstruct_without_the_quantizer_decodes_the_encoders_latent():
    """``reconstruct(..., quantize=False)``, the ceiling of notebook 02's bitrate ladder, is the decoder on the
    encoder's latent as it is: the clip's length, in [-1, 1], and different from every quantized rung; and
    ``evaluate_codec`` measures it the same way."""
    from s2slib.codec.train import evaluate_codec, reconstruct

    codec = _prepared_codec(CodecConfig.fast50_tiny(), init_seconds=1.0)
    wav = _speechlike(1, 8000 + 37, torch.Generator().manual_seed(8))[0, 0].numpy()
    ceiling = reconstruct(codec, wav, quantize=False)
    with torch.inference_mode():
        x = torch.from_numpy(wav).view(1, 1, -1)
        expected = codec.decoder(codec.latent(x)).clamp(-1, 1)[0, 0, : len(wav)].numpy()
    assert ceiling.shape == wav.shape and np.abs(ceiling).max() <= 1.0
    assert np.allclose(ceiling, expected, atol=1e-6)
    for n_q in range(1, codec.config.n_q + 1):
        assert not np.allclose(ceiling, reconstruct(codec, wav, n_q=n_q), atol=1e-4), n_q
    means = evaluate_codec(codec, [wav], quantize=False)
    assert means["snr"] == pytest.approx(float(10 * np.log10((wav ** 2).sum() / ((wav - ceiling) ** 2).sum())),
                                         abs=1e-3)
