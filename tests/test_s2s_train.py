"""Stage-1 pretraining of the S2S model: it learns, it resumes exactly, it refuses mismatched checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s2slib.checkpoint import CheckpointError
from s2slib.s2s.data import ContinuationSampler, fixed_batches, load_items
from s2slib.s2s.train import S2STrainConfig, S2STrainer, load_s2s, unigram_counts
from s2slib.training import autocast, cpu_bf16_choice, cpu_has_native_bf16
from s2s_fixtures import CONFIG, TASK, patterned_items


def train_config(**kw) -> S2STrainConfig:
    base = dict(max_steps=6, batch_size=4, lr=3e-3, warmup_steps=2, val_every=3, ckpt_every=2, log_every=1, task=TASK)
    return S2STrainConfig(**{**base, **kw})


def test_batches_are_a_pure_function_of_seed_step_and_rank():
    items = patterned_items(12)
    s = ContinuationSampler(items, CONFIG, 4, TASK, seed=3)
    a, b, other_rank = s.batch(5), s.batch(5), s.batch(5, rank=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.src, b.src)
    assert not torch.equal(a.inputs, other_rank.inputs) or not torch.equal(a.src, other_rank.src)
    for batch in fixed_batches(items, CONFIG, 5, TASK):
        assert batch.src.shape[1] == CONFIG.n_q and (batch.src_lengths <= batch.src.shape[-1]).all()
        assert (batch.speaker >= 0).all()


def test_unigram_counts_include_one_eos_per_utterance():
    items = patterned_items(6)
    counts = unigram_counts(items, CONFIG)
    assert counts.shape == (CONFIG.n_q, CONFIG.output_vocab)
    assert (counts[:, CONFIG.eos_id] == 6).all()
    assert counts[0].sum() == sum(i.n_frames for i in items) + 6


def test_pretraining_learns_far_below_the_unigram_baseline(tmp_path):
    trainer = S2STrainer(CONFIG, train_config(max_steps=60, val_every=60, ckpt_every=60), patterned_items(24),
                         patterned_items(6, seed=9), tmp_path, device="cpu")
    history = trainer.fit(progress=False)
    final = [r for r in history.rows if "val_loss" in r][-1]
    for k in range(CONFIG.n_q):
        assert final[f"val_ppl_cb{k}"] < 0.5 * final[f"unigram_ppl_cb{k}"], (k, final)
    assert (tmp_path / "s2s.pt").exists()
    model = load_s2s(tmp_path / "s2s.pt")
    assert model.config == CONFIG


def test_killed_run_resumes_exactly(tmp_path):
    items, val = patterned_items(12), patterned_items(3, seed=5)
    with_dropout = dataclasses.replace(CONFIG, dropout=0.1)  # dropout draws from the generators a resume restores
    make = lambda out: S2STrainer(with_dropout, train_config(), items, val, out, device="cpu",  # noqa: E731
                                  codec_fingerprint="abc")
    straight = make(tmp_path / "a")
    straight.fit(progress=False)
    first = make(tmp_path / "b")
    first.fit(progress=False, stop_after=4)
    del first
    resumed = make(tmp_path / "b")
    assert resumed.step == 4
    resumed.fit(progress=False)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(straight.history.rows) == strip(resumed.history.rows)


def test_resume_refuses_another_model_or_codec(tmp_path):
    items = patterned_items(6)
    S2STrainer(CONFIG, train_config(max_steps=2), items, items, tmp_path, device="cpu",
               codec_fingerprint="abc").fit(progress=False)
    with pytest.raises(CheckpointError, match="different model configuration"):
        S2STrainer(dataclasses.replace(CONFIG, d_model=64), train_config(max_steps=2), items,
                   items, tmp_path, device="cpu", codec_fingerprint="abc")
    with pytest.raises(CheckpointError, match="another codec"):
        S2STrainer(CONFIG, train_config(max_steps=2), items, items, tmp_path, device="cpu", codec_fingerprint="xyz")


def test_load_items_checks_codebooks(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 10), dtype=np.int16))
    with pytest.raises(ValueError, match="needs 4 codebooks"):
        load_items([{"id": "a", "codes_path": str(tmp_path / "a.npy")}], n_q=4)
    np.save(tmp_path / "b.npy", np.zeros((8, 1), dtype=np.int16))
    assert load_items([{"id": "b", "codes_path": str(tmp_path / "b.npy")}], n_q=4) == []  # too short to teach


def test_cpu_bf16_choice_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_has_native_bf16(info)
    assert not cpu_has_native_bf16(tmp_path / "no_such_file")
    assert cpu_bf16_choice("on") and not cpu_bf16_choice("off") and cpu_bf16_choice(True)
    assert cpu_bf16_choice("auto") == cpu_has_native_bf16()
    with pytest.raises(ValueError, match="cpu_bf16"):
        cpu_bf16_choice("yes")


def test_cpu_bf16_autocast_and_a_training_step_under_it(tmp_path):
    layer, x, cpu = torch.nn.Linear(4, 4), torch.randn(2, 4), torch.device("cpu")
    cases = ((True, True, torch.bfloat16), (True, False, torch.float32), (False, True, torch.float32))
    for enabled, bf16, dtype in cases:
        with autocast(cpu, enabled, bf16):
            assert layer(x).dtype == dtype
    items, val = patterned_items(8), patterned_items(2, seed=5)
    losses = []
    for bf16 in (False, True):
        trainer = S2STrainer(CONFIG, train_config(max_steps=1, val_every=1, cpu_bf16=bf16), items, val,
                             tmp_path / str(bf16), device="cpu")
        rows = trainer.fit(progress=False).rows
        losses.append(next(r["loss"] for r in rows if "loss" in r))
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    assert losses[0] != losses[1] and abs(losses[0] - losses[1]) < 0.01 * losses[0], losses
