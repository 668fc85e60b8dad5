"""Reconstruction losses of the codec: multi-scale mel, multi-resolution STFT and waveform L1, plus the adversarial
losses of notebook 03.

The spectra come from :mod:`s2slib.spectral` (the same front end :func:`s2slib.metrics.mel_distance` uses), and so
does the level-relative floor under their logarithms: by default bins 60 dB (mel) or 80 dB (STFT) below a clip's
loudest bin count as silence, so that digital silence in a clip does not own the gradient (see
:func:`s2slib.spectral.relative_floor`; ``floor_db=None`` gives the old absolute floor, for comparison).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2slib.codec.config import dataclass_from_dict
from s2slib.codec.pitch import causal_spectrum
from s2slib.spectral import (MEL_FLOOR, MEL_N_MELS, MEL_WINDOW_LENGTHS, STFT_FFT_SIZES, STFT_FLOOR,
                             MultiResolutionSTFT, MultiScaleMel, floored_pair, mono_batch, relative_floor)


def _check_pair(wav: Tensor, wav_hat: Tensor) -> tuple[Tensor, Tensor]:
    wav, wav_hat = mono_batch(wav), mono_batch(wav_hat)  # (B, T) each
    if wav.shape != wav_hat.shape:
        raise ValueError(
            f"reference and estimate must have the same shape, got {tuple(wav.shape)} and {tuple(wav_hat.shape)}; "
            "trim the longer one first."
        )
    return wav, wav_hat


def waveform_l1(wav: Tensor, wav_hat: Tensor) -> Tensor:
    """Mean absolute sample difference ``mean |wav - wav_hat|``; ``wav, wav_hat: Tensor[B, 1, T]`` -> scalar."""
    wav, wav_hat = _check_pair(wav, wav_hat)
    return F.l1_loss(wav_hat, wav)


class MultiScaleMelLoss(nn.Module):
    """L1 between log-mel spectrograms at several window sizes (DAC's mel reconstruction loss, Kumar et al. 2023).

    ``L = mean_s mean |log10 max(M_s(wav), f_s) - log10 max(M_s(wav_hat), f_s)|`` where ``M_s`` is the magnitude mel
    spectrogram of scale ``s`` (:class:`s2slib.spectral.MultiScaleMel`: Hann window ``s``, hop ``s / 4``) and
    ``f_s = max(floor, max M_s(wav) * 10^(-floor_db / 20))`` is the reference's level-relative floor, per example
    (:func:`s2slib.spectral.relative_floor`). ``floor_db=None`` gives DAC's absolute floor alone.

    Shapes: ``wav, wav_hat: Tensor[B, 1, T]`` (or ``(B, T)``) -> scalar.
    """

    def __init__(self, sample_rate: int, window_lengths=MEL_WINDOW_LENGTHS, n_mels=MEL_N_MELS, floor: float = MEL_FLOOR,
                 floor_db: float | None = 60.0):
        super().__init__()
        self.floor = floor
        self.floor_db = floor_db
        self.mel = MultiScaleMel(sample_rate, window_lengths, n_mels)

    def forward(self, wav: Tensor, wav_hat: Tensor) -> Tensor:
        wav, wav_hat = _check_pair(wav, wav_hat)  # (B, T) each
        with torch.autocast(device_type=wav.device.type, enabled=False):  # logs of small magnitudes need float32
            loss = wav.new_zeros(())
            for ref, est in zip(self.mel(wav), self.mel(wav_hat)):  # (B, n_mels, frames) each
                ref, est, _ = floored_pair(ref, est, self.floor, self.floor_db)
                loss = loss + F.l1_loss(est.log10(), ref.log10())
        return loss / len(self.mel.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1 at several FFT sizes (Yamamoto et al. 2020, Parallel WaveGAN).

    For each FFT size ``n`` (:class:`s2slib.spectral.MultiResolutionSTFT`: Hann window ``n``, hop ``n / 4``), with
    ``S`` and ``S_hat`` the STFT magnitudes raised to the reference's level-relative floor
    (``max(eps, max S * 10^(-floor_db / 20))`` per example, :func:`s2slib.spectral.relative_floor`)::

        spectral convergence = ||S - S_hat||_F / ||S||_F          (norms over the whole batch)
        log magnitude        = mean |log S - log S_hat|

    and the loss is the mean over sizes of their sum. Spectral convergence weighs the loud (harmonic) parts,
    the log term the quiet ones. Taking the norms over the batch, not per example, keeps one silent clip from
    dividing by (almost) zero. ``floor_db=None`` gives the absolute floor ``eps`` alone.

    Shapes: ``wav, wav_hat: Tensor[B, 1, T]`` (or ``(B, T)``) -> scalar.
    """

    def __init__(self, fft_sizes=STFT_FFT_SIZES, eps: float = STFT_FLOOR, floor_db: float | None = 80.0):
        super().__init__()
        self.eps = eps
        self.floor_db = floor_db
        self.stft = MultiResolutionSTFT(fft_sizes)

    @property
    def fft_sizes(self) -> tuple[int, ...]:
        return self.stft.fft_sizes

    def forward(self, wav: Tensor, wav_hat: Tensor) -> Tensor:
        wav, wav_hat = _check_pair(wav, wav_hat)  # (B, T) each
        with torch.autocast(device_type=wav.device.type, enabled=False):  # logs of small magnitudes need float32
            loss = wav.new_zeros(())
            for ref, est in zip(self.stft(wav), self.stft(wav_hat)):  # (B, n // 2 + 1, frames) each
                ref, est, _ = floored_pair(ref, est, self.eps, self.floor_db)
                sc = torch.linalg.vector_norm(ref - est) / torch.linalg.vector_norm(ref)
                loss = loss + sc + F.l1_loss(est.log(), ref.log())
        return loss / len(self.fft_sizes)


def _unit(spec: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Real and imaginary parts of ``spec / |spec|`` and ``|spec|``, for complex ``spec: Tensor[B, K, N]``; ``eps``
    (a magnitude, ``Tensor[B, 1, 1]``) keeps a silent bin at 0 instead of dividing by it. Real arithmetic: complex
    ``abs`` and products cost several times more on CPU, backward included."""
    re, im = spec.real, spec.imag
    mag = torch.sqrt(re * re + im * im + eps * eps)
    return re / mag, im / mag, mag


def _phase_mismatch(ref: tuple[Tensor, Tensor, Tensor], est: tuple[Tensor, Tensor], dim: int,
                    floor: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted ``1 - cos`` of the difference between the reference's and the estimate's phase steps along ``dim``
    (from one entry to the next), for spectra given as :func:`_unit` parts ``Tensor[B, K, N]``: returns the weighted
    sum and the sum of the weights (both scalars).

    A step is the angle of ``z[i] * conj(z[i - 1])``, so no angle is ever unwrapped. Each step is weighted by the
    reference's magnitude there (``sqrt`` of the product of the two magnitudes); steps whose weight is below
    ``floor`` (a magnitude, ``Tensor[B, 1, 1]``) get none."""
    n = ref[0].shape[dim]

    def step(re: Tensor, im: Tensor) -> tuple[Tensor, Tensor]:
        r1, i1, r0, i0 = re.narrow(dim, 1, n - 1), im.narrow(dim, 1, n - 1), re.narrow(dim, 0, n - 1), im.narrow(dim, 0, n - 1)
        return r1 * r0 + i1 * i0, i1 * r0 - r1 * i0  # z[i] * conj(z[i - 1]), for unit z

    ref_re, ref_im = step(ref[0], ref[1])
    est_re, est_im = step(est[0], est[1])
    weight = (ref[2].narrow(dim, 1, n - 1) * ref[2].narrow(dim, 0, n - 1)).sqrt()
    weight = weight * (weight > floor)  # 0 below the floor: the phase of near-silent bins is noise
    cos = est_re * ref_re + est_im * ref_im  # cos of the difference of the two steps' angles
    return (weight * (1 - cos)).sum(), weight.sum()


class PhaseDerivativeLoss(nn.Module):
    """How far the estimate's phase *changes* are from the reference's, at several FFT sizes.

    Magnitude losses (mel, STFT) leave the phase free, and a decoder that predicts the phase of each frame finds a
    cheap answer: a phase that hardly changes from frame to frame. That puts each bin's energy on the bin's centre
    frequency, a comb at multiples of ``sample_rate / n_fft`` instead of the speaker's harmonics (codec v2's 50 Hz
    comb). This loss compares the two derivatives of the phase that carry the signal's structure (APNet, Ai & Ling
    2023, uses the same two):

    - the **instantaneous frequency**: the phase step of each bin from one frame to the next. A harmonic at ``f``
      Hz turns by ``2 pi f hop / sample_rate`` per hop; a tone at the bin centre turns by a different amount.
    - the **group delay**: the phase step from one bin to the next within a frame, which places a pitch pulse or
      an onset in time.

    For each, ``sum w (1 - cos(step_est - step_ref)) / sum w``, with ``w`` the reference's magnitude there and
    ``w = 0`` for bins more than ``floor_db`` below the example's loudest (their phase is noise). The steps are
    read from products of neighbouring complex bins, so nothing is unwrapped. 0 for identical phase derivatives,
    about 1 for unrelated ones or a silent estimate, at most 2. The STFTs are those of :class:`s2slib.spectral.MultiResolutionSTFT`.

    Shapes: ``wav, wav_hat: Tensor[B, 1, T]`` (or ``(B, T)``) -> scalar, the mean of the two terms over the sizes.
    """

    def __init__(self, fft_sizes=(512, 1024), floor_db: float = 40.0):
        super().__init__()
        if not floor_db > 0:
            raise ValueError(f"PhaseDerivativeLoss.floor_db must be > 0 (bins that far below the peak carry no "
                             f"weight), got {floor_db}.")
        self.floor_db = floor_db
        self.stft = MultiResolutionSTFT(fft_sizes)

    def forward(self, wav: Tensor, wav_hat: Tensor) -> Tensor:
        wav, wav_hat = _check_pair(wav, wav_hat)  # (B, T) each
        with torch.autocast(device_type=wav.device.type, enabled=False):
            loss = wav.new_zeros(())
            for ref, est in zip(self.stft.spectra(wav), self.stft.spectra(wav_hat)):  # (B, K, N) complex each
                with torch.no_grad():
                    floor = relative_floor(ref.abs(), STFT_FLOOR, self.floor_db)  # (B, 1, 1)
                    eps = floor * 10 ** (-self.floor_db / 20)  # twice as far below the peak
                    ref_unit = _unit(ref, eps)
                est_unit = _unit(est, eps)[:2]
                for dim in (2, 1):  # instantaneous frequency (over frames), group delay (over bins)
                    total, weight = _phase_mismatch(ref_unit, est_unit, dim, floor)
                    loss = loss + total / weight.clamp_min(1e-12)
        return loss / (2 * len(self.stft.fft_sizes))


@dataclass
class ReconstructionLossConfig:
    """Weights and scales of :class:`ReconstructionLoss`; a weight of 0 skips that term.

    The mel weight of 15 is DAC's, which puts the quantizer's commitment loss (weight 0.25 inside ``vq_loss``) in
    the same proportion as in DAC's training. The ``*_floor_db`` settings put the floor under the logarithms that
    far below each clip's loudest bin (:func:`s2slib.spectral.relative_floor`); ``None`` or 0 keeps only the
    absolute floor, as before these keys existed. A dict saved before then loads with the defaults below (relative
    floors), not with the absolute floor it was trained with; set ``None`` explicitly to reproduce such a run.
    """

    mel_weight: float = 15.0  # multi-scale log-mel L1
    stft_weight: float = 1.0  # multi-resolution STFT (spectral convergence + log magnitude)
    l1_weight: float = 1.0  # waveform L1
    mel_window_lengths: tuple[int, ...] = MEL_WINDOW_LENGTHS  # samples
    mel_n_mels: tuple[int, ...] = MEL_N_MELS  # mel bands per window length
    mel_floor: float = MEL_FLOOR  # absolute magnitude floor before log10
    mel_floor_db: float | None = 60.0  # floor this far below the clip's loudest mel bin (None: absolute floor only)
    stft_fft_sizes: tuple[int, ...] = STFT_FFT_SIZES  # FFT sizes of the STFT loss
    stft_floor_db: float | None = 80.0  # floor this far below the clip's loudest STFT bin (None: STFT_FLOOR only)
    phase_weight: float = 0.0  # PhaseDerivativeLoss: instantaneous frequency and group delay against the reference
    phase_fft_sizes: tuple[int, ...] = (512, 1024)  # FFT sizes of the phase-derivative loss

    def __post_init__(self) -> None:
        self.mel_window_lengths = tuple(self.mel_window_lengths)
        self.mel_n_mels = tuple(self.mel_n_mels)
        self.stft_fft_sizes = tuple(self.stft_fft_sizes)
        self.phase_fft_sizes = tuple(self.phase_fft_sizes)
        if min(self.mel_weight, self.stft_weight, self.l1_weight, self.phase_weight) < 0:
            raise ValueError("ReconstructionLossConfig weights must be >= 0.")
        if len(self.mel_window_lengths) != len(self.mel_n_mels):
            raise ValueError("ReconstructionLossConfig: give one mel_n_mels entry per mel_window_lengths entry.")
        for name in ("mel_floor_db", "stft_floor_db"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"ReconstructionLossConfig.{name} is a distance below the peak in dB: give a value "
                                 f">= 0 (60 for mel, 80 for STFT are the defaults), or None for the absolute floor.")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReconstructionLossConfig":
        return dataclass_from_dict(cls, data)


class ReconstructionLoss(nn.Module):
    """Weighted sum of :class:`MultiScaleMelLoss`, :class:`MultiResolutionSTFTLoss`, :func:`waveform_l1` and
    :class:`PhaseDerivativeLoss`.

    ``forward(wav, wav_hat)`` with ``Tensor[B, 1, T]`` inputs returns a dict of scalars: one entry per term with a
    non-zero weight (``"mel"``, ``"stft"``, ``"l1"``, ``"phase"``, unweighted) and ``"total"``, the weighted sum to minimise.
    """

    def __init__(self, sample_rate: int, config: ReconstructionLossConfig | None = None):
        super().__init__()
        self.config = config or ReconstructionLossConfig()
        c = self.config
        self.mel = (MultiScaleMelLoss(sample_rate, c.mel_window_lengths, c.mel_n_mels, c.mel_floor, c.mel_floor_db)
                    if c.mel_weight else None)
        self.stft = MultiResolutionSTFTLoss(c.stft_fft_sizes, floor_db=c.stft_floor_db) if c.stft_weight else None
        self.phase = PhaseDerivativeLoss(c.phase_fft_sizes) if c.phase_weight else None

    def forward(self, wav: Tensor, wav_hat: Tensor) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        total = wav_hat.new_zeros((), dtype=torch.float32)
        if self.mel is not None:
            terms["mel"] = self.mel(wav, wav_hat)
            total = total + self.config.mel_weight * terms["mel"]
        if self.stft is not None:
            terms["stft"] = self.stft(wav, wav_hat)
            total = total + self.config.stft_weight * terms["stft"]
        if self.config.l1_weight:
            terms["l1"] = waveform_l1(wav, wav_hat)
            total = total + self.config.l1_weight * terms["l1"]
        if self.phase is not None:
            terms["phase"] = self.phase(wav, wav_hat)
            total = total + self.config.phase_weight * terms["phase"]
        terms["total"] = total
        return terms


# ---------------------------------------------------------------------------------------------- adversarial losses
# Each takes the per-branch logits of :class:`s2slib.codec.discriminators.Discriminators` (a list of (B, n) tensors)
# and averages over branches, so adding a period or an FFT size does not change the loss scale.


def hinge_discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Hinge loss for the discriminator (Lim & Ye 2017, used by MelGAN and EnCodec):
    ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``: real logits are pushed above 1, fake ones below -1, and
    logits already past their margin give no gradient."""
    return torch.stack([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]).mean()


def hinge_generator_loss(fake: list[Tensor]) -> Tensor:
    """Generator side of the hinge game (EnCodec's form): ``mean(relu(1 - D(G(z))))``."""
    return torch.stack([F.relu(1 - f).mean() for f in fake]).mean()


def lsgan_discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Least-squares GAN (Mao et al. 2017, HiFi-GAN): ``mean((1 - D(x))^2) + mean(D(G(z))^2)``."""
    return torch.stack([(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake)]).mean()


def lsgan_generator_loss(fake: list[Tensor]) -> Tensor:
    """Generator side of LSGAN: ``mean((1 - D(G(z)))^2)``."""
    return torch.stack([(1 - f).pow(2).mean() for f in fake]).mean()


ADVERSARIAL_LOSSES = {
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "lsgan": (lsgan_discriminator_loss, lsgan_generator_loss),
}


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 distance between the discriminators' feature maps on real and generated audio, each layer's distance
    divided by the mean magnitude of its real features (EnCodec's relative form, so every layer counts alike),
    averaged over layers and branches. The real features are detached: this trains the generator only."""
    terms = []
    for branch_real, branch_fake in zip(real, fake):
        for r, f in zip(branch_real, branch_fake):
            r = r.detach()
            terms.append((f - r).abs().mean() / (r.abs().mean() + 1e-8))
    return torch.stack(terms).mean()


def phase_advance_loss(phases: Tensor, wav: Tensor, hop: int, n_fft: int) -> Tensor:
    """How far the phase an iSTFT head gives each bin turns from one frame to the next is from how far the
    reference's turns, weighted by magnitude.

    Two overlapping frames add up only where each bin's phase has turned by what the sound in it turns by over one
    hop: a harmonic at ``f`` Hz by ``2 pi f hop / sr``. A head that gets each frame's magnitudes right but not this
    turn cancels its own output where frames overlap, or, where its phase stands still, puts a comb at the frame rate
    (``python experiments/codec_phase_oracle.py``: exact magnitudes with the exact turn summed from ``pi k`` keep STOI
    0.934 of 0.970). The loss supervises the turn directly instead of through the waveform losses: the mean over bins
    and frames of ``1 - cos(turn_head - turn_ref)``, each weighted by the smaller of the reference's two magnitudes
    (a bin that is quiet in either frame has no turn to speak of), normalised per clip. 0 is the exact turn
    everywhere; a random phase scores 1.

    Parameters
    ----------
    phases: ``Tensor[B, K, F]`` the head's phases (:meth:`s2slib.codec.stft_io.ISTFTHead.phases`), ``K = n_fft // 2
        + 1``.
    wav: ``Tensor[B, 1, F * hop]`` the reference, framed as the codec frames it (frame ``t`` ends at ``(t + 1) hop``).
    """
    if phases.ndim != 3 or phases.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"phases must be (B, {n_fft // 2 + 1}, F), got {tuple(phases.shape)}.")
    spec = causal_spectrum(wav.reshape(wav.shape[0], -1), hop, n_fft).transpose(1, 2)  # (B, K, F) complex
    if spec.shape[-1] != phases.shape[-1]:
        raise ValueError(f"the reference has {spec.shape[-1]} frames of hop {hop}, the phases {phases.shape[-1]}.")
    turn_ref = torch.angle(spec[..., 1:] * spec[..., :-1].conj())  # (B, K, F - 1), wrapped
    turn = phases[..., 1:].float() - phases[..., :-1].float()  # any range: only its cosine counts
    mag = spec.abs()
    weight = torch.minimum(mag[..., 1:], mag[..., :-1])
    weight = weight / weight.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return (weight * (1 - torch.cos(turn - turn_ref))).sum(dim=(1, 2)).mean()


def frame_magnitude_loss(log_mag: Tensor, wav: Tensor, hop: int, n_fft: int, floor_db: float | None = 80.0) -> Tensor:
    """How far an iSTFT head's log magnitudes are from the reference's, bin by bin in the head's own frames.

    The waveform losses judge the head's magnitudes only after its phase has overlap-added them, so a phase that
    does not carry the harmonics from frame to frame blurs what they see; in the head's own framing the target is
    known exactly (the front end's STFT of the reference, :func:`s2slib.codec.pitch.causal_spectrum`), harmonics
    and all. The loss is the mean absolute difference of the natural-log magnitudes, both raised to the reference's
    floor ``floor_db`` below its loudest bin (:func:`s2slib.spectral.relative_floor`), so silence does not dominate.
    0 is exact; 1 is a factor of e (8.7 dB) per bin on average.

    Parameters
    ----------
    log_mag: ``Tensor[B, K, F]`` the head's log magnitudes (natural log), ``K = n_fft // 2 + 1``.
    wav: ``Tensor[B, 1, F * hop]`` the reference, framed as the codec frames it.
    """
    if log_mag.ndim != 3 or log_mag.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"log_mag must be (B, {n_fft // 2 + 1}, F), got {tuple(log_mag.shape)}.")
    ref = causal_spectrum(wav.reshape(wav.shape[0], -1), hop, n_fft).abs().transpose(1, 2)  # (B, K, F)
    if ref.shape[-1] != log_mag.shape[-1]:
        raise ValueError(f"the reference has {ref.shape[-1]} frames of hop {hop}, the magnitudes {log_mag.shape[-1]}.")
    floor = relative_floor(ref, STFT_FLOOR, floor_db)  # (B, 1, 1)
    return (log_mag.float().maximum(floor.log()) - ref.maximum(floor).log()).abs().mean()
