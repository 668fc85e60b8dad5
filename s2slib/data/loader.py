"""Training batches of fixed-length audio crops drawn from a manifest, reproducible step by step.

The batch of optimizer step ``k`` on process ``rank`` is a pure function of ``(seed, k, rank)``: which utterances
and where to crop them. So a run resumed from a checkpoint at step ``k`` sees exactly the batches it would have seen
without the interruption, and under DistributedDataParallel each rank draws different crops. Utterances are drawn
with probability proportional to their duration (every second of audio is equally likely to be seen).

Crops are read straight from the 16-bit WAV files (a seek, no full decode), so a corpus of hundreds of hours needs
no RAM beyond the batch.

With ``augment`` (an :class:`~s2slib.data.augment.AugmentConfig`) each crop also passes through a random recording
chain (room, microphone, channel, noise, level; :mod:`s2slib.data.augment`), drawn from a generator of its own that
is derived from ``(seed, step, rank, index in the batch)``: augmented batches are still a pure function of
``(seed, step, rank)``, so resuming stays exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from s2slib.data.augment import AugmentConfig, augment as augment_crop
from s2slib.data.manifest import Utterance, read_manifest


def read_crop(path: str, start: int, length: int) -> np.ndarray:
    """``length`` samples from ``start`` of a WAV file, zero-padded past its end: float32 ``(length,)``."""
    wav, _ = sf.read(path, start=start, frames=length, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if len(wav) < length:
        wav = np.pad(wav, (0, length - len(wav)))
    return wav


def source_weights(utterances: list[Utterance], lengths: np.ndarray,
                   shares: dict[str, float] | None = None) -> np.ndarray:
    """Probability of drawing each utterance: proportional to its length, with optional fixed shares per source.

    ``shares`` maps a source name (``"samples-te"``, ...) to the fraction of draws it gets, spread over its
    utterances by length; the sources it does not name share the rest by length. A small real-speech source
    among hours of synthetic speech would otherwise be drawn almost never (45 s of real clips next to 1.6 h of
    eSpeak speech is 0.8 % of the crops). A named source with no utterances is an error.
    """
    weights = lengths / lengths.sum()
    if not shares:
        return weights
    total = sum(shares.values())
    if any(v < 0 for v in shares.values()) or total > 1:
        raise ValueError(f"source shares must be >= 0 and sum to at most 1, got {shares}")
    sources = np.array([u.source for u in utterances])
    named = np.isin(sources, list(shares))
    for name, share in shares.items():
        mask = sources == name
        if not mask.any():
            raise ValueError(f"source share given for {name!r}, but no training utterance comes from it; "
                             f"sources present: {sorted(set(sources.tolist()))}")
        weights[mask] = share * lengths[mask] / lengths[mask].sum()
    rest = ~named
    if rest.any():
        weights[rest] = (1 - total) * lengths[rest] / lengths[rest].sum()
    return weights / weights.sum()


class CropSampler:
    """Draws ``batch_size`` crops of ``segment_length`` samples for a given (step, rank).

    ``utterances`` must share one sample rate (the manifests of notebook 01 are all 16 kHz). ``augment`` (None: crops
    exactly as read) applies :func:`s2slib.data.augment.augment` to every crop. ``source_shares`` fixes the
    fraction of crops drawn from some sources (see :func:`source_weights`).
    """

    def __init__(self, utterances: list[Utterance], segment_length: int, batch_size: int, seed: int = 0,
                 augment: AugmentConfig | None = None, source_shares: dict[str, float] | None = None):
        if not utterances:
            raise ValueError("no utterances to draw training crops from: is the manifest empty?")
        rates = {u.sample_rate for u in utterances}
        if len(rates) != 1:
            raise ValueError(f"utterances have mixed sample rates {sorted(rates)}; preprocess them to one rate first")
        self.utterances = utterances
        self.sample_rate = rates.pop()
        self.segment_length = segment_length
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        lengths = np.array([max(1, int(u.duration * self.sample_rate)) for u in utterances], dtype=np.float64)
        self.lengths = lengths.astype(np.int64)
        self.weights = source_weights(utterances, lengths, source_shares)

    def indices(self, step: int, rank: int = 0) -> list[tuple[int, int]]:
        """``[(utterance index, crop start), ...]`` for one batch."""
        rng = np.random.default_rng([self.seed, step, rank])
        picks = rng.choice(len(self.utterances), size=self.batch_size, p=self.weights)
        starts = [int(rng.integers(0, max(1, self.lengths[i] - self.segment_length + 1))) for i in picks]
        return list(zip(picks.tolist(), starts))

    def batch(self, step: int, rank: int = 0) -> torch.Tensor:
        """The crops of one step: ``wav: Tensor[B, 1, segment_length]``."""
        crops = [read_crop(self.utterances[i].audio_path, s, self.segment_length) for i, s in self.indices(step, rank)]
        if self.augment is not None:
            # one child generator per crop, spawned from (seed, step, rank): independent of the stream that picked
            # the crops above, and the same whichever worker builds the batch
            children = np.random.SeedSequence([self.seed, step, rank]).spawn(len(crops))
            crops = [augment_crop(crop, self.sample_rate, self.augment, np.random.default_rng(child))
                     for crop, child in zip(crops, children)]
        return torch.from_numpy(np.stack(crops))[:, None, :]  # (B, 1, T)


class _StepBatches(IterableDataset):
    """Yields the batches of steps ``start .. stop-1`` in order; DataLoader workers take every ``n``-th step."""

    def __init__(self, sampler: CropSampler, start: int, stop: int, rank: int):
        self.sampler, self.start, self.stop, self.rank = sampler, start, stop, rank

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, n = (info.id, info.num_workers) if info else (0, 1)
        # DataLoader asks its workers round-robin, so worker w serving steps w, w+n, ... keeps them in order
        for step in range(self.start + worker, self.stop, n):
            yield self.sampler.batch(step, self.rank)


def step_batches(sampler: CropSampler, start: int, stop: int, rank: int = 0, num_workers: int = 0) -> DataLoader:
    """An iterable of the batches for steps ``start .. stop-1`` (``num_workers`` processes read ahead)."""
    # A generator of its own: the DataLoader draws a base seed when it starts iterating, and drawing it from the
    # global generator would shift every later random number of a resumed run (dropout, dead-code resets).
    return DataLoader(_StepBatches(sampler, start, stop, rank), batch_size=None, num_workers=num_workers,
                      prefetch_factor=4 if num_workers else None, generator=torch.Generator().manual_seed(start))


def load_utterances(manifest: str | Path, max_items: int = 0, min_duration: float = 0.0) -> list[Utterance]:
    """Utterances of a manifest, optionally only the first ``max_items`` (sorted by id) at least ``min_duration``."""
    utts = [u for u in read_manifest(manifest) if u.duration >= min_duration]
    return utts[:max_items] if max_items > 0 else utts
