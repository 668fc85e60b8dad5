"""How much does the phase alone cost? Exact magnitudes, resynthesised by codec v2's iSTFT head with various phases.

Each real test clip of the laptop run (Common Voice speakers and sentences never trained on) is cut into codec v2's
frames (window 640, hop 320, periodic Hann; ``--n-fft`` sets another window), and its exact STFT magnitudes go through :class:`ISTFTHead` with:

- ``exact``: the clip's own phases (the ceiling of this resynthesis; with the Hann synthesis window the head windows
  the frames a second time);
- ``random``: a random phase in every bin of every frame (notebook 02's "exact magnitudes, random phase" point);
- ``constant``: the same phase in every frame (what an absolute-phase head predicts when its phase stands still);
- ``centre tones``: each bin turning at its own centre frequency (the centred head with a steady offset);
- ``pitch-locked``: each bin turning at the harmonic of the clip's F0 nearest to it in voiced frames
  (:func:`s2slib.codec.pitch.frame_pitch`, the target of the pitch-locked head) and at its centre frequency in
  unvoiced ones, as ``ISTFTHead(phase="pitch")`` does with a perfect F0;
- ``pitch-locked + pi k``: the same, started from ``pi k`` (the sign a sinusoid has in adjacent bins of a window
  that starts the frame) instead of 0;
- ``pitch-locked, F0 off by N cents``: the same with every F0 multiplied by ``2 ** (N / 1200)``;
- ``exact turn from pi k``: each bin's own turn per hop, measured on the clip, summed from ``pi k`` (what an
  integrated head with a perfect deviation and no offset gives), then with an error added to every turn: Gaussian
  with ``--turn-noise`` standard deviations in radians, drawn independently per bin (``iid``) or smoothed across
  bins (``smooth``: Gaussian over 4 bins, rescaled to the same deviation);
- ``peak-locked``: made from the magnitudes alone, each spectral peak's phase carried on at its frequency and every
  bin locked to its nearest peak (:mod:`s2slib.codec.peak_phase`, ``ISTFTHead(phase="peaks")``);
- ``exact`` / ``constant`` ``+ smooth dither``: a phase offset drawn afresh in every frame, smooth across bins
  (Gaussian over 4 bins, ``--dither`` standard deviations in radians), added to the clip's own phase (what the
  dither costs) or to a standing phase (whether it breaks the comb); ``+ frame rotation``: one offset per frame,
  uniform in ``[-pi, pi)``, the same in every bin.

It prints medians over the clips of the even/odd bin energy ratio, the comb ratio at 50 Hz, STOI and mel distance.
No training; about a minute on 2 CPU cores.

    python experiments/codec_phase_oracle.py [--run runs/laptop] [--cents 25 100 200] [--turn-noise 0.3 0.6]
        [--n-fft 640] [--dither 0.5 1 2] [--synthesis hann|wola]

``--synthesis`` picks the head's synthesis window (``CodecConfig.synthesis``): ``hann`` windows the exact spectrum
a second time (so even the ``exact`` row is not the clip), ``wola`` gives the clip back from its exact spectrum.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_phase_comb import even_odd_ratio, real_test_clips  # noqa: E402

from s2slib.codec.peak_phase import peak_locked_phase  # noqa: E402
from s2slib.codec.pitch import causal_spectrum, frame_pitch  # noqa: E402
from s2slib.codec.stft_io import ISTFTHead  # noqa: E402
from s2slib.metrics import comb_ratios, mel_distance, stoi  # noqa: E402

SR, HOP, NFFT = 16000, 320, 640  # codec v2's framing (--n-fft changes the window)


def pitch_locked(shape: tuple[int, int], f0: np.ndarray, voiced: np.ndarray, n_fft: int = NFFT) -> np.ndarray:
    """Phases ``(K, F)``: each bin's running sum of the turn per hop of its nearest harmonic (voiced frames) or of
    its centre frequency (unvoiced ones)."""
    bin_hz = np.arange(shape[0]) * SR / n_fft
    harmonic = np.maximum(1, np.round(bin_hz[:, None] / f0[None, :])) * f0[None, :]  # (K, F)
    hz = np.where(voiced[None, :], harmonic, bin_hz[:, None])
    return np.cumsum(2 * np.pi * hz * HOP / SR, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/laptop"))
    parser.add_argument("--cents", type=float, nargs="*", default=[25.0, 100.0, 200.0],
                        help="F0 errors to try on the pitch-locked phase")
    parser.add_argument("--n-fft", type=int, default=NFFT,
                        help="the window in samples (a multiple of the 320-sample hop; 1280: four hops)")
    parser.add_argument("--turn-noise", type=float, nargs="*", default=[0.3, 0.6],
                        help="errors (radians) to add to the exact turn per hop")
    parser.add_argument("--dither", type=float, nargs="*", default=[0.5, 1.0, 2.0],
                        help="per-frame phase offsets (radians, smooth across bins) to add to the exact and the "
                             "standing phase")
    parser.add_argument("--synthesis", default="hann", choices=["hann", "wola"],
                        help="the head's synthesis window (CodecConfig.synthesis)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    n_fft = args.n_fft
    head = ISTFTHead(HOP, n_fft, synthesis=args.synthesis)  # absolute phase: we hand it the phases
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict]] = {}
    for wav in real_test_clips(args.run):
        wav = wav[: len(wav) // HOP * HOP]
        x = torch.from_numpy(wav).float()[None]
        spec = causal_spectrum(x, HOP, n_fft)[0].T.numpy()  # (K, F)
        f0, voiced = (a[0].numpy() for a in frame_pitch(x, SR, HOP, n_fft))
        phases = {"exact": np.angle(spec), "random": rng.uniform(-np.pi, np.pi, spec.shape),
                  "constant": np.zeros(spec.shape),
                  "centre tones": np.cumsum(np.broadcast_to(2 * np.pi * np.arange(spec.shape[0])[:, None] * HOP / n_fft,
                                                            spec.shape), axis=1),
                  "pitch-locked": pitch_locked(spec.shape, f0, voiced, n_fft)}
        log_mag = torch.from_numpy(np.log(np.abs(spec) + 1e-7)).float()[None]  # (1, K, F)
        phases["peak-locked"] = peak_locked_phase(log_mag, HOP, n_fft)[0][0].numpy()
        alternate = np.pi * np.arange(spec.shape[0])[:, None]  # a frame-start window's sign between adjacent bins
        phases["pitch-locked + pi k"] = phases["pitch-locked"] + alternate
        for cents in args.cents:
            phases[f"pitch-locked, F0 off by {cents:g} cents"] = pitch_locked(spec.shape, f0 * 2 ** (cents / 1200),
                                                                              voiced, n_fft)
        turn = np.diff(phases["exact"], axis=1, prepend=phases["exact"][:, :1])  # (K, F), 0 in the first frame
        phases["exact turn from pi k"] = np.cumsum(turn, axis=1) + alternate
        for sigma in args.turn_noise:
            iid = rng.normal(0.0, 1.0, turn.shape)
            smooth = gaussian_filter1d(rng.normal(0.0, 1.0, turn.shape), 4, axis=0)
            for kind, noise in (("iid", iid), ("smooth", smooth / smooth.std())):
                phases[f"exact turn from pi k, {kind} error {sigma:g} rad"] = (
                    np.cumsum(turn + sigma * noise, axis=1) + alternate)
        for sigma in args.dither:
            dither = gaussian_filter1d(rng.normal(0.0, 1.0, turn.shape), 4, axis=0)
            for base in ("exact", "constant"):
                phases[f"{base} + smooth dither {sigma:g} rad"] = phases[base] + sigma * dither / dither.std()
        rotation = rng.uniform(-np.pi, np.pi, (1, turn.shape[1]))
        for base in ("exact", "constant"):
            phases[f"{base} + frame rotation"] = phases[base] + rotation
        for name, phase in phases.items():
            inp = torch.cat([log_mag, torch.from_numpy(phase).float()[None]], dim=1)
            with torch.inference_mode():
                est = head(inp)[0, 0].numpy()
            rows.setdefault(name, []).append({
                "even_odd": even_odd_ratio(est), "comb_50": comb_ratios(wav, est, SR, [50.0])[50.0],
                "stoi": stoi(wav, est, SR), "mel_distance": mel_distance(wav, est, SR)})
    results = {name: {k: round(float(np.nanmedian([r[k] for r in rs])), 3) for k in rs[0]} | {"clips": len(rs)}
               for name, rs in rows.items()}
    for name, values in results.items():
        print(json.dumps({name: values}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
