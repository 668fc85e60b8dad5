"""How the S2S encoder hears (s2slib.s2s.frontend): the codec's codebook vectors, normalised per turn."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from s2slib.baseline import untrained_encodec
from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec
from s2slib.codec.train import export_codec, load_codec
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.frontend import codec_latent_table, normalise_per_turn, turn_ids
from s2slib.s2s.model import S2SModel
from s2slib.s2s.tokens import LATENT_FILE, TokenCache, codec_fingerprint
from s2slib.s2s.train import S2STrainConfig, S2STrainer, load_s2s
from tests.s2s_fixtures import CONFIG, TASK, patterned_items


def _sum_of_rows(table: np.ndarray, codes: torch.Tensor) -> torch.Tensor:
    """``codes (n_q, F)`` -> ``(F, D)``: one table row per level, summed."""
    return sum(torch.from_numpy(table[q])[codes[q]] for q in range(codes.shape[0]))


@pytest.fixture(scope="module")
def course_codec(tmp_path_factory):
    torch.manual_seed(0)
    path = export_codec(Codec(CodecConfig.fast50_tiny()).eval(), tmp_path_factory.mktemp("codec") / "codec.pt")
    return path, load_codec(path)


def test_the_table_rebuilds_the_course_codecs_latent_exactly(course_codec):
    _, codec = course_codec
    table = codec_latent_table(codec)
    n_q, size = codec.config.n_q, codec.config.codebook_size
    assert table.shape[:2] == (n_q, size) and table.dtype == np.float32
    codes = torch.randint(0, size, (1, n_q, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = codec.dequantize(codes)[0].T  # (F, D)
    assert torch.allclose(_sum_of_rows(table, codes[0]), want, atol=1e-5)


def test_the_table_rebuilds_encodecs_latent_exactly():
    codec = untrained_encodec(bandwidth=1.5)  # 2 levels; the layout differs from the course codec's
    table = codec_latent_table(codec)
    assert table.shape == (codec.n_q, 1024, 128)
    codes = torch.randint(0, 1024, (1, codec.n_q, 5), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(_sum_of_rows(table, codes[0]), codec.dequantize(codes)[0].T, atol=1e-5)


def test_a_codec_without_dequantize_is_refused_by_name():
    with pytest.raises(TypeError, match="object has no dequantize"):
        codec_latent_table(object())


def test_each_turn_is_normalised_on_its_own_and_special_frames_are_zero():
    # start frame, 4 frames of turn 1, a separator, 5 frames of turn 2, then padding
    is_code = torch.tensor([[False, True, True, True, True, False, True, True, True, True, True, False]])
    assert turn_ids(is_code).tolist() == [[1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3]]
    z = torch.randn(1, 12, 3, generator=torch.Generator().manual_seed(0)) * 5 + 3
    out = normalise_per_turn(z, is_code)
    for frames in (slice(1, 5), slice(6, 11)):
        assert torch.allclose(out[0, frames].mean(0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(out[0, frames].pow(2).mean(0), torch.ones(3), atol=1e-4)
    assert torch.equal(out[0, ~is_code[0]], torch.zeros(int((~is_code).sum()), 3))
    # a louder, shifted voice in turn 2 (the same scale and offset on every frame) changes nothing
    z2 = z.clone()
    z2[0, 6:11] = z2[0, 6:11] * torch.tensor([2.0, 0.5, 3.0]) + torch.tensor([1.0, -4.0, 0.3])
    assert torch.allclose(normalise_per_turn(z2, is_code), out, atol=1e-4)


def _voices_model(latent: bool) -> tuple[S2SModel, torch.Tensor, torch.Tensor]:
    """A model over one codebook of 32 codes where codes 16..31 are "voice B": in the codec's latent they are codes
    0..15 scaled and shifted (a louder, brighter voice); one phrase in voice A and the same phrase in voice B."""
    torch.manual_seed(0)
    config = S2SConfig.smoke(n_q=1, codebook_size=32, max_frames=40, latent_dim=6 if latent else 0)
    model = S2SModel(config).eval()
    if latent:
        a = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
        model.set_codec_latent(np.concatenate([a, 2.5 * a + 1.0])[None])
    phrase = torch.tensor([[[3, 7, 7, 1, 12, 5, 9, 0, 14]]])
    return model, phrase, phrase + 16


def test_the_same_phrase_in_another_voice_sounds_the_same_to_a_latent_encoder_not_to_learned_embeddings():
    with torch.no_grad():
        model, voice_a, voice_b = _voices_model(latent=True)
        assert torch.allclose(model.encode(voice_a)[0], model.encode(voice_b)[0], atol=1e-4)
        model, voice_a, voice_b = _voices_model(latent=False)
        assert not torch.allclose(model.encode(voice_a)[0], model.encode(voice_b)[0], atol=1e-2)


def test_a_latent_table_of_the_wrong_shape_is_refused():
    model = S2SModel(S2SConfig.smoke(n_q=2, codebook_size=32, latent_dim=4))
    with pytest.raises(ValueError, match=r"has shape \(2, 32, 5\); this model needs \(2, 32, 4\)"):
        model.set_codec_latent(np.zeros((2, 32, 5), np.float32))
    with pytest.raises(ValueError, match="latent_dim is 0"):
        S2SModel(S2SConfig.smoke(n_q=2, codebook_size=32)).set_codec_latent(np.zeros((2, 32, 4), np.float32))


def test_the_token_cache_keeps_the_table_and_a_cache_from_before_gets_it(course_codec, tmp_path):
    path, codec = course_codec
    cache = TokenCache(tmp_path / "tokens", codec_fingerprint(path))
    info = cache.record_codec(codec)
    assert info["latent_dim"] == codec_latent_table(codec).shape[-1]
    assert json.loads((cache.path / "codec.json").read_text())["latent_dim"] == info["latent_dim"]
    np.testing.assert_array_equal(cache.latent_table(), codec_latent_table(codec))
    assert S2SConfig.for_codec("smoke", cache.info).latent_dim == info["latent_dim"]
    # a cache written before the table was kept: codec.json without latent_dim, no latent.npy
    (cache.path / LATENT_FILE).unlink()
    old = {k: v for k, v in info.items() if k != "latent_dim"}
    (cache.path / "codec.json").write_text(json.dumps(old))
    with pytest.raises(FileNotFoundError, match="tokenize with this codec once more"):
        cache.latent_table()
    assert S2SConfig.for_codec("smoke", cache.info).latent_dim == 0
    assert cache.record_codec(codec)["latent_dim"] == info["latent_dim"]
    np.testing.assert_array_equal(cache.latent_table(), codec_latent_table(codec))


def test_a_latent_model_trains_only_with_its_table_and_the_table_travels_with_the_checkpoint(tmp_path):
    config = dataclasses.replace(CONFIG, latent_dim=8)
    items = patterned_items(12)
    cfg = S2STrainConfig(max_steps=3, batch_size=4, val_every=3, ckpt_every=3, task=TASK)
    with pytest.raises(ValueError, match="pass codec_latent=TokenCache.latent_table"):
        S2STrainer(config, cfg, items, items[:3], tmp_path / "none", device="cpu").fit(progress=False)
    table = np.random.default_rng(0).standard_normal((config.n_q, config.codebook_size, 8)).astype(np.float32)
    trainer = S2STrainer(config, cfg, items, items[:3], tmp_path / "run", device="cpu", codec_latent=table)
    trainer.fit(progress=False)
    model = load_s2s(tmp_path / "run" / "s2s.pt")
    np.testing.assert_array_equal(model.latent_input.table.view(table.shape).numpy(), table)
    # a resumed run has the table from its checkpoint
    again = S2STrainer(config, dataclasses.replace(cfg, max_steps=4), items, items[:3], tmp_path / "run",
                       device="cpu")
    assert again.resumed and again.model.latent_input.is_set
    again.fit(progress=False)
