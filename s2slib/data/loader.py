"""Training batches of fixed-length audio crops drawn from a manifest, reproducible step by step.

The batch of optimizer step ``k`` on process ``rank`` is a pure function of ``(seed, k, rank)``: which utterances
and where to crop them. So a run resumed from a checkpoint at step ``k`` sees exactly the batches it would have seen
without the interruption, and under DistributedDataParallel each rank draws different crops. Utterances are drawn
with probability proportional to their duration (every second of audio is equally likely to be seen).

Crops are read straight from the 16-bit WAV files (a seek, no full decode), so a corpus of hundreds of hours needs
no RAM beyond the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from s2slib.data.manifest import Utterance, read_manifest


def read_crop(path: str, start: int, length: int) -> np.ndarray:
    """``length`` samples from ``start`` of a WAV file, zero-padded past its end: float32 ``(length,)``."""
    wav, _ = sf.read(path, start=start, frames=length, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if len(wav) < length:
        wav = np.pad(wav, (0, length - len(wav)))
    return wav


class CropSampler:
    """Draws ``batch_size`` crops of ``segment_length`` samples for a given (step, rank).

    ``utterances`` must share one sample rate (the manifests of notebook 01 are all 16 kHz).
    """

    def __init__(self, utterances: list[Utterance], segment_length: int, batch_size: int, seed: int = 0):
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
        lengths = np.array([max(1, int(u.duration * self.sample_rate)) for u in utterances], dtype=np.float64)
        self.lengths = lengths.astype(np.int64)
        self.weights = lengths / lengths.sum()

    def indices(self, step: int, rank: int = 0) -> list[tuple[int, int]]:
        """``[(utterance index, crop start), ...]`` for one batch."""
        rng = np.random.default_rng([self.seed, step, rank])
        picks = rng.choice(len(self.utterances), size=self.batch_size, p=self.weights)
        starts = [int(rng.integers(0, max(1, self.lengths[i] - self.segment_length + 1))) for i in picks]
        return list(zip(picks.tolist(), starts))

    def batch(self, step: int, rank: int = 0) -> torch.Tensor:
        """The crops of one step: ``wav: Tensor[B, 1, segment_length]``."""
        crops = [read_crop(self.utterances[i].audio_path, s, self.segment_length) for i, s in self.indices(step, rank)]
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
