"""Does the agent answer? Response correctness, context, voice and emotion of a fine-tuned S2S model, measured on
questions spoken by user voices it never heard in training.

- **response**: each held-out question is answered (sampled, seeded); the answer is matched
  (:mod:`s2slib.s2s.match`) against every candidate answer of the evaluated pairs, each rendered by eSpeak in the
  voice and emotion the model was asked for; top-1 accuracy against the chance level ``1 / n_candidates``;
- **context**: dialogue follow-ups whose right answer depends on an earlier turn, answered with the earlier turns
  and again without them (the ablation), matched against every agent answer of the evaluated dialogues;
- **voice**: a classifier of the four agent voices (:mod:`s2slib.s2s.voice_id`, trained on the data set's agent
  speech decoded by the codec) labels every answer; accuracy, next to the classifier's own accuracy on references;
- **emotion**: a few questions answered in every emotion; the shift of pitch level, pitch range, speaking time and
  loudness against the neutral answer, for the generated answers and for eSpeak's references.

:func:`evaluate_answers` returns the JSON that ``python -m s2slib.s2s eval`` prints and notebook 06 records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from s2slib.data.preprocess import PreprocessConfig, clean_audio
from s2slib.data.synth import EMOTIONS, SAMPLE_RATE as SYNTH_RATE, synthesize
from s2slib.prosody import measure_prosody
from s2slib.s2s.finetune import AnswerExample, AnswerTask, example_parts
from s2slib.s2s.generate import SamplingConfig, generate
from s2slib.s2s.match import AnswerMatcher
from s2slib.s2s.model import S2SModel
from s2slib.s2s.voice_id import VoiceClassifier


@dataclass
class EvalConfig:
    """What :func:`evaluate_answers` measures and how the answers are sampled."""

    n_response: int = 0  # held-out questions answered for response accuracy (0: all)
    n_context: int = 0  # context-dependent follow-ups (0: all)
    n_emotion_questions: int = 3  # questions answered in each of the 9 emotions
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.95
    seed: int = 0
    max_answer_s: float = 12.0  # an answer that has not ended by then is cut
    batch_size: int = 8  # answers generated together
    task: AnswerTask = field(default_factory=AnswerTask)


class ReferenceBank:
    """Answers rendered by eSpeak in a given voice and emotion and cleaned as notebook 01 cleans its data (16 kHz,
    edge silences trimmed, loudness normalised); each rendering is made once."""

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self.preprocess = PreprocessConfig(sample_rate=sample_rate)
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        self._matchers: dict[tuple, AnswerMatcher] = {}

    def get(self, text: str, voice: str, emotion: str | None) -> np.ndarray:
        key = (text, voice, emotion or "neutral")
        if key not in self._cache:
            segments = clean_audio(synthesize(text, voice, key[2]), SYNTH_RATE, self.preprocess)
            self._cache[key] = np.concatenate(segments)
        return self._cache[key]

    def matcher(self, texts: list[str], voice: str, emotion: str | None) -> AnswerMatcher:
        """A matcher over ``texts`` rendered in ``voice`` and ``emotion``, built once (their features too)."""
        key = (tuple(texts), voice, emotion or "neutral")
        if key not in self._matchers:
            self._matchers[key] = AnswerMatcher({t: self.get(t, voice, emotion) for t in texts}, self.sample_rate)
        return self._matchers[key]


def speak(model: S2SModel, codec, sources: list[np.ndarray], speakers: list[str | None],
          emotions: list[str | None], sampling: SamplingConfig, batch_size: int = 8,
          progress: Callable | None = None) -> list[np.ndarray]:
    """Answer every encoder input of ``sources`` (``int[n_q, S]``) and decode it: waveforms at the codec's rate."""
    out: list[np.ndarray] = []
    pad = model.config.pad_id
    for i in range(0, len(sources), batch_size):
        chunk = sources[i:i + batch_size]
        S = max(s.shape[1] for s in chunk)
        src = torch.full((len(chunk), model.config.n_q, S), pad, dtype=torch.long)
        for k, s in enumerate(chunk):
            src[k, :, : s.shape[1]] = torch.from_numpy(s.astype(np.int64))
        lengths = torch.tensor([s.shape[1] for s in chunk])
        gen = generate(model, src, speakers[i:i + batch_size], emotions[i:i + batch_size], sampling, lengths)
        with torch.inference_mode():
            for codes in gen.codes:
                wav = codec.decode(codes.unsqueeze(0)) if codes.shape[-1] else torch.zeros(1, 1, 0)
                out.append(wav.reshape(-1).float().cpu().numpy())
        if progress:
            progress(len(chunk))
    return out


def _sampling(cfg: EvalConfig, model: S2SModel, seed_offset: int = 0) -> SamplingConfig:
    frames = min(model.config.max_frames, int(cfg.max_answer_s * model.config.frame_rate))
    return SamplingConfig(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                          seed=cfg.seed + seed_offset, max_frames=frames)


def _top1(answers: list[np.ndarray], examples: list[AnswerExample], texts: list[str], bank: ReferenceBank
          ) -> list[dict[str, Any]]:
    """Match each answer among ``texts`` rendered in its example's voice and emotion."""
    rows = []
    for wav, ex in zip(answers, examples):
        if wav.size < bank.sample_rate // 20:  # shorter than 50 ms: nothing said
            rows.append({"id": ex.id, "correct": False, "rank": len(texts), "matched": None})
            continue
        best, rank = bank.matcher(texts, ex.speaker, ex.emotion).judge(wav, ex.text)
        rows.append({"id": ex.id, "correct": best == ex.text, "rank": rank, "matched": best})
    return rows


def emotion_table(model: S2SModel, codec, examples: list[AnswerExample], bank: ReferenceBank, cfg: EvalConfig,
                  progress: Callable | None = None) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Every emotion's prosody shift against neutral, generated vs reference, averaged over ``examples``.

    Returns the table rows and the generated answers by emotion (for listening)."""
    emotions = list(EMOTIONS)
    sources = [example_parts(ex, model.config, cfg.task)[0] for ex in examples]
    generated: dict[str, list[np.ndarray]] = {}
    for e in emotions:
        generated[e] = speak(model, codec, sources, [ex.speaker for ex in examples], [e] * len(examples),
                             _sampling(cfg, model), cfg.batch_size, progress)
    sr = codec.sample_rate

    def prosody(wav: np.ndarray) -> dict[str, float]:
        return measure_prosody(wav, sr) if wav.size > sr // 10 else {}

    measured = {"generated": {e: [prosody(w) for w in generated[e]] for e in emotions},
                "reference": {e: [prosody(bank.get(ex.text, ex.speaker, e)) for ex in examples] for e in emotions}}
    rows = []
    for e in emotions:
        row: dict[str, Any] = {"emotion": e}
        for side, by_emotion in measured.items():
            shifts = defaultdict(list)
            for p, n in zip(by_emotion[e], by_emotion["neutral"]):
                if not p or not n or not (p["f0_median_hz"] > 0 and n["f0_median_hz"] > 0):
                    continue
                shifts["f0_shift_st"].append(12 * math.log2(p["f0_median_hz"] / n["f0_median_hz"]))
                shifts["range_shift_st"].append(p["f0_range_semitones"] - n["f0_range_semitones"])
                shifts["tempo_ratio"].append(n["speech_s"] / max(p["speech_s"], 1e-3))  # > 1: faster than neutral
                shifts["loudness_shift_db"].append(p["rms_dbfs"] - n["rms_dbfs"])
            for k in ("f0_shift_st", "range_shift_st", "tempo_ratio", "loudness_shift_db"):
                row[f"{side}_{k}"] = round(float(np.mean(shifts[k])), 3) if shifts[k] else None
        rows.append(row)
    return rows, generated


def voice_classifier(codec, rows: list[dict], voices: list[str], per_voice: int = 40, seed: int = 0
                     ) -> tuple[VoiceClassifier, list[dict]]:
    """A :class:`VoiceClassifier` trained on up to ``per_voice`` utterances of each voice among token-index
    ``rows`` (decoded by ``codec``); also returns the rows it did not train on, for its calibration."""
    rng = np.random.default_rng(seed)
    chosen, rest = [], []
    for v in voices:
        mine = [r for r in rows if r.get("speaker") == v]
        order = rng.permutation(len(mine))
        chosen += [mine[i] for i in order[:per_voice]]
        rest += [mine[i] for i in order[per_voice:]]
    wavs = decode_rows(codec, chosen)
    return VoiceClassifier.fit(wavs, [r["speaker"] for r in chosen], codec.sample_rate), rest


def decode_rows(codec, rows: list[dict]) -> list[np.ndarray]:
    """The codec's rendering of token-index rows (their cached codes decoded)."""
    out = []
    with torch.inference_mode():
        for r in rows:
            codes = torch.from_numpy(np.load(r["codes_path"]).astype(np.int64)).unsqueeze(0)
            out.append(codec.decode(codes).reshape(-1).float().numpy())
    return out


def evaluate_answers(model: S2SModel, codec, pairs: list[AnswerExample], followups: list[AnswerExample],
                     dialogue_texts: list[str], classifier: VoiceClassifier, cfg: EvalConfig | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """The whole evaluation (module docstring). ``pairs``: held-out pair examples (their answers are the response
    candidates); ``followups``: held-out dialogue turns with ``depends_on``; ``dialogue_texts``: every agent answer of
    the evaluated dialogues (the context candidates)."""
    cfg = cfg or EvalConfig()
    model.eval()
    bank = ReferenceBank(codec.sample_rate)
    pair_texts = sorted({ex.text for ex in pairs})  # every learnt answer is a candidate, however many are asked
    pairs = pairs[: cfg.n_response] if cfg.n_response else pairs
    followups = followups[: cfg.n_context] if cfg.n_context else followups
    if not pairs:
        raise ValueError("no held-out question-answer pairs to evaluate on")
    emo_examples = pairs[: cfg.n_emotion_questions]
    total = len(pairs) + 2 * len(followups) + len(EMOTIONS) * len(emo_examples)
    bar = tqdm(total=total, desc="answering held-out questions", disable=not progress)
    tick = bar.update

    def answers(examples: list[AnswerExample], with_history: bool, offset: int) -> list[np.ndarray]:
        sources = [example_parts(ex, model.config, cfg.task, with_history)[0] for ex in examples]
        return speak(model, codec, sources, [ex.speaker for ex in examples], [ex.emotion for ex in examples],
                     _sampling(cfg, model, offset), cfg.batch_size, tick)

    response_wavs = answers(pairs, True, 0)
    response = _top1(response_wavs, pairs, pair_texts, bank)
    context_rows, ablation_rows = [], []
    if followups:
        texts = sorted(set(dialogue_texts) | {ex.text for ex in followups})
        context_wavs = answers(followups, True, 1)
        ablation_wavs = answers(followups, False, 2)
        context_rows = _top1(context_wavs, followups, texts, bank)
        ablation_rows = _top1(ablation_wavs, followups, texts, bank)
    else:
        texts, context_wavs, ablation_wavs = [], [], []
    emotions, emotion_wavs = emotion_table(model, codec, emo_examples, bank, cfg, tick)
    bar.close()
    voice_hits = [classifier.predict(w) == ex.speaker if w.size > codec.sample_rate // 10 else False
                  for w, ex in zip(response_wavs + context_wavs, pairs + followups)]
    reference_voice = classifier.accuracy([bank.get(ex.text, ex.speaker, ex.emotion) for ex in pairs],
                                          [ex.speaker for ex in pairs])
    mean = lambda rows: float(np.mean([r["correct"] for r in rows])) if rows else float("nan")  # noqa: E731
    return {
        "response_top1": mean(response),
        "response_chance": 1.0 / len(pair_texts),
        "n_candidates": len(pair_texts),
        "n_response": len(pairs),
        "response_mean_rank": float(np.mean([r["rank"] for r in response])),
        "context_top1": mean(context_rows),
        "context_ablation_top1": mean(ablation_rows),
        "context_chance": 1.0 / len(texts) if texts else float("nan"),
        "n_context": len(followups),
        "n_context_candidates": len(texts),
        "voice_accuracy": float(np.mean(voice_hits)),
        "voice_chance": 1.0 / len(classifier.voices),
        "voice_classifier_reference_accuracy": reference_voice,
        "ended_share": float(np.mean([w.size < cfg.max_answer_s * codec.sample_rate * 0.99
                                      for w in response_wavs])),
        "emotion": emotions,
        "details": {"response": response, "context": context_rows, "ablation": ablation_rows},
        "audio": {"response": response_wavs, "context": context_wavs, "ablation": ablation_wavs,
                  "emotion": emotion_wavs},
    }
