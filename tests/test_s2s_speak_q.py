"""A decoder that speaks fewer codebooks than the encoder hears (``S2SConfig.speak_q``): what it learns, what it
writes, and how its answers come back as context."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec
from s2slib.s2s.batching import BatchedDecoder, start_stream
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.context import ConversationContext, source_codes
from s2slib.s2s.data import collate
from s2slib.s2s.delay import IGNORE
from s2slib.s2s.finetune import (AnswerExample, AnswerTask, AnswerTrainer, answer_examples, answer_model_config,
                                 example_parts)
from s2slib.s2s.frontend import LatentInput
from s2slib.s2s.generate import SamplingConfig, generate, generate_frames, generate_streaming
from s2slib.s2s.model import S2SModel
from s2slib.s2s.train import load_s2s
from tests.s2s_fixtures import CONFIG
from tests.test_s2s_answer import conversation_rows, small_answer_config


def test_speak_q_is_checked():
    with pytest.raises(ValueError, match="speak_q"):
        S2SConfig.smoke(n_q=4, speak_q=5)
    with pytest.raises(ValueError, match="speak_q"):
        AnswerTask(speak_q=-1)
    with pytest.raises(ValueError, match="speak_q"):
        answer_model_config(CONFIG, AnswerTask(speak_q=CONFIG.n_q + 1))
    assert S2SConfig.smoke(n_q=4).spoken_q == 4 and S2SConfig.smoke(n_q=4, speak_q=2).spoken_q == 2


def test_batches_give_the_unspoken_codebooks_no_input_and_no_target():
    c = S2SConfig.smoke(n_q=4, codebook_size=32, speak_q=2)
    rng = np.random.default_rng(0)
    b = collate(c, [rng.integers(0, 32, (4, 5))], [rng.integers(0, 32, (4, 7))], [True], [1], [0])
    assert (b.inputs[:, 2:, 0] == c.bos_id).all() and (b.inputs[:, 2:, 1:] == c.pad_id).all()
    assert (b.targets[:, 2:] == IGNORE).all()
    full = collate(dataclasses.replace(c, speak_q=0), [rng.integers(0, 32, (4, 5))], [rng.integers(0, 32, (4, 7))],
                   [True], [1], [0])
    assert (full.targets[:, 2:] != IGNORE).any()  # speaking every codebook leaves them as they were


def tiny(speak_q: int, seed: int = 0, **kw) -> S2SModel:
    torch.manual_seed(seed)
    return S2SModel(S2SConfig.smoke(n_q=4, codebook_size=64, max_frames=40, d_model=32, n_heads=2, decoder_layers=2,
                                    speak_q=speak_q, **kw)).eval()


def test_generation_writes_only_the_spoken_codebooks_and_a_frame_one_step_after_its_first():
    m = tiny(2)
    src = torch.randint(0, 64, (2, 4, 6))
    out = generate(m, src, ["Priya", None], "happy", SamplingConfig(max_frames=12, min_frames=2, seed=5))
    assert all(c.shape[0] == 2 and (c < 64).all() for c in out.codes)
    steps = []
    orig = m.step

    def counting(*a, **k):
        steps.append(1)
        return orig(*a, **k)

    m.step = counting
    first = next(iter(generate_frames(m, src[:1], None, None, SamplingConfig(max_frames=5, min_frames=5, seed=0))))
    assert first.index == 0 and first.codes.shape == (1, 2) and len(steps) == 2  # speak_q - 1 steps of delay


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_batched_streams_of_a_two_codebook_model_match_generation_alone(temperature):
    m = tiny(2, seed=1)
    g = torch.Generator().manual_seed(3)
    srcs = [torch.randint(0, 64, (1, 4, s), generator=g) for s in (7, 3)]
    cfgs = [SamplingConfig(temperature=temperature, max_frames=mf, min_frames=2, seed=s) for mf, s in ((20, 1), (9, 2))]
    expected = [[f.codes[0] for f in generate_frames(m, src, "Ravi", None, cfg) if bool(f.alive[0])]
                for src, cfg in zip(srcs, cfgs)]
    dec = BatchedDecoder(m, slots=1)
    handles = {dec.add(start_stream(m, src, "Ravi", None, cfg)): i for i, (src, cfg) in enumerate(zip(srcs, cfgs))}
    got = {0: [], 1: []}
    while dec.active:
        for h, codes in dec.step().items():
            if codes is not None:
                got[handles[h]].append(codes)
    for i in range(2):
        assert len(got[i]) == len(expected[i]) >= 2
        assert all(a.shape == (2,) and torch.equal(a, b) for a, b in zip(got[i], expected[i]))


def test_streamed_audio_of_two_codebooks_equals_offline_decode():
    torch.manual_seed(0)
    codec = Codec(CodecConfig.fast50_tiny()).eval()
    m = S2SModel(S2SConfig.smoke(n_q=codec.config.n_q, codebook_size=codec.config.codebook_size, speak_q=2)).eval()
    src = torch.randint(0, codec.config.codebook_size, (1, codec.config.n_q, 10))
    cfg = SamplingConfig(max_frames=15, min_frames=4, seed=2)
    codes = generate(m, src, "Ravi", None, cfg).codes[0]
    assert codes.shape[0] == 2
    streamed = np.concatenate(list(generate_streaming(m, codec, src, "Ravi", None, cfg, chunk_frames=3)))
    offline = codec.decode(codes.unsqueeze(0)).view(-1).detach().numpy()
    assert streamed.shape == offline.shape and np.abs(streamed - offline).max() < 1e-4


def test_an_answer_of_fewer_codebooks_comes_back_as_context_with_its_finer_levels_left_out():
    c = S2SConfig.smoke(n_q=4, codebook_size=32, speak_q=2)
    rng = np.random.default_rng(0)
    answer, question = rng.integers(0, 32, (2, 6)), rng.integers(0, 32, (4, 5))
    src = source_codes([answer], question, c)
    assert src.shape == (4, 6 + 1 + 5)
    assert (src[:2, :6] == answer).all() and (src[2:, :6] == c.pad_id).all() and (src[:, 6] == c.eos_id).all()
    # the encoder hears those frames as the codec would decode two levels: the finer levels add nothing
    torch.manual_seed(0)
    latent = LatentInput(4, 32, 6, 16)
    table = torch.randn(4, 32, 6)
    latent.set_table(table)
    ids = torch.from_numpy(src).unsqueeze(0)
    keep = torch.ones(1, ids.shape[-1], dtype=torch.bool)
    x, is_code = latent(ids, keep)
    assert is_code[0, :6].all() and not is_code[0, 6] and is_code[0, 7:].all()
    zeroed = table.clone()
    zeroed[2:, 0] = 0.0  # code 0 of the finer levels adds nothing: the same turn with those levels at code 0
    latent.set_table(zeroed)
    same = ids.clone()
    same[0, 2:, :6] = 0
    torch.testing.assert_close(latent(same, keep)[0][0, :6], x[0, :6])


def test_an_agent_turn_from_the_data_enters_the_source_with_only_the_spoken_codebooks(tmp_path):
    c = S2SConfig.smoke(n_q=4, codebook_size=32, speak_q=2)
    rng = np.random.default_rng(1)
    user, agent, question = rng.integers(0, 32, (4, 5)), rng.integers(0, 32, (4, 6)), rng.integers(0, 32, (4, 3))
    src = source_codes([user, agent], question, c, ["user", "agent"])
    assert (src[:, :5] == user).all()  # the user's turn keeps every level
    assert (src[:2, 6:12] == agent[:2]).all() and (src[2:, 6:12] == c.pad_id).all()
    assert (source_codes([user, agent], question, c)[:, 6:12] == agent).all()  # without roles: as given
    # the live context and the training examples build the same source
    ctx = ConversationContext()
    ctx.append("user", user)
    ctx.append("agent", agent, speaker="Priya")
    assert (ctx.source(question, c) == src).all()
    example = AnswerExample("d/turn3", "d", "dialogue", "d", 3, [user, agent], question, agent, "Priya", None,
                            history_roles=["user", "agent"])
    assert (example_parts(example, c, AnswerTask())[0] == src).all()
    with pytest.raises(ValueError, match="roles"):
        source_codes([user, agent], question, c, ["user"])


def test_fine_tuning_to_speak_two_codebooks_learns_them_and_reports_only_them(tmp_path):
    from tests.test_s2s_answer import pretrained

    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    cfg = small_answer_config(max_steps=120, val_every=120, ckpt_every=120)
    cfg.answer = AnswerTask(speak_q=2)
    trainer = AnswerTrainer(CONFIG, cfg, examples, examples, tmp_path / "ft", pretrained=pretrained(tmp_path),
                            device="cpu", codec_fingerprint="fp")
    history = trainer.fit(progress=False)
    final = [r for r in history.rows if "val_loss" in r][-1]
    assert np.isfinite(final["val_loss"]) and final["val_loss"] < 0.5 * final["val_unigram_loss"], final
    assert {k for k in final if k.startswith("val_loss_cb")} == {"val_loss_cb0", "val_loss_cb1"}
    assert {k for r in history.rows for k in r if k.startswith("loss_cb")} == {"loss_cb0", "loss_cb1"}
    model = load_s2s(tmp_path / "ft" / "s2s.pt")
    assert model.config.speak_q == 2
    codes = generate(model, torch.from_numpy(examples[0].user.astype(np.int64))[None], examples[0].speaker, None,
                     SamplingConfig(temperature=0.0, max_frames=20)).codes[0]
    assert codes.shape[0] == 2
