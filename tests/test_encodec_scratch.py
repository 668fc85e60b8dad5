"""EnCodec's architecture behind the course codec's API, trained by the course trainer, compared as a third codec.

The model is built from the ``encodec`` package's own modules; training runs the real trainer on the tiny preset for
a few steps on the speech that ``codec_manifests`` synthesizes.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from s2slib import baseline
from s2slib.baseline import SCRATCH_LABEL, compare_codecs
from s2slib.checkpoint import CheckpointError, load_checkpoint
from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec
from s2slib.codec.train import CodecTrainConfig, load_codec
from s2slib.encodec_scratch import (EncodecScratch, EncodecScratchConfig, EncodecScratchTrainer,
                                    load_encodec_scratch)


def small_config(**kw) -> CodecTrainConfig:
    base = dict(max_steps=4, batch_size=2, segment_s=0.25, warmup_steps=2, val_every=2, val_items=2, ckpt_every=2,
                log_every=1, val_max_s=1.0)
    base.update(kw)
    return CodecTrainConfig(**base)


def tiny_encodec_quantizer() -> EncodecScratchConfig:
    """The tiny preset with the encodec package's quantizer instead of the course's."""
    return dataclasses.replace(EncodecScratchConfig.tiny(), quantizer="encodec")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return EncodecScratch(EncodecScratchConfig.tiny()).eval()


def test_codes_are_50_per_second_and_decode_restores_the_length(tiny):
    n_q = tiny.config.n_q
    with torch.inference_mode():
        codes = tiny.encode(torch.randn(2, 1, 16000) * 0.1)  # one second
        assert codes.shape == (2, n_q, 50) and codes.dtype == torch.int64
        assert int(codes.min()) >= 0 and int(codes.max()) < tiny.config.codebook_size
        x = torch.randn(2, 1, 12345) * 0.1  # not a whole number of frames
        codes = tiny.encode(x)
        assert codes.shape == (2, n_q, 39)  # ceil(12345 / 320)
        assert tiny.decode(codes).shape == (2, 1, 39 * 320)
        assert tiny.decode(codes, length=12345).shape == (2, 1, 12345)
        fewer = tiny.encode(x, n_q=2)
        assert torch.equal(fewer, codes[:, :2])  # residual VQ: the first levels do not depend on the later ones
        assert tiny.decode(fewer, length=12345).shape == (2, 1, 12345)


@pytest.mark.parametrize("name", ["laptop", "paper"])
def test_presets_match_the_course_codecs_frame_rate_and_bitrate_ladder(name):
    cfg = EncodecScratchConfig.preset(name)
    assert cfg.hop_length == 320 and cfg.frame_rate == 50.0
    assert cfg.n_q == 8 and cfg.bitrate_kbps() == pytest.approx(4.0) and cfg.bitrate_kbps(1) == pytest.approx(0.5)
    assert cfg.bitrate_kbps() == CodecConfig.fast50().bitrate_kbps()


def test_paper_preset_has_encodecs_published_layers():
    from encodec import EncodecModel

    published = EncodecModel.encodec_model_24khz(pretrained=False)
    ours = EncodecScratch(EncodecScratchConfig.paper())
    assert ours.num_parameters() == sum(p.numel() for p in published.parameters())  # ~14.9 M, codebooks are buffers
    shapes = lambda module: [tuple(p.shape) for p in module.parameters()]  # noqa: E731
    assert shapes(ours.encoder) == shapes(published.encoder) and shapes(ours.decoder) == shapes(published.decoder)


def test_presets_choose_the_quantizer_and_the_label_says_which():
    assert EncodecScratchConfig.laptop().quantizer == EncodecScratchConfig.tiny().quantizer == "course"
    assert EncodecScratchConfig.paper().quantizer == "encodec"  # the published recipe, for GPU runs
    course, package = EncodecScratch(EncodecScratchConfig.tiny()), EncodecScratch(tiny_encodec_quantizer())
    assert "course quantizer" in course.label and "EnCodec's quantizer" in package.label
    assert all("pretrained" not in m.label and "24 kHz" not in m.label for m in (course, package))
    assert course.num_parameters() == package.num_parameters()  # same encoder/decoder, codebooks are buffers
    assert course.config.resolved_dead_code_threshold == 0.1 and package.config.resolved_dead_code_threshold == 2.0


def test_course_quantizer_training_pass_runs_every_level_with_per_example_dropout():
    torch.manual_seed(0)
    model = EncodecScratch(EncodecScratchConfig.tiny()).train()
    wav = torch.randn(8, 1, 4000) * 0.1
    depths = set()
    for _ in range(4):
        out = model(wav)
        assert out.codes.shape == (8, 4, 13) and out.codes.dtype == torch.int64  # (B, n_q, frames), all levels
        assert out.n_q_used.shape == (8,) and out.wav_hat.shape == wav.shape and torch.isfinite(out.vq_loss)
        depths.update(out.n_q_used.tolist())
    assert len(depths) > 1  # quantizer dropout per example
    assert model.initialised_levels() == 4  # the course RVQ fits every level's k-means on the first batch
    out = model(wav, n_q=2)
    assert (out.n_q_used == 2).all()
    (out.wav_hat.square().mean() + out.vq_loss).backward()
    assert model.encoder.model[0].conv.conv.weight_v.grad.abs().sum() > 0  # straight through the quantizer


def test_course_quantizer_does_not_collapse_after_a_few_steps():
    """Each level keeps several entries in use and every added level changes the reconstruction (encodec's quantizer
    collapsed to one entry at level 1 at laptop scale, with the same output at every depth)."""
    torch.manual_seed(0)
    model = EncodecScratch(EncodecScratchConfig.tiny()).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(2)
    t = torch.arange(8000) / 16000
    for _ in range(6):
        f0 = 100 + 200 * torch.rand(8, 1, 1, generator=g)  # (B, 1, 1) Hz
        amp = 0.3 * torch.rand(8, 1, 1, generator=g)  # (B, 1, 1)
        wav = amp * torch.sin(2 * torch.pi * f0 * t) + 0.05 * torch.randn(8, 1, 8000, generator=g)  # (B, 1, T)
        out = model(wav)
        loss = (out.wav_hat - wav).abs().mean() + out.vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.inference_mode():
        codes = model.encode(wav)  # (B, n_q, F)
        assert codes.shape == (8, 4, 25)
        assert all(codes[:, i].unique().numel() > 1 for i in range(4))  # no level down to one entry
        recon = [model.decode(codes[:, :n], length=8000) for n in range(1, 5)]
    for a, b in zip(recon, recon[1:]):
        assert not torch.equal(a, b)  # every added level changes the reconstruction (encodec's last level did not)


def test_training_pass_draws_one_depth_per_batch_and_passes_gradients():
    torch.manual_seed(0)
    model = EncodecScratch(tiny_encodec_quantizer()).train()
    wav = torch.randn(3, 1, 4000) * 0.1
    depths = set()
    for _ in range(12):
        out = model(wav)
        n = int(out.n_q_used[0])
        assert (out.n_q_used == n).all() and out.codes.shape == (3, n, 13)  # one depth for the whole batch
        assert out.codebook_usage.shape == out.perplexity.shape == out.commitment_loss.shape == (4,)
        assert (out.codebook_usage[n:] == 0).all() and (out.codebook_usage[:n] > 0).all()
        assert out.wav_hat.shape == wav.shape and torch.isfinite(out.vq_loss)
        depths.add(n)
    assert len(depths) > 1  # quantizer dropout (EnCodec's random bandwidth per batch)
    out = model(wav, n_q=4)
    (out.wav_hat.square().mean() + out.vq_loss).backward()
    assert model.encoder.model[0].conv.conv.weight_v.grad.abs().sum() > 0  # straight through the quantizer


def test_a_batch_initialises_at_most_one_new_codebook():
    """encodec fits a codebook by k-means on the first batch that reaches it; a level fitted on the same batch as the
    level before it would see all-zero residuals (tiny batch: 26 frames for 64 entries) and collapse to one entry."""
    torch.manual_seed(0)
    model = EncodecScratch(tiny_encodec_quantizer()).train()
    g = torch.Generator().manual_seed(1)
    ready = [model.initialised_levels()]
    for _ in range(12):
        model(torch.randn(2, 1, 4000, generator=g) * 0.1)
        ready.append(model.initialised_levels())
    assert ready[0] == 0 and ready[-1] == 4 and all(b - a in (0, 1) for a, b in zip(ready, ready[1:]))
    for level in model.quantizer.vq.layers:
        assert level._codebook.embed.unique(dim=0).shape[0] > 1  # entries spread over the data, not one point


def test_bad_input_gets_clear_errors(tiny):
    with pytest.raises(ValueError, match=r"wav.view\(1, 1, -1\)"):
        tiny.encode(torch.zeros(16000))
    with pytest.raises(ValueError, match="n_q must be an integer from 1 to 4"):
        tiny.encode(torch.zeros(1, 1, 320), n_q=5)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 64\)"):
        tiny.decode(torch.full((1, 2, 3), 64))
    with pytest.raises(ValueError, match="unknown EnCodec-from-scratch preset"):
        EncodecScratchConfig.preset("huge")
    with pytest.raises(ValueError, match="codebook_size must be a power of two"):
        EncodecScratchConfig(codebook_size=1000)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        EncodecScratchConfig(quantizer="dac")


@pytest.mark.parametrize("name", ["laptop", "tiny", "paper"])
def test_config_round_trips_through_json(name):
    cfg = EncodecScratchConfig.preset(name)
    again = EncodecScratchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.ratios == (8, 5, 4, 2)
    with pytest.raises(ValueError, match="unknown key"):
        EncodecScratchConfig.from_dict({**cfg.to_dict(), "strides": [4]})


def test_a_config_saved_before_the_quantizer_field_rebuilds_encodecs_quantizer():
    old = {k: v for k, v in EncodecScratchConfig.tiny().to_dict().items() if k != "quantizer"}
    old["dead_code_threshold"] = 2.0  # what the old default wrote
    cfg = EncodecScratchConfig.from_dict(old)
    assert cfg.quantizer == "encodec" and cfg.n_q == 4
    model = EncodecScratch(cfg)
    assert model.label == "EnCodec encoder/decoder, trained here from scratch (EnCodec's quantizer)"
    assert hasattr(model.quantizer, "vq")  # the encodec package's ResidualVectorQuantizer, as the checkpoint was


def test_two_training_steps_write_a_checkpoint_that_reloads(codec_manifests, tmp_path):
    train, val = codec_manifests
    trainer = EncodecScratchTrainer(EncodecScratchConfig.tiny(), small_config(max_steps=2), train, val, tmp_path,
                                    device="cpu")
    assert trainer.codec.config.quantizer == "course"
    history = trainer.fit(progress=False)
    assert trainer.step == 2 and history.series("loss_mel")[0] == [1, 2]
    assert np.isfinite(history.series("val_mel_distance")[1]).all()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["kind"] == "encodec_scratch_train"
    assert load_checkpoint(tmp_path / "codec.pt")["train_steps"] == 2
    model = load_encodec_scratch(tmp_path / "codec.pt")
    assert model.config == EncodecScratchConfig.tiny() and not model.training
    for key, value in trainer.codec.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    with pytest.raises(CheckpointError, match="expected codec"):
        load_codec(tmp_path / "codec.pt")  # the course codec's loader refuses it: never mistaken for the course codec
    with pytest.raises(TypeError, match="use CodecTrainer for the course codec"):
        EncodecScratchTrainer(CodecConfig.tiny(), small_config(), train, val, tmp_path / "other", device="cpu")


def test_resume_is_exact(codec_manifests, tmp_path, check_exact_resume):
    train, val = codec_manifests
    check_exact_resume(lambda out: EncodecScratchTrainer(EncodecScratchConfig.tiny(), small_config(), train, val, out,
                                                         device="cpu"), tmp_path, stop_after=2)


def test_compare_measures_the_scratch_encodec_at_every_depth(tiny):
    course = Codec(CodecConfig.tiny()).eval()
    clips = [np.random.default_rng(i).normal(0, 0.1, 8000).astype(np.float32) for i in range(2)]
    rows = compare_codecs(course, None, clips, scratch_encodec=tiny)
    scratch = [r for r in rows if r.codec == SCRATCH_LABEL]
    assert [r.setting for r in scratch] == [f"n_q={n}" for n in range(1, 5)]
    assert [r.kbps for r in scratch] == pytest.approx([0.3 * n for n in range(1, 5)])  # 6 bits x 50 frames/s
    assert all(r.frame_rate == 50.0 and r.weights == "trained here from scratch" for r in scratch)
    for r in scratch:
        assert all(np.isfinite(v) for v in (r.si_sdr, r.mel_distance, r.stoi, r.encode_rtf, r.decode_rtf))
    assert {r.codec for r in rows} == {"course codec", SCRATCH_LABEL}  # never labelled as the pretrained EnCodec
    assert "EnCodec 24 kHz" not in SCRATCH_LABEL and "pretrained" not in SCRATCH_LABEL


def test_compare_command_line_takes_the_scratch_checkpoint(tmp_path, monkeypatch, capsys, tiny):
    import soundfile as sf

    from s2slib.codec.train import export_codec
    from s2slib.encodec_scratch import export_encodec_scratch

    export_codec(Codec(CodecConfig.tiny()), tmp_path / "codec.pt")
    export_encodec_scratch(tiny, tmp_path / "scratch.pt")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.random.default_rng(0).normal(0, 0.1, 8000), 16000)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv("S2S_ENCODEC_WEIGHTS", raising=False)
    assert baseline.main(["compare", "--checkpoint", str(tmp_path / "codec.pt"), "--audio", str(tmp_path / "audio"),
                          "--no-download", "--scratch-checkpoint", str(tmp_path / "scratch.pt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["setting"] for r in out["rows"] if r["codec"] == SCRATCH_LABEL] == [f"n_q={n}" for n in range(1, 5)]
    assert baseline.main(["compare", "--checkpoint", str(tmp_path / "codec.pt"), "--audio", str(tmp_path / "audio"),
                          "--scratch-checkpoint", str(tmp_path / "codec.pt")]) == 1  # a course codec is refused
    assert "encodec_scratch" in capsys.readouterr().err


DDP_WORKER = """
import sys
from pathlib import Path
import dataclasses
import torch
from s2slib.codec.train import CodecTrainConfig
from s2slib.encodec_scratch import EncodecScratchConfig, EncodecScratchTrainer

train, val, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cfg = CodecTrainConfig(max_steps=4, batch_size=2, segment_s=0.25, warmup_steps=1, val_every=0, val_items=1,
                       ckpt_every=2, log_every=1)
tiny = dataclasses.replace(EncodecScratchConfig.tiny(), quantizer="encodec")  # the per-batch depth broadcast
trainer = EncodecScratchTrainer(tiny, cfg, train, val, out / "run", device="cpu")
assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
depths = []
forward = trainer.codec.forward
trainer.codec.forward = lambda wav: depths.append(int((out_ := forward(wav)).n_q_used[0])) or out_
trainer.fit(progress=False)
torch.save({"params": dict(trainer.codec.named_parameters()), "depths": depths}, out / f"rank{trainer.dist.rank}.pt")
"""


@pytest.mark.slow
def test_distributed_data_parallel_on_cpu(codec_manifests, tmp_path):
    """torchrun with two gloo processes: every batch runs the same number of levels on both ranks (else encodec's
    codebook broadcasts would hang), the weights stay in sync and rank 0 writes the model."""
    import os
    import socket
    import subprocess
    import sys

    train, val = codec_manifests
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    with socket.socket() as s:  # a free loopback port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(worker), str(train), str(val), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert a["depths"] == b["depths"] and len(a["depths"]) == 4
    for key in a["params"]:
        assert torch.allclose(a["params"][key], b["params"][key], atol=1e-6), key
    assert load_encodec_scratch(tmp_path / "run" / "codec.pt").config == tiny_encodec_quantizer()


def test_latent_standardizer_is_debiased_and_fixed_at_inference():
    """After a few training batches the running statistics already match the data (a plain BatchNorm would still be
    half way from its 0/1 start), and at inference the map is the same for every frame (causal, streamable)."""
    from s2slib.encodec_scratch import LatentStandardizer

    torch.manual_seed(0)
    norm = LatentStandardizer(4).train()
    for _ in range(3):
        norm(5.0 + 3.0 * torch.randn(8, 4, 50))  # channels with mean 5, std 3
    norm.eval()
    x = 5.0 + 3.0 * torch.randn(8, 4, 50)
    y = norm(x)
    assert y.mean().abs() < 0.1 and (y.std() - 1).abs() < 0.1
    assert torch.allclose(norm(x[..., :20]), y[..., :20])  # no dependence on later frames
    assert torch.equal(LatentStandardizer(4).eval()(x), x)  # untrained: the identity
