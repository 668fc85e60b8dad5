"""Continuous batching: streams decoded together, each joining and leaving at its own time, give the frames each
would get alone."""

from __future__ import annotations

import pytest
import torch

from s2slib.s2s.batching import BatchedDecoder, start_stream
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.generate import SamplingConfig, generate_frames
from s2slib.s2s.layers import Attention, KVCache, RotaryEmbedding, RowCache
from s2slib.s2s.model import S2SModel


def model(seed: int = 0) -> S2SModel:
    torch.manual_seed(seed)
    return S2SModel(S2SConfig.smoke(n_q=4, codebook_size=64, max_frames=40, d_model=32, n_heads=2,
                                    decoder_layers=2)).eval()


def alone(m: S2SModel, src: torch.Tensor, speaker, emotion, cfg: SamplingConfig) -> list[torch.Tensor]:
    return [f.codes[0] for f in generate_frames(m, src, speaker, emotion, cfg) if bool(f.alive[0])]


def test_row_cache_attention_equals_each_row_alone():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8)
    attn = Attention(16, 2, 0.0, rope).eval()
    lengths = [5, 1, 3]  # three streams, each with its own history
    xs = [torch.randn(1, n + 1, 16) for n in lengths]
    rows = RowCache(4, 2, 16, 8, torch.device("cpu"), torch.float32)
    alone_out = []
    for i, x in enumerate(xs):  # history into each stream's own cache and into the row cache
        cache = KVCache(1, 2, 16, 8, torch.device("cpu"), torch.float32)
        attn(x[:, :-1], causal=True, cache=cache)
        rows.k[i, :, :lengths[i]], rows.v[i, :, :lengths[i]] = cache.k[0, :, :lengths[i]], cache.v[0, :, :lengths[i]]
        rows.lengths[i] = lengths[i]
        alone_out.append(attn(x[:, -1:], causal=True, cache=cache))
    together = attn(torch.cat([x[:, -1:] for x in xs]), causal=True, cache=rows)
    torch.testing.assert_close(together, torch.cat(alone_out), atol=1e-5, rtol=1e-5)
    assert rows.lengths[:3].tolist() == [6, 2, 4]


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_streams_joining_and_leaving_match_generation_alone(temperature):
    m = model()
    g = torch.Generator().manual_seed(3)
    srcs = [torch.randint(0, 64, (1, 4, s), generator=g) for s in (7, 0, 12, 3)]
    labels = [("Priya", "happy"), (None, None), ("Ravi", None), ("Arjun", "sad")]
    cfgs = [SamplingConfig(temperature=temperature, max_frames=m_, min_frames=2, seed=s)
            for m_, s in ((20, 1), (9, 2), (30, 3), (14, 4))]
    expected = [alone(m, src, sp, em, cfg) for src, (sp, em), cfg in zip(srcs, labels, cfgs)]
    dec = BatchedDecoder(m, slots=2)  # fewer rows than streams: the buffers grow
    joins = {0: [0, 1], 3: [2], 8: [3]}  # decoder step -> streams that join before it
    handles, got, ended = {}, {i: [] for i in range(4)}, set()
    step = 0
    while step in joins or dec.active or step <= max(joins):
        for i in joins.get(step, []):
            handles[dec.add(start_stream(m, srcs[i], *labels[i], cfgs[i]))] = i
        for h, codes in dec.step().items():
            if codes is None:
                ended.add(handles[h])
            else:
                got[handles[h]].append(codes)
        step += 1
    assert ended == {0, 1, 2, 3}
    for i in range(4):
        assert len(got[i]) == len(expected[i]) and len(got[i]) >= 2
        assert all(torch.equal(a, b) for a, b in zip(got[i], expected[i])), f"stream {i} differs"


def test_a_removed_stream_leaves_the_others_untouched():
    m = model(1)
    srcs = [torch.randint(0, 64, (1, 4, 5)) for _ in range(3)]
    cfg = SamplingConfig(max_frames=15, min_frames=15, seed=7)
    expected = alone(m, srcs[2], None, None, cfg)
    dec = BatchedDecoder(m)
    hs = [dec.add(start_stream(m, s, None, None, cfg)) for s in srcs]
    got = []
    for step in range(40):
        if step == 6:
            dec.remove(hs[0])  # a cancelled answer: the last row moves into its place
        out = dec.step()
        if out.get(hs[2]) is not None:
            got.append(out[hs[2]])
        if not dec.active:
            break
    assert dec.active == 0
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))
    with pytest.raises(ValueError, match="one input"):
        start_stream(m, torch.zeros(2, 4, 3, dtype=torch.long))
