"""Codec v2's own decoded magnitudes under other phases: what its phase costs, heard and measured.

Codec v2's decoder predicts, for every 20 ms frame, a log magnitude per STFT bin and (in its default ``absolute``
mode) a phase; its inverse-STFT head turns both into samples. Keeping the decoded magnitudes and swapping the phase
separates the two halves of what the codec gets wrong:

- ``own``: what the codec outputs;
- ``turned per frame``: its own phase with every bin of frame ``t`` turned by one pseudo-random angle per frame
  (``ISTFTHead(rotation=pi)``): the 50 Hz comb of a phase that stands still goes, the shape within each frame stays;
- ``peak-locked``: a phase made from its magnitudes alone (:mod:`s2slib.codec.peak_phase`);
- ``random``: a random phase in every bin and frame (no phase model at all);
- ``exact``: the clip's own STFT phase in the codec's frames. Not a codec (the decoder never has it): the oracle
  that shows how good the decoded magnitudes are.

If ``exact`` is far above ``own``, the phase is what holds the codec back; if ``exact`` itself is low, the
magnitudes are. Used by notebook 02 and ``experiments/codec_phase_swap.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from s2slib.codec.model import Codec, FrameDecoder
from s2slib.codec.pitch import causal_spectrum
from s2slib.codec.stft_io import ISTFTHead

REPHASINGS = {  # name -> what it is
    "own": "what codec v2 outputs: its magnitudes and its phase",
    "turned per frame": "its phase, every bin of a frame turned by one pseudo-random angle (rotation pi)",
    "peak-locked": "its magnitudes, a phase made from them (each spectral peak carried on at its frequency)",
    "random": "its magnitudes, a random phase in every bin and frame",
    "exact": "its magnitudes, the clip's own phase (an oracle: the decoder never has it)",
}


@torch.inference_mode()
def rephased(codec: Codec, wav: np.ndarray, n_q: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Every phase of :data:`REPHASINGS` under ``codec``'s decoded magnitudes of ``wav`` (mono float32 ``(T,)`` at
    the codec's rate): ``{name: (T,) float32}``, bounded to [-1, 1] as :meth:`Codec.decode` bounds its output.

    ``n_q``: quantizer levels (default: all). Only codec v2 (the ``stft`` architecture) has an iSTFT head; the
    seed design is a clear error."""
    if not isinstance(codec.decoder, FrameDecoder):
        raise ValueError("rephased needs codec v2 (architecture 'stft', an iSTFT head); this codec has architecture "
                         f"{codec.config.architecture!r}.")
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"wav must be a non-empty mono waveform (T,), got shape {wav.shape}.")
    param = next(codec.parameters())
    x = torch.from_numpy(wav).to(param.device).view(1, 1, -1)
    _, head_input = codec.decoder.forward_with_head(codec.dequantize(codec.encode(x, n_q)))
    head = codec.decoder.head
    hop, n_fft, bins = head.hop, head.n_fft, head.n_bins
    log_mag = head_input[:, :bins].float()  # (1, K, F)
    exact = torch.angle(causal_spectrum(codec._pad(x)[:, 0].float(), hop, n_fft)).transpose(1, 2)  # (1, K, F)
    generator = torch.Generator().manual_seed(seed)
    random = (torch.rand(log_mag.shape, generator=generator) * 2 * math.pi).to(log_mag.device)

    def build(phase: str, rotation: float = 0.0) -> ISTFTHead:
        return ISTFTHead(hop, n_fft, phase, head.sample_rate, rotation, head.synthesis).to(log_mag.device)

    given = build("absolute")  # we hand it the phases
    outs = {"own": head(head_input), "turned per frame": build(head.phase, math.pi)(head_input),
            "peak-locked": build("peaks")(log_mag), "random": given(torch.cat([log_mag, random], 1)),
            "exact": given(torch.cat([log_mag, exact], 1))}
    return {name: out[0, 0, : wav.size].clamp(-1.0, 1.0).cpu().numpy() for name, out in outs.items()}
