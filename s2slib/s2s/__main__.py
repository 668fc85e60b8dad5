"""Command line of the S2S stage (the same code paths as notebook 05).

    python -m s2slib.s2s tokenize ...                       # see python -m s2slib.s2s.tokens --help
    python -m s2slib.s2s pretrain --run runs/laptop [--preset laptop] [--max-steps 1500] [--out DIR]
    torchrun --nproc_per_node 2 -m s2slib.s2s pretrain --run runs/gpu --preset gpu
    python -m s2slib.s2s generate --model runs/laptop/s2s_pretrain/s2s.pt --codec runs/laptop/codec/codec.pt \\
        --prompt question.wav --out answer.wav [--speaker Priya] [--emotion happy] [--seconds 6]

``pretrain`` tokenizes the run's manifests and conversations with the codec (notebook 02's ``codec/codec.pt`` unless
``--codec-checkpoint`` says otherwise; cached, so a rerun encodes nothing) and trains into ``<run>/s2s_pretrain``,
resuming a run that was stopped. ``generate`` continues (or answers) one recording and writes the audio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from s2slib.audio import AudioError, load_audio, save_audio
from s2slib.checkpoint import CheckpointError


def _pretrain(args: argparse.Namespace) -> int:
    from s2slib.baseline import load_audio_codec
    from s2slib.s2s.config import S2SConfig
    from s2slib.s2s.data import load_items
    from s2slib.s2s.tokens import TokenCache, codec_fingerprint, tokenize_run
    from s2slib.s2s.train import S2STrainConfig, S2STrainer

    run = Path(args.run)
    checkpoint = Path(args.codec_checkpoint) if args.codec_checkpoint else run / "codec" / "codec.pt"
    codec = load_audio_codec(args.codec_kind, checkpoint, encodec_weights=checkpoint, device=args.token_device)
    settings = {"bandwidth": codec.bandwidth} if args.codec_kind == "encodec" else {}
    cache = TokenCache(run / "tokens", codec_fingerprint(checkpoint, args.codec_kind, **settings))
    tokens = tokenize_run(codec, cache, run / "data", device=args.token_device, progress=not args.no_progress)
    print(tokens.summary(), file=sys.stderr)
    config = S2SConfig.for_codec(args.preset, cache.info)
    train_cfg = S2STrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    trainer = S2STrainer(config, train_cfg, load_items(tokens.train, config.n_q), load_items(tokens.val, config.n_q),
                         Path(args.out) if args.out else run / "s2s_pretrain", device=args.device,
                         codec_fingerprint=cache.fingerprint)
    history = trainer.fit(progress=not args.no_progress)
    if trainer.dist.is_main:
        final = [r for r in history.rows if "val_loss" in r]
        print(json.dumps({"out_dir": str(trainer.out_dir), "step": trainer.step, "parameters":
                          trainer.model.num_parameters(), **(final[-1] if final else {})}))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from s2slib.baseline import load_audio_codec
    from s2slib.s2s.generate import SamplingConfig, generate
    from s2slib.s2s.tokens import codec_info
    from s2slib.s2s.train import checkpoint_info, load_s2s

    model = load_s2s(args.model)
    codec = load_audio_codec(args.codec_kind, args.codec, encodec_weights=args.codec)
    info = codec_info(codec)
    if (model.config.n_q, model.config.codebook_size) != (info["n_q"], info["codebook_size"]):
        raise CheckpointError(f"{args.model} reads {model.config.n_q} x {model.config.codebook_size} codes; the codec "
                              f"{args.codec} does not make those. Give the codec the model was trained with.")
    trained_on = checkpoint_info(args.model).get("codec_fingerprint", "")
    wav, _ = load_audio(args.prompt, codec.sample_rate)
    with torch.inference_mode():
        src = codec.encode(torch.from_numpy(wav).view(1, 1, -1))  # (1, n_q, S)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              max_frames=min(model.config.max_frames, int(args.seconds * model.config.frame_rate)))
    out = generate(model, src, args.speaker, args.emotion, sampling)
    with torch.inference_mode():
        answer = codec.decode(out.codes[0].unsqueeze(0)).view(-1).numpy()
    path = save_audio(args.out, np.concatenate([wav, answer]) if args.with_prompt else answer, codec.sample_rate)
    print(json.dumps({"out": str(path), "answer_seconds": round(len(answer) / codec.sample_rate, 3),
                      "frames": int(out.codes[0].shape[-1]), "ended_at_eos": out.ended[0],
                      "model_codec_fingerprint": trained_on}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tokenize"]:
        from s2slib.s2s.tokens import main as tokens_main

        return tokens_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m s2slib.s2s", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tokenize", help="encode manifests into cached codec tokens (python -m s2slib.s2s.tokens)")
    p = sub.add_parser("pretrain", help="stage 1: pretrain the S2S model as an audio LM on a run's data")
    p.add_argument("--run", required=True, help="the run folder notebooks 01-02 wrote (runs/<profile>)")
    p.add_argument("--codec-kind", choices=("course", "encodec"), default="course")
    p.add_argument("--codec-checkpoint", help="default: <run>/codec/codec.pt")
    p.add_argument("--preset", choices=("smoke", "laptop", "gpu"), default="laptop")
    p.add_argument("--max-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="default: <run>/s2s_pretrain")
    p.add_argument("--device", default="auto")
    p.add_argument("--token-device", default="cpu", help="where the codec encodes the corpus")
    p.add_argument("--no-progress", action="store_true")
    g = sub.add_parser("generate", help="continue or answer one recording with a trained model")
    g.add_argument("--model", required=True, help="s2s.pt")
    g.add_argument("--codec", required=True, help="the codec.pt the model's tokens came from")
    g.add_argument("--codec-kind", choices=("course", "encodec"), default="course")
    g.add_argument("--prompt", required=True, help="input speech (any rate; resampled to the codec's)")
    g.add_argument("--out", required=True)
    g.add_argument("--speaker", help="Arjun, Ravi, Priya or Lakshmi (default: the prompt's voice)")
    g.add_argument("--emotion")
    g.add_argument("--seconds", type=float, default=6.0, help="longest answer")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=50)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--with-prompt", action="store_true", help="write the prompt followed by the answer")
    args = parser.parse_args(argv)
    try:
        return _pretrain(args) if args.command == "pretrain" else _generate(args)
    except (AudioError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
