"""Token data the S2S tests train on: short utterances of patterned codes a tiny model can learn in a few steps."""

from __future__ import annotations

import numpy as np

from s2slib.s2s.config import S2SConfig
from s2slib.s2s.data import ContinuationTask, TokenItem

CONFIG = S2SConfig.smoke(n_q=4, codebook_size=32, max_frames=120)
TASK = ContinuationTask(min_prompt=4, max_prompt=12, max_continuation=24, unprompted_share=0.2)


def patterned_items(n: int, seed: int = 0) -> list[TokenItem]:
    """``n`` utterances whose codes follow rules a model can learn: codebook 0 counts up by a per-utterance stride;
    codebook k is codebook 0 shifted by k (so the delay pattern pays off); the speaker fixes the stride's sign."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        T = int(rng.integers(20, 40))
        speaker = ("Arjun", "Priya", None)[i % 3]
        stride = (1, 3, 5)[i % 3]
        start = int(rng.integers(0, 32))
        base = (start + stride * np.arange(T)) % 32
        codes = np.stack([(base + k) % 32 for k in range(4)]).astype(np.int16)  # (4, T)
        items.append(TokenItem(f"utt{i:03d}", codes, speaker, ("happy", "sad", None)[i % 3], "test"))
    return items
