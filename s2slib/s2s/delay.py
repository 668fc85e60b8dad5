"""The delay pattern: several codebooks per frame predicted in one decoder step (Copet et al. 2023, MusicGen).

A frame of the codec holds ``n_q`` codes, coarse to fine. Predicting them one after another would take ``n_q`` decoder
steps per frame (400 steps per second of audio at 50 frames/s and 8 codebooks); predicting them all at once from the
same context would make the fine codes ignore the coarse ones. The delay pattern shifts codebook ``k`` right by ``k``
steps, so at decoder step ``t`` the model writes codebook 0 of frame ``t``, codebook 1 of frame ``t - 1``, ..., and
codebook ``k`` of frame ``f`` is written one step after codebook ``k - 1`` of the same frame, which it can then see::

    step      0    1    2    3    4    5
    cb 0     a0   a1   a2   a3  EOS  PAD
    cb 1    PAD   b0   b1   b2   b3  EOS
    cb 2    PAD  PAD   c0   c1   c2   c3  EOS ...

One decoder step per frame (plus ``n_q - 1`` steps at the end), and each code still conditions on the coarser codes of
its frame. Every stream ends with EOS after its last frame; PAD fills the rest and is never a training target.

Functions here are pure tensor reshuffles, tested to invert each other.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100  # target value cross-entropy skips (torch's default ignore_index)


def delay_streams(codes: Tensor, lengths: Tensor, eos_id: int, pad_id: int, with_eos: Tensor | None = None) -> Tensor:
    """Codes of a batch laid out in the delay pattern, each item ending in EOS.

    Parameters
    ----------
    codes: ``LongTensor[B, n_q, T]`` (values past an item's length are ignored).
    lengths: ``LongTensor[B]``, frames of each item (``0 <= lengths <= T``).
    with_eos: ``BoolTensor[B]``; False leaves an item without EOS (a crop cut from a longer utterance, whose speech
        does not end there). Default: every item ends.

    Returns
    -------
    ``LongTensor[B, n_q, T + n_q]``: ``out[b, k, t] = codes[b, k, t - k]`` for ``0 <= t - k < lengths[b]``, EOS at
    ``t - k == lengths[b]`` (when ``with_eos``), PAD elsewhere.
    """
    B, n_q, T = codes.shape
    steps = torch.arange(T + n_q, device=codes.device)  # (L,)
    k = torch.arange(n_q, device=codes.device)  # (n_q,)
    frame = steps.view(1, 1, -1) - k.view(1, -1, 1)  # (1, n_q, L): which frame each step holds
    idx = frame.clamp(0, max(T - 1, 0)).expand(B, n_q, -1)
    gathered = codes.gather(2, idx) if T > 0 else torch.full_like(idx, pad_id)  # (B, n_q, L)
    length = lengths.view(B, 1, 1)
    out = torch.where((frame >= 0) & (frame < length), gathered, torch.full_like(gathered, pad_id))
    ends = torch.ones(B, dtype=torch.bool, device=codes.device) if with_eos is None else with_eos
    return torch.where((frame == length) & ends.view(B, 1, 1), torch.full_like(out, eos_id), out)


def undelay(streams: Tensor) -> Tensor:
    """Inverse of :func:`delay_streams` for the frames: ``LongTensor[B, n_q, L]`` -> ``LongTensor[B, n_q, L - n_q + 1]``
    with ``out[b, k, f] = streams[b, k, f + k]`` (the caller cuts at each item's length)."""
    B, n_q, L = streams.shape
    F = L - n_q + 1
    if F <= 0:
        return streams.new_zeros(B, n_q, 0)
    idx = (torch.arange(F, device=streams.device).view(1, -1) + torch.arange(n_q, device=streams.device).view(-1, 1))
    return streams.gather(2, idx.unsqueeze(0).expand(B, -1, -1))  # (B, n_q, F)


def decoder_inputs(streams: Tensor, bos_id: int) -> Tensor:
    """Teacher forcing: the decoder reads BOS then the streams shifted right by one step.

    ``LongTensor[B, n_q, L]`` -> ``LongTensor[B, n_q, L]`` with ``out[..., 0] = BOS``, ``out[..., t] = streams[..., t-1]``.
    """
    bos = torch.full_like(streams[..., :1], bos_id)
    return torch.cat([bos, streams[..., :-1]], dim=-1)


def decoder_targets(streams: Tensor, pad_id: int) -> Tensor:
    """What the decoder is trained to predict at each step: the streams, with PAD replaced by :data:`IGNORE`."""
    return streams.masked_fill(streams == pad_id, IGNORE)
