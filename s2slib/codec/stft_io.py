"""STFT in, inverse STFT out: how the ``stft`` codec family (codec v2) reaches the frame rate in one step.

The seed design gets from 16 kHz to its frame rate with a stack of strided convolutions, and back with a mirrored
stack of upsamplers; those layers run at 16 kHz and 8 kHz and dominate its cost, and the upsamplers are where its
comb artefact comes from. Here one short-time Fourier transform takes the waveform straight to frames, and the
decoder predicts each frame's spectrum, which an inverse FFT and overlap-add turn back into samples (Vocos, Siuzdak
2023, "Vocos: Closing the gap between time-domain and Fourier-based neural vocoders"; WavTokenizer, Ji et al. 2024).

Framing (``hop`` samples per frame, window ``n_fft``, a multiple of ``hop``): frame ``t`` covers samples
``[(t + 1) * hop - n_fft, (t + 1) * hop)``, the ``n_fft`` samples that end with its own hop, so the front end is
causal (it pads ``n_fft - hop`` zeros on the left). The head synthesizes each frame over the same span with a
periodic Hann window, whose copies spaced ``hop`` apart sum to ``n_fft / (2 hop)``.

Latency: after frame ``t`` is decoded, the samples before ``(t + 1) * hop - n_fft + hop`` are final; the later ones
still wait for the overlapping windows of frames ``t + 1 .. t + n_fft/hop - 1``. So a sample is reconstructed
``n_fft`` samples after the start of its frame at worst: one frame plus ``n_fft - hop`` of overlap-add lookahead
(40 ms for hop 320, window 640 at 16 kHz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from s2slib.codec.config import MAX_PHASE_ROTATION, PHASE_MODES, SYNTHESIS_WINDOWS
from s2slib.codec import peak_phase
from s2slib.codec.layers import Streamable
from s2slib.codec.pitch import F0_MIN_HZ, causal_frames, f0_from_logit, frame_spectrum

MAG_EPS = 1e-5  # floor of the magnitude before its log in the front end
MAX_LOG_MAG = 7.0  # the head's log-magnitude is clamped here (e^7 ~ 1100, far above any speech frame)
ROTATION_PERIOD = 4096  # frames in the per-frame rotation's pattern (82 s at 50 frames/s)
ROTATION_SEED = 50  # its generator's seed


def _check_framing(hop: int, n_fft: int) -> None:
    if hop <= 0 or n_fft < hop or n_fft % hop:
        raise ValueError(f"the STFT window ({n_fft}) must be a positive multiple of the hop ({hop}).")


def synthesis_window(hop: int, n_fft: int, kind: str = "hann") -> Tensor:
    """The window :class:`ISTFTHead` multiplies each inverse-FFT frame by before overlap-adding them, ``Tensor[n_fft]``.

    - ``hann``: a periodic Hann window scaled by ``2 hop / n_fft``, whose copies ``hop`` apart sum to 1. A clip's
      own spectrum (already Hann-windowed by the front end) then comes back windowed twice: at hop ``n_fft / 2`` its
      level swings between 0.71 and 1 once per hop.
    - ``wola``: Hann divided by the sum of the squared Hann windows that overlap each sample (weighted overlap-add,
      as :func:`torch.istft` normalises), so a clip's own spectrum comes back exactly: the head's target in its own
      frames is then simply the front end's spectrum of the clip.
    """
    hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    if kind == "hann":
        return (hann * (2 * hop / n_fft)).float()
    if kind != "wola":
        raise ValueError(f"synthesis must be one of {SYNTHESIS_WINDOWS}, got {kind!r}.")
    overlap = sum(torch.roll(hann ** 2, shift) for shift in range(0, n_fft, hop))  # periodic with period hop
    return (hann / overlap).float()


class CausalSTFT(Streamable):
    """Waveform to per-frame spectral features, causally.

    For each frame, the ``n_fft`` samples ending with its hop are windowed (periodic Hann) and transformed
    (``rfft``, orthonormal scaling); the features are the log magnitude and the real and imaginary parts compressed
    to magnitude^0.3 (a power-law compression keeps loud and quiet frames in one range while the phase stays in the
    sign pattern), ``3 * (n_fft // 2 + 1)`` channels.

    Shapes: ``wav: Tensor[B, 1, T]`` (``T`` a multiple of ``hop``) -> ``Tensor[B, 3 * (n_fft // 2 + 1), T // hop]``.
    Streaming state: the ``n_fft - hop`` most recent samples plus any partial frame.
    """

    def __init__(self, hop: int, n_fft: int):
        super().__init__()
        _check_framing(hop, n_fft)
        self.hop, self.n_fft = hop, n_fft
        self.n_bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @property
    def out_channels(self) -> int:
        return 3 * self.n_bins

    def _features(self, frames: Tensor) -> Tensor:
        """``frames: Tensor[B, F, n_fft]`` -> ``Tensor[B, 3 * n_bins, F]``."""
        spec = frame_spectrum(frames.float(), self.window)  # (B, F, n_bins) complex
        mag = spec.abs()
        compress = (mag + MAG_EPS).pow(-0.7)  # real and imaginary parts scaled to |X|^0.3
        feats = torch.cat([(mag + MAG_EPS).log(), spec.real * compress, spec.imag * compress], dim=-1)  # (B, F, 3K)
        return feats.transpose(1, 2).to(frames.dtype)  # (B, 3K, F)

    def forward(self, wav: Tensor) -> Tensor:
        return self._features(causal_frames(wav[:, 0], self.hop, self.n_fft))  # frames (B, T // hop, n_fft)

    def initial_state(self, batch_size, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.n_fft - self.hop, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        buf = torch.cat([state, x[:, 0]], dim=-1)  # (B, n_fft - hop + pending + t)
        n_frames = (buf.shape[-1] - (self.n_fft - self.hop)) // self.hop
        if n_frames <= 0:
            return buf.new_zeros(buf.shape[0], self.out_channels, 0), buf
        frames = buf[:, : self.n_fft - self.hop + n_frames * self.hop].unfold(-1, self.n_fft, self.hop)
        return self._features(frames), buf[:, n_frames * self.hop:]


class ISTFTHead(Streamable):
    """Per-frame log magnitude and phase to a waveform, by inverse FFT and overlap-add.

    The input holds, for each frame, ``n_bins`` log magnitudes then what the ``phase`` mode makes the phases from
    (:meth:`_phase`): ``n_bins`` phases (``absolute``) or offsets (``centred``), deviations and offsets
    (``integrated``, ``2 n_bins``), offsets, an F0 and a voicing (``pitch``, ``n_bins + 2``), nothing (``peaks``:
    the phase is made from the magnitudes, :mod:`s2slib.codec.peak_phase`) or offsets on that (``peaks_offset``);
    ``in_channels`` counts them. Phases are radians in any range: only ``cos`` and ``sin`` of them are used, so the
    network never has to wrap angles, as in Vocos. ``sample_rate`` serves the pitch mode (harmonics in Hz). The spectrum
    ``exp(log_mag) * (cos(phase) + i sin(phase))`` is inverted with an orthonormal ``irfft``, multiplied by the
    ``synthesis`` window (:func:`synthesis_window`: Hann scaled to sum to 1, or ``wola``, which gives back a clip
    from its own spectrum exactly) and overlap-added at ``hop``.

    ``rotation`` (radians, 0 to pi; 0: off) turns every bin of frame ``t`` by the same angle, ``rotation`` times a
    fixed pseudo-random pattern in ``[-1, 1)`` (:data:`ROTATION_PERIOD` entries, seeded). A head whose phase changes
    little from frame to frame repeats nearly the same waveform every hop, a tone at each multiple of the frame
    rate (the comb); a rotation per frame breaks that repetition and keeps the phase's shape within each frame
    (``python experiments/codec_phase_oracle.py``: with exact magnitudes, a standing phase's comb ratio falls from
    5.0 to 1.04 with STOI 0.744 -> 0.751, and the clip's own phase keeps STOI 0.935 of 0.970).

    Shapes: ``x: Tensor[B, in_channels, F]`` -> ``wav: Tensor[B, 1, F * hop]``, aligned with the input audio: sample
    ``s`` reconstructs input sample ``s``. The last ``n_fft - hop`` samples of an offline decode lack the windows
    of frames that do not exist (in streaming they come from :meth:`finish`).

    Streaming: :meth:`step` returns only samples no later frame will add to; its state is the pending overlap-add
    tail, how many samples before the start of the signal are still to be dropped, the frames decoded and the
    summed phase of the integrated and pitch modes (for the peak modes, each bin's running phase and last peak
    frequency).
    """

    def __init__(self, hop: int, n_fft: int, phase: str = "absolute", sample_rate: int = 16000,
                 rotation: float = 0.0, synthesis: str = "hann"):
        super().__init__()
        _check_framing(hop, n_fft)
        if phase not in PHASE_MODES:
            raise ValueError(f"phase must be one of {PHASE_MODES}, got {phase!r}.")
        if not 0.0 <= rotation <= MAX_PHASE_ROTATION:
            raise ValueError(f"rotation must be between 0 and pi radians, got {rotation}.")
        self.hop, self.n_fft, self.phase, self.sample_rate, self.synthesis = hop, n_fft, phase, sample_rate, synthesis
        self.rotation = rotation
        # the per-frame rotation's pattern: ROTATION_PERIOD fixed draws, uniform in [-1, 1), from a seeded generator
        # (the same on every machine; frame t uses entry t mod ROTATION_PERIOD, so streaming and offline agree)
        pattern = torch.rand(ROTATION_PERIOD, generator=torch.Generator().manual_seed(ROTATION_SEED),
                             dtype=torch.float64) * 2 - 1
        self.register_buffer("rotation_pattern", pattern, persistent=False)
        self.n_bins = n_fft // 2 + 1
        # centre frequency of each bin in Hz (the pitch mode finds each bin's nearest harmonic from it)
        self.register_buffer("bin_hz", torch.arange(self.n_bins, dtype=torch.float64) * sample_rate / n_fft,
                             persistent=False)
        self.register_buffer("window", synthesis_window(hop, n_fft, synthesis), persistent=False)
        # phase advance of each bin's centre frequency over one hop: 2 pi k hop / n_fft (an integer multiple of pi
        # for hop = n_fft / 2, so it is exact however many frames pass)
        self.register_buffer("bin_advance", 2 * torch.pi * torch.arange(self.n_bins, dtype=torch.float64) * hop / n_fft,
                             persistent=False)

    @property
    def in_channels(self) -> int:
        if self.phase == "pitch":
            return 2 * self.n_bins + 2  # log magnitudes, phase offsets, F0, voicing
        if self.phase == "peaks":
            return self.n_bins  # log magnitudes only: the phase is made from them
        if self.phase == "peaks_offset":
            return 2 * self.n_bins  # log magnitudes and an offset per bin on the phase made from them
        return (3 if self.phase == "integrated" else 2) * self.n_bins

    def pitch_logits(self, x: Tensor) -> Tensor | None:
        """The F0 and voicing channels of the head's input ``x: Tensor[B, in_channels, F]``, ``Tensor[B, 2, F]``
        (see :func:`f0_from_logit`; voicing is a logit), or None for the other phase modes."""
        return x[:, 2 * self.n_bins:] if self.phase == "pitch" else None

    def phases(self, x: Tensor) -> Tensor:
        """The phases ``Tensor[B, K, F]`` (radians, any range) that :meth:`forward` gives frames ``0 .. F - 1`` of
        the head's input ``x: Tensor[B, in_channels, F]``; what :func:`s2slib.codec.losses.phase_advance_loss`
        compares with the measured phase advance."""
        return self._rotate(self._phase(x.float(), 0, None)[0], 0)

    def _rotate(self, phase: Tensor, start: int) -> Tensor:
        """Add frame ``t``'s rotation (``rotation`` radians times its pattern entry, the same in every bin) to
        ``phase: Tensor[B, K, F]`` of frames ``start .. start + F - 1``; unchanged when ``rotation`` is 0."""
        if not self.rotation:
            return phase
        idx = torch.arange(start, start + phase.shape[-1], device=phase.device) % ROTATION_PERIOD
        return phase + (self.rotation * self.rotation_pattern[idx]).to(phase.dtype)

    def _centre(self, start: int, n: int, device: torch.device) -> Tensor:
        """Each bin's centre-frequency phase at frames ``start .. start + n - 1``, wrapped: ``Tensor[K, n]`` float64."""
        frames = torch.arange(start, start + n, device=device, dtype=torch.float64)
        return torch.remainder(self.bin_advance[:, None] * frames[None, :], 2 * torch.pi)

    def _phase(self, x: Tensor, start: int, carried: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Phases ``Tensor[B, K, F]`` of frames ``start .. start + F - 1`` and the integrated phase to carry on
        (``carried`` unchanged for absolute and centred phase; for the peak modes, the state of
        :func:`s2slib.codec.peak_phase.peak_locked_phase`).

        - ``absolute``: the prediction is the phase (Vocos).
        - ``centred``: the prediction is an offset from the phase a steady tone at the bin's centre frequency has at
          that frame. With hop ``n_fft / 2`` that centre phase turns by ``pi k`` per hop, so an offset that changes
          slowly is right for every bin; an absolute phase that changes slowly is right only for the even bins
          (multiples of ``2 sr / n_fft``: 50 Hz for codec v2), and the odd bins' overlapping frames cancel.
        - ``integrated``: the prediction is each bin's deviation from its centre frequency, summed over frames, plus
          an offset.
        - ``peaks``: no prediction; each bin takes the running phase of its nearest spectral peak in the predicted
          magnitudes (:mod:`s2slib.codec.peak_phase`). ``peaks_offset``: that phase plus a predicted offset per bin.
        - ``pitch``: the prediction is an F0, a voicing and an offset per bin. In a voiced frame each bin turns at
          the frequency of the harmonic of F0 nearest to its centre (``h * F0``, ``h = max(1, round(f_k / F0))``),
          in an unvoiced one at its centre frequency, blended by the voicing probability; the turns are summed over
          frames and the offset added. F0 and voicing reach the phase detached: they learn from the measured pitch
          (:func:`s2slib.codec.pitch.pitch_loss`), whose loss is smooth, not from the waveform losses, whose
          dependence on F0 through the phase oscillates."""
        if self.phase == "absolute":
            return x[:, self.n_bins:], carried
        if self.phase in ("peaks", "peaks_offset"):
            phase, carry = peak_phase.peak_locked_phase(x[:, : self.n_bins].clamp(max=MAX_LOG_MAG), self.hop,
                                                        self.n_fft, carried)
            return (phase + x[:, self.n_bins:] if self.phase == "peaks_offset" else phase), carry
        if self.phase == "centred":
            centre = self._centre(start, x.shape[-1], x.device)  # (K, F)
            return (x[:, self.n_bins:].double() + centre[None]).float(), carried
        if self.phase == "pitch":
            offset, logits = x[:, self.n_bins: 2 * self.n_bins], x[:, 2 * self.n_bins:].detach().double()
            # F0 on a grid of 1 cent, so that float noise between offline and streaming runs (1e-6) does not pick a
            # different harmonic number for a bin now and then: the grid point is the same unless the noise
            # crosses its edge
            cents = torch.round(1200 * torch.log2(f0_from_logit(logits[:, :1]) / F0_MIN_HZ))
            f0 = F0_MIN_HZ * torch.exp2(cents / 1200)  # (B, 1, F) Hz
            voicing = torch.sigmoid(logits[:, 1:])  # (B, 1, F)
            bin_hz = self.bin_hz[None, :, None]  # (1, K, 1)
            harmonic = torch.round(bin_hz / f0).clamp_min(1) * f0  # (B, K, F) Hz
            # the turn per hop as the bin centre's (exact, from _centre) plus the deviation from it, so that the
            # float noise in F0 scales a deviation of at most F0 / 2, not a frequency of up to 8 kHz
            deviation = 2 * torch.pi * self.hop / self.sample_rate * voicing * (harmonic - bin_hz)  # (B, K, F)
        else:  # integrated: the deviation is predicted
            deviation, offset = x[:, self.n_bins: 2 * self.n_bins].double(), x[:, 2 * self.n_bins:]  # (B, K, F) each
        # sum the deviations from each bin's centre frequency over frames, in float64 and wrapped, so offline and
        # streaming sums agree to ~1e-12 rad whatever the chunking; then add the centre's own (exact) phase
        total = torch.cumsum(deviation, dim=-1)  # (B, K, F)
        if carried is not None:
            total = total + carried[..., None]
        total = torch.remainder(total, 2 * torch.pi)
        centre = self._centre(start, x.shape[-1], x.device)  # (K, F)
        return (total + centre[None] + offset.double()).float(), total[..., -1]

    def _frames(self, x: Tensor, start: int = 0, carried: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``x: Tensor[B, in_channels, F]`` -> windowed time frames ``Tensor[B, n_fft, F]`` and the carried phase."""
        x = x.float()
        log_mag = x[:, : self.n_bins]  # (B, K, F)
        phase, carry = self._phase(x, start, carried)  # (B, K, F)
        phase = self._rotate(phase, start)
        mag = log_mag.clamp(max=MAX_LOG_MAG).exp()
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))  # (B, K, F)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="ortho")  # (B, n_fft, F)
        return frames * self.window[None, :, None], carry

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """``frames: Tensor[B, n_fft, F]`` -> ``Tensor[B, (F - 1) * hop + n_fft]`` summed at hop spacing."""
        n = frames.shape[-1]
        length = (n - 1) * self.hop + self.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return out[:, 0, 0]  # (B, length)

    def forward(self, x: Tensor) -> Tensor:
        frames, _ = self._frames(x)
        y = self._overlap_add(frames)  # (B, n * hop + n_fft - hop), starting n_fft - hop before sample 0
        return y[:, None, self.n_fft - self.hop:].to(x.dtype)  # (B, 1, n * hop)

    def initial_state(self, batch_size, device=None, dtype=None) -> tuple:
        tail = torch.zeros(batch_size, self.n_fft - self.hop, device=device, dtype=dtype)
        if self.phase in ("peaks", "peaks_offset"):
            phase = peak_phase.initial_state(batch_size, self.n_bins, device)
        else:
            phase = torch.zeros(batch_size, self.n_bins, device=device, dtype=torch.float64)
        # (overlap-add tail, samples before the signal still to drop, frames decoded, integrated phase)
        return tail, self.n_fft - self.hop, 0, phase

    def step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        tail, to_drop, done_frames, phase = state
        n = x.shape[-1]
        if n == 0:
            return tail.new_zeros(tail.shape[0], 1, 0), state
        frames, carry = self._frames(x, done_frames, phase)
        y = self._overlap_add(frames).to(tail.dtype)  # (B, n * hop + n_fft - hop)
        y = torch.cat([y[:, : tail.shape[-1]] + tail, y[:, tail.shape[-1]:]], dim=-1)  # add what earlier frames left
        done, tail = y[:, : n * self.hop], y[:, n * self.hop:]  # final samples; the rest awaits later frames
        drop = min(to_drop, done.shape[-1])
        return done[:, None, drop:], (tail, to_drop - drop, done_frames + n, carry)

    def finish(self, state: tuple) -> Tensor:
        """The samples still pending at the end of a stream, as an offline decode ends: ``Tensor[B, 1, n_fft - hop]``
        (fewer if the stream was shorter than the overlap)."""
        tail, to_drop = state[0], state[1]
        return tail[:, None, to_drop:]
