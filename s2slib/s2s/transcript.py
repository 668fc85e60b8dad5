"""The user's words as characters: the target of the encoder's auxiliary transcription loss in fine-tuning.

The speech-to-speech model never reads or writes text at run time. In training, though, text is free (every
synthesized question comes with the sentence it was rendered from), and a direct speech-to-speech model learns far
better when its encoder is also asked to transcribe its input (Translatotron, Jia et al. 2019, trains its encoder
with auxiliary phoneme recognition and reports that it barely learns without it). Here a linear head on the
encoder's states predicts the question's characters with CTC (Graves et al. 2006): the encoder then has to represent
*what* was said, the same way for every voice, instead of only how it sounded, which is what the answer depends on.

Vocabulary (fixed, so every run and checkpoint agree): 0 the CTC blank, 1 a word boundary, then the 128 code points of
Unicode's Telugu block (U+0C00-U+0C7F). Other characters (punctuation, Latin letters, digits) are dropped: they are
not heard.
"""

from __future__ import annotations

import unicodedata

import numpy as np

BLANK = 0
SPACE = 1
TELUGU_FIRST = 0x0C00
TEXT_VOCAB = 2 + 128  # blank, space, the Telugu block


def text_ids(text: str) -> np.ndarray:
    """``text`` -> ``int64[L]`` character ids (NFC-normalised; runs of spaces and dropped characters between words
    become one boundary; none at either end)."""
    out: list[int] = []
    for ch in unicodedata.normalize("NFC", text):
        code = ord(ch)
        if TELUGU_FIRST <= code < TELUGU_FIRST + 128:
            out.append(2 + code - TELUGU_FIRST)
        elif (ch.isspace() or unicodedata.category(ch).startswith("P")) and out and out[-1] != SPACE:
            out.append(SPACE)
    while out and out[-1] == SPACE:
        out.pop()
    return np.asarray(out, dtype=np.int64)


def ids_text(ids) -> str:
    """Character ids back to text (blanks skipped)."""
    return "".join(" " if i == SPACE else chr(TELUGU_FIRST + i - 2) for i in map(int, ids) if i != BLANK)


def greedy_ctc(log_probs: np.ndarray) -> np.ndarray:
    """Best-path CTC decoding of ``float[T, TEXT_VOCAB]``: the argmax per frame, repeats merged, blanks removed."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    best = best[keep]
    return best[best != BLANK]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions all cost 1)."""
    a, b = list(a), list(b)
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def char_error_rate(hyps: list, refs: list) -> float:
    """Character error rate over a set: total edit distance over total reference length (0 = perfect; an encoder
    that emits nothing scores 1)."""
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("char_error_rate needs at least one non-empty reference")
    return float(sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / total)
