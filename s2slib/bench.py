"""Benchmarks: speed and size figures measured by a script, never by a timed test.

    python -m s2slib.bench codec [--preset fast50] [--checkpoint C] [--seconds 10] [--threads 1] [--repeats 3]
                                 [--no-fold] [--float-decoder]
    python -m s2slib.bench s2s [--model runs/laptop/s2s_pretrain/s2s.pt] [--codec runs/laptop/codec/codec.pt]
                               [--prompt-seconds 3] [--answer-seconds 4] [--threads 2] [--repeats 3]
    python -m s2slib.bench agent [--run runs/laptop] [--questions 20] [--threads 1] [--max-sessions 8]
    python -m s2slib.bench finetune [--run runs/laptop] [--profile laptop] [--steps 40] [--threads 2]

``codec`` prints one JSON object: for the course codec and for EnCodec 24 kHz (the architecture of the ``encodec``
package, measured in the same run on the same machine), the parameter count and the offline encode and decode time
per second of audio (real-time factor: seconds of compute per second of audio; below 1 is faster than real time),
plus the course codec's streaming step time for one frame and for a 20 ms chunk. Top-level keys:
``speedup_vs_encodec`` (EnCodec's encode+decode time divided by ours, per second of audio), ``stream_ms_per_20ms``
(median time of one streaming encode+decode step on a 20 ms chunk: below 20 keeps up with live audio),
``stream_matmul_floor_ms`` (``stft`` family only: the median time of that step's matrix products alone, every
dense layer of the encoder and decoder applied to one frame; at one frame they read each weight once and do little
with it, so this is the cost of reading the weights on this machine, a floor no step of these weights can beat;
the rest of ``stream_ms_per_20ms`` is the other operations and their fixed cost per call) and ``latency_ms`` (the
codec's algorithmic latency, ``config.latency_samples()``; compute time comes on top).

The course codec is timed as it would serve: a copy with weight norm folded into plain weights
(:func:`s2slib.codec.layers.fold_weight_norm`), unless ``--no-fold``, and with its decoder's linear layers in int8
(:func:`s2slib.codec.layers.quantize_decoder_int8`; the codes stay the float codec's), unless ``--float-decoder``;
the float decoder's figures are reported beside them (``stream_ms_per_20ms_float``, ``speedup_vs_encodec_float``). The default preset is ``fast50``, the codec
the S2S stages use; ``--preset seed`` times the seed design.

Speed does not depend on the weights, so both models run with random weights unless ``--checkpoint`` is given;
EnCodec's are always random here (labelled so), because this measures time, not quality.

``s2s`` prints one JSON object for the laptop-size S2S model answering a prompt through the streaming codec decoder
on the CPU: ``first_audio_ms`` (from the end of the input speech, its codes in hand, to the first decoded answer
audio: the encoder pass, the decoder steps the delay pattern needs before a frame is complete, and the codec's
decode), ``frames_per_s`` (decoder frames per second of compute), ``rtf`` (generation plus decoding time over the
answer's duration) and ``params``. It uses the trained model and codec of the laptop run when they exist (or the
paths given), else random weights, and says which; the answer is forced to ``--answer-seconds`` so every repeat
times the same work. The input's own encoding is not in ``first_audio_ms``: the streaming encoder turns the
question into codes while it is being spoken (its step time is ``bench codec``'s).

``agent`` streams held-out questions of a trained run (the newest, or ``--run``), in real time, 20 ms at a time,
through one live session (:mod:`s2slib.agent`: VAD, end of turn, streaming encode, answer, streaming decode) and
times on the client's clock: ``e2e_ms_median`` and ``e2e_ms_p95`` (from the true end of the question's speech to
the first answer audio, with the default end-of-turn silence), ``after_eot_ms_median`` (from the end-of-turn event
to that audio), ``stages_ms`` (the session's own medians: end-of-turn wait, encode, first frame, first audio),
``rtf_median``. Then it runs 1, 2, 4, ... sessions at once, each streaming two questions in real time, and reports
``realtime_sessions``: the most for which every answer was generated faster than it plays, no client fell more
than 100 ms behind its sending schedule (the machine kept up with every microphone) and no answer left its player
waiting 100 ms or more in all (``max_underrun_ms``: the answer pauses while its audio is late; the session sends
audio at most ``AgentConfig.max_lead_s`` ahead of playback, so a busy machine shows up here). Each row also says
how many answers the engine's one decoder thread advanced per batched step on average (``answers_per_decoder_step``).
``call_costs_ms``: the time of one batched decoder step carrying 1, 4 and 8 answers, and of one streaming codec
encode (20 and 80 ms of audio) and decode (2 and 8 frames) call, each alone.

``finetune`` times notebook 06's fine-tuning at a profile's settings (``notebooks/params/<profile>.yaml``) on a
trained run: the same pairs, dialogues, context length and batches, from the pretrained model, for ``--steps``
steps in float32 and again under bfloat16 autocast where the CPU multiplies bfloat16 natively
(:func:`s2slib.training.cpu_has_native_bf16`; else that row says why it was skipped). Each row gives
``s_per_step`` and ``projected_minutes`` (times the profile's ``max_steps``, without validation and checkpoints);
``speedup_bf16`` is float32's time over bfloat16's. Training runs into a temporary folder; the run is not changed.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch

from s2slib.runtime import set_threads


def speech(seconds: float, sample_rate: int) -> np.ndarray:
    """``seconds`` of Telugu speech synthesized offline (eSpeak NG), at ``sample_rate``: float32 ``(T,)``."""
    from s2slib.audio import resample
    from s2slib.data import synth

    lines = ["నమస్కారం, మీకు ఎలా సహాయం చేయగలను?", "ఈ రోజు వాతావరణం చాలా బాగుంది.", "రేపు ఉదయం పది గంటలకు కలుద్దాం."]
    parts, total, i = [], 0, 0
    while total < seconds * synth.SAMPLE_RATE:
        wav = synth.synthesize(lines[i % len(lines)], ["Priya", "Arjun", "Lakshmi", "Ravi"][i % 4])
        parts.append(wav)
        total += len(wav)
        i += 1
    wav = np.concatenate(parts)[: int(seconds * synth.SAMPLE_RATE)]
    return resample(wav, synth.SAMPLE_RATE, sample_rate)


def _best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one warm-up call), in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _dense_layers(module: torch.nn.Module) -> list:
    """Each dense layer of ``module`` as a callable on one frame ``Tensor[1, in_features]``, with that input: its
    ``nn.Linear`` layers (float or dynamically quantized int8) and 1x1 ``nn.Conv1d`` layers, in module order."""
    calls = []
    for m in module.modules():
        if isinstance(m, torch.nn.Conv1d) and m.kernel_size == (1,) and m.groups == 1:
            weight, bias = m.weight[..., 0], m.bias
            calls.append((lambda x, w=weight, b=bias: torch.nn.functional.linear(x, w, b),
                          torch.randn(1, m.in_channels)))
        elif isinstance(m, torch.nn.Linear) or "quantized" in type(m).__module__ and hasattr(m, "in_features"):
            calls.append((m, torch.randn(1, m.in_features)))
    return calls


def _matmul_floor_ms(codec, steps: int) -> float:
    """Median time, over ``steps`` repeats, of applying every dense layer of the codec's encoder and decoder to one
    frame, in order: the matrix products of one streaming step of the ``stft`` family alone. At one frame a matrix
    product reads each weight once and does little with it, so this is what reading the weights costs on this
    machine, and no streaming step of these weights can be faster."""
    calls = _dense_layers(codec.encoder) + _dense_layers(codec.decoder)
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()
        for layer, x in calls:
            layer(x)
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def bench_course_codec(preset: str, checkpoint: str | None, seconds: float, repeats: int, fold: bool = True,
                       int8_decoder: bool = False) -> dict:
    """Offline and streaming timings of the course codec (its weight norm folded first if ``fold``, its decoder's
    linear layers in int8 if ``int8_decoder``)."""
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.layers import fold_weight_norm, quantize_decoder_int8
    from s2slib.codec.model import Codec
    from s2slib.codec.train import load_codec

    codec = load_codec(checkpoint) if checkpoint else Codec(CodecConfig.preset(preset)).eval()
    parameters = codec.num_parameters()  # of the model as trained (folding merges each g and v into one weight)
    if fold:
        codec = fold_weight_norm(codec).eval()
    if int8_decoder:
        codec = quantize_decoder_int8(codec).eval()
    cfg = codec.config
    wav = torch.from_numpy(speech(seconds, cfg.sample_rate)).view(1, 1, -1)
    codes = codec.encode(wav)
    t_enc = _best_of(lambda: codec.encode(wav), repeats)
    t_dec = _best_of(lambda: codec.decode(codes), repeats)

    def stream(chunk: int, n_chunks: int) -> list[float]:
        enc, dec = codec.streaming_encoder(), codec.streaming_decoder()
        steps = []
        for i in range(n_chunks + 5):
            x = wav[..., (i * chunk) % (wav.shape[-1] - chunk):][..., :chunk]
            t0 = time.perf_counter()
            dec.push(enc.push(x))
            if i >= 5:  # the first pushes warm up the caches
                steps.append((time.perf_counter() - t0) * 1000)
        return steps

    frame_ms = 1000 * cfg.hop_length / cfg.sample_rate
    one = stream(cfg.hop_length, 200)
    chunk_20ms = round(0.020 * cfg.sample_rate)  # samples in 20 ms
    twenty = stream(chunk_20ms, 50)
    return {
        "model": f"course codec, checkpoint {checkpoint}" if checkpoint
                 else f"course codec, preset {preset} (random weights)",
        "architecture": cfg.architecture,
        "weight_norm_folded": fold,
        "decoder_int8": int8_decoder,
        "parameters": parameters,
        "sample_rate": cfg.sample_rate,
        "frame_rate": cfg.frame_rate,
        "kbps": cfg.bitrate_kbps(),
        "encode_rtf": t_enc / seconds,
        "decode_rtf": t_dec / seconds,
        "encode_ms_per_s": 1000 * t_enc / seconds,
        "decode_ms_per_s": 1000 * t_dec / seconds,
        "frame_ms": frame_ms,
        "stream_step_ms_1_frame": {"median": statistics.median(one), "p95": float(np.percentile(one, 95))},
        f"stream_step_ms_{chunk_20ms / cfg.hop_length:g}_frames": {"median": statistics.median(twenty),
                                                                   "p95": float(np.percentile(twenty, 95))},
        "stream_1_frame_within_frame": statistics.median(one) < frame_ms,
        "stream_ms_per_20ms": statistics.median(twenty),
        # one frame's matrix products alone, in the stft family (one frame per 20 ms chunk at 50 frames/s); the
        # seed design's convolutions run at 16 and 8 kHz, where this measure means nothing
        "stream_matmul_floor_ms": _matmul_floor_ms(codec, 50) if cfg.architecture == "stft" else None,
        "latency_ms": 1000 * cfg.latency_samples() / cfg.sample_rate,
    }


@torch.inference_mode()
def bench_encodec(seconds: float, repeats: int, bandwidth: float = 6.0) -> dict:
    """Offline timings of EnCodec 24 kHz (``encodec`` package architecture, random weights: timing only)."""
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(bandwidth)
    wav = torch.from_numpy(speech(seconds, model.sample_rate)).view(1, 1, -1)
    frames = model.encode(wav)
    t_enc = _best_of(lambda: model.encode(wav), repeats)
    t_dec = _best_of(lambda: model.decode(frames), repeats)
    return {
        "model": "EnCodec 24 kHz (encodec package architecture, untrained weights: timing only)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "sample_rate": model.sample_rate,
        "frame_rate": model.frame_rate,
        "kbps": bandwidth,
        "encode_rtf": t_enc / seconds,
        "decode_rtf": t_dec / seconds,
        "encode_ms_per_s": 1000 * t_enc / seconds,
        "decode_ms_per_s": 1000 * t_dec / seconds,
    }


def bench_codec(preset: str = "fast50", checkpoint: str | None = None, seconds: float = 10.0, threads: int = 1,
                repeats: int = 3, fold: bool = True, int8_decoder: bool = True) -> dict:
    """Both codecs on ``threads`` CPU threads; see the module docstring."""
    threads = set_threads(threads)
    ours = bench_course_codec(preset, checkpoint, seconds, repeats, fold, int8_decoder)
    theirs = bench_encodec(seconds, repeats)
    theirs_total = theirs["encode_rtf"] + theirs["decode_rtf"]
    result = {
        "benchmark": "codec",
        "speedup_vs_encodec": theirs_total / (ours["encode_rtf"] + ours["decode_rtf"]),
        "stream_ms_per_20ms": ours.pop("stream_ms_per_20ms"),
        "stream_matmul_floor_ms": ours.pop("stream_matmul_floor_ms"),
        "latency_ms": ours.pop("latency_ms"),
    }
    if int8_decoder:  # the float decoder too, measured in the same run
        plain = bench_course_codec(preset, checkpoint, seconds, repeats, fold, False)
        result["speedup_vs_encodec_float"] = theirs_total / (plain["encode_rtf"] + plain["decode_rtf"])
        result["stream_ms_per_20ms_float"] = plain.pop("stream_ms_per_20ms")
        result["stream_matmul_floor_ms_float"] = plain.pop("stream_matmul_floor_ms")
        plain.pop("latency_ms")
        result["ours_float_decoder"] = plain
    return {**result, "threads": threads, "audio_seconds": seconds, "device": "cpu",
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "ours": ours,
            "encodec_24khz": theirs}


def _default_artifact(rel: str) -> str | None:
    """``runs/laptop/<rel>`` (under ``$S2S_RUNS_DIR`` when set) if a laptop run wrote it."""
    from s2slib import paths

    path = paths.runs_dir() / "laptop" / rel
    return str(path) if path.is_file() else None


@torch.inference_mode()
def bench_s2s(model_path: str | None = None, codec_path: str | None = None, prompt_s: float = 3.0,
              answer_s: float = 4.0, threads: int = 2, repeats: int = 3) -> dict:
    """The S2S model's answer latency and speed on the CPU; see the module docstring."""
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.layers import fold_weight_norm
    from s2slib.codec.model import Codec
    from s2slib.codec.train import load_codec
    from s2slib.s2s.config import S2SConfig
    from s2slib.s2s.generate import SamplingConfig, generate_frames, generate_streaming
    from s2slib.s2s.model import S2SModel
    from s2slib.s2s.train import load_s2s

    threads = set_threads(threads)
    model_path = model_path or _default_artifact("s2s_pretrain/s2s.pt")
    codec_path = codec_path or _default_artifact("codec/codec.pt")
    codec = load_codec(codec_path) if codec_path else Codec(CodecConfig.fast50()).eval()
    codec_params = codec.num_parameters()
    codec = fold_weight_norm(codec).eval()
    cfg = codec.config
    if model_path:
        model = load_s2s(model_path)
    else:
        from s2slib.s2s.frontend import codec_latent_table

        torch.manual_seed(0)
        table = codec_latent_table(codec)  # the encoder hears the codec's latent, as a trained model does
        model = S2SModel(S2SConfig.laptop(n_q=cfg.n_q, codebook_size=cfg.codebook_size, frame_rate=cfg.frame_rate,
                                          latent_dim=table.shape[-1])).eval()
        model.set_codec_latent(table)
    if (model.config.n_q, model.config.codebook_size) != (cfg.n_q, cfg.codebook_size):
        raise ValueError(f"the model reads {model.config.n_q} x {model.config.codebook_size} codes but the codec "
                         f"makes {cfg.n_q} x {cfg.codebook_size}; give the codec the model was trained with (--codec)")
    wav = torch.from_numpy(speech(prompt_s, cfg.sample_rate)).view(1, 1, -1)
    src = codec.encode(wav)  # (1, n_q, S): the question, encoded while it was spoken
    frames = int(round(answer_s * model.config.frame_rate))
    sampling = SamplingConfig(max_frames=frames, min_frames=frames, seed=0)  # a fixed amount of work per repeat

    first, total, gen = [], [], []
    for _ in range(repeats + 1):  # the first round warms up
        t0 = time.perf_counter()
        t_first, samples = None, 0
        for chunk in generate_streaming(model, codec, src, None, None, sampling):
            if t_first is None:
                t_first = time.perf_counter() - t0
            samples += len(chunk)
        total.append(time.perf_counter() - t0)
        first.append(t_first)
        t0 = time.perf_counter()
        n = sum(1 for _ in generate_frames(model, src, None, None, sampling))
        gen.append(time.perf_counter() - t0)
    first, total, gen = first[1:], total[1:], gen[1:]
    audio_s = samples / cfg.sample_rate
    return {
        "benchmark": "s2s",
        "first_audio_ms": 1000 * statistics.median(first),
        "frames_per_s": n / statistics.median(gen),
        "rtf": statistics.median(total) / audio_s,
        "params": model.num_parameters(),
        "model": f"S2S checkpoint {model_path}" if model_path else "S2S laptop preset (random weights: timing only)",
        "codec": f"course codec {codec_path}" if codec_path else "course codec fast50 (random weights: timing only)",
        "codec_params": codec_params,
        "n_q": model.config.n_q,
        "spoken_q": model.config.spoken_q,  # codebooks the decoder writes (S2SConfig.speak_q)
        "frame_rate": model.config.frame_rate,
        "tokens_per_s": model.config.spoken_q * model.config.frame_rate,
        "decoder_steps_per_s_of_audio": model.config.frame_rate,
        "ms_per_decoder_step": 1000 * statistics.median(gen) / (n + model.config.spoken_q - 1),
        "prompt_seconds": round(src.shape[-1] / cfg.frame_rate, 3),
        "answer_seconds": round(audio_s, 3),
        "threads": threads,
        "repeats": repeats,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def _median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.median(vals)), 1) if vals else None


def _agent_call_costs(engine, repeats: int = 50) -> dict:
    """Milliseconds per call of what each session repeats: one batched decoder step carrying 1, 4 and 8 answers, and
    the streaming codec's encode and decode calls at the sizes the session can use (their fixed cost is why the
    session gathers audio before calling them: ``AgentConfig.encode_every_ms``, ``later_chunk_frames``)."""
    from s2slib.s2s.batching import BatchedDecoder, start_stream
    from s2slib.s2s.generate import SamplingConfig

    def per_call(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return round(1000 * (time.perf_counter() - t0) / repeats, 2)

    model, codec = engine.model, engine.codec
    c = model.config
    g = torch.Generator().manual_seed(0)
    out: dict = {}
    with torch.inference_mode():
        for n in (1, 4, 8):
            dec = BatchedDecoder(model, slots=n)
            for i in range(n):
                src = torch.randint(0, c.codebook_size, (1, c.n_q, 150), generator=g)
                dec.add(start_stream(model, src, engine.voices[0], None,
                                     SamplingConfig(max_frames=c.max_frames, min_frames=c.max_frames, seed=i)))
            for _ in range(c.n_q):  # past the delay pattern's first steps
                dec.step()
            out[f"decoder_step_{n}_answers"] = per_call(dec.step)
        wav = torch.from_numpy(speech(0.2, engine.sample_rate)).view(1, 1, -1)
        for ms in (20, 80):
            enc = codec.streaming_encoder()
            n = ms * engine.sample_rate // 1000
            out[f"encode_{ms}ms"] = per_call(lambda: enc.push(wav[..., :n]))
        for frames in (2, 8):
            dec = codec.streaming_decoder()
            codes = torch.randint(0, c.codebook_size, (1, c.n_q, frames), generator=g)
            out[f"decode_{frames}_frames"] = per_call(lambda: dec.push(codes))
    return out


def bench_agent(run: str | None = None, questions: int = 20, threads: int = 1, max_sessions: int = 8,
                progress: bool = True) -> dict:
    """The live agent's latency and capacity on this machine; see the module docstring."""
    import asyncio

    from s2slib.agent.client import heldout_questions, kept_real_time, talk_in_process
    from s2slib.agent.config import AgentConfig
    from s2slib.agent.engine import AgentEngine

    engine = AgentEngine(run, threads=threads)
    asked = heldout_questions(engine.run, questions, sources=engine.sources)
    if len(asked) < questions:
        raise ValueError(f"{engine.run} holds {len(asked)} held-out questions; asked for {questions}")
    config = AgentConfig()
    wavs = [q.wav for q in asked]
    settings = [(q.voice, q.emotion) for q in asked]
    if progress:
        print(f"agent: {len(wavs)} held-out questions in real time through one session ({engine.run})",
              file=sys.stderr)
    asyncio.run(talk_in_process(engine, wavs[:1], config))  # warm-up
    results, session = asyncio.run(talk_in_process(engine, wavs, config, settings=settings))
    answered = [r for r in results if r.answered and r.e2e_ms is not None]
    e2e = [r.e2e_ms for r in answered]
    tel = session.telemetry

    def concurrent(k: int) -> tuple[bool, dict]:
        async def many():
            return await asyncio.gather(*[talk_in_process(engine, wavs[2 * i % len(wavs):2 * i % len(wavs) + 2],
                                                          config) for i in range(k)])

        steps0, rows0 = engine.decoder.steps, engine.decoder.stream_steps
        outs = asyncio.run(many())
        steps = engine.decoder.steps - steps0
        turns = [(r, s) for rs, s in outs for r in rs]
        rtfs = [t.rtf for _, s in outs for t in s.telemetry]
        lag = max(r.max_lag_ms for r, _ in turns)
        stall = max((r.underrun_ms for r, _ in turns if not r.interrupted), default=0.0)
        ok = all(kept_real_time(rs, s) for rs, s in outs)
        row = {"sessions": k, "ok": ok, "e2e_ms_median": _median([r.e2e_ms for r, _ in turns]),
               "rtf_max": round(max(rtfs), 3) if rtfs else None, "max_lag_ms": round(lag, 1),
               "max_underrun_ms": round(stall, 1),
               "answers_per_decoder_step": round((engine.decoder.stream_steps - rows0) / steps, 2) if steps else None}
        if progress:
            print(f"agent: {k} sessions at once: {row}", file=sys.stderr)
        return ok, row

    costs = _agent_call_costs(engine)
    capacity, rows, k = 0, [], 1
    while k <= max_sessions:
        ok, row = concurrent(k)
        rows.append(row)
        if not ok:
            break
        capacity = k
        k = k * 2 if k < 4 else k + 2
    return {
        "benchmark": "agent",
        "questions": len(results),
        "answered": len(answered),
        "e2e_ms_median": _median(e2e),
        "e2e_ms_p95": round(float(np.percentile(e2e, 95)), 1) if e2e else None,
        "after_eot_ms_median": _median([r.after_eot_ms for r in answered]),
        "end_of_turn_ms": config.end_of_turn_ms,
        "stages_ms": {k: _median([getattr(t, k) for t in tel])
                      for k in ("eot_delay_ms", "encode_ms", "first_frame_ms", "first_audio_ms")},
        "rtf_median": round(float(np.median([t.rtf for t in tel if np.isfinite(t.rtf)])), 3) if tel else None,
        "answer_s_median": _median([t.answer_s for t in tel]),
        "realtime_sessions": capacity,
        "call_costs_ms": costs,
        "concurrency": rows,
        "run": str(engine.run),
        "model_params": engine.model.num_parameters(),
        "threads": threads,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def bench_finetune(run: str | None = None, profile: str = "laptop", steps: int = 40, threads: int = 2,
                   progress: bool = True) -> dict:
    """Seconds per fine-tuning step of notebook 06 at ``profile``'s settings; see the module docstring."""
    import tempfile

    from s2slib import paths
    from s2slib.baseline import load_audio_codec
    from s2slib.course import declared_parameters, load_profile
    from s2slib.run import RunDir
    from s2slib.s2s.finetune import AnswerTask, AnswerTrainConfig, AnswerTrainer, finetune_inputs
    from s2slib.s2s.tokens import TokenCache, codec_fingerprint, tokenize_run
    from s2slib.training import cpu_has_native_bf16

    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    threads = set_threads(threads)
    notebook = paths.notebooks_dir() / "06_s2s_finetune.ipynb"
    defaults = {k: ast.literal_eval(v) for k, v in declared_parameters(notebook).items()}  # the notebook's source text
    p = {**defaults, **load_profile(paths.notebooks_dir() / "params", profile).get(notebook.stem, {})}
    rd = RunDir.open(run or "", profile)
    pretrained = rd.require("s2s_pretrain/s2s.pt", produced_by="05_s2s_pretrain")
    codec_path = rd.require("codec/codec.pt", produced_by="02_codec")
    cache = TokenCache(rd.subdir("tokens"), codec_fingerprint(codec_path, "course"))
    tokens = tokenize_run(load_audio_codec("course", codec_path), cache,
                          rd.require("data/manifests", produced_by="01_data").parent, progress=progress)
    config, sources, examples = finetune_inputs(tokens, pretrained, p["n_pairs"], p["n_dialogues"],
                                                p["max_context_s"], p["seed"])
    task = AnswerTask(max_answer_frames=int(p["max_answer_s"] * config.frame_rate),
                      transcribe_weight=p["transcribe_weight"], speak_q=p["speak_q"], pair_history=p["pair_history"],
                      pair_history_turns=p["pair_history_turns"], length_buckets=p["length_buckets"])
    native = cpu_has_native_bf16()
    rows = {}
    for name, bf16 in (("float32", False), ("bfloat16", True)):
        if bf16 and not native:
            rows[name] = {"skipped": "this CPU has no native bfloat16 (avx512_bf16 or amx_bf16)"}
            continue
        cfg = AnswerTrainConfig(max_steps=p["max_steps"], batch_size=p["batch_size"], micro_batch=p["micro_batch"],
                                lr=p["lr"], seed=p["seed"], val_every=0, ckpt_every=10 ** 9, log_every=steps,
                                cpu_bf16=bf16, answer=task)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = AnswerTrainer(config, cfg, examples["train"], examples["val"] or examples["train"][:8], tmp,
                                    pretrained=pretrained, device="cpu", codec_fingerprint=cache.fingerprint,
                                    sources=sources)
            trainer.progress_desc = f"fine-tuning, {name}"
            seconds = trainer.fit(progress=progress, stop_after=steps).rows[-1]["seconds"]
            spoken = trainer.model.config.spoken_q
        per_step = seconds / min(steps, p["max_steps"])
        rows[name] = {"s_per_step": round(per_step, 3), "projected_minutes": round(per_step * p["max_steps"] / 60, 1)}
    speedup = (rows["float32"]["s_per_step"] / rows["bfloat16"]["s_per_step"]) if "s_per_step" in rows["bfloat16"] \
        else None
    return {
        "benchmark": "finetune",
        "profile": profile,
        "run": str(rd.path),
        "steps": min(steps, p["max_steps"]),
        "max_steps": p["max_steps"],
        "train_answers": len(examples["train"]),
        "batch_size": p["batch_size"],
        "spoken_codebooks": spoken,
        **rows,
        "speedup_bf16": round(speedup, 2) if speedup else None,
        "cpu_native_bf16": native,
        "threads": threads,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2slib.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("codec", help="course codec against EnCodec 24 kHz, on the CPU")
    c.add_argument("--preset", default="fast50",
                   help="fast50 (default), fast50_gpu, fast50_tiny, seed, seed_50hz, laptop or tiny")
    c.add_argument("--checkpoint", help="time a trained codec.pt instead of a random-weight preset")
    c.add_argument("--seconds", type=float, default=10.0, help="seconds of speech to encode and decode")
    c.add_argument("--threads", type=int, default=1, help="CPU threads (the target is stated for one)")
    c.add_argument("--repeats", type=int, default=3, help="timed repetitions; the fastest counts")
    c.add_argument("--no-fold", dest="fold", action="store_false",
                   help="time the model with weight norm recomputed on every call, as in training")
    c.add_argument("--float-decoder", dest="int8_decoder", action="store_false",
                   help="time only the float decoder (default: the int8 decoder, with the float one beside it)")
    s = sub.add_parser("s2s", help="the S2S model's answer latency and speed, on the CPU")
    s.add_argument("--model", help="s2s.pt (default: the laptop run's, else random weights)")
    s.add_argument("--codec", help="codec.pt (default: the laptop run's, else random weights)")
    s.add_argument("--prompt-seconds", type=float, default=3.0, help="length of the spoken input")
    s.add_argument("--answer-seconds", type=float, default=4.0, help="length of the answer (forced)")
    s.add_argument("--threads", type=int, default=2, help="CPU threads (the targets are stated for this 2-core machine)")
    s.add_argument("--repeats", type=int, default=3, help="timed repetitions; the median counts")
    a = sub.add_parser("agent", help="the live agent's end-to-end latency and concurrent sessions, on the CPU")
    a.add_argument("--run", help="run directory (default: the newest with trained checkpoints)")
    a.add_argument("--questions", type=int, default=20, help="held-out questions streamed (at least 20 for the "
                                                              "figures in the README)")
    a.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per operation (1: measured faster than 2 on the 2-core machine, because the "
                        "VAD and the answer already run on threads of their own)")
    a.add_argument("--max-sessions", type=int, default=8, help="the most concurrent sessions tried")
    f = sub.add_parser("finetune", help="seconds per step of notebook 06's fine-tuning (float32, bfloat16) on the CPU")
    f.add_argument("--run", help="run directory with notebooks 01-05 done (default: runs/<profile>)")
    f.add_argument("--profile", default="laptop", help="whose notebook 06 settings (notebooks/params/<profile>.yaml)")
    f.add_argument("--steps", type=int, default=40, help="steps timed per precision")
    f.add_argument("--threads", type=int, default=2, help="CPU threads (notebook 06 trains with 2)")
    args = parser.parse_args(argv)
    if args.command == "finetune":
        result = bench_finetune(args.run, args.profile, args.steps, args.threads)
    elif args.command == "agent":
        result = bench_agent(args.run, args.questions, args.threads, args.max_sessions)
    elif args.command == "s2s":
        result = bench_s2s(args.model, args.codec, args.prompt_seconds, args.answer_seconds, args.threads,
                           args.repeats)
    else:
        result = bench_codec(args.preset, args.checkpoint, args.seconds, args.threads, args.repeats, args.fold,
                             args.int8_decoder)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
