"""The course's Telugu text corpus: sentences to synthesize, question-answer pairs and multi-turn dialogues.

Three hand-written files live in the repository under ``data/text/``:

- ``sentences.tsv``: ``id, category, text, english``. Single sentences the TTS stage turns into speech.
- ``qa_pairs.tsv``: ``id, category, question, answer, emotion, question_english, answer_english``. One spoken
  question and the agent's answer, with the emotion the agent should answer in.
- ``dialogues.jsonl``: one dialogue per line, ``{"id", "topic", "turns": [{"role", "text", "english",
  "emotion"?, "depends_on"?}, ...]}``. Turns alternate user / agent starting with the user; an agent turn whose
  right answer needs something said earlier (a name, a number) carries ``depends_on``, the index of that turn.

Every loader validates while it parses and raises ``ValueError`` naming the file, the line and the problem, so a
typo in a hand-edited file is found at load time, not hours later as a strange training example.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from s2slib.paths import repo_root

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "surprised",
    "fearful",
    "calm",
    "excited",
    "empathetic",
)

# The categories of the shipped corpus (the tests hold it to them). The loaders accept any category, so a learner
# can add a file of their own sentences without touching the library.
SENTENCE_CATEGORIES: tuple[str, ...] = (
    "greeting",
    "numbers_dates",
    "question",
    "everyday",
    "news",
    "food",
    "travel",
    "family",
    "work_study",
    "health_weather",
)

QA_CATEGORIES: tuple[str, ...] = (
    "greetings",
    "names",
    "time_date",
    "weather",
    "numbers_arithmetic",
    "directions",
    "food",
    "family",
    "help_desk",
)

ROLES: tuple[str, ...] = ("user", "agent")

SENTENCE_COLUMNS: tuple[str, ...] = ("id", "category", "text", "english")
QA_COLUMNS: tuple[str, ...] = (
    "id",
    "category",
    "question",
    "answer",
    "emotion",
    "question_english",
    "answer_english",
)

TELUGU_BLOCK = (0x0C00, 0x0C7F)  # Unicode block "Telugu": letters, vowel signs, virama, digits


@dataclass(frozen=True)
class Sentence:
    """One line of ``sentences.tsv``: a Telugu sentence and its English gloss."""

    id: str
    category: str
    text: str
    english: str


@dataclass(frozen=True)
class QAPair:
    """One line of ``qa_pairs.tsv``: a spoken question, the agent's answer and the emotion to answer in."""

    id: str
    category: str
    question: str
    answer: str
    emotion: str
    question_english: str
    answer_english: str


@dataclass(frozen=True)
class Turn:
    """One turn of a dialogue.

    ``emotion`` is set on agent turns (one of ``EMOTIONS``). ``depends_on`` is the index, in the same dialogue's
    ``turns`` list, of the earlier turn whose content this turn needs (the user's name, a number they gave).
    """

    role: str
    text: str
    english: str
    emotion: str | None = None
    depends_on: int | None = None


@dataclass(frozen=True)
class Dialogue:
    """One line of ``dialogues.jsonl``: a multi-turn conversation that starts with the user."""

    id: str
    topic: str
    turns: list[Turn] = field(default_factory=list)


_SENTENCE_END = re.compile(r"[.!?।]+")


def first_sentences(text: str, n: int, min_chars: int = 12) -> str:
    """The first ``n`` sentences of ``text`` (0: all of it). A sentence ends at ``.``, ``!``, ``?`` or ``।``; one
    shorter than ``min_chars`` characters (an exclamation such as "అవునా!") is joined to the next, so a cut answer
    still says something."""
    if n < 0:
        raise ValueError(f"n must be >= 0 (0: the whole text), got {n}")
    if n == 0:
        return text.strip()
    start, kept = 0, 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() - start >= min_chars:
            kept, start = kept + 1, m.end()
            if kept == n:
                return text[: m.end()].strip()
    return text.strip()


def is_telugu(text: str, min_fraction: float = 0.6) -> bool:
    """True when at least ``min_fraction`` of the letters in ``text`` are in the Telugu block (U+0C00-U+0C7F).

    Letters are the characters Unicode classes as letters or combining marks (``L*``, ``M*``), so vowel signs and
    the virama count and spaces, digits, punctuation and the zero-width non-joiner do not. A text with no letters
    at all (``"123"``) is not Telugu.
    """
    letters = [ch for ch in text if unicodedata.category(ch)[0] in "LM"]
    if not letters:
        return False
    in_block = sum(TELUGU_BLOCK[0] <= ord(ch) <= TELUGU_BLOCK[1] for ch in letters)
    return in_block / len(letters) >= min_fraction


def text_dir() -> Path:
    """The repository's ``data/text`` folder: ``s2slib.paths.repo_root() / "data" / "text"``.

    Raises
    ------
    FileNotFoundError: the folder is not there, which happens when ``s2slib`` was installed as a plain package
        instead of being used from a clone of the repository.
    """
    path = repo_root() / "data" / "text"
    if not path.is_dir():
        raise FileNotFoundError(
            f"The course's text corpus folder {path} is missing. s2slib reads data/text/ from the repository it "
            "lives in, so the course must run from a clone of the repository (git clone, then pip install -e .), "
            "not from a copy of the package installed on its own."
        )
    return path


def load_sentences(path: str | os.PathLike | None = None) -> list[Sentence]:
    """Read and validate ``sentences.tsv`` (default: ``text_dir() / "sentences.tsv"``).

    Raises
    ------
    ValueError: a line has the wrong number of columns, an empty field, a repeated id, or text that is not
        Telugu script; the message names the file and line.
    """
    path = Path(path) if path is not None else text_dir() / "sentences.tsv"
    sentences = []
    seen: dict[str, int] = {}
    for line_no, row in _read_tsv(path, SENTENCE_COLUMNS):
        _check_unique_id(path, line_no, row["id"], seen)
        _check_telugu(path, line_no, "text", row["text"])
        sentences.append(Sentence(**row))
    return sentences


def load_qa_pairs(path: str | os.PathLike | None = None) -> list[QAPair]:
    """Read and validate ``qa_pairs.tsv`` (default: ``text_dir() / "qa_pairs.tsv"``).

    Raises
    ------
    ValueError: a line has the wrong number of columns, an empty field, a repeated id, an emotion outside
        ``EMOTIONS``, or a question or answer that is not Telugu script; the message names the file and line.
    """
    path = Path(path) if path is not None else text_dir() / "qa_pairs.tsv"
    pairs = []
    seen: dict[str, int] = {}
    for line_no, row in _read_tsv(path, QA_COLUMNS):
        _check_unique_id(path, line_no, row["id"], seen)
        _check_telugu(path, line_no, "question", row["question"])
        _check_telugu(path, line_no, "answer", row["answer"])
        _check_emotion(path, line_no, row["emotion"])
        pairs.append(QAPair(**row))
    return pairs


def load_dialogues(path: str | os.PathLike | None = None) -> list[Dialogue]:
    """Read and validate ``dialogues.jsonl`` (default: ``text_dir() / "dialogues.jsonl"``).

    Each non-blank line is one JSON object. Checks: valid JSON with ``id``, ``topic`` and a non-empty ``turns``
    list; turns alternate ``user``, ``agent``, ... starting with the user; every turn has Telugu ``text`` and a
    non-empty ``english``; agent turns carry an ``emotion`` from ``EMOTIONS``; ``depends_on``, where given, is the
    index of an earlier turn; ids are unique.

    Raises
    ------
    ValueError: the first problem found, naming the file, the line and (for a turn) the turn's index.
    """
    path = Path(path) if path is not None else text_dir() / "dialogues.jsonl"
    _check_exists(path)
    dialogues = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _error(path, line_no, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise _error(path, line_no, "expected a JSON object {\"id\", \"topic\", \"turns\"}")
            for key in ("id", "topic"):
                if not isinstance(obj.get(key), str) or not obj[key].strip():
                    raise _error(path, line_no, f"'{key}' is missing or empty")
            _check_unique_id(path, line_no, obj["id"], seen)
            raw_turns = obj.get("turns")
            if not isinstance(raw_turns, list) or not raw_turns:
                raise _error(path, line_no, "'turns' must be a non-empty list of turns")
            turns = [_parse_turn(path, line_no, i, raw) for i, raw in enumerate(raw_turns)]
            dialogues.append(Dialogue(id=obj["id"], topic=obj["topic"], turns=turns))
    return dialogues


def _parse_turn(path: Path, line_no: int, index: int, raw: object) -> Turn:
    """Validate one turn of a dialogue; ``index`` is its position in the ``turns`` list."""
    where = f"turn {index}"
    if not isinstance(raw, dict):
        raise _error(path, line_no, f"{where} is not a JSON object")
    expected_role = ROLES[index % 2]
    if raw.get("role") != expected_role:
        raise _error(
            path,
            line_no,
            f"{where} has role {raw.get('role')!r}, expected {expected_role!r}: turns must alternate "
            "user, agent, user, ... starting with the user",
        )
    for key in ("text", "english"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _error(path, line_no, f"{where}: '{key}' is missing or empty")
    _check_telugu(path, line_no, f"{where} text", raw["text"])
    emotion = raw.get("emotion")
    if emotion is None and raw["role"] == "agent":
        raise _error(path, line_no, f"{where}: agent turns need an 'emotion', one of {', '.join(EMOTIONS)}")
    if emotion is not None:
        _check_emotion(path, line_no, emotion, where=f"{where}: ")
    depends_on = raw.get("depends_on")
    if depends_on is not None:
        # bool is a subclass of int in Python; "depends_on": true is a mistake, not turn 1
        if isinstance(depends_on, bool) or not isinstance(depends_on, int) or not 0 <= depends_on < index:
            raise _error(
                path,
                line_no,
                f"{where}: depends_on={depends_on!r} must be the index of an earlier turn (0 to {index - 1})",
            )
    return Turn(
        role=raw["role"], text=raw["text"], english=raw["english"], emotion=emotion, depends_on=depends_on
    )


def _read_tsv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` for each data line of a tab-separated file whose header is ``columns``.

    Blank lines are skipped. Fields are taken verbatim (no quoting rules), so text may contain quotes and commas.
    """
    _check_exists(path)
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if tuple(header) != columns:
            raise _error(path, 1, f"header is {header}, expected the columns {list(columns)} separated by tabs")
        for line_no, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(columns):
                raise _error(
                    path,
                    line_no,
                    f"{len(fields)} tab-separated columns, expected {len(columns)} ({', '.join(columns)})",
                )
            row = dict(zip(columns, (cell.strip() for cell in fields)))
            for name, value in row.items():
                if not value:
                    raise _error(path, line_no, f"column '{name}' is empty")
            yield line_no, row


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. The text corpus lives in data/text/ of the repository.")


def _check_unique_id(path: Path, line_no: int, id_: str, seen: dict[str, int]) -> None:
    """Record ``id_`` in ``seen`` (id -> line), raising if an earlier line already used it."""
    if id_ in seen:
        raise _error(path, line_no, f"duplicate id {id_!r} (first used on line {seen[id_]})")
    seen[id_] = line_no


def _check_telugu(path: Path, line_no: int, what: str, text: str) -> None:
    if not is_telugu(text):
        raise _error(path, line_no, f"{what} {text!r} is not Telugu script (most letters must be in U+0C00-U+0C7F)")


def _check_emotion(path: Path, line_no: int, emotion: object, where: str = "") -> None:
    if emotion not in EMOTIONS:
        raise _error(path, line_no, f"{where}unknown emotion {emotion!r}, expected one of {', '.join(EMOTIONS)}")


def _error(path: Path, line_no: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {line_no}: {problem}.")
