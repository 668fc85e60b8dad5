"""Several answers decoded together: one decoder step for every stream at once, each stream at its own position.

:func:`generate_frames` decodes a batch whose items all start together. A live agent's answers do not: one session's
answer starts while another's is half spoken. Decoding them one by one costs one full decoder step (and its Python
overhead, which dominates a small model on a CPU) per stream per frame. :class:`BatchedDecoder` keeps the streams in
the rows of shared buffers (a :class:`~s2slib.s2s.layers.RowCache` per decoder layer, the encoder's keys and values
padded to the longest input) and advances all of them with one :meth:`S2SModel.step`; streams join and leave between
steps ("continuous batching", Yu et al. 2022, *Orca*).

Each stream samples exactly as :func:`s2slib.s2s.generate.generate_frames` does for one item: the same filters, the
same delay pattern, its own ``torch.Generator`` seeded from its :class:`SamplingConfig`, so a stream's answer does not
depend on which other streams share its steps (up to float rounding in the batched matrix products).

    decoder = BatchedDecoder(model)
    a = decoder.add(start_stream(model, src_a, "Priya", "happy", sampling))
    b = decoder.add(start_stream(model, src_b, "Ravi", None, sampling))
    while decoder.active:
        for handle, frame in decoder.step().items():   # frame: codes LongTensor[n_q], or None when the stream ended
            ...
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from s2slib.s2s.generate import (SamplingConfig, _labels, _resolved, delay_step, filtered_logits, mask_eos)
from s2slib.s2s.layers import RowCache
from s2slib.s2s.model import DecoderState, S2SModel


@dataclass
class StreamStart:
    """What a stream needs before its first decoder step (:func:`start_stream`): the encoder's keys and values per
    decoder layer ``[1, H, S, D]``, the conditioning vector ``[1, 1, d]``, the resolved sampling settings."""

    memory_kv: list[tuple[Tensor, Tensor]]
    condition: Tensor
    sampling: SamplingConfig

    @property
    def source_frames(self) -> int:
        return int(self.memory_kv[0][0].shape[-2])


@torch.inference_mode()
def start_stream(model: S2SModel, src: Tensor, speaker: str | None = None, emotion: str | None = None,
                 sampling: SamplingConfig | None = None) -> StreamStart:
    """Encode one input ``src: LongTensor[1, n_q, S]`` (the expensive part of a stream's start, best done on the
    caller's thread) for :meth:`BatchedDecoder.add`."""
    if src.ndim != 3 or src.shape[0] != 1:
        raise ValueError(f"a stream answers one input: src must be [1, n_q, S], got {tuple(src.shape)}")
    device = next(model.parameters()).device
    memory, keep = model.encode(src.to(device))
    state = model.start(memory, keep, _labels(model, speaker, 1, "speaker").to(device),
                        _labels(model, emotion, 1, "emotion").to(device), max_steps=1)
    return StreamStart(state.memory_kv, state.condition, _resolved(sampling, model.config.max_frames))


# the per-row tensors besides the caches and the encoder's keys: allocated in _alloc, copied when a row moves
_ROW_FIELDS = ("source_len", "condition", "tokens", "steps", "end", "min_frames", "max_frames", "step_input")


class BatchedDecoder:
    """Streams decoded together (see the module docstring). Not thread-safe: one thread calls :meth:`add`,
    :meth:`remove` and :meth:`step` (:class:`s2slib.agent.decoding.DecodeService` is that thread for the agent)."""

    def __init__(self, model: S2SModel, slots: int = 4):
        self.model = model
        c = self.config = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.n_q = c.n_q
        self.max_steps = c.max_frames + c.n_q + 1  # the longest stream: max_frames, the delay, the forced EOS
        self.handles: list[int] = []  # the stream in each used row, rows 0 .. active - 1
        self._next = 0
        self._alloc(max(1, slots), 1)

    # ------------------------------------------------------------------ buffers
    def _alloc(self, slots: int, source: int) -> None:
        c, dev, dt = self.config, self.device, self.dtype
        H, D = c.n_heads, c.head_dim
        old = getattr(self, "caches", None)
        self.slots, self.source_cap = slots, source
        caches = [RowCache(slots, H, self.max_steps, D, dev, dt) for _ in self.model.decoder]
        mem = [(torch.zeros(slots, H, source, D, device=dev, dtype=dt), torch.zeros(slots, H, source, D, device=dev,
                                                                                     dtype=dt))
               for _ in self.model.decoder]
        keep = torch.zeros(slots, source, dtype=torch.bool, device=dev)
        fields = dict(source_len=torch.zeros(slots, dtype=torch.long, device=dev),
                      condition=torch.zeros(slots, 1, c.d_model, device=dev, dtype=dt),
                      tokens=torch.full((slots, c.n_q, self.max_steps), c.pad_id, dtype=torch.long, device=dev),
                      steps=torch.zeros(slots, dtype=torch.long, device=dev),
                      end=torch.full((slots,), -1, dtype=torch.long, device=dev),
                      min_frames=torch.zeros(slots, dtype=torch.long, device=dev),
                      max_frames=torch.zeros(slots, dtype=torch.long, device=dev),
                      step_input=torch.full((slots, c.n_q, 1), c.bos_id, dtype=torch.long, device=dev))
        assert tuple(fields) == _ROW_FIELDS
        if old is not None:  # growing: copy the used rows over
            n = self.active
            for new_c, old_c in zip(caches, old):
                new_c.k[:n], new_c.v[:n], new_c.lengths[:n] = old_c.k[:n], old_c.v[:n], old_c.lengths[:n]
            for (nk, nv), (ok, ov) in zip(mem, self.memory):
                s = ok.shape[-2]
                nk[:n, :, :s], nv[:n, :, :s] = ok[:n], ov[:n]
            keep[:n, :self.keep.shape[1]] = self.keep[:n]
            for name, t in fields.items():
                t[:n] = getattr(self, name)[:n]
        else:
            self.samplings: list[SamplingConfig] = []
            self.generators: list[torch.Generator | None] = []
        self.caches, self.memory, self.keep = caches, mem, keep
        for name, t in fields.items():
            setattr(self, name, t)

    @property
    def active(self) -> int:
        """Streams being decoded."""
        return len(self.handles)

    # ------------------------------------------------------------------ joining and leaving
    def add(self, start: StreamStart) -> int:
        """Take a stream into the next step; returns its handle."""
        S = start.source_frames
        if self.active == self.slots or S > self.source_cap:
            self._alloc(self.slots * 2 if self.active == self.slots else self.slots, max(S, self.source_cap))
        r = self.active
        for cache, (k, v), (mk, mv) in zip(self.caches, self.memory, start.memory_kv):
            cache.lengths[r] = 0
            k[r, :, :S], v[r, :, :S] = mk[0], mv[0]
        self.keep[r] = False
        self.keep[r, :S] = True
        self.source_len[r] = S
        self.condition[r] = start.condition[0]
        self.tokens[r] = self.config.pad_id
        self.steps[r], self.end[r] = 0, -1
        cfg = start.sampling
        self.min_frames[r], self.max_frames[r] = cfg.min_frames, cfg.max_frames
        self.step_input[r] = self.config.bos_id
        self.samplings.append(cfg)
        self.generators.append(None if cfg.seed is None
                               else torch.Generator(device=self.device).manual_seed(cfg.seed))
        handle = self._next
        self._next += 1
        self.handles.append(handle)
        return handle

    def remove(self, handle: int) -> None:
        """Drop a stream (finished or no longer wanted); the last row moves into its place."""
        r = self.handles.index(handle)
        last = self.active - 1
        if r != last:
            for cache in self.caches:
                cache.move(last, r)
            S = int(self.source_len[last])
            for k, v in self.memory:
                k[r, :, :S], v[r, :, :S] = k[last, :, :S], v[last, :, :S]
            self.keep[r] = self.keep[last]
            for name in _ROW_FIELDS:
                t = getattr(self, name)
                t[r] = t[last]
            self.handles[r], self.samplings[r], self.generators[r] = (self.handles[last], self.samplings[last],
                                                                        self.generators[last])
        self.handles.pop()
        self.samplings.pop()
        self.generators.pop()

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def step(self) -> dict[int, Tensor | None]:
        """One decoder step of every stream. Returns, per stream whose frame completed at this step, its codes
        ``LongTensor[spoken_q]``; ``None`` for a stream that ended (it is removed). Streams in between (the first
        ``spoken_q - 1`` steps, the delay) are not in the result."""
        n = self.active
        if n == 0:
            return {}
        c, n_q = self.config, self.n_q
        S = int(self.source_len[:n].max())
        state = DecoderState([(k[:n, :, :S], v[:n, :, :S]) for k, v in self.memory],
                             self.keep[:n, None, None, :S], self.caches, self.condition[:n])
        logits = self.model.step(self.step_input[:n], state)[:, :, -1]  # (n, n_q, V)
        steps, end = self.steps[:n], self.end[:n]
        mask_eos(logits, steps, self.min_frames[:n], c.eos_id)
        tok = self._sample(logits, n)
        tok, end = delay_step(tok, steps, end, self.max_frames[:n], c)
        rows = torch.arange(n, device=self.device)
        self.tokens[rows, :, steps] = tok
        self.step_input[:n] = tok.unsqueeze(-1)
        self.end[:n] = end
        spoken = c.spoken_q
        done = steps - (spoken - 1)  # the frame whose last spoken codebook was just written
        steps += 1
        k = torch.arange(spoken, device=self.device)
        out: dict[int, Tensor | None] = {}
        finished = []
        for r in torch.nonzero(done >= 0).view(-1).tolist():
            d, e = int(done[r]), int(end[r])
            if e < 0 or d < e:
                out[self.handles[r]] = self.tokens[r, k, d + k].clamp(max=c.codebook_size - 1)
            else:
                out[self.handles[r]] = None
                finished.append(self.handles[r])
        for h in finished:
            self.remove(h)
        return out

    def _sample(self, logits: Tensor, n: int) -> Tensor:
        """The tokens of every stream's step ``[n, n_q]``: the filters batched over streams with the same settings,
        the draw per stream from its own generator."""
        W = max(cfg.repetition_window for cfg in self.samplings)
        idx = self.steps[:n].view(n, 1) - W + torch.arange(W, device=self.device).view(1, W)  # (n, W)
        recent = self.tokens[:n].gather(2, idx.clamp(min=0).unsqueeze(1).expand(n, self.n_q, W))
        tok = torch.empty(n, self.n_q, dtype=torch.long, device=self.device)
        groups: dict[tuple, list[int]] = {}
        for r, cfg in enumerate(self.samplings):
            groups.setdefault((cfg.temperature, cfg.top_k, cfg.top_p, cfg.repetition_penalty,
                               cfg.repetition_window), []).append(r)
        for rows in groups.values():
            cfg = self.samplings[rows[0]]
            sel = torch.tensor(rows, device=self.device)
            w = recent[sel][..., W - cfg.repetition_window:]
            valid = idx[sel][:, W - cfg.repetition_window:].unsqueeze(1) >= 0
            flat = filtered_logits(logits[sel], cfg, torch.where(valid, w, torch.full_like(w, -1)))
            flat = flat.view(len(rows), self.n_q, -1)
            for j, r in enumerate(rows):
                if cfg.temperature == 0:
                    tok[r] = flat[j].argmax(-1)
                else:
                    tok[r] = torch.multinomial(flat[j].softmax(-1), 1, generator=self.generators[r]).view(-1)
        return tok
