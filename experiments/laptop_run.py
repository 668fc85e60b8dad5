"""What the experiment scripts share: runs/laptop's codec and tokens, and the first N written pairs of its 64."""
from __future__ import annotations

from s2slib.baseline import load_audio_codec
from s2slib.s2s.finetune import select_sources, split_examples
from s2slib.s2s.tokens import TokenCache, codec_fingerprint, tokenize_run

RUN = "runs/laptop"


def load_run(run: str = RUN):
    """``(codec, token cache, tokens)`` of notebook 02's codec over the run's data (tokenized if not yet)."""
    codec_path = f"{run}/codec/codec.pt"
    codec = load_audio_codec("course", codec_path)
    cache = TokenCache(f"{run}/tokens", codec_fingerprint(codec_path, "course"))
    return codec, cache, tokenize_run(codec, cache, f"{run}/data")


def first_pairs(tokens, n_q: int, n_sources: int):
    """``(sources, examples by split, training pair examples, test pair examples)`` of the first ``n_sources`` of the
    64 written pairs notebook 06 selects."""
    rows = [r for rs in tokens.conversations.values() for r in rs]
    sources = select_sources(rows, 64, 0, 0)
    ex = split_examples(tokens.conversations, n_q, sources)
    pairs = [e for e in ex["train"] if e.kind == "pair"]
    chosen = set(sorted({e.source_id for e in pairs})[:n_sources])
    train = [e for e in pairs if e.source_id in chosen]
    test = [e for e in ex["test"] if e.kind == "pair" and e.source_id in chosen]
    return sources, ex, train, test
