"""The spoken conversation set for the S2S stages: question-to-answer pairs and multi-turn dialogues.

Users speak with the *user* voices, the agent answers with one of the four *agent* voices and the emotion label of
the written answer. Which voices say what is planned here, deterministically from a seed:

- ``train``: every pair (and dialogue) spoken by ``renditions`` different training user voices;
- ``val``: a hashed ``val_fraction`` of the pairs, spoken by a training user voice not used for that pair in train;
- ``test``: every pair spoken by a **held-out** user voice, one never heard in training.

The audio is synthesized and preprocessed by :mod:`s2slib.data.build`; this module plans the turns
(:func:`plan_pairs`, :func:`plan_dialogues`) and reads/writes the JSON Lines files the S2S notebooks load::

    conversations/pairs_<split>.jsonl      {"id", "pair_id", "category", "split", "question": Turn, "answer": Turn}
    conversations/dialogues_<split>.jsonl  {"id", "dialogue_id", "topic", "split", "turns": [Turn, ...]}

where a Turn is ``{"role", "text", "speaker", "emotion", "audio_path", "duration", "depends_on"}``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2slib import atomic
from s2slib.data.manifest import SPLITS, iter_jsonl, stable_fraction


@dataclass
class SpokenTurn:
    """One turn of a conversation: who says what, how, and (once synthesized) where its 16 kHz audio is."""

    role: str  # "user" | "agent"
    text: str
    speaker: str
    emotion: str | None = None
    depends_on: int | None = None  # index of an earlier turn this answer needs (dialogues)
    audio_path: str | None = None
    duration: float | None = None


@dataclass
class Conversation:
    """A pair (two turns) or a dialogue (3 to 10 turns) in one split."""

    id: str
    kind: str  # "pair" | "dialogue"
    source_id: str  # the pair or dialogue id in data/text
    split: str
    topic: str
    turns: list[SpokenTurn] = field(default_factory=list)


def split_user_voices(user_voices: list[str], n_heldout: int) -> tuple[list[str], list[str]]:
    """The last ``n_heldout`` user voices (in the given order) are held out for the test split."""
    if not 0 < n_heldout < len(user_voices):
        raise ValueError(f"n_heldout must be between 1 and {len(user_voices) - 1}, got {n_heldout}")
    return list(user_voices[:-n_heldout]), list(user_voices[-n_heldout:])


def _speakers(
    item_id: str,
    agent_voices: list[str],
    user_voices: list[str],
    n_heldout_users: int,
    renditions: int,
    val_fraction: float,
    seed: int,
    agent_voices_per_item: int = 0,
) -> list[tuple[str, str, str]]:
    """``[(split, user voice, agent voice), ...]``: who speaks each rendition of one pair or dialogue, fixed by its id
    and the seed (``renditions`` training users, sometimes one more for validation, one held-out user for test; the
    agent voices in turn, over ``agent_voices_per_item`` of them from a hashed start: 0 means all of them)."""
    if agent_voices_per_item < 0:
        raise ValueError(f"agent_voices_per_item must be >= 0 (0: every agent voice), got {agent_voices_per_item}")
    train_users, heldout_users = split_user_voices(user_voices, n_heldout_users)
    rng = random.Random(f"{seed}:{item_id}")
    users = rng.sample(train_users, len(train_users))
    out = [("train", u) for u in users[: max(1, min(renditions, len(users) - 1))]]
    if stable_fraction(f"val:{item_id}", seed) < val_fraction:
        out.append(("val", users[len(out)]))
    out.append(("test", rng.choice(heldout_users)))
    # the agent voice rotates from a hashed start over m voices: with m training renditions or more, every one of the
    # m voices says the answer in training, and the test rendition's voice is one it was trained in
    m = min(agent_voices_per_item or len(agent_voices), len(agent_voices))
    first = random.Random(f"{seed}:{item_id}:agent").randrange(len(agent_voices))
    return [(split, user, agent_voices[(first + k % m) % len(agent_voices)]) for k, (split, user) in enumerate(out)]


def plan_pairs(
    pairs,
    agent_voices: list[str],
    user_voices: list[str],
    n_heldout_users: int = 2,
    renditions: int = 2,
    val_fraction: float = 0.1,
    seed: int = 0,
    agent_voices_per_pair: int = 0,
) -> list[Conversation]:
    """Plan who speaks each question-answer pair (``pairs``: ``s2slib.data.text.QAPair`` objects); the agent voice
    rotates over ``agent_voices_per_pair`` voices per pair (0: all of them)."""
    return [
        Conversation(
            id=f"{pair.id}/{split}/{user}",
            kind="pair",
            source_id=pair.id,
            split=split,
            topic=pair.category,
            turns=[SpokenTurn("user", pair.question, user), SpokenTurn("agent", pair.answer, agent, emotion=pair.emotion)],
        )
        for pair in pairs
        for split, user, agent in _speakers(pair.id, agent_voices, user_voices, n_heldout_users, renditions,
                                            val_fraction, seed, agent_voices_per_pair)
    ]


def plan_dialogues(
    dialogues,
    agent_voices: list[str],
    user_voices: list[str],
    n_heldout_users: int = 2,
    renditions: int = 1,
    val_fraction: float = 0.1,
    seed: int = 0,
    agent_voices_per_dialogue: int = 0,
) -> list[Conversation]:
    """Plan who speaks each dialogue (``s2slib.data.text.Dialogue``); one user and one agent voice per rendition,
    ``renditions`` training users, and the agent voice rotating over ``agent_voices_per_dialogue`` voices (0: all of
    them; 1: every user talks to the same agent voice, so the agent's turns are the same audio in every rendition)."""
    plan = []
    for dlg in dialogues:
        for split, user, agent in _speakers(dlg.id, agent_voices, user_voices, n_heldout_users, renditions,
                                            val_fraction, seed, agent_voices_per_dialogue):
            turns = [
                SpokenTurn(t.role, t.text, user if t.role == "user" else agent,
                           emotion=t.emotion if t.role == "agent" else None, depends_on=t.depends_on)
                for t in dlg.turns
            ]
            plan.append(Conversation(f"{dlg.id}/{split}/{user}", "dialogue", dlg.id, split, dlg.topic, turns))
    return plan


def write_conversations(folder: str | os.PathLike, conversations: list[Conversation]) -> dict[str, Path]:
    """Write ``pairs_<split>.jsonl`` and ``dialogues_<split>.jsonl`` into ``folder``; audio paths made relative."""
    folder = Path(folder)
    written = {}
    base = folder.resolve()
    for kind, stem in (("pair", "pairs"), ("dialogue", "dialogues")):
        for split in SPLITS:
            rows = []
            for conv in sorted((c for c in conversations if c.kind == kind and c.split == split), key=lambda c: c.id):
                row: dict[str, Any] = asdict(conv)
                for turn in row["turns"]:
                    if turn["audio_path"]:
                        turn["audio_path"] = os.path.relpath(turn["audio_path"], base)
                rows.append(json.dumps(row, ensure_ascii=False))
            path = folder / f"{stem}_{split}.jsonl"
            atomic.write_text(path, "\n".join(rows) + ("\n" if rows else ""))
            written[f"{stem}_{split}"] = path
    return written


def read_conversations(path: str | os.PathLike) -> list[Conversation]:
    """Read a file written by :func:`write_conversations`; audio paths come back absolute."""
    path = Path(path)
    out = []
    for lineno, row in iter_jsonl(path, "conversation file (notebook 01 writes it)"):
        try:
            turns = [SpokenTurn(**t) for t in row.pop("turns")]
            conv = Conversation(**row, turns=turns)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"{path}:{lineno}: not a conversation record ({exc})") from exc
        for t in conv.turns:
            if t.audio_path:
                t.audio_path = str((path.parent / t.audio_path).resolve())
        out.append(conv)
    return out
