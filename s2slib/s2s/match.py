"""Which answer did the model say? Matching generated speech against reference answers by dynamic time warping.

The agent speaks without text, so "is the answer right" is asked of audio: the generated answer is compared with
every candidate reference answer (each rendered in the same agent voice and emotion) and the closest one is the
model's answer. The comparison:

1. **features**: a log-mel spectrogram (40 bands, 25 ms windows every 20 ms), edge silences trimmed (frames more than
   40 dB below the loudest), then each band standardised over the utterance (cepstral mean and variance
   normalisation, so loudness and a fixed colouring, such as the codec's, cancel out);
2. **distance**: dynamic time warping (Sakoe & Chiba 1978) with cosine distance between frames, steps (1,0), (0,1)
   and (1,1), the total cost divided by the two lengths' sum, so a slower or faster rendition of the same words
   still lines up while different words cannot.

Calibration (the tests check it): a reference matches itself at distance 0, a copy time-stretched by 15 % still
picks its own reference among others, and white noise picks candidates about at random.
"""

from __future__ import annotations

import numpy as np
import torch

N_MELS = 40
HOP_S = 0.02
WIN_S = 0.025
TRIM_DB = 40.0


def match_features(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wav (T,)`` -> ``float32[frames, N_MELS]``: trimmed, per-band standardised log-mel (module docstring)."""
    import torchaudio

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    hop, win = int(round(HOP_S * sample_rate)), int(round(WIN_S * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    if wav.size < win:
        wav = np.pad(wav, (0, win - wav.size))
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
                                               n_mels=N_MELS, f_min=60.0, f_max=min(7600.0, sample_rate / 2),
                                               center=True)(torch.from_numpy(wav))  # (N_MELS, frames)
    logmel = torch.log(mel + 1e-6).T.numpy()  # (frames, N_MELS)
    energy = 10 * np.log10(mel.sum(0).numpy() + 1e-10)
    loud = np.nonzero(energy > energy.max() - TRIM_DB)[0]
    logmel = logmel[loud[0]: loud[-1] + 1] if loud.size else logmel
    mean, std = logmel.mean(0, keepdims=True), logmel.std(0, keepdims=True)
    return ((logmel - mean) / (std + 1e-5)).astype(np.float32)


PAD_COST = 1e4  # cost of a padded cell: far above any real path (cosine distances are at most 2 per cell)


def dtw_distances(query: np.ndarray, candidates: list[np.ndarray], chunk: int = 64) -> np.ndarray:
    """Normalised DTW distance from ``query [N, D]`` to each of ``candidates`` (``[M_k, D]``) -> ``float64[K]``.

    ``chunk`` candidates are aligned at once (their cost matrices stacked, padded with a prohibitive cost), one
    query row at a time. Within a row the recursion ``D[i, j] = c[i, j] + min(a[j], D[i, j - 1])``, with
    ``a[j] = min(D[i-1, j], D[i-1, j-1])``, has the closed form ``D[i, j] = S[j] + min_{k <= j}(a[k] + c[i, k] - S[k])``
    where ``S`` is the running sum of ``c[i, :]``: a cumulative sum and a cumulative minimum, no loop over ``j``."""
    q = torch.nn.functional.normalize(torch.from_numpy(np.asarray(query, dtype=np.float32)), dim=-1)  # (N, D)
    if q.shape[0] == 0 or any(len(c) == 0 for c in candidates):
        raise ValueError("dtw_distances needs non-empty feature sequences")
    out = [_dtw_chunk(q, candidates[i:i + chunk]) for i in range(0, len(candidates), chunk)]
    return np.concatenate(out) if out else np.zeros(0)


def _dtw_chunk(q: torch.Tensor, candidates: list[np.ndarray]) -> np.ndarray:
    N, K = q.shape[0], len(candidates)
    lengths = torch.tensor([len(c) for c in candidates])
    M = int(lengths.max())
    cand = torch.zeros(K, M, q.shape[1])
    for k, c in enumerate(candidates):
        cand[k, : len(c)] = torch.from_numpy(np.asarray(c, dtype=np.float32))
    cand = torch.nn.functional.normalize(cand, dim=-1)
    cost = (1.0 - torch.einsum("nd,kmd->knm", q, cand)).double().clamp(min=0.0)  # (K, N, M) cosine distance
    cost = cost.masked_fill(~(torch.arange(M)[None, :] < lengths[:, None])[:, None, :], PAD_COST)
    row = torch.cumsum(cost[:, 0], dim=-1)  # D[0, j]: only moves right
    for i in range(1, N):
        c = cost[:, i]  # (K, M)
        a = torch.minimum(row, torch.cat([row.new_full((K, 1), float("inf")), row[:, :-1]], dim=-1))
        s = torch.cumsum(c, dim=-1)
        row = s + torch.cummin(a + c - s, dim=-1).values
    total = row[torch.arange(K), lengths - 1]
    return (total / (N + lengths).double()).numpy()


class AnswerMatcher:
    """Candidate reference answers by name; :meth:`distances` and :meth:`best` for a generated answer.

    ``references``: ``{name: wav (T,)}`` at ``sample_rate``. Features are computed once."""

    def __init__(self, references: dict[str, np.ndarray], sample_rate: int):
        if not references:
            raise ValueError("AnswerMatcher needs at least one reference answer")
        self.names = list(references)
        self.sample_rate = sample_rate
        self.features = [match_features(references[n], sample_rate) for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def distances(self, wav: np.ndarray) -> dict[str, float]:
        """Distance from ``wav`` to every reference (lower: closer)."""
        d = dtw_distances(match_features(wav, self.sample_rate), self.features)
        return dict(zip(self.names, d.tolist()))

    def best(self, wav: np.ndarray) -> str:
        """The name of the closest reference."""
        return self.judge(wav)[0]

    def judge(self, wav: np.ndarray, name: str | None = None) -> tuple[str, int]:
        """``(closest reference, rank of name)`` from one pass over the references: the rank is 1 + how many
        references are closer to ``wav`` than ``name`` (1: ``name`` is the best match; 0 when no name is given)."""
        d = self.distances(wav)
        rank = 1 + sum(v < d[name] for v in d.values()) if name is not None else 0
        return min(d, key=d.get), rank
