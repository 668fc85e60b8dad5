"""Magnitudes or phase? Each trained head's own predicted magnitudes under its own and other phases.

For each codec checkpoint given (``codec.pt`` files of the ``stft`` family, e.g. the runs that
``codec_phase_comb.py`` writes under ``--out``), every real test clip of the laptop run is encoded and decoded at
all levels, and the decoder's log magnitudes are resynthesised under each phase of
:data:`s2slib.codec.rephase.REPHASINGS` (the codec's own; its own turned per frame; peak-locked; random; the clip's
exact phase). It prints, per checkpoint, the median STOI and mel distance of each. If ``own`` is well above
``random``, the head's phase carries information; ``exact`` bounds what its magnitudes could give with a perfect
phase. For a pitch-locked head (``phase="pitch"``) it also prints how far its F0 is from
:func:`s2slib.codec.pitch.frame_pitch`'s on the voiced frames (cents: median, 75th percentile, share within 50) and
how often the two agree on voicing.

    python experiments/codec_phase_swap.py /tmp/codec_phase_comb/absolute_800-steps/codec.pt ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_phase_comb import RUN, real_test_clips  # noqa: E402

from s2slib.codec.pitch import f0_from_logit, frame_pitch  # noqa: E402
from s2slib.codec.rephase import REPHASINGS, rephased  # noqa: E402
from s2slib.codec.train import load_codec  # noqa: E402
from s2slib.metrics import mel_distance, stoi  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--run", type=Path, default=RUN)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    clips = real_test_clips(args.run)
    for path in args.checkpoints:
        codec = load_codec(path).eval()
        if codec.config.architecture != "stft":
            raise SystemExit(f"{path}: not an iSTFT-head codec (architecture {codec.config.architecture!r}).")
        stack, head = codec.decoder.layers
        hop, n_fft, sr = head.hop, head.n_fft, codec.sample_rate
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in REPHASINGS}
        cents, voicing_agrees = [], []
        for i, wav in enumerate(clips):
            wav = wav[: len(wav) // hop * hop]
            for name, est in rephased(codec, wav, seed=i).items():
                rows[name].append((stoi(wav, est, sr), mel_distance(wav, est, sr)))
            if head.phase == "pitch":
                x = torch.from_numpy(wav).float().view(1, 1, -1)
                with torch.inference_mode():
                    logits = head.pitch_logits(stack(codec.quantizer(codec.latent(x), codec.config.n_q).z_q))
                f0, voiced = frame_pitch(x, sr, hop, n_fft)
                cents.append((1200 * torch.log2(f0_from_logit(logits[0, 0]) / f0[0])).abs()[voiced[0]].numpy())
                voicing_agrees.append(float(((logits[0, 1] > 0) == voiced[0]).float().mean()))
        result = {name: {"stoi": round(float(np.median([r[0] for r in rs])), 3),
                         "mel_distance": round(float(np.median([r[1] for r in rs])), 3)} for name, rs in rows.items()}
        if cents:
            err = np.concatenate(cents)
            result["f0_error_cents"] = {"median": round(float(np.median(err))), "p75": round(float(np.percentile(err, 75))),
                                        "within_50": round(float(np.mean(err < 50)), 2), "voiced_frames": int(err.size),
                                        "voicing_agreement": round(float(np.mean(voicing_agrees)), 2)}
        print(json.dumps({str(path): result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
