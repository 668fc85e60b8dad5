"""Command line of the course codec (the same code notebook 02 calls).

    python -m s2slib.codec train --run runs/laptop [--preset fast50] [--max-steps 1500] [--out DIR] ...
    python -m s2slib.codec train-gan --run runs/laptop [--init runs/laptop/codec/codec.pt] [--max-steps 400] ...
    torchrun --nproc_per_node 2 -m s2slib.codec train --run runs/laptop ...     # DistributedDataParallel
    python -m s2slib.codec encode IN.wav OUT.codes --checkpoint runs/laptop/codec/codec.pt [--n-q 8]
    python -m s2slib.codec decode IN.codes OUT.wav --checkpoint runs/laptop/codec/codec.pt
    python -m s2slib.codec eval --checkpoint runs/laptop/codec/codec.pt --audio data/samples [--n-q 8]

``eval`` prints one JSON object of mean metrics over every audio file in the folder (wav, flac, mp3, ogg; any sample
rate; resampled to the codec's): ``snr``, ``si_sdr``, ``mel_distance``, ``stoi``, ``comb_ratio`` (at the codec's
``config.comb_frequencies()``), ``bitrate_kbps``, ``n_q``, ``n_files``. ``skipped`` says what was left out of the
means: ``{"<file>": "why it could not be decoded", "<metric>": ["<file>: why the metric is undefined for it", ...]}``
(STOI needs about 0.4 s of speech, the 200 Hz comb 0.5 s). A mean over no files is ``null``; the output is always
valid JSON (never ``NaN``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from s2slib.audio import AUDIO_EXTENSIONS, AudioError, load_audio, save_audio
from s2slib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def encode_file(codec, wav_path: Path, n_q: int | None) -> dict:
    """Codes of one audio file as a ``codes`` record: int16 ``codes (n_q, frames)`` plus what decoding needs."""
    wav, _ = load_audio(wav_path, sample_rate=codec.sample_rate)
    with torch.inference_mode():
        codes = codec.encode(torch.from_numpy(wav).view(1, 1, -1), n_q)[0]  # (n_q, F)
    return {"codes": codes.to(torch.int16), "length": len(wav), "sample_rate": codec.sample_rate,
            "hop_length": codec.hop_length, "codebook_size": codec.config.codebook_size}


def decode_record(codec, record: dict) -> torch.Tensor:
    """The waveform ``(T,)`` of a ``codes`` record, checked against the codec it is decoded with."""
    if record["hop_length"] != codec.hop_length or record["sample_rate"] != codec.sample_rate:
        raise ValueError(
            f"these codes were made by a codec at {record['sample_rate']} Hz with hop {record['hop_length']}; the "
            f"checkpoint given is at {codec.sample_rate} Hz with hop {codec.hop_length}. Decode with the same codec."
        )
    codes = record["codes"].long()[None]  # (1, n_q, F)
    if codes.shape[1] > codec.config.n_q or int(codes.max()) >= codec.config.codebook_size:
        raise ValueError("these codes do not fit the checkpoint's quantizer (too many levels or codes out of range)")
    with torch.inference_mode():
        return codec.decode(codes, length=record["length"]).view(-1)


def evaluate_folder(codec, folder: Path, n_q: int | None) -> dict:
    """Mean metrics of every decodable audio file under ``folder`` (see the module docstring for the keys)."""
    from s2slib import metrics
    from s2slib.codec.train import reconstruct

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    means = metrics.MetricMeans(metrics.PAIR_METRICS, comb_spacings=codec.config.comb_frequencies())
    skipped: dict[str, str | list[str]] = {}
    n_files = 0
    for path in files:
        try:
            wav, _ = load_audio(path, sample_rate=codec.sample_rate)
        except AudioError as exc:
            skipped[str(path)] = str(exc)
            continue
        means.add(str(path), wav, reconstruct(codec, wav, n_q), codec.sample_rate)
        n_files += 1
    levels = n_q or codec.config.n_q
    out: dict = means.means()
    out.update(bitrate_kbps=codec.config.bitrate_kbps(levels), n_q=levels, n_files=n_files)
    skipped.update(means.skipped)
    if skipped:
        out["skipped"] = skipped
    return out


def _train(args) -> int:
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.train import CodecTrainConfig, CodecTrainer
    from s2slib.codec.train_gan import CodecGANTrainer, GANTrainConfig

    gan = args.command == "train-gan"
    run = Path(args.run) if args.run else None
    train_manifest = args.train_manifest or (run / "data" / "manifests" / "train.jsonl" if run else None)
    val_manifest = args.val_manifest or (run / "data" / "manifests" / "val.jsonl" if run else None)
    out = args.out or (run / ("codec_gan" if gan else "codec") if run else None)
    if train_manifest is None or out is None:
        print("error: give --run RUN_DIR (from notebook 01) or --train-manifest and --out", file=sys.stderr)
        return 2
    config_cls = GANTrainConfig if gan else CodecTrainConfig
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                 if getattr(args, f.name, None) is not None}
    # notebook 02's recipe: augmented crops, and a fixed share of them from the real clips kept for training
    from s2slib.data.augment import AugmentConfig
    from s2slib.data.loader import load_utterances

    overrides["augment"] = AugmentConfig() if args.augment else None
    if args.real_share > 0 and any(u.source == "samples-te" for u in load_utterances(train_manifest)):
        overrides["source_shares"] = {"samples-te": args.real_share}
    if gan:
        init = args.init or (run / "codec" / "codec.pt" if run else None)
        if init is not None:  # the architecture is the starting codec's
            codec_config = CodecConfig.from_dict(load_checkpoint(init, kind=("codec", "codec_train"))["codec_config"])
            if args.preset and CodecConfig.preset(args.preset) != codec_config:
                print(f"error: --preset {args.preset} differs from the codec in {init}; leave --preset out",
                      file=sys.stderr)
                return 2
        else:  # adversarial training from a fresh codec
            codec_config = CodecConfig.preset(args.preset or "fast50")
        trainer = CodecGANTrainer(codec_config, GANTrainConfig(**overrides), train_manifest,
                                  val_manifest, out, device=args.device, init_from=init)
    else:
        trainer = CodecTrainer(CodecConfig.preset(args.preset), CodecTrainConfig(**overrides), train_manifest,
                               val_manifest, out, device=args.device)
    history = trainer.fit(progress=not args.no_progress)
    if trainer.dist.is_main:
        print(json.dumps({"step": trainer.step, "out": str(out), **(history.rows[-1] if history.rows else {})}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from s2slib.codec.train import CodecTrainConfig, load_codec
    from s2slib.codec.train_gan import GANTrainConfig

    parser = argparse.ArgumentParser(prog="python -m s2slib.codec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    numeric = {"int": int, "float": float, "str": str}  # the annotations are strings (postponed evaluation)
    for name, config_cls in (("train", CodecTrainConfig), ("train-gan", GANTrainConfig)):
        gan = name == "train-gan"
        tr = sub.add_parser(name, help="adversarial fine-tuning (notebook 03)" if gan else "train a codec (notebook 02)")
        tr.add_argument("--run", help="run directory written by notebook 01")
        tr.add_argument("--train-manifest")
        tr.add_argument("--val-manifest")
        tr.add_argument("--out", help=f"output folder (default: RUN/{'codec_gan' if gan else 'codec'})")
        tr.add_argument("--preset", default=None if gan else "fast50",
                        help="codec preset: fast50 (codec v2), fast50_gpu, fast50_tiny, or the seed design's seed, "
                             "seed_50hz, laptop, tiny" + (" (train-gan: only without --init; by default the "
                                                          "architecture of the codec it starts from)" if gan else ""))
        tr.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train on the crops as recorded (default: the augmentation chain of notebook 02)")
        tr.add_argument("--real-share", type=float, default=0.25,
                        help="share of crops from the real clips in the training manifest (0: by duration)")
        tr.add_argument("--device", default="auto")
        tr.add_argument("--no-progress", action="store_true")
        if gan:
            tr.add_argument("--init", help="codec.pt to start from (default: RUN/codec/codec.pt)")
        for f in dataclasses.fields(config_cls):
            if f.type in numeric:
                tr.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=numeric[f.type], default=None)
    for name in ("encode", "decode"):
        p = sub.add_parser(name, help=f"{name} one file")
        p.add_argument("input", type=Path)
        p.add_argument("output", type=Path)
        p.add_argument("--checkpoint", required=True, type=Path)
        p.add_argument("--n-q", type=int, default=None, help="quantizer levels (default: all)")
    ev = sub.add_parser("eval", help="metrics over a folder of audio files (JSON)")
    ev.add_argument("--checkpoint", required=True, type=Path)
    ev.add_argument("--audio", required=True, type=Path)
    ev.add_argument("--n-q", type=int, default=None)
    args = parser.parse_args(argv)

    try:
        if args.command in ("train", "train-gan"):
            return _train(args)
        codec = load_codec(args.checkpoint)
        if args.command == "encode":
            save_checkpoint(args.output, encode_file(codec, args.input, args.n_q), kind="codes")
            print(f"{args.output}: {codec.config.bitrate_kbps(args.n_q):.1f} kbps")
        elif args.command == "decode":
            record = load_checkpoint(args.input, kind="codes")
            save_audio(args.output, decode_record(codec, record).numpy(), codec.sample_rate)
            print(args.output)
        else:
            if not args.audio.is_dir():
                print(f"error: {args.audio} is not a folder of audio files", file=sys.stderr)
                return 2
            print(json.dumps(evaluate_folder(codec, args.audio, args.n_q), allow_nan=False))
    except (AudioError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
