"""Batches of speech tokens for the S2S model: prompts for the encoder, delayed target streams for the decoder.

Stage 1 (audio-LM pretraining) cuts each utterance's codes at a random frame: the part before the cut is the
**prompt** the encoder reads, the rest is the **continuation** the decoder writes from BOS, ending with EOS when the
utterance ends there. A share of the examples has no prompt at all (the decoder then models speech unconditioned),
and the speaker and emotion labels are dropped at random, so the model learns to take the voice from the prompt
as well as from the label. Stage 2 will put a question in the prompt and its spoken answer in the continuation: the
same interface.

Every batch is a pure function of ``(seed, step, rank)``: a resumed run draws exactly the batches it would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from s2slib.s2s.config import NO_LABEL, S2SConfig
from s2slib.s2s.delay import decoder_inputs, decoder_targets, delay_streams


@dataclass
class TokenItem:
    """One tokenized utterance: ``codes`` ``int16[n_q, F]`` and its labels."""

    id: str
    codes: np.ndarray
    speaker: str | None = None
    emotion: str | None = None
    source: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[-1])


def load_items(rows: list[dict[str, Any]], n_q: int, min_frames: int = 2) -> list[TokenItem]:
    """Token-index rows (:func:`s2slib.s2s.tokens.tokenize_manifest`) -> items in memory, sorted by id.

    Only the first ``n_q`` codebooks are kept; items shorter than ``min_frames`` are left out (a 40 ms clip teaches
    nothing). A file with fewer codebooks than ``n_q`` is an error that names it.
    """
    items = []
    for row in sorted(rows, key=lambda r: r["id"]):
        codes = np.load(Path(row["codes_path"]))
        if codes.ndim != 2 or codes.shape[0] < n_q:
            raise ValueError(f"{row['codes_path']} holds codes of shape {codes.shape}; the model needs {n_q} "
                             "codebooks. Tokenize with a codec that has at least that many levels.")
        if codes.shape[1] >= min_frames:
            items.append(TokenItem(row["id"], codes[:n_q], row.get("speaker"), row.get("emotion"),
                                   row.get("source", "")))
    return items


@dataclass
class Batch:
    """One training batch. ``src`` ``[B, n_q, S]`` prompt codes (PAD past ``src_lengths``), ``inputs`` and
    ``targets`` ``[B, n_q, L]`` (teacher-forced decoder input, targets with IGNORE), ``speaker``/``emotion`` ``[B]``.

    Fine-tuning batches may also carry the user's words for the encoder's transcription loss: ``text`` ``[B, T]``
    character ids (:mod:`s2slib.s2s.transcript`), ``text_lengths`` ``[B]`` (0: none for that row) and
    ``user_lengths`` ``[B]``, the frames of the user's turn at the end of each source."""

    src: Tensor
    src_lengths: Tensor
    inputs: Tensor
    targets: Tensor
    speaker: Tensor
    emotion: Tensor
    text: Tensor | None = None
    text_lengths: Tensor | None = None
    user_lengths: Tensor | None = None

    def _tensors(self) -> tuple:
        return (self.src, self.src_lengths, self.inputs, self.targets, self.speaker, self.emotion, self.text,
                self.text_lengths, self.user_lengths)

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in self._tensors()))

    def rows(self, index: slice) -> "Batch":
        """The examples ``index`` of the batch (a micro-batch: :attr:`S2STrainConfig.micro_batch`)."""
        return Batch(*(None if t is None else t[index] for t in self._tensors()))


def collate(config: S2SConfig, prompts: list[np.ndarray], continuations: list[np.ndarray], ends: list[bool],
            speakers: list[int], emotions: list[int]) -> Batch:
    """Pad prompts (``int[n_q, s_i]``) and lay continuations (``int[n_q, t_i]``) out in the delay pattern, EOS after
    those whose speech ends (``ends``); the codebooks past ``config.spoken_q`` are PAD throughout (BOS aside)."""
    B, n_q = len(prompts), config.n_q
    S = max(p.shape[1] for p in prompts)
    T = max(c.shape[1] for c in continuations)
    src = torch.full((B, n_q, S), config.pad_id, dtype=torch.long)
    cont = torch.zeros((B, n_q, T), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, continuations)):
        src[i, :, : p.shape[1]] = torch.from_numpy(p.astype(np.int64))
        cont[i, :, : c.shape[1]] = torch.from_numpy(c.astype(np.int64))
    lengths = torch.tensor([c.shape[1] for c in continuations])
    streams = delay_streams(cont, lengths, config.eos_id, config.pad_id, torch.tensor(ends))  # (B, n_q, T + n_q)
    streams[:, config.spoken_q:] = config.pad_id  # codebooks the decoder does not speak: PAD in, no target
    return Batch(src, torch.tensor([p.shape[1] for p in prompts]), decoder_inputs(streams, config.bos_id),
                 decoder_targets(streams, config.pad_id), torch.tensor(speakers), torch.tensor(emotions))


@dataclass
class ContinuationTask:
    """How stage 1 cuts utterances into prompt and continuation (lengths in frames)."""

    min_prompt: int = 25  # 0.5 s at 50 Hz
    max_prompt: int = 100  # 2 s
    max_continuation: int = 125  # 2.5 s; a longer rest is cropped (and then has no EOS)
    unprompted_share: float = 0.2  # examples with an empty prompt
    drop_speaker: float = 0.3  # probability that the speaker label is withheld (row 0)
    drop_emotion: float = 0.3

    def cut(self, n: int, rng: np.random.Generator) -> int:
        """Where to cut an utterance of ``n`` frames: the prompt length (0 for an unprompted example)."""
        if rng.random() < self.unprompted_share or n < self.min_prompt + 2:
            return 0
        hi = min(self.max_prompt, n - 2)  # leave at least two frames to continue
        return int(rng.integers(min(self.min_prompt, hi), hi + 1))


class ContinuationSampler:
    """Draws stage-1 batches from ``items``; ``batch(step, rank)`` is a pure function of ``(seed, step, rank)``."""

    empty_message = ("no tokenized utterances to train on: tokenize the manifests first (notebook 05's tokenize step, "
                     "or python -m s2slib.s2s.tokens)")

    def __init__(self, items: list, config: S2SConfig, batch_size: int, task, seed: int = 0):
        if not items:
            raise ValueError(self.empty_message)
        self.items, self.config, self.batch_size, self.task, self.seed = items, config, batch_size, task, seed

    def example(self, item: TokenItem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, bool, int, int]:
        """``(prompt, continuation, ends, speaker row, emotion row)`` for one item."""
        s = self.task.cut(item.n_frames, rng)
        stop = min(item.n_frames, s + self.task.max_continuation)
        if stop < item.n_frames and s == 0:  # a long unprompted item: a random window of it
            start = int(rng.integers(0, item.n_frames - self.task.max_continuation + 1))
            s, stop = start, start + self.task.max_continuation
            prompt = item.codes[:, :0]
        else:
            prompt = item.codes[:, :s]
        speaker = self.config.speaker_index(item.speaker) if rng.random() >= self.task.drop_speaker else NO_LABEL
        emotion = self.config.emotion_index(item.emotion) if rng.random() >= self.task.drop_emotion else NO_LABEL
        return prompt, item.codes[:, s:stop], stop == item.n_frames, speaker, emotion

    def batch(self, step: int, rank: int = 0) -> Batch:
        """A batch of ``batch_size`` items drawn with replacement, each made into an example by :meth:`example`."""
        rng = np.random.default_rng([self.seed, step, rank])
        picks = rng.integers(0, len(self.items), self.batch_size)
        chosen = [self.items[i] for i in picks]
        return self.collate(chosen, [self.example(item, rng) for item in chosen])

    def collate(self, items: list, parts: list[tuple]) -> Batch:
        """The batch of the examples ``parts`` made from ``items`` (a subclass may attach more of the items)."""
        return collate(self.config, *zip(*parts))


def fixed_batches(items: list[TokenItem], config: S2SConfig, batch_size: int, task: ContinuationTask,
                  seed: int = 1234) -> list[Batch]:
    """Validation batches: every item once, cut the same way on every call (labels kept, since validation asks how
    well the model does with them)."""
    keep_labels = ContinuationTask(task.min_prompt, task.max_prompt, task.max_continuation, task.unprompted_share,
                                   drop_speaker=0.0, drop_emotion=0.0)
    sampler = ContinuationSampler(items, config, batch_size, keep_labels, seed)
    rng = np.random.default_rng(seed)
    examples = [sampler.example(item, rng) for item in items]
    return [collate(config, *zip(*examples[i:i + batch_size])) for i in range(0, len(examples), batch_size)]
