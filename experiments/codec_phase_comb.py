"""Where does codec v2's 50 Hz comb come from? Absolute, centred and integrated phase in the iSTFT head.

Codec v2's head (window 640, hop 320 at 16 kHz) predicts each frame's phase. The centre frequency of STFT bin ``k``
(``25 k`` Hz) advances by ``pi k`` per hop: for even bins (multiples of 50 Hz) a whole number of turns, so a phase
that stays the same from frame to frame is right for them, while for odd bins it is off by ``pi`` and the two
overlapping frames cancel. A head that predicts slowly changing absolute phases therefore favours the even bins.
The ``centred`` head predicts an offset from each bin's centre-frequency phase, so an unchanging output is right for
every bin; the ``integrated`` head predicts each bin's deviation from its centre frequency and sums it over frames;
the ``pitch`` head predicts F0 and voicing and turns each bin at its nearest harmonic.

The script measures, on the real test clips of the laptop run (Common Voice speakers and utterances never trained
on):
  1. the notebook 02 codec (``runs/laptop/codec/codec.pt``): the even/odd bin energy ratio of its output against the
     original's, and its comb ratio at 50 Hz;
  2. the fast50 preset trained for ``--steps`` steps on notebook 02's recipe (augmented crops, a quarter of them
     from the real training clips) with each phase mode of ``--phases``: the same figures, plus STOI and mel
     distance (medians over the clips). ``pitch`` is the pitch-locked head (each bin turns at its nearest
     harmonic of a predicted F0, :mod:`s2slib.codec.pitch`); ``--phase-weight`` adds the phase-derivative loss
     (:class:`s2slib.codec.losses.PhaseDerivativeLoss`) and ``--pitch-weight`` sets the pitch loss's weight.

    python experiments/codec_phase_comb.py [--steps 800] [--phases absolute centred integrated] [--phase-weight W]
        [--rotation R] [--eval-rotations R ...] [--lr LR] [--mel-weight W] [--stft-weight W]
        [--real-share S] [--skip-notebook-codec] [--out DIR]

``--rotation`` trains with the head's per-frame phase rotation (``CodecConfig.phase_rotation``); ``--eval-rotations``
measures each trained codec again with a rotation switched on (or changed) at inference only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from s2slib.audio import load_audio
from s2slib.codec.config import CodecConfig
from s2slib.codec.losses import ReconstructionLossConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer, load_codec
from s2slib.data.augment import AugmentConfig
from s2slib.metrics import comb_ratios, mel_distance, stoi

RUN = Path("runs/laptop")
SR = 16000


def real_test_clips(run: Path = RUN) -> list[np.ndarray]:
    """The real (Common Voice) clips of the run's test manifest, at 16 kHz."""
    manifest = run / "data" / "manifests" / "test.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [load_audio((manifest.parent / r["audio_path"]).resolve(), sample_rate=SR)[0]
            for r in rows if r["source"] == "samples-te"]


def even_odd_ratio(wav: np.ndarray) -> float:
    """Energy in the STFT bins at multiples of 50 Hz over that in the bins between them (50 Hz to 5 kHz; window 640,
    hop 320, the head's framing). About 1 for speech."""
    power = torch.stft(torch.from_numpy(wav).float(), 640, 320, window=torch.hann_window(640),
                       return_complex=True).abs() ** 2  # (321, F)
    return float(power[2:200:2].sum() / power[3:201:2].sum())


def measure(codec, clips: list[np.ndarray]) -> dict:
    rows = []
    for wav in clips:
        with torch.inference_mode():
            out = codec(torch.from_numpy(wav).view(1, 1, -1).float(), n_q=codec.config.n_q).wav_hat
        est = out.reshape(-1).numpy()[: len(wav)]
        rows.append({"even_odd_ref": even_odd_ratio(wav), "even_odd": even_odd_ratio(est),
                     "comb_50": comb_ratios(wav, est, SR, [50.0])[50.0], "stoi": stoi(wav, est, SR),
                     "mel_distance": mel_distance(wav, est, SR)})
    return {k: round(float(np.nanmedian([r[k] for r in rows])), 3) for k in rows[0]} | {"clips": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--out", type=Path, default=Path("/tmp/codec_phase_comb"))
    parser.add_argument("--phases", nargs="+", default=["absolute", "centred", "integrated"])
    parser.add_argument("--phase-weight", type=float, default=0.0,
                        help="weight of the phase-derivative loss (s2slib.codec.losses.PhaseDerivativeLoss); 0: none")
    parser.add_argument("--pitch-weight", type=float, default=1.0,
                        help="weight of the pitch loss of the pitch-locked head (CodecTrainConfig.pitch_weight)")
    parser.add_argument("--advance-weight", type=float, default=0.0,
                        help="weight of the phase-advance loss on the head (s2slib.codec.losses.phase_advance_loss)")
    parser.add_argument("--frame-mag-weight", type=float, default=0.0,
                        help="weight of the head's log-magnitude loss in its own frames "
                             "(s2slib.codec.losses.frame_magnitude_loss); 0: none")
    parser.add_argument("--synthesis", default="hann", choices=["hann", "wola"],
                        help="the head's synthesis window (CodecConfig.synthesis)")
    parser.add_argument("--n-fft", type=int, default=0,
                        help="the STFT window of the front end and the head (CodecConfig.n_fft; 0: two hops, 640)")
    parser.add_argument("--rotation", type=float, default=0.0,
                        help="the head's per-frame phase rotation while training (CodecConfig.phase_rotation, radians)")
    parser.add_argument("--eval-rotations", type=float, nargs="*", default=[],
                        help="also measure each codec with these rotations (radians) switched on at inference only")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (notebook 02: 1e-3)")
    parser.add_argument("--mel-weight", type=float, default=15.0, help="weight of the multi-scale mel loss (15)")
    parser.add_argument("--stft-weight", type=float, default=1.0, help="weight of the multi-resolution STFT loss (1)")
    parser.add_argument("--real-share", type=float, default=0.25,
                        help="share of training crops from the real training clips (notebook 02: 0.25)")
    parser.add_argument("--skip-notebook-codec", action="store_true", help="do not measure runs/laptop's codec")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    clips = real_test_clips()
    results = {}
    if not args.skip_notebook_codec:
        results["notebook_02_codec"] = measure(load_codec(RUN / "codec" / "codec.pt").eval(), clips)
        print(json.dumps(results), flush=True)
    manifests = RUN / "data" / "manifests"
    for phase in args.phases:
        cfg = CodecTrainConfig(max_steps=args.steps, batch_size=8, segment_s=1.0, val_every=0, num_workers=1,
                               ckpt_every=args.steps, augment=AugmentConfig(), source_shares={"samples-te": args.real_share},
                               lr=args.lr,
                               loss=ReconstructionLossConfig(phase_weight=args.phase_weight, mel_weight=args.mel_weight,
                                                             stft_weight=args.stft_weight),
                               pitch_weight=args.pitch_weight, advance_weight=args.advance_weight,
                               frame_mag_weight=args.frame_mag_weight)
        name = f"{phase}, {args.steps} steps" + (f", phase loss {args.phase_weight:g}" if args.phase_weight else "")
        name += f", window {args.n_fft}" if args.n_fft else ""
        name += f", advance loss {args.advance_weight:g}" if args.advance_weight else ""
        name += f", pitch loss {args.pitch_weight:g}" if phase == "pitch" and args.pitch_weight != 1.0 else ""
        name += f", rotation {args.rotation:g}" if args.rotation else ""
        name += f", {args.synthesis} synthesis" if args.synthesis != "hann" else ""
        name += f", frame magnitude loss {args.frame_mag_weight:g}" if args.frame_mag_weight else ""
        name += f", lr {args.lr:g}" if args.lr != 1e-3 else ""
        name += f", real share {args.real_share:g}" if args.real_share != 0.25 else ""
        name += f", mel weight {args.mel_weight:g}" if args.mel_weight != 15.0 else ""
        name += f", stft weight {args.stft_weight:g}" if args.stft_weight != 1.0 else ""
        trainer = CodecTrainer(dataclasses.replace(CodecConfig.fast50(), phase=phase, n_fft=args.n_fft,
                                                   phase_rotation=args.rotation, synthesis=args.synthesis), cfg,
                               manifests / "train.jsonl", manifests / "val.jsonl",
                               args.out / name.replace(", ", "_").replace(" ", "-"), device="cpu")
        trainer.fit(progress=False)
        results[name] = measure(trainer.model.eval(), clips)
        print(json.dumps({name: results[name]}), flush=True)
        head = trainer.model.decoder.head
        trained = head.rotation
        for rotation in args.eval_rotations:  # the same codes and decoder, the rotation changed at inference only
            head.rotation = rotation
            key = f"{name}; rotation {rotation:g} at inference"
            results[key] = measure(trainer.model, clips)
            print(json.dumps({key: results[key]}), flush=True)
        head.rotation = trained
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
