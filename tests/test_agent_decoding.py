"""The agent's decoder thread: answers of several sessions decoded together, cancelled, and failing cleanly."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import torch

from s2slib.agent.decoding import DecodeService
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.generate import SamplingConfig, generate_frames
from s2slib.s2s.model import S2SModel


def model() -> S2SModel:
    torch.manual_seed(0)
    return S2SModel(S2SConfig.smoke(n_q=4, codebook_size=64, max_frames=60)).eval()


def wait_idle(service: DecodeService, timeout: float = 10.0) -> None:
    """Until the service's thread decodes nothing (cancelled streams are dropped at its next step)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = service.steps
        time.sleep(0.05)
        if service.steps == before:
            return
    raise AssertionError("the decode service kept decoding")


def test_answers_on_threads_equal_generation_alone():
    m = model()
    service = DecodeService(m, slots=1)
    srcs = [torch.randint(0, 64, (1, 4, n)) for n in (5, 9, 2, 14)]
    cfgs = [SamplingConfig(max_frames=30, min_frames=5, seed=i) for i in range(4)]
    expected = [[f.codes for f in generate_frames(m, s, "Lakshmi", "calm", c) if bool(f.alive[0])]
                for s, c in zip(srcs, cfgs)]
    got: dict[int, list] = {}

    def answer(i: int) -> None:
        got[i] = [f.codes for f in service.frames(srcs[i], "Lakshmi", "calm", cfgs[i])]

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(4):
        assert len(got[i]) == len(expected[i])
        assert all(torch.equal(a, b) for a, b in zip(got[i], expected[i]))
    assert service.stream_steps > service.steps  # some steps carried several answers
    service.close()


def test_cancelled_and_dropped_answers_stop_decoding():
    service = DecodeService(model())
    long = SamplingConfig(max_frames=60, min_frames=60, seed=0)  # would run 60 frames
    src = torch.randint(0, 64, (1, 4, 6))
    a = service.frames(src, None, None, long)
    next(a)
    a.cancel()
    rest = list(a)  # a cancelled stream ends; it does not hang
    assert len(rest) < 59
    b = service.frames(src, None, None, long)
    next(b)
    del b  # nobody reads it any more: dropped at the service's next step
    gc.collect()
    wait_idle(service)
    assert service.steps < 2 * 60
    service.close()
    with pytest.raises(RuntimeError, match="closed"):
        service.frames(src, None, None, long)


def test_a_decoder_error_reaches_the_answer_and_the_service_goes_on():
    m = model()
    service = DecodeService(m)
    src = torch.randint(0, 64, (1, 4, 6))
    cfg = SamplingConfig(max_frames=10, min_frames=10, seed=0)
    original = m.step
    m.step = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))  # the next decoder step fails
    with pytest.raises(RuntimeError, match="boom"):
        list(service.frames(src, None, None, cfg))
    m.step = original
    assert len(list(service.frames(src, None, None, cfg))) == 10
    service.close()


def test_the_service_waits_for_readers_that_are_far_enough_behind():
    m = model()
    service = DecodeService(m, max_queued=5)
    cfg = SamplingConfig(max_frames=40, min_frames=40, seed=0)
    src = torch.randint(0, 64, (1, 4, 6))
    expected = [f.codes for f in generate_frames(m, src, None, None, cfg) if bool(f.alive[0])]
    stream = service.frames(src, None, None, cfg)
    first = next(stream)
    wait_idle(service)
    # the delay pattern's first n_q - 1 steps, the first frame, five queued, at most one step already under way
    assert service.steps <= (4 - 1) + 1 + 5 + 1
    got = [first.codes] + [f.codes for f in stream]  # reading lets it go on, to the same answer
    assert len(got) == 40 and all(torch.equal(a, b) for a, b in zip(got, expected))
    service.close()
