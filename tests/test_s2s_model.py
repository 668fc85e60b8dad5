"""The S2S transformer's pieces: the delay pattern, rotary attention with its KV cache, conditioning, generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.delay import IGNORE, decoder_inputs, decoder_targets, delay_streams, undelay
from s2slib.s2s.generate import SamplingConfig, generate, generate_frames, generate_streaming, sample
from s2slib.s2s.layers import attend_over_lengths
from s2slib.s2s.model import S2SModel, codebook_losses

CFG = S2SConfig.smoke(n_q=4, codebook_size=64, max_frames=80)


def model(seed: int = 0, **kw) -> S2SModel:
    torch.manual_seed(seed)
    return S2SModel(S2SConfig.smoke(n_q=4, codebook_size=64, max_frames=80, **kw)).eval()


def batch(B: int = 3, S: int = 9, T: int = 11):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(0, 64, (B, 4, S), generator=g)
    src_lengths = torch.tensor([S, 5, 1][:B])
    codes = torch.randint(0, 64, (B, 4, T), generator=g)
    lengths = torch.tensor([T, 7, 3][:B])
    streams = delay_streams(codes, lengths, CFG.eos_id, CFG.pad_id)
    return src, src_lengths, codes, lengths, streams


# ------------------------------------------------------------------ delay pattern
def test_delay_pattern_shifts_each_codebook_and_ends_with_eos():
    codes = torch.arange(12).view(1, 3, 4)  # (1, n_q=3, T=4): codebook k holds 4k .. 4k+3
    s = delay_streams(codes, torch.tensor([4]), eos_id=100, pad_id=101)
    assert s.shape == (1, 3, 7)
    P, E = 101, 100
    assert s[0].tolist() == [[0, 1, 2, 3, E, P, P],
                             [P, 4, 5, 6, 7, E, P],
                             [P, P, 8, 9, 10, 11, E]]


def test_undelay_inverts_delay_for_every_length():
    _, _, codes, lengths, streams = batch()
    frames = undelay(streams)
    for i, n in enumerate(lengths.tolist()):
        assert torch.equal(frames[i, :, :n], codes[i, :, :n])
        assert (frames[i, 0, n] == CFG.eos_id).item()  # the frame after the last holds EOS in every codebook
        assert (frames[i, :, n] == CFG.eos_id).all()


def test_crop_without_eos_has_only_pad_after_it():
    codes = torch.zeros(2, 2, 3, dtype=torch.long)
    s = delay_streams(codes, torch.tensor([3, 3]), eos_id=7, pad_id=8, with_eos=torch.tensor([True, False]))
    assert (s[0] == 7).sum() == 2 and (s[1] == 7).sum() == 0


def test_teacher_forcing_inputs_and_ignored_targets():
    *_, streams = batch()
    inp, tgt = decoder_inputs(streams, CFG.bos_id), decoder_targets(streams, CFG.pad_id)
    assert (inp[..., 0] == CFG.bos_id).all() and torch.equal(inp[..., 1:], streams[..., :-1])
    assert ((tgt == IGNORE) == (streams == CFG.pad_id)).all()
    assert (tgt[:, 1:, 0] == IGNORE).all()  # delayed codebooks have nothing to predict at step 0


# ------------------------------------------------------------------ attention, cache, conditioning
def test_kv_cache_decoding_matches_a_full_forward_pass():
    m = model()
    src, src_lengths, _, _, streams = batch()
    inp = decoder_inputs(streams, CFG.bos_id)
    spk, emo = torch.tensor([1, 0, 4]), torch.tensor([0, 3, 9])
    with torch.no_grad():
        full = m(src, src_lengths, inp, spk, emo)
        memory, keep = m.encode(src, src_lengths)
        state = m.start(memory, keep, spk, emo)
        parts = [m.step(inp[..., :4], state)]  # a chunk of steps, then one step at a time
        parts += [m.step(inp[..., t:t + 1], state) for t in range(4, inp.shape[-1])]
    assert state.steps == inp.shape[-1]
    assert (full - torch.cat(parts, dim=2)).abs().max() < 1e-4


def test_decoder_is_causal_and_encoder_ignores_padding():
    m = model()
    src, src_lengths, _, _, streams = batch()
    inp = decoder_inputs(streams, CFG.bos_id)
    spk = emo = torch.zeros(3, dtype=torch.long)
    changed = inp.clone()
    changed[..., 8:] = (changed[..., 8:] + 1) % 64
    padded = src.clone()
    padded[1, :, 5:] = 0  # item 1 has 5 real frames: what lies beyond must not matter
    with torch.no_grad():
        a = m(src, src_lengths, inp, spk, emo)
        b = m(padded, src_lengths, changed, spk, emo)
    assert torch.allclose(a[1:2, :, :8], b[1:2, :, :8], atol=1e-5)  # steps before the change, padding changed too
    assert not torch.allclose(a[:, :, 8:], b[:, :, 8:], atol=1e-3)


def test_attention_over_lengths_equals_a_key_padding_mask():
    g = torch.Generator().manual_seed(0)
    B, H, S, D = 3, 2, 9, 8
    lengths = torch.tensor([S, 5, 1])
    mask = torch.arange(S).view(1, 1, 1, S) < lengths.view(B, 1, 1, 1)
    real = (torch.arange(S).view(1, S) < lengths.view(B, 1)).view(B, 1, S, 1)
    for T, self_attention in ((6, False), (S, True)):
        q, k, v = (torch.randn(B, H, n, D, generator=g, requires_grad=True) for n in (T, S, S))
        ours = attend_over_lengths(q, k, v, lengths, self_attention=self_attention)
        masked = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if self_attention:  # padded queries are not computed: zeros, where the mask still gave them values
            assert torch.equal(ours * ~real, torch.zeros_like(ours))
            ours, masked = ours * real, masked * real
        assert torch.allclose(ours, masked, atol=1e-6)
        grads = [torch.autograd.grad(out.square().sum(), (q, k, v)) for out in (ours, masked)]
        for a, b in zip(*grads):
            assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="key_lengths"):
        attend_over_lengths(q, k, v, torch.tensor([S, 0, 3]))


def test_a_padded_batch_answers_as_each_row_alone():
    m = model()
    src, src_lengths, codes, lengths, streams = batch()
    inp = decoder_inputs(streams, CFG.bos_id)
    spk, emo = torch.tensor([1, 2, 3]), torch.tensor([0, 4, 1])
    with torch.no_grad():
        together = m(src, src_lengths, inp, spk, emo)
        for b in range(3):
            n = int(src_lengths[b])
            alone = m(src[b:b + 1, :, :n], None, inp[b:b + 1], spk[b:b + 1], emo[b:b + 1])
            assert torch.allclose(together[b:b + 1], alone, atol=1e-5), b


def test_logits_of_the_spoken_codebooks_only_train_as_all_of_them():
    m = model(speak_q=2).train()
    src, src_lengths, _, _, streams = batch()
    inp, tgt = decoder_inputs(streams, CFG.bos_id), decoder_targets(streams, CFG.pad_id).clone()
    tgt[:, 2:] = IGNORE  # a model speaking 2 codebooks has no targets past them
    spk = emo = torch.zeros(3, dtype=torch.long)
    grads = []
    for codebooks in (None, 2):
        m.zero_grad()
        logits = m(src, src_lengths, inp, spk, emo, codebooks=codebooks)
        assert logits.shape[1] == (4 if codebooks is None else 2)
        nll, _, count = codebook_losses(logits, tgt[:, : logits.shape[1]])
        (nll[:2] / count[:2]).mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    with pytest.raises(ValueError, match="codebooks"):
        m(src, src_lengths, inp, spk, emo, codebooks=5)


def test_speaker_and_emotion_condition_the_decoder():
    m = model()
    src, src_lengths, _, _, streams = batch(B=1)
    inp = decoder_inputs(streams, CFG.bos_id)
    with torch.no_grad():
        out = {(s, e): m(src, src_lengths, inp, torch.tensor([s]), torch.tensor([e])) for s in (0, 2) for e in (0, 5)}
    assert not torch.allclose(out[(0, 0)], out[(2, 0)], atol=1e-4)
    assert not torch.allclose(out[(0, 0)], out[(0, 5)], atol=1e-4)
    assert CFG.speaker_index("Priya") == 3 and CFG.speaker_index("Kiran") == 0  # a user voice is "any voice"
    with pytest.raises(ValueError, match="unknown emotion"):
        CFG.emotion_index("hapy")


def test_codebook_losses_count_only_real_targets():
    logits = torch.zeros(1, 2, 3, 5)
    logits[0, 0, :, 1] = 10.0
    targets = torch.tensor([[[1, 1, IGNORE], [2, IGNORE, IGNORE]]])
    nll, correct, count = codebook_losses(logits, targets)
    assert count.tolist() == [2, 1] and correct.tolist() == [2, 0]
    assert nll[0] < 1e-3 and abs(nll[1].item() - np.log(5)) < 1e-5


# ------------------------------------------------------------------ sampling and generation
def test_sampling_filters():
    logits = torch.tensor([[[0.0, 3.0, 1.0, 2.9]]])
    cfg = SamplingConfig(temperature=1.0, top_k=1, repetition_penalty=1.0)
    g = torch.Generator().manual_seed(0)
    assert all(sample(logits, cfg, None, g).item() == 1 for _ in range(20))
    nucleus = SamplingConfig(temperature=1.0, top_k=0, top_p=0.5, repetition_penalty=1.0)
    assert {sample(logits, nucleus, None, g).item() for _ in range(50)} <= {1, 3}
    # the repetition guard pushes a used code below its rival
    guard = SamplingConfig(temperature=0.0, repetition_penalty=2.0)
    assert sample(logits, guard, torch.tensor([[[1]]]), None).item() == 3


def test_generation_keeps_the_delay_pattern_and_stops():
    m = model()
    src = torch.randint(0, 64, (2, 4, 6))
    cfg = SamplingConfig(max_frames=12, min_frames=2, seed=5)
    out = generate(m, src, ["Priya", None], "happy", cfg)
    again = generate(m, src, ["Priya", None], "happy", cfg)
    for a, b in zip(out.codes, again.codes):
        assert torch.equal(a, b)  # same seed, same answer
    for codes, ended in zip(out.codes, out.ended):
        assert codes.shape[0] == 4 and 2 <= codes.shape[1] <= 12 and (codes < 64).all()
        assert ended == (codes.shape[1] < 12)
    # a model that must speak 12 frames is cut at max_frames, marked as not ended
    long = generate(m, src[:1], None, None, SamplingConfig(max_frames=12, min_frames=12, seed=0))
    assert long.codes[0].shape[1] == 12 and long.ended == [False]
    frames = list(generate_frames(m, src[:1], None, None, SamplingConfig(max_frames=5, min_frames=5, seed=0)))
    assert [f.index for f in frames] == list(range(5))
    with pytest.raises(ValueError, match="unknown speaker"):
        generate(m, src, "Kiran")


def test_streamed_audio_equals_offline_decode():
    torch.manual_seed(0)
    codec = Codec(CodecConfig.fast50_tiny()).eval()
    c = S2SConfig.smoke(n_q=codec.config.n_q, codebook_size=codec.config.codebook_size)
    m = S2SModel(c).eval()
    src = torch.randint(0, c.codebook_size, (1, c.n_q, 10))
    cfg = SamplingConfig(max_frames=15, min_frames=4, seed=2)
    codes = generate(m, src, "Ravi", None, cfg).codes[0]
    for chunk_frames in (1, 4):
        chunks = list(generate_streaming(m, codec, src, "Ravi", None, cfg, chunk_frames=chunk_frames))
        assert len(chunks) >= 2  # audio arrives before the answer is complete
        streamed = np.concatenate(chunks)
        offline = codec.decode(codes.unsqueeze(0)).view(-1).detach().numpy()
        assert streamed.shape == offline.shape
        assert np.abs(streamed - offline).max() < 1e-4
