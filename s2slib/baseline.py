"""The EnCodec baseline: Meta's 24 kHz EnCodec behind the course codec's interface, and the comparison of the two.

EnCodec (Défossez et al. 2022, *High Fidelity Neural Audio Compression*) is a causal convolutional encoder-decoder
with an LSTM, a residual VQ of up to 32 levels x 1024 codes at 75 frames/s (24 kHz, hop 320), and bandwidths of
1.5, 3, 6, 12 and 24 kbps (2, 4, 8, 16, 32 levels). :class:`EncodecCodec` wraps the ``encodec`` package's model so it
speaks the course's language: 16 kHz in and out (resampled to and from 24 kHz inside), ``encode(wav) -> codes``,
``decode(codes, length) -> wav``, ``frame_rate``, ``bitrate_kbps``. Either codec can then feed the S2S stages
(:func:`load_audio_codec`).

Weights (:func:`load_encodec`): the real pretrained checkpoint ``encodec_24khz-d7cc33bc.th`` is looked for

1. at a path the user gives (``weights=...`` or ``$S2S_ENCODEC_WEIGHTS``),
2. in the torch hub cache (``$TORCH_HOME/hub/checkpoints``, where ``encodec`` itself would have put it),
3. downloaded from Meta's server into that cache when the machine is online (resumable, its SHA-256 checked
   against the prefix in the file name, as torch hub does).

When none of this works (an offline machine) :class:`WeightsUnavailable` says where to put the file.
:func:`untrained_encodec` builds the same architecture with random weights: usable for timing only, and labelled so
everywhere it appears. Nothing here ever reports a quality figure for untrained weights.

What an offline machine can still compare on quality is EnCodec's *architecture* trained here from scratch on the
course's data and budget (:mod:`s2slib.encodec_scratch`): :func:`compare_codecs` takes it as a third codec, labelled
:data:`SCRATCH_LABEL`, a curve of its own beside the pretrained one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2slib import metrics
from s2slib.audio import AUDIO_EXTENSIONS, AudioError, load_audio, resample

CHECKPOINT_NAME = "encodec_24khz-d7cc33bc.th"
CHECKPOINT_URL = f"https://dl.fbaipublicfiles.com/encodec/v0/{CHECKPOINT_NAME}"
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps; 2, 4, 8, 16 and 32 levels of 1024 codes at 75 frames/s
SCRATCH_LABEL = "EnCodec architecture, trained here from scratch"  # the third codec of compare_codecs


class WeightsUnavailable(RuntimeError):
    """The pretrained EnCodec checkpoint could not be found or fetched; the message says where to put it."""


def hub_checkpoint_path() -> Path:
    """Where torch hub (and the ``encodec`` package) keep the checkpoint: ``<torch hub dir>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / CHECKPOINT_NAME


def _check_prefix(path: Path) -> None:
    """The file name carries the first 8 hex digits of its SHA-256 (torch hub's convention): verify them."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = CHECKPOINT_NAME.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(expected):
        raise WeightsUnavailable(f"{path} is not the EnCodec 24 kHz checkpoint: its SHA-256 starts with "
                                 f"{digest[:8]}, expected {expected}. The file was left as it is: "
                                 f"pass the path of the real {CHECKPOINT_NAME} instead.")


def _resolve_weights(weights: str | os.PathLike | None, download: bool) -> tuple[Path, str]:
    """``(path, how it was found)`` of the pretrained checkpoint."""
    given = weights or os.environ.get("S2S_ENCODEC_WEIGHTS")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"EnCodec weights: {path} does not exist.")
        return path, f"given path {path}"
    cached = hub_checkpoint_path()
    if cached.is_file():
        return cached, f"torch hub cache {cached}"
    if download:
        from s2slib.data.download import DownloadError, download as fetch

        try:
            fetch(CHECKPOINT_URL, cached, None, source="encodec-24khz", progress=True)
            return cached, f"downloaded to {cached}"
        except DownloadError as exc:
            reason = str(exc).splitlines()[0]
    else:
        reason = "downloading was not allowed"
    raise WeightsUnavailable(
        f"The pretrained EnCodec 24 kHz weights are not on this machine and could not be fetched ({reason}). "
        f"Put {CHECKPOINT_NAME} (from {CHECKPOINT_URL}) at {cached}, or pass its path (weights=... or "
        "$S2S_ENCODEC_WEIGHTS). Without them EnCodec can be timed with untrained weights, but not compared on quality."
    )


class EncodecCodec:
    """EnCodec 24 kHz with the course codec's interface (16 kHz in and out).

    Parameters
    ----------
    model: an ``encodec.EncodecModel`` (24 kHz).
    bandwidth: kbps, one of :data:`BANDWIDTHS`.
    pretrained: whether ``model`` holds the real trained weights (``False``: timing only).
    weights_source: where the weights came from, for reports.
    sample_rate: the rate of the audio given to :meth:`encode` and returned by :meth:`decode` (the course's 16 kHz).
    """

    native_sample_rate = 24000

    def __init__(self, model, bandwidth: float = 6.0, pretrained: bool = True, weights_source: str = "",
                 sample_rate: int = 16000):
        self.model = model.eval()
        self.pretrained = pretrained
        self.weights_path: Path | None = None  # the checkpoint file, when loaded from one (load_encodec)
        self.weights_source = weights_source or ("pretrained" if pretrained else "untrained (timing only)")
        self.sample_rate = sample_rate
        self.set_bandwidth(bandwidth)

    def set_bandwidth(self, bandwidth: float) -> None:
        if bandwidth not in BANDWIDTHS:
            raise ValueError(f"EnCodec 24 kHz bandwidths are {BANDWIDTHS} kbps, got {bandwidth}")
        self.bandwidth = bandwidth
        self.model.set_target_bandwidth(bandwidth)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)  # 75 frames/s

    @property
    def n_q(self) -> int:
        """Levels at the current bandwidth: ``bandwidth * 1000 / (10 bits * 75 frames/s)``."""
        return int(round(self.bandwidth * 1000 / (10 * self.frame_rate)))

    @property
    def codebook_size(self) -> int:
        return 1024

    def bitrate_kbps(self) -> float:
        """Bit rate at the current bandwidth: ``n_q * 10 bits * 75 frames/s`` (equals the bandwidth)."""
        return metrics.bitrate_kbps(self.n_q, self.codebook_size, self.frame_rate)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav: Tensor[B, 1, T]`` at ``sample_rate`` -> ``codes: Tensor[B, n_q, frames]`` at 75 frames/s."""
        x = torch.from_numpy(resample(wav.cpu().numpy(), self.sample_rate, self.native_sample_rate))  # (B, 1, T24)
        frames = self.model.encode(x)
        return torch.cat([codes for codes, _scale in frames], dim=-1)  # (B, n_q, F)

    @torch.inference_mode()
    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes: Tensor[B, n_q, frames]`` -> the latent EnCodec's decoder reads, ``Tensor[B, 128, frames]`` (the
        sum of one codebook vector per level)."""
        return self.model.quantizer.decode(codes.long().transpose(0, 1))  # EnCodec's layout: (n_q, B, F)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """``codes: Tensor[B, n_q, frames]`` -> ``wav: Tensor[B, 1, T]`` at ``sample_rate`` (cut to ``length``)."""
        wav24 = self.model.decode([(codes, None)])  # (B, 1, T24)
        wav = torch.from_numpy(resample(wav24.numpy(), self.native_sample_rate, self.sample_rate))
        return wav if length is None else wav[..., :length]


def untrained_encodec(bandwidth: float = 6.0, sample_rate: int = 16000) -> EncodecCodec:
    """EnCodec's architecture with random weights: **for timing only**."""
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False)
    return EncodecCodec(model, bandwidth, pretrained=False, weights_source="untrained (timing only)",
                        sample_rate=sample_rate)


def load_encodec(weights: str | os.PathLike | None = None, download: bool = True, bandwidth: float = 6.0,
                 sample_rate: int = 16000) -> EncodecCodec:
    """The pretrained EnCodec 24 kHz (see the module docstring for where the weights are looked for).

    Raises :class:`WeightsUnavailable` with instructions when the checkpoint cannot be had.
    """
    from encodec import EncodecModel

    path, how = _resolve_weights(weights, download)
    _check_prefix(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(state)
    except Exception as exc:
        raise WeightsUnavailable(f"{path} could not be loaded as EnCodec 24 kHz weights ({exc}).") from exc
    codec = EncodecCodec(model, bandwidth, pretrained=True, weights_source=how, sample_rate=sample_rate)
    codec.weights_path = path  # what a token cache fingerprints
    return codec


def load_audio_codec(kind: str, checkpoint: str | os.PathLike | None = None, encodec_weights=None,
                     bandwidth: float = 6.0, device: str = "cpu"):
    """The codec the S2S stages tokenize with: ``"course"`` (a ``codec.pt``) or ``"encodec"`` (pretrained)."""
    if kind == "course":
        from s2slib.codec.train import load_codec

        if checkpoint is None:
            raise ValueError("the course codec needs its checkpoint (codec.pt from notebook 02 or 03)")
        return load_codec(checkpoint, device)
    if kind == "encodec":
        return load_encodec(encodec_weights, bandwidth=bandwidth)
    raise ValueError(f"codec kind must be 'course' or 'encodec', got {kind!r}")


# ------------------------------------------------------------------------------------------------- comparison


@dataclass
class CompareRow:
    """One codec at one setting, measured on the same clips.

    Quality figures are means over the clips where they are defined (``None`` when none is, or when the weights are
    untrained); ``skipped`` lists, per metric, the clips left out and why (``{"stoi": ["a.wav: too short ..."]}``).
    """

    codec: str
    setting: str
    kbps: float
    frame_rate: float
    parameters: int
    weights: str
    si_sdr: float | None
    mel_distance: float | None
    stoi: float | None
    encode_rtf: float
    decode_rtf: float
    skipped: dict[str, list[str]] = field(default_factory=dict)


QUALITY_METRICS = ("si_sdr", "mel_distance", "stoi")


def _measure(encode, decode, clips: list[np.ndarray], sample_rate: int, quality: bool,
             clip_names: list[str]) -> dict[str, Any]:
    """Mean quality (if ``quality``) and real-time factors of an encode/decode pair over ``clips`` (16 kHz)."""
    t_enc = t_dec = 0.0
    means = metrics.MetricMeans(QUALITY_METRICS)
    for name, wav in zip(clip_names, clips):
        x = torch.from_numpy(wav).view(1, 1, -1)
        t0 = time.perf_counter()
        codes = encode(x)
        t1 = time.perf_counter()
        est = decode(codes, x.shape[-1]).reshape(-1).numpy()
        t2 = time.perf_counter()
        t_enc, t_dec = t_enc + t1 - t0, t_dec + t2 - t1
        if quality:
            means.add(name, wav, est, sample_rate)
    seconds = sum(len(w) for w in clips) / sample_rate
    return {"encode_rtf": t_enc / seconds, "decode_rtf": t_dec / seconds, **means.means(), "skipped": means.skipped}


def _depth_ladder(codec, label: str, weights: str, levels: list[int] | None, clips: list[np.ndarray],
                  clip_names: list[str]) -> list[CompareRow]:
    """Rows of a codec with the course codec's API (``config``, ``encode(x, n_q)``, ``decode(codes, length)``) at
    each number of levels in ``levels`` (default: 1 to ``config.n_q``)."""
    cfg, rows = codec.config, []
    for n in levels or list(range(1, cfg.n_q + 1)):
        with torch.inference_mode():
            m = _measure(lambda x, n=n: codec.encode(x, n), lambda c, t: codec.decode(c, length=t),
                         clips, cfg.sample_rate, quality=True, clip_names=clip_names)
        rows.append(CompareRow(label, f"n_q={n}", cfg.bitrate_kbps(n), cfg.frame_rate, codec.num_parameters(),
                               weights, **m))
    return rows


def latent_error_by_depth(codec, clips: list[np.ndarray]) -> list[float]:
    """How much of the latent each quantizer depth leaves out, for a codec with ``latent(wav)``, ``encode(wav)`` and
    ``dequantize(codes)`` (the course codec, EnCodec-from-scratch): ``[e_1, ..., e_n_q]``, ``e_n`` the energy of
    ``latent - dequantize(codes[:, :n])`` over the latent's energy, pooled over ``clips`` (16 kHz mono). A ladder whose
    ``e_1`` is already near ``e_n_q`` gives the decoder nearly the same input at every bit rate: it has to be flat."""
    if not clips:
        raise ValueError("latent_error_by_depth needs at least one clip.")
    n_q = codec.config.n_q
    err, energy = np.zeros(n_q), 0.0
    with torch.inference_mode():
        for clip in clips:
            x = torch.as_tensor(np.asarray(clip, dtype=np.float32)).view(1, 1, -1)
            z = codec.latent(x).float()
            codes = codec.encode(x)
            energy += float(z.pow(2).sum())
            for n in range(1, n_q + 1):
                err[n - 1] += float((z - codec.dequantize(codes[:, :n]).float()).pow(2).sum())
    return [float(e / max(energy, 1e-12)) for e in err]


def compare_codecs(course_codec, encodec: EncodecCodec | None, clips: list[np.ndarray],
                   bandwidths: tuple[float, ...] = BANDWIDTHS, course_levels: list[int] | None = None,
                   timing_encodec: EncodecCodec | None = None, clip_names: list[str] | None = None,
                   scratch_encodec=None) -> list[CompareRow]:
    """The codecs on the same 16 kHz ``clips``: the course codec at each quantizer depth, EnCodec at each bandwidth.

    ``encodec``: the pretrained wrapper, or ``None`` when its weights are unavailable; EnCodec's rows then carry no
    quality figures and are timed on ``timing_encodec`` (untrained weights, labelled so) if given.
    ``clip_names``: how ``skipped`` names the clips (default ``clip 0``, ``clip 1``, ...).
    ``scratch_encodec``: optionally a third codec, EnCodec's architecture trained here from scratch
    (:class:`s2slib.encodec_scratch.EncodecScratch`), measured at every depth like the course codec and labelled
    :data:`SCRATCH_LABEL`, never as the pretrained EnCodec.
    """
    if not clips:
        raise ValueError("compare_codecs needs at least one clip.")
    names = clip_names or [f"clip {i}" for i in range(len(clips))]
    if len(names) != len(clips):
        raise ValueError(f"clip_names has {len(names)} names for {len(clips)} clips; give one name per clip.")
    rows = _depth_ladder(course_codec, "course codec", "trained", course_levels, clips, names)
    if scratch_encodec is not None:
        rows += _depth_ladder(scratch_encodec, SCRATCH_LABEL, "trained here from scratch", None, clips, names)
    enc = encodec or timing_encodec
    if enc is not None:
        for bw in bandwidths:
            enc.set_bandwidth(bw)
            m = _measure(enc.encode, enc.decode, clips, enc.sample_rate, quality=enc.pretrained, clip_names=names)
            rows.append(CompareRow("EnCodec 24 kHz", f"{bw} kbps", bw, enc.frame_rate, enc.num_parameters(),
                                   enc.weights_source, **m))
    return rows


def _load_clips(folder: Path, sample_rate: int) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
    """``(clips, their file paths, {path: why it could not be decoded})`` of the audio files under ``folder``."""
    clips, names, skipped = [], [], {}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        try:
            clips.append(load_audio(path, sample_rate=sample_rate)[0])
            names.append(str(path))
        except AudioError as exc:
            skipped[str(path)] = str(exc)
    return clips, names, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2slib.baseline",
                                     description="Compare the course codec with EnCodec 24 kHz on the same clips.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="rate-distortion and speed of both codecs on a folder of audio (JSON)")
    c.add_argument("--checkpoint", required=True, type=Path, help="the course codec's codec.pt")
    c.add_argument("--audio", required=True, type=Path, help="folder of audio files (any format, any rate)")
    c.add_argument("--encodec-weights", help=f"path to {CHECKPOINT_NAME} (default: torch hub cache, then download)")
    c.add_argument("--no-download", action="store_true", help="never try to download EnCodec's weights")
    c.add_argument("--max-files", type=int, default=0, help="use only the first N files (0: all)")
    c.add_argument("--scratch-checkpoint", type=Path,
                   help="codec.pt of EnCodec's architecture trained from scratch (notebook 04): a third codec")
    args = parser.parse_args(argv)

    from s2slib.codec.train import load_codec
    from s2slib.checkpoint import CheckpointError
    from s2slib.encodec_scratch import load_encodec_scratch

    try:
        course = load_codec(args.checkpoint)
        scratch = load_encodec_scratch(args.scratch_checkpoint) if args.scratch_checkpoint else None
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.audio.is_dir():
        print(f"error: {args.audio} is not a folder of audio files", file=sys.stderr)
        return 2
    clips, names, skipped = _load_clips(args.audio, course.config.sample_rate)
    if args.max_files > 0:
        clips, names = clips[: args.max_files], names[: args.max_files]
    if not clips:
        print(f"error: no decodable audio files in {args.audio}", file=sys.stderr)
        return 1
    note = None
    try:
        encodec = load_encodec(args.encodec_weights, download=not args.no_download)
        timing = None
    except WeightsUnavailable as exc:
        encodec, timing, note = None, untrained_encodec(), str(exc)
    rows = compare_codecs(course, encodec, clips, timing_encodec=timing, clip_names=names, scratch_encodec=scratch)
    out = {"n_files": len(clips), "rows": [r.__dict__ for r in rows], "encodec_quality_available": encodec is not None}
    if note:
        out["encodec_note"] = note
    if skipped:
        out["skipped"] = skipped
    print(json.dumps(out, indent=2, allow_nan=False))  # means skip undefined values: never NaN
    return 0


if __name__ == "__main__":
    sys.exit(main())
