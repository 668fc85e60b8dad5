"""Generation: speech tokens out of the S2S model, one decoder step per frame, and audio out of the codec as the frames
arrive.

- :func:`generate_frames` is the loop everything else uses: it encodes the input once, then runs the decoder step by
  step with its KV cache, samples every codebook of the step (temperature, top-k, top-p, a repetition guard), keeps
  the delay pattern (PAD where a codebook has not started, EOS then PAD after the end) and yields each **complete
  frame** as soon as its last codebook is written (``n_q - 1`` steps after its first).
- :func:`generate` collects the frames into codes, one tensor per item.
- :func:`generate_streaming` pushes the frames through the codec's streaming decoder and yields audio chunks while
  the model is still writing; the concatenated chunks equal the offline decode of the same codes.

Sampling draws from a ``torch.Generator`` seeded by ``SamplingConfig.seed``: the same seed gives the same answer on
every path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from s2slib.s2s.model import S2SModel


@dataclass
class SamplingConfig:
    """How the next token of every codebook is drawn."""

    temperature: float = 0.8  # < 1 sharpens the distribution, 0 means greedy (argmax)
    top_k: int = 50  # keep the k most likely codes (0: all)
    top_p: float = 0.95  # keep the smallest set holding this probability (1: all) (Holtzman et al. 2020)
    repetition_penalty: float = 1.2  # > 1 discourages codes used in the last repetition_window frames (CTRL)
    repetition_window: int = 8  # frames
    max_frames: int | None = None  # hard stop, the answer ends there without EOS (None: the model's max_frames)
    min_frames: int = 10  # EOS is not allowed before this many frames
    seed: int | None = 0  # None: a fresh random answer each call

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty < 1:
            raise ValueError("sampling needs temperature >= 0, 0 < top_p <= 1, top_k >= 0 and "
                             f"repetition_penalty >= 1; got {self}")
        if (self.max_frames is not None and self.max_frames < 1) or self.min_frames < 0:
            raise ValueError(f"max_frames must be >= 1 and min_frames >= 0, got {self.max_frames}, {self.min_frames}")


def _filter(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Set logits outside the top-k / nucleus to -inf. ``logits: Tensor[N, V]``."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the first token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample(logits: Tensor, cfg: SamplingConfig, recent: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """Draw one token per row. ``logits: Tensor[B, n_q, V]``; ``recent: LongTensor[B, n_q, W]`` tokens of the last
    frames (values outside ``[0, V)`` ignored) for the repetition guard -> ``LongTensor[B, n_q]``."""
    B, n_q, _ = logits.shape
    flat = filtered_logits(logits, cfg, recent)
    if cfg.temperature == 0:
        return flat.argmax(-1).view(B, n_q)
    return torch.multinomial(flat.softmax(-1), 1, generator=generator).view(B, n_q)


def filtered_logits(logits: Tensor, cfg: SamplingConfig, recent: Tensor | None) -> Tensor:
    """What :func:`sample` draws from: ``logits`` ``[B, n_q, V]`` after the repetition guard, the temperature and
    the top-k / top-p filters -> ``Tensor[B * n_q, V]`` (unscaled by the temperature when it is 0: greedy)."""
    B, n_q, V = logits.shape
    logits = logits.float().clone()
    if recent is not None and recent.numel() and cfg.repetition_penalty > 1:
        valid = (recent >= 0) & (recent < V)
        # counted, not scattered as booleans: an ignored entry (PAD, -1) must not unmark a code that a valid one marked
        used = torch.zeros_like(logits, dtype=torch.int32).scatter_add_(-1, recent.clamp(0, V - 1), valid.int()) > 0
        # CTRL's penalty (Keskar et al. 2019): shrink a used code's positive logit, grow its negative one
        penalised = torch.where(logits > 0, logits / cfg.repetition_penalty, logits * cfg.repetition_penalty)
        logits = torch.where(used, penalised, logits)
    flat = logits.view(B * n_q, V)
    if cfg.temperature == 0:
        return flat
    return _filter(flat / cfg.temperature, cfg.top_k, cfg.top_p)


def _resolved(sampling: SamplingConfig | None, model_max: int) -> SamplingConfig:
    """``sampling`` with ``max_frames`` filled in, checked against the longest answer the model was built for."""
    cfg = sampling or SamplingConfig()
    if cfg.max_frames is None:
        return dataclasses.replace(cfg, max_frames=model_max)
    if cfg.max_frames > model_max:
        raise ValueError(f"max_frames {cfg.max_frames} exceeds what the model was built for ({model_max} frames)")
    return cfg


def _labels(model: S2SModel, values: str | None | Sequence[str | None], B: int, which: str) -> Tensor:
    """Speaker or emotion names (one for all items, or one per item) -> embedding rows ``LongTensor[B]``."""
    names = [values] * B if values is None or isinstance(values, str) else list(values)
    if len(names) != B:
        raise ValueError(f"{len(names)} {which} labels for {B} inputs")
    if which == "speaker":
        unknown = [n for n in names if n is not None and n not in model.config.speakers]
        if unknown:
            raise ValueError(f"unknown speaker {unknown[0]!r}; the agent speaks as {', '.join(model.config.speakers)} "
                             "(or None: any voice, taken from the prompt)")
        return torch.tensor([model.config.speaker_index(n) for n in names])
    return torch.tensor([model.config.emotion_index(n) for n in names])


@dataclass
class Frame:
    """One complete output frame for every item: ``codes: LongTensor[B, spoken_q]`` (the codebooks the model speaks,
    coarse to fine: all ``n_q`` unless ``S2SConfig.speak_q`` says fewer), ``alive: BoolTensor[B]`` (False for items
    that already ended; their codes are meaningless), ``index`` the frame number."""

    codes: Tensor
    alive: Tensor
    index: int


@torch.inference_mode()
def generate_frames(model: S2SModel, src: Tensor, speaker: str | None | Sequence[str | None] = None,
                    emotion: str | None | Sequence[str | None] = None, sampling: SamplingConfig | None = None,
                    src_lengths: Tensor | None = None) -> Iterator[Frame]:
    """Yield the answer's frames as they complete (see the module docstring).

    src: ``LongTensor[B, n_q, S]`` input codes (``S`` may be 0: speak unprompted); ``src_lengths`` ``[B]`` if padded.
    speaker: an agent voice (``"Priya"``) or None (any voice: the model takes it from the prompt); one per item or one
        for all. emotion: one of ``model.config.emotions`` or None.
    """
    c = model.config
    cfg = _resolved(sampling, c.max_frames)
    device = next(model.parameters()).device
    src = src.to(device)
    B, n_q = src.shape[0], c.n_q
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    memory, keep = model.encode(src, src_lengths)
    state = model.start(memory, keep, _labels(model, speaker, B, "speaker").to(device),
                        _labels(model, emotion, B, "emotion").to(device), max_steps=cfg.max_frames + n_q + 1)
    spoken = c.spoken_q
    k = torch.arange(spoken, device=device)  # the codebooks a frame is made of
    end = torch.full((B,), -1, dtype=torch.long, device=device)  # frame at which each item's EOS fell (-1: not yet)
    tokens = torch.full((B, n_q, 0), c.pad_id, dtype=torch.long, device=device)  # every step's tokens (B, n_q, t)
    step_input = torch.full((B, n_q, 1), c.bos_id, dtype=torch.long, device=device)
    for t in range(cfg.max_frames + n_q):
        logits = model.step(step_input, state)[:, :, -1]  # (B, n_q, V)
        steps = torch.full((B,), t, dtype=torch.long, device=device)
        mask_eos(logits, steps, cfg.min_frames, c.eos_id)
        window = tokens[..., max(0, t - cfg.repetition_window):]
        tok = sample(logits, cfg, window, generator)  # (B, n_q)
        tok, end = delay_step(tok, steps, end, cfg.max_frames, c)
        tokens = torch.cat([tokens, tok.unsqueeze(-1)], dim=-1)
        step_input = tok.unsqueeze(-1)
        done = t - (spoken - 1)  # the frame whose last spoken codebook was just written
        if done >= 0:
            codes = tokens[:, k, done + k]  # (B, spoken): codebook k of frame `done` sits at step done + k
            alive = (end < 0) | (done < end)
            if bool(alive.any()):
                yield Frame(codes.clamp(max=c.codebook_size - 1), alive, done)
            elif bool((end >= 0).all()):
                return


def mask_eos(logits: Tensor, steps: Tensor, min_frames: int | Tensor, eos_id: int) -> None:
    """EOS is codebook 0's decision alone, allowed from ``min_frames`` on: ``logits`` ``[B, n_q, V]`` of rows at
    decoder step ``steps`` ``LongTensor[B]`` get EOS masked in place where it is not allowed."""
    n_q = logits.shape[1]
    eos_ok = torch.zeros(logits.shape[0], n_q, dtype=torch.bool, device=logits.device)
    eos_ok[:, 0] = steps >= min_frames
    logits[..., eos_id] = logits[..., eos_id].masked_fill(~eos_ok, float("-inf"))


def delay_step(tok: Tensor, steps: Tensor, end: Tensor, max_frames: int | Tensor, c) -> tuple[Tensor, Tensor]:
    """Keep the delay pattern on the tokens ``tok`` ``[B, n_q]`` sampled at decoder step ``steps`` ``LongTensor[B]``:
    EOS forced at ``max_frames``; PAD before a codebook starts; EOS at the end frame, PAD after it; PAD throughout
    on the codebooks past ``c.spoken_q``. ``end``
    ``LongTensor[B]``: the frame at which each row's EOS fell (-1: not yet). Returns the tokens to feed back and the
    updated ``end``."""
    B, n_q = tok.shape
    tok = tok.clone()
    tok[:, 0] = torch.where(steps == max_frames, torch.full_like(steps, c.eos_id), tok[:, 0])
    new_end = (end < 0) & (tok[:, 0] == c.eos_id)
    end = torch.where(new_end, steps, end)
    f = steps.view(B, 1) - torch.arange(n_q, device=tok.device).view(1, n_q)  # the frame each codebook writes
    e = end.view(B, 1).expand(B, n_q)
    tok = torch.where(f < 0, torch.full_like(tok, c.pad_id), tok)
    tok = torch.where((e >= 0) & (f == e), torch.full_like(tok, c.eos_id), tok)
    tok = torch.where((e >= 0) & (f > e), torch.full_like(tok, c.pad_id), tok)
    tok[:, c.spoken_q:] = c.pad_id  # codebooks the decoder does not speak (S2SConfig.speak_q)
    return tok, end


@dataclass
class Generated:
    """Generated answers: ``codes[i]`` ``LongTensor[spoken_q, F_i]``, ``ended[i]`` True when item ``i`` stopped at EOS
    (False: cut at ``max_frames``)."""

    codes: list[Tensor]
    ended: list[bool]


def generate(model: S2SModel, src: Tensor, speaker=None, emotion=None, sampling: SamplingConfig | None = None,
             src_lengths: Tensor | None = None) -> Generated:
    """All frames of the answers to ``src: LongTensor[B, n_q, S]`` (arguments as :func:`generate_frames`)."""
    cfg = _resolved(sampling, model.config.max_frames)
    B = src.shape[0]
    frames: list[list[Tensor]] = [[] for _ in range(B)]
    for fr in generate_frames(model, src, speaker, emotion, cfg, src_lengths):
        for i in torch.nonzero(fr.alive).view(-1).tolist():
            frames[i].append(fr.codes[i])
    n_q = model.config.spoken_q
    codes = [torch.stack(f, dim=-1).cpu() if f else torch.zeros(n_q, 0, dtype=torch.long) for f in frames]
    return Generated(codes, [c.shape[-1] < cfg.max_frames for c in codes])


def generate_streaming(model: S2SModel, codec, src: Tensor, speaker: str | None = None, emotion: str | None = None,
                       sampling: SamplingConfig | None = None, chunk_frames: int = 1) -> Iterator[np.ndarray]:
    """Speak the answer to one input (``src: LongTensor[1, n_q, S]``) as audio chunks ``float32[n]`` at
    ``codec.sample_rate``, each yielded as soon as ``chunk_frames`` new frames are decoded by the codec's streaming
    decoder (the last chunk also carries the decoder's tail). Concatenated, they equal
    ``codec.decode(generate(...).codes[0])``.
    """
    if src.shape[0] != 1:
        raise ValueError(f"generate_streaming speaks one answer at a time; got a batch of {src.shape[0]}")
    if not hasattr(codec, "streaming_decoder"):
        raise TypeError(f"{type(codec).__name__} has no streaming decoder; use generate() and codec.decode(), or the "
                        "course codec (s2slib.codec)")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    decoder = codec.streaming_decoder(batch_size=1)
    pending: list[Tensor] = []
    for fr in generate_frames(model, src, speaker, emotion, sampling):
        if not bool(fr.alive[0]):
            break
        pending.append(fr.codes[0])
        if len(pending) == chunk_frames:
            wav = decoder.push(torch.stack(pending, dim=-1).unsqueeze(0))  # (1, C, chunk_frames * hop)
            pending = []
            if wav.shape[-1]:
                yield wav.view(-1).float().cpu().numpy()
    tail = [decoder.push(torch.stack(pending, dim=-1).unsqueeze(0))] if pending else []
    tail.append(decoder.flush())
    wav = torch.cat(tail, dim=-1).view(-1).float().cpu().numpy()
    if wav.size:
        yield wav
