"""Command line of the S2S stage (the same code paths as notebook 05).

    python -m s2slib.s2s tokenize ...                       # see python -m s2slib.s2s.tokens --help
    python -m s2slib.s2s pretrain --run runs/laptop [--preset laptop] [--max-steps 1500] [--out DIR]
    torchrun --nproc_per_node 2 -m s2slib.s2s pretrain --run runs/gpu --preset gpu
    python -m s2slib.s2s generate --model runs/laptop/s2s_pretrain/s2s.pt --codec runs/laptop/codec/codec.pt \\
        --prompt question.wav --out answer.wav [--speaker Priya] [--emotion happy] [--seconds 6]
    python -m s2slib.s2s finetune --run runs/laptop [--pairs 64] [--dialogues 0] [--max-steps 1200] [--cpu-bf16 auto]
    python -m s2slib.s2s eval --run runs/laptop [--checkpoint runs/laptop/s2s_answer/s2s.pt]
    python -m s2slib.s2s answer QUESTION.wav --run runs/laptop --voice Priya --emotion happy -o ANSWER.wav \\
        [--turn user:EARLIER_Q.wav --turn agent:EARLIER_A.wav ...] [--context ctx.json --save-context ctx.json]

``finetune`` (stages 2-3) starts from ``<run>/s2s_pretrain/s2s.pt`` and trains into ``<run>/s2s_answer``; ``eval``
prints the answer evaluation as JSON (:mod:`s2slib.s2s.evaluate`); ``answer`` answers one question, after earlier
turns if given. ``pretrain`` tokenizes the run's manifests and conversations with the codec (notebook 02's ``codec/codec.pt`` unless
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
from s2slib.runtime import set_threads


def _run_tokens(args: argparse.Namespace):
    """The run's codec and its tokens (tokenized now where the cache lacks them): ``(codec, cache, RunTokens)``."""
    from s2slib.baseline import load_audio_codec
    from s2slib.s2s.tokens import TokenCache, codec_fingerprint, tokenize_run

    run = Path(args.run)
    checkpoint = Path(args.codec_checkpoint) if args.codec_checkpoint else run / "codec" / "codec.pt"
    codec = load_audio_codec(args.codec_kind, checkpoint, encodec_weights=checkpoint, device=args.token_device)
    settings = {"bandwidth": codec.bandwidth} if args.codec_kind == "encodec" else {}
    cache = TokenCache(run / "tokens", codec_fingerprint(checkpoint, args.codec_kind, **settings))
    tokens = tokenize_run(codec, cache, run / "data", device=args.token_device, progress=not args.no_progress)
    print(tokens.summary(), file=sys.stderr)
    return codec, cache, tokens


def _pretrain(args: argparse.Namespace) -> int:
    from s2slib.s2s.config import S2SConfig
    from s2slib.s2s.data import load_items
    from s2slib.s2s.train import S2STrainConfig, S2STrainer

    run = Path(args.run)
    _, cache, tokens = _run_tokens(args)
    config = S2SConfig.for_codec(args.preset, cache.info)
    train_cfg = S2STrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    trainer = S2STrainer(config, train_cfg, load_items(tokens.train, config.n_q), load_items(tokens.val, config.n_q),
                         Path(args.out) if args.out else run / "s2s_pretrain", device=args.device,
                         codec_fingerprint=cache.fingerprint,
                         codec_latent=cache.latent_table() if config.latent_dim else None)
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


def _finetune(args: argparse.Namespace) -> int:
    from s2slib.s2s.finetune import AnswerTask, AnswerTrainConfig, AnswerTrainer, finetune_inputs
    from s2slib.training import cpu_bf16_choice

    run = Path(args.run)
    _, cache, tokens = _run_tokens(args)
    pretrained = Path(args.pretrained) if args.pretrained else run / "s2s_pretrain" / "s2s.pt"
    if not pretrained.exists():
        raise FileNotFoundError(f"{pretrained} does not exist: pretrain first (notebook 05, or python -m s2slib.s2s "
                                "pretrain --run RUN)")
    config, sources, examples = finetune_inputs(tokens, pretrained, args.pairs, args.dialogues, args.max_context_s,
                                                args.seed)
    train_cfg = AnswerTrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  cpu_bf16=cpu_bf16_choice(args.cpu_bf16),
                                  answer=AnswerTask(max_answer_frames=int(args.max_answer_s * config.frame_rate),
                                                    transcribe_weight=args.transcribe_weight,
                                                    speak_q=args.speak_q, pair_history=args.pair_history,
                                                    pair_history_turns=args.pair_history_turns,
                                                    length_buckets=args.length_buckets))
    trainer = AnswerTrainer(config, train_cfg, examples["train"], examples["val"],
                            Path(args.out) if args.out else run / "s2s_answer", pretrained=pretrained,
                            device=args.device, codec_fingerprint=cache.fingerprint, sources=sources)
    history = trainer.fit(progress=not args.no_progress)
    if trainer.dist.is_main:
        final = [r for r in history.rows if "val_loss" in r]
        print(json.dumps({"out_dir": str(trainer.out_dir), "step": trainer.step, "train_examples":
                          len(examples["train"]), "sources": len(sources), **(final[-1] if final else {})}))
    return 0


def _load_answer_model(args: argparse.Namespace, cache_fingerprint: str):
    from s2slib.s2s.train import checkpoint_info, load_s2s

    path = Path(args.checkpoint) if args.checkpoint else Path(args.run) / "s2s_answer" / "s2s.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: fine-tune first (notebook 06, or python -m s2slib.s2s "
                                "finetune --run RUN)")
    info = checkpoint_info(path)
    if info.get("codec_fingerprint", "") != cache_fingerprint:
        raise CheckpointError(f"{path} was trained on tokens of another codec than {args.run}'s; give that codec "
                              "with --codec-checkpoint.")
    return load_s2s(path), info


def _eval(args: argparse.Namespace) -> int:
    from s2slib.s2s.evaluate import EvalConfig, evaluate_answers, voice_classifier
    from s2slib.s2s.finetune import AnswerTask, heldout_sets, split_examples

    set_threads(args.threads)
    codec, cache, tokens = _run_tokens(args)
    model, info = _load_answer_model(args, cache.fingerprint)
    task = AnswerTask(**info["answer_task"]) if "answer_task" in info else AnswerTask()
    examples = split_examples(tokens.conversations, model.config.n_q, set(info.get("sources") or []) or None,
                              task.max_turns)
    pairs, followups, dialogue_texts = heldout_sets(examples["test"])
    classifier, _ = voice_classifier(codec, tokens.train, list(model.config.speakers), args.classifier_per_voice,
                                     seed=args.seed)
    cfg = EvalConfig(n_response=args.n_response, n_context=args.n_context, n_emotion_questions=args.emotion_questions,
                     max_answer_s=args.max_answer_s, temperature=args.temperature, seed=args.seed, task=task)
    result = evaluate_answers(model, codec, pairs, followups, dialogue_texts, classifier, cfg,
                              progress=not args.no_progress)
    result.pop("audio")
    if not args.details:
        result.pop("details")
    print(json.dumps(result, ensure_ascii=False))
    return 0


def _answer(args: argparse.Namespace) -> int:
    from s2slib.baseline import load_audio_codec
    from s2slib.s2s.context import ConversationContext
    from s2slib.s2s.generate import SamplingConfig, generate
    from s2slib.s2s.tokens import codec_fingerprint

    run = Path(args.run)
    checkpoint = Path(args.codec_checkpoint) if args.codec_checkpoint else run / "codec" / "codec.pt"
    codec = load_audio_codec("course", checkpoint)
    model, _ = _load_answer_model(args, codec_fingerprint(checkpoint, "course"))

    def codes_of(path: str) -> np.ndarray:
        wav, _ = load_audio(path, codec.sample_rate)
        with torch.inference_mode():
            return codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0].numpy()  # (n_q, F)

    ctx = (ConversationContext.from_json(Path(args.context).read_text(encoding="utf-8"))
           if args.context and Path(args.context).exists() else ConversationContext())
    for spec in args.turn:
        role, _, path = spec.partition(":")
        if role not in ("user", "agent") or not path:
            raise ValueError(f"--turn takes ROLE:PATH with ROLE user or agent, got {spec!r}")
        ctx.append(role, codes_of(path))
    question = codes_of(args.question)
    src = torch.from_numpy(ctx.source(question, model.config)).unsqueeze(0)
    sampling = SamplingConfig(temperature=args.temperature, seed=args.seed,
                              max_frames=min(model.config.max_frames, int(args.seconds * model.config.frame_rate)))
    out = generate(model, src, args.voice, args.emotion, sampling)
    codes = out.codes[0]
    with torch.inference_mode():
        answer = codec.decode(codes.unsqueeze(0)).view(-1).numpy()
    path = save_audio(args.out, answer, codec.sample_rate)
    if args.save_context:
        ctx.append("user", question)
        ctx.append("agent", codes.numpy(), speaker=args.voice, emotion=args.emotion)
        Path(args.save_context).write_text(ctx.to_json(), encoding="utf-8")
    print(json.dumps({"out": str(path), "answer_seconds": round(len(answer) / codec.sample_rate, 3),
                      "ended_at_eos": out.ended[0], "context_turns": len(ctx), "voice": args.voice,
                      "emotion": args.emotion}))
    return 0


def _tokens_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the run folder the notebooks wrote (runs/<profile>)")
    p.add_argument("--codec-kind", choices=("course", "encodec"), default="course")
    p.add_argument("--codec-checkpoint", help="default: <run>/codec/codec.pt")
    p.add_argument("--token-device", default="cpu", help="where the codec encodes the corpus")
    p.add_argument("--no-progress", action="store_true")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tokenize"]:
        from s2slib.s2s.tokens import main as tokens_main

        return tokens_main(argv[1:])
    from s2slib.s2s.finetune import AnswerTask

    parser = argparse.ArgumentParser(prog="python -m s2slib.s2s", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tokenize", help="encode manifests into cached codec tokens (python -m s2slib.s2s.tokens)")
    p = sub.add_parser("pretrain", help="stage 1: pretrain the S2S model as an audio LM on a run's data")
    _tokens_arguments(p)
    p.add_argument("--preset", choices=("smoke", "laptop", "gpu"), default="laptop")
    p.add_argument("--max-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="default: <run>/s2s_pretrain")
    p.add_argument("--device", default="auto")
    f = sub.add_parser("finetune", help="stages 2-3: fine-tune the pretrained model to answer, with context")
    _tokens_arguments(f)
    f.add_argument("--pretrained", help="stage 1's s2s.pt (default: <run>/s2s_pretrain/s2s.pt)")
    f.add_argument("--pairs", type=int, default=64, help="question-answer pairs to learn (0: all)")
    f.add_argument("--dialogues", type=int, default=0, help="dialogues to learn (0: all)")
    f.add_argument("--max-steps", type=int, default=750)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--lr", type=float, default=5e-4)
    f.add_argument("--max-context-s", type=float, default=15.0, help="longest encoder input (earlier turns + question)")
    f.add_argument("--max-answer-s", type=float, default=8.0, help="longer answers are cropped in training")
    f.add_argument("--transcribe-weight", type=float, default=AnswerTask.transcribe_weight,
                   help="weight of the encoder's auxiliary transcription (CTC) loss on the question's words (0: off)")
    f.add_argument("--speak-q", type=int, default=0,
                   help="codebooks the fine-tuned model speaks, coarse to fine (0: all; the codec decodes those alone)")
    f.add_argument("--pair-history", type=float, default=0.0,
                   help="share of the pair batches asked after earlier exchanges of other pairs (0: none)")
    f.add_argument("--pair-history-turns", type=int, default=AnswerTask.pair_history_turns,
                   help="most earlier exchanges such a pair gets")
    f.add_argument("--length-buckets", type=int, default=1,
                   help="batches drawn from this many length ranges per kind of example (less padding)")
    f.add_argument("--cpu-bf16", choices=("auto", "on", "off"), default="auto",
                   help="bfloat16 autocast when training on CPU (auto: where the CPU multiplies bfloat16 natively)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", help="default: <run>/s2s_answer")
    f.add_argument("--device", default="auto")
    e = sub.add_parser("eval", help="measure whether the fine-tuned model answers (JSON)")
    _tokens_arguments(e)
    e.add_argument("--checkpoint", help="the fine-tuned s2s.pt (default: <run>/s2s_answer/s2s.pt)")
    e.add_argument("--n-response", type=int, default=0, help="held-out questions to answer (0: all)")
    e.add_argument("--n-context", type=int, default=0, help="context-dependent follow-ups (0: all)")
    e.add_argument("--emotion-questions", type=int, default=3, help="questions answered in each of the 9 emotions")
    e.add_argument("--max-answer-s", type=float, default=12.0, help="an answer not ended by then is cut")
    e.add_argument("--classifier-per-voice", type=int, default=40, help="utterances per voice for the voice classifier")
    e.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of every answer (0: greedy)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--details", action="store_true", help="also print every answer's match")
    a = sub.add_parser("answer", help="answer one spoken question (after earlier turns, if given)")
    a.add_argument("question", help="the question's audio (any rate; resampled)")
    a.add_argument("-o", "--out", required=True, help="where to write the answer (WAV)")
    a.add_argument("--run", required=True, help="the run folder (its codec and s2s_answer/s2s.pt)")
    a.add_argument("--checkpoint", help="default: <run>/s2s_answer/s2s.pt")
    a.add_argument("--codec-checkpoint", help="default: <run>/codec/codec.pt")
    a.add_argument("--voice", default="Priya", help="Arjun, Ravi, Priya or Lakshmi")
    a.add_argument("--emotion", default="neutral")
    a.add_argument("--turn", action="append", default=[], metavar="ROLE:WAV",
                   help="an earlier turn, oldest first (repeat): user:q1.wav agent:a1.wav ...")
    a.add_argument("--context", help="a saved conversation context (JSON) to continue")
    a.add_argument("--save-context", help="write the context with this question and answer added (JSON)")
    a.add_argument("--seconds", type=float, default=12.0, help="longest answer")
    a.add_argument("--temperature", type=float, default=0.7)
    a.add_argument("--seed", type=int, default=0)
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
        commands = {"pretrain": _pretrain, "generate": _generate, "finetune": _finetune, "eval": _eval,
                    "answer": _answer}
        return commands[args.command](args)
    except (AudioError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
