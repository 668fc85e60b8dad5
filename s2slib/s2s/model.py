"""The speech-to-speech transformer (the seed design): speech tokens in, speech tokens out, no text in between.

::

    input speech codes (B, n_q, S) --sum of codebook embeddings--> Conformer encoder --> memory (B, 1 + S, d)
                                                                                          |  cross-attention
    BOS + delayed output codes (B, n_q, L) --sum of embeddings + speaker + emotion--> causal decoder (RoPE, KV cache)
        --> one linear head per codebook --> logits (B, n_q, L, codebook_size + 1)

- The codebooks of a frame are embedded separately and **summed** into one vector per step; the decoder predicts all
  of them at each step through the delay pattern (:mod:`s2slib.s2s.delay`), so one second of speech at 50 frames/s
  costs 50 decoder steps.
- The encoder reads a learned start frame before the input, so it always has something to attend to (an empty
  prompt is allowed: the decoder then speaks unprompted).
- **How the encoder hears** (``S2SConfig.latent_dim`` > 0, what :meth:`S2SConfig.for_codec` sets up): each code
  frame enters as the codec's own latent vector, normalised per turn (:mod:`s2slib.s2s.frontend`), not as a learned
  embedding of code ids, so a question sounds alike in voices the model never heard. The decoder, which must write
  exact codes, keeps learned embeddings.
- **Conditioning**: a speaker embedding (row 0 = any voice other than the agent's four) and an emotion embedding
  (row 0 = not given) are added to every decoder input step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2slib.s2s.config import S2SConfig
from s2slib.s2s.delay import IGNORE
from s2slib.s2s.frontend import LatentInput
from s2slib.s2s.layers import ConformerBlock, DecoderBlock, KVCache, RotaryEmbedding


class CodebookEmbedding(nn.Module):
    """Embeds ``ids: LongTensor[B, n_q, T]`` (one table per codebook, ``vocab`` ids each) and sums over codebooks
    -> ``Tensor[B, T, d]``. One table of ``n_q * vocab`` rows with per-codebook offsets: a single lookup."""

    def __init__(self, n_q: int, vocab: int, d_model: int):
        super().__init__()
        self.table = nn.Embedding(n_q * vocab, d_model)
        nn.init.normal_(self.table.weight, std=d_model ** -0.5)
        self.register_buffer("offsets", torch.arange(n_q).view(1, n_q, 1) * vocab, persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        return self.table(ids + self.offsets).sum(dim=1)  # (B, n_q, T, d) -> (B, T, d)


@dataclass
class DecoderState:
    """What incremental decoding carries between steps: the encoder's cross-attention keys/values per layer, the
    memory mask, the self-attention caches and the conditioning vector."""

    memory_kv: list[tuple[Tensor, Tensor]]
    memory_mask: Tensor  # (B, 1, 1, S)
    caches: list[KVCache]
    condition: Tensor  # (B, 1, d)

    @property
    def steps(self) -> int:
        """Decoder steps taken so far."""
        return self.caches[0].length


class S2SModel(nn.Module):
    """Encoder-decoder over codec tokens; see the module docstring. ``config`` is stored as ``model.config``."""

    def __init__(self, config: S2SConfig):
        super().__init__()
        self.config = c = config
        self.rope = RotaryEmbedding(c.head_dim, c.rope_base)
        self.src_embed = CodebookEmbedding(c.n_q, c.input_vocab, c.d_model)
        # the codec's latent for code frames (s2slib.s2s.frontend); src_embed then serves start and separator frames
        self.latent_input = LatentInput(c.n_q, c.codebook_size, c.latent_dim, c.d_model) if c.latent_dim else None
        self.tgt_embed = CodebookEmbedding(c.n_q, c.input_vocab, c.d_model)
        self.speaker = nn.Embedding(len(c.speakers) + 1, c.d_model)
        self.emotion = nn.Embedding(len(c.emotions) + 1, c.d_model)
        for table in (self.speaker, self.emotion):
            nn.init.normal_(table.weight, std=c.d_model ** -0.5)
        self.encoder = nn.ModuleList(ConformerBlock(c.d_model, c.n_heads, c.ff_mult, c.conv_kernel, c.dropout, self.rope)
                                     for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(c.d_model, c.n_heads, c.ff_mult, c.dropout, self.rope)
                                     for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_q * c.output_vocab)
        # the auxiliary transcription head (s2slib.s2s.transcript): characters of the user's turn from the encoder
        self.transcriber = nn.Linear(c.d_model, c.text_vocab) if c.text_vocab else None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_codec_latent(self, table) -> None:
        """Give the encoder the codec's codebook vectors ``[n_q, codebook_size, latent_dim]``
        (:func:`s2slib.s2s.frontend.codec_latent_table`, :meth:`s2slib.s2s.tokens.TokenCache.latent_table`); a model
        with ``latent_dim`` 0 has no use for them."""
        if self.latent_input is None:
            raise ValueError("this model reads learned code embeddings (S2SConfig.latent_dim is 0); it has no codec "
                             "latent to set")
        self.latent_input.set_table(table)

    # ------------------------------------------------------------------ encoder
    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``src: LongTensor[B, n_q, S]`` codes (``S`` may be 0), ``src_lengths: LongTensor[B]`` (default: all ``S``)
        -> ``memory: Tensor[B, 1 + S, d]`` and ``keep: BoolTensor[B, 1 + S]`` (True on the start frame and real
        frames)."""
        B, n_q, S = src.shape
        if n_q != self.config.n_q:
            raise ValueError(f"the model reads {self.config.n_q} codebooks per frame, got codes with {n_q}")
        start = torch.full((B, n_q, 1), self.config.bos_id, dtype=src.dtype, device=src.device)
        ids = torch.cat([start, src], dim=-1)
        x = self.src_embed(ids)  # (B, 1 + S, d)
        lengths = torch.full((B,), S, device=src.device) if src_lengths is None else src_lengths.to(src.device)
        keep = torch.arange(S + 1, device=src.device).view(1, -1) <= lengths.view(-1, 1)  # (B, 1 + S)
        if self.latent_input is not None:
            heard, is_code = self.latent_input(ids, keep)
            x = torch.where(is_code.unsqueeze(-1), heard, x)
        for block in self.encoder:
            x = block(x, keep)
        return x, keep

    def transcribe(self, memory: Tensor, keep: Tensor, user_lengths: Tensor) -> Tensor:
        """Character log-probabilities over the last ``user_lengths[b]`` real frames of each row of ``memory`` (the
        user's turn, which :func:`s2slib.s2s.context.source_codes` puts last) -> ``Tensor[B, max(user_lengths),
        text_vocab]`` (float32; rows past their length repeat the last frame and are ignored by CTC)."""
        if self.transcriber is None:
            raise RuntimeError("this model has no transcription head (S2SConfig.text_vocab is 0)")
        ends = keep.sum(dim=1)  # 1 + S_b: one past the last real frame
        user_lengths = user_lengths.to(memory.device)
        U = max(int(user_lengths.max()), 1)
        idx = (ends - user_lengths).view(-1, 1) + torch.arange(U, device=memory.device).view(1, -1)
        idx = idx.clamp(max=memory.shape[1] - 1)
        frames = memory.gather(1, idx.unsqueeze(-1).expand(-1, -1, memory.shape[-1]))  # (B, U, d)
        return F.log_softmax(self.transcriber(frames).float(), dim=-1)

    # ------------------------------------------------------------------ decoder
    def condition(self, speaker: Tensor, emotion: Tensor) -> Tensor:
        """``speaker, emotion: LongTensor[B]`` (rows, see :meth:`S2SConfig.speaker_index`) -> ``Tensor[B, 1, d]``."""
        return (self.speaker(speaker) + self.emotion(emotion)).unsqueeze(1)

    def start(self, memory: Tensor, keep: Tensor, speaker: Tensor, emotion: Tensor,
              max_steps: int | None = None) -> DecoderState:
        """A fresh :class:`DecoderState` for incremental decoding after :meth:`encode` (caches of ``max_steps``,
        default ``config.max_frames + n_q``)."""
        c = self.config
        B = memory.shape[0]
        size = (max_steps or c.max_frames + c.n_q)
        caches = [KVCache(B, c.n_heads, size, c.head_dim, memory.device, memory.dtype) for _ in self.decoder]
        memory_kv = [block.cross_attn.project_kv(memory) for block in self.decoder]
        return DecoderState(memory_kv, keep[:, None, None, :], caches, self.condition(speaker, emotion))

    def decode(self, tgt_inputs: Tensor, memory: Tensor, keep: Tensor, speaker: Tensor, emotion: Tensor,
               codebooks: int | None = None) -> Tensor:
        """Teacher-forced decoder pass: ``tgt_inputs: LongTensor[B, n_q, L]`` (BOS + delayed streams, see
        :func:`s2slib.s2s.delay.decoder_inputs`) -> ``logits: Tensor[B, n_q, L, codebook_size + 1]`` (with
        ``codebooks``, only the first that many: see :meth:`_logits`)."""
        x = self.tgt_embed(tgt_inputs) + self.condition(speaker, emotion)  # (B, L, d)
        lengths = keep.sum(dim=1)  # (B,): the encoder frames each row has (real frames come first)
        for block in self.decoder:
            x = block(x, block.cross_attn.project_kv(memory), None, memory_lengths=lengths)
        return self._logits(x, codebooks)

    def step(self, tgt_inputs: Tensor, state: DecoderState) -> Tensor:
        """Incremental decoding: ``tgt_inputs: LongTensor[B, n_q, T]`` (the ``T >= 1`` steps after those in
        ``state``) -> ``logits: Tensor[B, n_q, T, codebook_size + 1]``; the caches in ``state`` grow by ``T``."""
        x = self.tgt_embed(tgt_inputs) + state.condition  # (B, T, d)
        for block, kv, cache in zip(self.decoder, state.memory_kv, state.caches):
            x = block(x, kv, state.memory_mask, cache)
        return self._logits(x)

    def _logits(self, x: Tensor, codebooks: int | None = None) -> Tensor:
        """``x: Tensor[B, L, d]`` -> ``logits: Tensor[B, k, L, V]`` of the first ``k = codebooks`` codebooks (default
        all ``n_q``). A model that speaks fewer codebooks than it reads (``S2SConfig.speak_q``) has no targets past
        them: training asks for those it speaks and skips the rest of the output layer (at the laptop profile of
        notebook 06, 2 of 8: three quarters of the head's products and of the softmax)."""
        B, L, _ = x.shape
        k, V = self.config.n_q if codebooks is None else codebooks, self.config.output_vocab
        if not 1 <= k <= self.config.n_q:
            raise ValueError(f"codebooks must be 1..{self.config.n_q}, got {k}")
        h = self.decoder_norm(x)
        logits = self.head(h) if k == self.config.n_q else F.linear(h, self.head.weight[: k * V],
                                                                      self.head.bias[: k * V])  # (B, L, k * V)
        return logits.view(B, L, k, V).permute(0, 2, 1, 3)  # (B, k, L, V)

    def forward(self, src: Tensor, src_lengths: Tensor | None, tgt_inputs: Tensor, speaker: Tensor,
                emotion: Tensor, user_lengths: Tensor | None = None,
                codebooks: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Training pass: encoder then teacher-forced decoder -> ``logits: Tensor[B, n_q, L, codebook_size + 1]``
        (``codebooks``: only the first that many); with ``user_lengths`` (frames of the user's turn at the end of each
        source), also the transcription head's log-probabilities over them: ``(logits, text_log_probs)`` (see
        :meth:`transcribe`)."""
        memory, keep = self.encode(src, src_lengths)
        logits = self.decode(tgt_inputs, memory, keep, speaker, emotion, codebooks)
        if user_lengths is None:
            return logits
        return logits, self.transcribe(memory, keep, user_lengths)


def codebook_losses(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy per codebook over the steps that have a target.

    ``logits: Tensor[B, n_q, L, V]``, ``targets: LongTensor[B, n_q, L]`` (:data:`~s2slib.s2s.delay.IGNORE` where
    there is none) -> ``(loss_sum[n_q], correct[n_q], count[n_q])``: summed negative log-likelihood (nats), number of
    top-1 hits and number of targets, per codebook (sums, so batches and processes can be pooled exactly).
    """
    B, n_q, L, V = logits.shape
    # the head writes (B, L, n_q, V) and logits is a permuted view of it: flatten in that order, without a copy
    flat = logits.float().transpose(1, 2)  # (B, L, n_q, V)
    tgt = targets.transpose(1, 2)  # (B, L, n_q)
    nll = F.cross_entropy(flat.reshape(-1, V), tgt.reshape(-1), ignore_index=IGNORE, reduction="none")
    nll = nll.view(B, L, n_q)
    valid = tgt != IGNORE
    correct = (flat.detach().argmax(-1) == tgt) & valid
    return nll.sum(dim=(0, 1)), correct.sum(dim=(0, 1)), valid.sum(dim=(0, 1))


def transcription_loss(log_probs: Tensor, user_lengths: Tensor, text: Tensor, text_lengths: Tensor) -> Tensor:
    """CTC loss of the transcription head per target character: ``log_probs: Tensor[B, U, V]``
    (:meth:`S2SModel.transcribe`), ``text: LongTensor[B, L]`` character ids (:mod:`s2slib.s2s.transcript`), rows
    with ``text_lengths`` 0 left out. An alignment that cannot exist (more characters than frames) counts 0."""
    use = text_lengths > 0
    if not bool(use.any()):
        return log_probs.sum() * 0.0
    nll = F.ctc_loss(log_probs[use].transpose(0, 1), text[use], user_lengths[use].to(log_probs.device),
                     text_lengths[use], blank=0, reduction="none", zero_infinity=True)
    return nll.sum() / text_lengths[use].sum()
