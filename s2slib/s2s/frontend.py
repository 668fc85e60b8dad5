"""How the encoder hears: the codec's own latent vectors, normalised per turn, instead of learned code embeddings.

The encoder reads codec codes, but a code is a poor symbol for a sound across voices: a residual quantizer spends
its codes on the exact spectrum, so the same syllable said by two people lands on unrelated code ids, and a table of
learned embeddings only learns to relate the ids of the voices it saw in training. Measured on the laptop run's
held-out user voices (a nearest-neighbour search by dynamic time warping against the training renditions of the 64
questions; ``tests`` cannot run it, it needs the trained codec):

=====================================================  ==========================
what the question is compared by                        questions identified
=====================================================  ==========================
the S2S model's learned code embeddings                 15 / 63
the same, mean and variance normalised per question     24 / 63
the codec's latent (the sum of its codebook vectors)    45 / 63
the codec's latent, normalised per question             63 / 63
=====================================================  ==========================

So the words are in the codes; the codec's latent space keeps nearby sounds nearby, and subtracting each turn's mean
and dividing by its spread (cepstral mean and variance normalisation, the oldest trick of speech recognition) removes
most of what is constant in a voice. :class:`LatentInput` does exactly that inside the model: each code frame
becomes ``sum_q table[q, code_q]`` (the vector the codec's decoder would read, from a frozen copy of its codebooks),
normalised over the frames of its own turn, then projected to the model's width. Start and separator frames (ids
past the codebook) keep learned embeddings. The input is still codes, so contexts, token caches and the live agent
are unchanged.

:func:`codec_latent_table` reads the table from a codec; :meth:`s2slib.s2s.tokens.TokenCache.latent_table` keeps it
beside the tokens, and the S2S checkpoint stores it with the weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

NORM_EPS = 1e-3  # floor on a turn's spread per latent channel (a one-frame or silent turn stays finite)


@torch.no_grad()
def codec_latent_table(codec, n_q: int | None = None) -> np.ndarray:
    """``float32[n_q, codebook_size, D]``: the latent vector each code of each level adds (the codec's
    ``dequantize`` is the sum of one such row per level). ``codec`` needs ``dequantize(codes[B, n, F])`` for any
    ``1 <= n <= n_q``, a ``codebook_size`` and an ``n_q`` (the course codec, the EnCodec baseline and the scratch
    EnCodec have them)."""
    dequantize = getattr(codec, "dequantize", None)
    if dequantize is None:
        raise TypeError(f"{type(codec).__name__} has no dequantize(codes): cannot read its codebook vectors")
    n_q = int(n_q or getattr(codec, "n_q", None) or codec.config.n_q)
    size = int(getattr(codec, "codebook_size", None) or codec.config.codebook_size)
    ids = torch.arange(size).view(1, 1, size)
    rows = []
    for q in range(n_q):
        # levels below q at code 0, level q at every code: subtracting levels < q alone leaves level q's rows
        codes = torch.cat([torch.zeros(1, q, size, dtype=torch.long), ids], dim=1)
        z = dequantize(codes).float()  # (1, D, size)
        if q:
            z = z - dequantize(torch.zeros(1, q, 1, dtype=torch.long)).float()
        rows.append(z[0].T)  # (size, D)
    return torch.stack(rows).cpu().numpy().astype(np.float32)


def turn_ids(frame_is_code: Tensor) -> Tensor:
    """``BoolTensor[B, S]`` (True on code frames) -> ``LongTensor[B, S]``: the turn each frame belongs to, counting
    a new turn after every run of non-code frames (the start frame, separators)."""
    special = (~frame_is_code).long()
    return torch.cumsum(special, dim=1)


def normalise_per_turn(z: Tensor, frame_is_code: Tensor) -> Tensor:
    """``z: Tensor[B, S, D]`` with each turn's code frames shifted to mean 0 and scaled to spread 1 per channel
    (over that turn's code frames only; other frames come back as 0)."""
    B, S, D = z.shape
    turns = turn_ids(frame_is_code)  # (B, S)
    n_turns = int(turns.max()) + 1 if turns.numel() else 1
    member = (torch.nn.functional.one_hot(turns, n_turns) * frame_is_code.unsqueeze(-1)).to(z.dtype)  # (B, S, T)
    count = member.sum(dim=1).clamp(min=1.0).unsqueeze(-1)  # (B, T, 1)
    mean = member.transpose(1, 2) @ z / count  # (B, T, D)
    var = member.transpose(1, 2) @ (z * z) / count - mean * mean
    std = var.clamp(min=0.0).sqrt().clamp(min=NORM_EPS)
    out = (z - member @ mean) / (member @ std + (1.0 - member.sum(-1, keepdim=True)))
    return out * frame_is_code.unsqueeze(-1).to(z.dtype)


class LatentInput(nn.Module):
    """Code frames -> the codec's latent, normalised per turn, projected to ``d_model`` (module docstring).

    ``table``: a frozen buffer ``[n_q, codebook_size, latent_dim]`` (zeros until :meth:`set_table`; saved with the
    model's weights)."""

    def __init__(self, n_q: int, codebook_size: int, latent_dim: int, d_model: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.register_buffer("table", torch.zeros(n_q * codebook_size, latent_dim))
        self.register_buffer("offsets", torch.arange(n_q).view(1, n_q, 1) * codebook_size, persistent=False)
        self.proj = nn.Linear(latent_dim, d_model)

    def set_table(self, table: np.ndarray | Tensor) -> None:
        """Copy the codec's ``[n_q, codebook_size, latent_dim]`` codebook vectors in (:func:`codec_latent_table`)."""
        t = torch.as_tensor(np.asarray(table), dtype=torch.float32)
        want = (self.offsets.shape[1], self.codebook_size, self.table.shape[1])
        if tuple(t.shape) != want:
            raise ValueError(f"the codec latent table has shape {tuple(t.shape)}; this model needs {want} "
                             "(n_q, codebook_size, latent_dim)")
        if not torch.isfinite(t).all():
            raise ValueError("the codec latent table holds NaN or infinite values")
        self.table.copy_(t.reshape(self.table.shape))

    @property
    def is_set(self) -> bool:
        return bool(self.table.abs().sum() > 0)

    def forward(self, ids: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """``ids: LongTensor[B, n_q, S]`` (codes and special ids), ``keep: BoolTensor[B, S]`` (real frames) ->
        ``(x: Tensor[B, S, d_model], frame_is_code: BoolTensor[B, S])``; ``x`` is 0 on frames that are not codes."""
        level_is_code = ids < self.codebook_size  # (B, n_q, S)
        # a code frame has a code at the first level; finer levels may be PAD (an answer of a model that speaks
        # fewer codebooks: S2SConfig.speak_q), and add nothing, as a codec decoding fewer levels
        is_code = level_is_code[:, 0] & keep  # (B, S)
        safe = torch.where(level_is_code, ids, torch.zeros_like(ids))
        z = (nn.functional.embedding(safe + self.offsets, self.table)
             * level_is_code.unsqueeze(-1).to(self.table.dtype)).sum(dim=1)  # (B, S, D)
        z = normalise_per_turn(z, is_code)
        return self.proj(z) * is_code.unsqueeze(-1).to(z.dtype), is_code
