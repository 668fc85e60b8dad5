"""The data card: what a run's data holds (hours per source, speaker and split), with figures a person can read.

:func:`compute_card` turns manifests, conversations and rejects into numbers; :func:`write_card` writes them as
``data/card.json`` and a readable ``data/card.md``; the plotting functions draw the duration histogram and example
waveforms with their spectrograms (saved through :func:`s2slib.figures.save_figure`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from s2slib import atomic
from s2slib.audio import load_audio
from s2slib.data.conversations import Conversation
from s2slib.data.manifest import SPLITS, Utterance
from s2slib.data.preprocess import Reject
from s2slib.plots import draw_spectrogram, draw_waveform


def _hours(seconds: float) -> float:
    return round(seconds / 3600.0, 4)


def compute_card(utterances: list[Utterance], conversations: list[Conversation], rejects: list[Reject]) -> dict:
    """Counts and hours by source, speaker, split and emotion; real clips per use; conversations; rejects by reason."""
    by_source: dict[str, float] = defaultdict(float)
    by_speaker: dict[str, float] = defaultdict(float)
    by_split: dict[str, float] = defaultdict(float)
    source_split: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    emotions: Counter = Counter()
    for u in utterances:
        by_source[u.source] += u.duration
        by_speaker[f"{u.source}/{u.speaker}"] += u.duration
        by_split[u.split or "unassigned"] += u.duration
        source_split[u.source][u.split or "unassigned"] += u.duration
        if u.emotion:
            emotions[u.emotion] += 1
    conv_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    conv_seconds = 0.0
    for c in conversations:
        conv_counts[c.kind][c.split] += 1
        conv_seconds += sum(t.duration or 0.0 for t in c.turns)
    reasons = Counter(r.reason.split(":")[0] for r in rejects)
    # Real recordings that notebook 01 splits between training and test (``meta["real_use"]``, see
    # s2slib.data.build.split_real_clips): clips and hours per use and speaker. A clip split into segments counts once.
    real: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(lambda: {"clips": set(), "seconds": 0.0}))
    for u in utterances:
        if "real_use" in u.meta:
            entry = real[u.meta["real_use"]][u.speaker]
            entry["clips"].add(u.id.split("#")[0])
            entry["seconds"] += u.duration
    real_speech = {
        use: {
            "clips": sum(len(e["clips"]) for e in speakers.values()),
            "hours": _hours(sum(e["seconds"] for e in speakers.values())),
            "seconds": round(sum(e["seconds"] for e in speakers.values()), 1),
            "by_speaker": {spk: {"clips": len(e["clips"]), "hours": _hours(e["seconds"]),
                                 "seconds": round(e["seconds"], 1)} for spk, e in sorted(speakers.items())},
        }
        for use, speakers in sorted(real.items(), key=lambda kv: SPLITS.index(kv[0]))
    }
    durations = np.array([u.duration for u in utterances]) if utterances else np.zeros(1)
    return {
        "n_utterances": len(utterances),
        "hours_total": _hours(sum(by_source.values())),
        "hours_by_source": {k: _hours(v) for k, v in sorted(by_source.items())},
        "hours_by_split": {k: _hours(by_split.get(k, 0.0)) for k in SPLITS},
        "hours_by_source_and_split": {
            s: {k: _hours(v.get(k, 0.0)) for k in SPLITS} for s, v in sorted(source_split.items())
        },
        "hours_by_speaker": {k: _hours(v) for k, v in sorted(by_speaker.items())},
        "n_speakers": len(by_speaker),
        "duration_s": {
            "min": round(float(durations.min()), 3),
            "median": round(float(np.median(durations)), 3),
            "max": round(float(durations.max()), 3),
        },
        "real_speech_by_use": real_speech,
        "emotions": dict(sorted(emotions.items())),
        "conversations": {kind: dict(v) for kind, v in conv_counts.items()},
        "conversation_hours": _hours(conv_seconds),
        "rejects": {"total": len(rejects), "by_reason": dict(reasons)},
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown page (tables a person reads in a browser or on GitHub)."""
    lines = ["# Data card", "", f"{card['n_utterances']} utterances, {card['hours_total']:.3f} h of speech, "
             f"{card['n_speakers']} speakers; conversations: {card['conversation_hours']:.3f} h.", ""]
    lines += ["## Hours per source and split", "", "| source | " + " | ".join(SPLITS) + " |",
              "|---|" + "---|" * len(SPLITS)]
    for src, splits in card["hours_by_source_and_split"].items():
        lines.append(f"| {src} | " + " | ".join(f"{splits[s]:.3f}" for s in SPLITS) + " |")
    if card.get("real_speech_by_use"):
        lines += ["", "## Real recordings: training and test", "",
                  "Training clips come from one speaker only; that speaker's other clips and every clip of the other "
                  "speakers are test-only (no sentence is on both sides).", "",
                  "| use | speaker | clips | seconds |", "|---|---|---|---|"]
        for use, entry in card["real_speech_by_use"].items():
            lines += [f"| {use} | {spk} | {e['clips']} | {e['seconds']:.1f} |"
                      for spk, e in entry["by_speaker"].items()]
            lines.append(f"| {use} | **all** | **{entry['clips']}** | **{entry['seconds']:.1f}** |")
    lines += ["", "## Hours per speaker", "", "| speaker | hours |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in card["hours_by_speaker"].items()]
    lines += ["", "## Conversations", "", "| kind | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    for kind, counts in card["conversations"].items():
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(s, 0)) for s in SPLITS) + " |")
    lines += ["", "## Emotion labels (utterances)", ""]
    lines += [f"- {k}: {v}" for k, v in card["emotions"].items()] or ["- none"]
    lines += ["", f"## Rejected inputs: {card['rejects']['total']}", ""]
    lines += [f"- {k}: {v}" for k, v in card["rejects"]["by_reason"].items()] or ["- none"]
    return "\n".join(lines) + "\n"


def write_card(folder: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``card.json`` and ``card.md`` into ``folder``."""
    return atomic.write_json(folder / "card.json", card), atomic.write_text(folder / "card.md", card_markdown(card))


def plot_durations(utterances: list[Utterance]):
    """Histogram of utterance durations per source (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    by_source: dict[str, list[float]] = defaultdict(list)
    for u in utterances:
        by_source[u.source].append(u.duration)
    top = max((max(v) for v in by_source.values()), default=1.0)
    bins = np.linspace(0, top, 40)
    for src, durs in sorted(by_source.items()):
        ax.hist(durs, bins=bins, alpha=0.6, label=f"{src} ({len(durs)})")
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("utterances")
    ax.set_title("Utterance durations after preprocessing")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_examples(utterances: list[Utterance]):
    """Waveform (top) and log-magnitude spectrogram (bottom) of each given utterance, side by side."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(utterances), figsize=(4 * len(utterances), 5), squeeze=False)
    for col, u in enumerate(utterances):
        wav, sr = load_audio(u.audio_path)
        title = f"{u.source}\n{u.speaker}" + (f", {u.emotion}" if u.emotion else "")
        draw_waveform(axes[0, col], wav, sr, title)
        draw_spectrogram(axes[1, col], wav, sr)
    axes[0, 0].set_ylabel("amplitude")
    fig.tight_layout()
    return fig
