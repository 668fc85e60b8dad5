"""Building blocks of the speech-to-speech transformer: rotary positions, attention with a KV cache, the Conformer
block and the causal decoder block.

- **RoPE** (Su et al. 2021, *RoFormer*): queries and keys are rotated by an angle proportional to their position, so
  their dot product depends only on the distance between them. Nothing is added to the token embeddings, and a step
  of incremental decoding only needs its own position.
- **Attention** goes through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU and CPU).
  A padded batch on CPU attends row by row over each row's own length (:func:`attend_over_lengths`): the fused CPU
  kernel computes every masked-out score, and a batch of dialogue turns is mostly padding.
- **KV cache**: while generating, each decoder layer keeps the keys and values of every step so far in a
  preallocated buffer; a new step computes only its own query, key and value (Pope et al. 2022 on why this is the
  cost that matters in decoding).
- **Conformer block** (Gulati et al. 2020): half a feed-forward, self-attention, a convolution module (pointwise,
  GLU, depthwise convolution, norm, Swish, pointwise), half a feed-forward, a final norm. The convolution sees local
  acoustic detail that attention spreads thin. The paper's BatchNorm is a LayerNorm here, so an utterance's encoding
  does not depend on what else is in its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Rotates pairs of channels ``(i, i + D/2)`` of ``x: Tensor[B, H, T, D]`` by ``position * base^(-2i/D)``."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cos = self._sin = None  # (T_max, D) tables, grown on demand

    def _tables(self, end: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self._cos is None or self._cos.shape[0] < end or self._cos.device != device:
            n = max(end, 2 * (0 if self._cos is None else self._cos.shape[0]), 256)
            angles = torch.outer(torch.arange(n, device=device, dtype=torch.float32), self.inv_freq.to(device))
            angles = torch.cat([angles, angles], dim=-1)  # (n, D)
            self._cos, self._sin = angles.cos(), angles.sin()
        return self._cos[:end].to(dtype), self._sin[:end].to(dtype)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """``x: Tensor[B, H, T, D]`` at positions ``offset .. offset + T - 1`` -> the rotated ``x`` (same shape).
        ``offset`` may be a ``LongTensor[B]``: each row at its own position (streams decoded together, see
        :class:`RowCache`)."""
        T = x.shape[-2]
        if isinstance(offset, Tensor):
            pos = offset.view(-1, 1) + torch.arange(T, device=offset.device)  # (B, T)
            cos, sin = self._tables(int(pos.max()) + 1, x.device, x.dtype)
            cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # (B, 1, T, D)
        else:
            cos, sin = self._tables(offset + T, x.device, x.dtype)
            cos, sin = cos[offset:], sin[offset:]  # (T, D)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # rotate_half: (x1, x2) -> (-x2, x1)
        return x * cos + rotated * sin


class KVCache:
    """Keys and values of the steps decoded so far, for one attention layer: preallocated ``Tensor[B, H, max_len, D]``
    buffers written in place (no concatenation per step)."""

    def __init__(self, batch_size: int, n_heads: int, max_len: int, head_dim: int, device: torch.device,
                 dtype: torch.dtype):
        self.k = torch.zeros(batch_size, n_heads, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v: Tensor[B, H, n, D]`` after the cached steps; all keys and values so far ``[B, H, length, D]``."""
        end = self.length + k.shape[-2]
        if end > self.k.shape[-2]:
            raise RuntimeError(f"the KV cache holds {self.k.shape[-2]} steps and is full; generate fewer frames or "
                               "build the model with a larger max_frames")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class RowCache:
    """Keys and values of several independent streams decoded together, one row each, for one attention layer: each
    row has its own length (the streams started at different times). ``Tensor[slots, H, max_len, D]`` buffers; the
    streams in use are rows ``0 .. n - 1`` (:class:`s2slib.s2s.batching.BatchedDecoder` keeps them packed)."""

    def __init__(self, slots: int, n_heads: int, max_len: int, head_dim: int, device: torch.device,
                 dtype: torch.dtype):
        self.k = torch.zeros(slots, n_heads, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Store one step ``k, v: Tensor[n, H, 1, D]`` of rows ``0 .. n - 1``, each after its own cached steps;
        returns the keys and values ``[n, H, L, D]`` (``L``: the longest row) and the mask ``[n, 1, 1, L]`` of the
        steps each row has."""
        n = k.shape[0]
        pos = self.lengths[:n]
        if int(pos.max()) >= self.k.shape[-2]:
            raise RuntimeError(f"the KV cache holds {self.k.shape[-2]} steps and is full; generate fewer frames or "
                               "build the model with a larger max_frames")
        rows = torch.arange(n, device=k.device)
        self.k[rows, :, pos] = k[:, :, 0]
        self.v[rows, :, pos] = v[:, :, 0]
        pos += 1
        end = int(pos.max())
        mask = torch.arange(end, device=k.device).view(1, 1, 1, end) < pos.view(n, 1, 1, 1)
        return self.k[:n, :, :end], self.v[:n, :, :end], mask

    def move(self, src: int, dst: int) -> None:
        """Copy row ``src`` into row ``dst`` (a finished stream's row taken by the last one)."""
        n = int(self.lengths[src])
        self.k[dst, :, :n] = self.k[src, :, :n]
        self.v[dst, :, :n] = self.v[src, :, :n]
        self.lengths[dst] = n


def attend_over_lengths(q: Tensor, k: Tensor, v: Tensor, key_lengths: Tensor, dropout_p: float = 0.0,
                        self_attention: bool = False) -> Tensor:
    """Attention of a padded batch where row ``b`` has only its first ``key_lengths[b]`` keys: ``q: Tensor[B, H, T,
    D]``, ``k, v: Tensor[B, H, S, D]`` -> ``Tensor[B, H, T, D]``, the same as a key-padding mask.

    On CPU each row attends over its own keys, so the work is the sum of the rows' lengths instead of ``B`` times the
    longest (at the laptop profile of notebook 06, the real scores of a long batch of dialogue turns are 42 % of the
    padded ones). With ``self_attention`` (queries are the same frames as keys), a row's queries past its length are
    padding: on CPU they are not computed and come out as zeros. On other devices one fused call takes the mask."""
    B, T, S = q.shape[0], q.shape[2], k.shape[2]
    lengths = [int(n) for n in key_lengths.tolist()]
    if len(lengths) != B or min(lengths, default=1) < 1 or max(lengths, default=0) > S:
        raise ValueError(f"key_lengths must give 1..{S} keys for each of the {B} rows, got {lengths}")
    if all(n == S for n in lengths):  # no padding
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if q.device.type != "cpu":
        mask = torch.arange(S, device=q.device).view(1, 1, 1, S) < key_lengths.to(q.device).view(B, 1, 1, 1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    rows = []
    for b, n in enumerate(lengths):
        y = F.scaled_dot_product_attention(q[b:b + 1, :, :n] if self_attention else q[b:b + 1], k[b:b + 1, :, :n],
                                           v[b:b + 1, :, :n], dropout_p=dropout_p)
        rows.append(F.pad(y, (0, 0, 0, T - y.shape[2])))
    return torch.cat(rows)


class Attention(nn.Module):
    """Multi-head attention: self-attention (with RoPE, optionally causal and cached) or cross-attention."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, rope: RotaryEmbedding | None = None):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rope = rope
        self.dropout = dropout

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def project_kv(self, source: Tensor, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """Keys and values of ``source: Tensor[B, S, d_model]`` -> two ``Tensor[B, H, S, D]`` (keys rotated when
        this layer uses RoPE)."""
        k, v = self.kv(source).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        if self.rope is not None:
            k = self.rope(k, offset)
        return k, v

    def forward(self, x: Tensor, source: Tensor | None = None, mask: Tensor | None = None, causal: bool = False,
                cache: KVCache | RowCache | None = None, kv: tuple[Tensor, Tensor] | None = None,
                key_lengths: Tensor | None = None) -> Tensor:
        """Attend from ``x: Tensor[B, T, d_model]``.

        source: what to attend to (``None``: ``x`` itself); ignored when ``kv`` gives precomputed keys and values.
        mask: ``BoolTensor`` broadcastable to ``[B, H, T, S]``, True where attention is allowed.
        key_lengths: ``LongTensor[B]``, instead of a mask for a padded batch: row ``b`` has only its first
            ``key_lengths[b]`` keys (:func:`attend_over_lengths`; not with a cache or causal attention). In
            self-attention the outputs at a row's padded positions are then zeros.
        causal: position ``i`` sees keys ``<= i`` (self-attention).
        cache: self-attention while decoding: ``x`` holds the steps after the cached ones; their keys and values are
            appended, and each step sees every cached step and the new ones up to itself. A :class:`RowCache`: one
            step (``T == 1``) of several streams, each row at its own position.
        """
        B, T, _ = x.shape
        if isinstance(cache, RowCache):
            return self._row_step(x, cache)
        if key_lengths is not None and (mask is not None or causal or cache is not None):
            raise ValueError("key_lengths replaces the mask of a padded batch; it takes no mask, cache or causality")
        offset = cache.length if cache is not None else 0
        q = self._heads(self.q(x))  # (B, H, T, D)
        if self.rope is not None:
            q = self.rope(q, offset)
        if kv is None:
            kv = self.project_kv(x if source is None else source, offset)
        k, v = kv
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, offset + T, D)
            if causal and T > 1:  # a chunk of new steps: step i sees the cache and new steps up to i
                allowed = torch.ones(T, offset + T, dtype=torch.bool, device=x.device).tril(diagonal=offset)
                mask = allowed if mask is None else mask & allowed
            causal = False  # one new step sees everything cached: no mask needed
        if causal and mask is not None:  # fold causality into the explicit mask
            mask = mask & torch.ones(T, k.shape[-2], dtype=torch.bool, device=x.device).tril()
            causal = False
        dropout = self.dropout if self.training else 0.0
        if key_lengths is not None:
            y = attend_over_lengths(q, k, v, key_lengths, dropout, self_attention=source is None and kv is None)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(B, T, -1))  # (B, H, T, D) -> (B, T, d_model)

    def _row_step(self, x: Tensor, cache: RowCache) -> Tensor:
        """Causal self-attention of one new step per row, each row after its own cached steps."""
        B, T, _ = x.shape
        if T != 1:
            raise ValueError(f"a RowCache takes one step per stream at a time, got {T}")
        pos = cache.lengths[:B]
        q = self._heads(self.q(x))
        if self.rope is not None:
            q = self.rope(q, pos)
        k, v, mask = cache.append(*self.project_kv(x, pos))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """Position-wise ``Linear -> SiLU -> Linear`` with dropout."""

    def __init__(self, d_model: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, mult * d_model), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """The Conformer's convolution module over ``x: Tensor[B, T, d_model]``; padded frames are zeroed first so they
    cannot leak into real ones through the depthwise kernel."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.depth_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """``keep: BoolTensor[B, T]``, True on real frames."""
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, d)
        if keep is not None:
            y = y * keep.unsqueeze(-1)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)  # (B, T, d)
        y = self.pointwise_out(F.silu(self.depth_norm(y)))
        return self.dropout(y)


class ConformerBlock(nn.Module):
    """``x + FF/2 -> x + MHSA(RoPE) -> x + Conv -> x + FF/2 -> LayerNorm`` (Gulati et al. 2020, figure 1)."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, conv_kernel: int, dropout: float,
                 rope: RotaryEmbedding):
        super().__init__()
        self.ff1, self.ff2 = FeedForward(d_model, ff_mult, dropout), FeedForward(d_model, ff_mult, dropout)
        self.ff1_norm, self.ff2_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout, rope)
        self.attn_drop = nn.Dropout(dropout)
        self.conv = ConvModule(d_model, conv_kernel, dropout)
        self.out_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """``x: Tensor[B, S, d_model]``, ``keep: BoolTensor[B, S]`` (True on real frames, which come first in each
        row) -> ``Tensor[B, S, d_model]``. Padded frames never reach real ones: attention leaves them out and the
        convolution module zeroes them."""
        lengths = None if keep is None else keep.sum(dim=1)  # (B,): frames that exist
        x = x + 0.5 * self.ff1(self.ff1_norm(x))
        x = x + self.attn_drop(self.attn(self.attn_norm(x), key_lengths=lengths))
        x = x + self.conv(x, keep)
        x = x + 0.5 * self.ff2(self.ff2_norm(x))
        return self.out_norm(x)


class DecoderBlock(nn.Module):
    """Pre-norm causal block: ``x + SelfAttn(RoPE, causal, cached)``, ``x + CrossAttn(encoder)``, ``x + FF``."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float, rope: RotaryEmbedding):
        super().__init__()
        self.self_norm, self.cross_norm, self.ff_norm = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = Attention(d_model, n_heads, dropout, rope)
        self.cross_attn = Attention(d_model, n_heads, dropout, rope=None)  # memory positions need no rotation
        self.ff = FeedForward(d_model, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], memory_mask: Tensor | None,
                cache: KVCache | RowCache | None = None, memory_lengths: Tensor | None = None) -> Tensor:
        """``x: Tensor[B, T, d_model]`` (the steps after ``cache``'s, if any); ``memory_kv``: this layer's
        cross-attention keys and values of the encoder output (:meth:`Attention.project_kv`); ``memory_mask``:
        ``BoolTensor[B, 1, 1, S]``, or ``memory_lengths: LongTensor[B]`` instead (real frames first)."""
        x = x + self.drop(self.self_attn(self.self_norm(x), causal=True, cache=cache))
        x = x + self.drop(self.cross_attn(self.cross_norm(x), mask=memory_mask, kv=memory_kv,
                                          key_lengths=memory_lengths))
        return x + self.ff(self.ff_norm(x))
