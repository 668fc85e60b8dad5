"""Build a run's data: speech manifests, the spoken conversation set, the rejects report and the data card.

This is the one function notebook 01, ``python -m s2slib.data build`` and the tests call::

    build_dataset(run, DataConfig(sources=("synthetic-te", "samples-te"), n_sentences=200))

Steps (each cached, so a rerun only does what is new):

1. **Speech.** ``synthetic-te``: the sentences of ``data/text/sentences.tsv``, each spoken by
   ``renditions_per_sentence`` voices (agent and user voices alike) with a seeded emotion, synthesized by eSpeak NG.
   ``samples-te``: the bundled real Common Voice Telugu clips (speakers ``cv_te_a``, 40 clips, and ``cv_te_b``, 5).
   Any other registered source (``slr66-te``, ``librispeech-clean-100``, ...) is downloaded or streamed, capped at
   ``max_hours_per_corpus``.
2. **Preprocessing** of everything to 16 kHz mono, trimmed, loudness-normalised segments (bad input is rejected
   with its reason, exact duplicates dropped).
3. **Splits**: synthetic speech by sentence (val/test sentences are unseen texts) or by speaker; public corpora by
   utterance or speaker; written as ``data/manifests/{train,val,test}.jsonl``. The real clips are split by
   :func:`split_real_clips`: ``real_train_clips`` clips of speaker ``cv_te_a`` (a seeded draw) go to ``train``, so the
   codec hears real voices, microphones and rooms; every other real clip goes to ``test``, so the test set still
   measures an **unseen speaker** (``cv_te_b`` is never trained on) and **unseen utterances** of the seen one. A clip
   whose sentence is spoken in any other clip or utterance of the build is never drawn for training, and exact
   duplicate audio was already dropped in step 2, so no real training clip shares its sentence or its audio with a
   test utterance. Every real row of the manifests says which in its ``meta``:

   - ``"real_use"``: ``"train"`` or ``"test"``;
   - ``"speaker_seen_in_training"`` (test rows only): ``true`` when the clip's speaker also has training clips.

   ``real_train_clips=0`` keeps every real clip test-only.
4. **Conversations**: question-answer pairs and dialogues spoken by user and agent voices, with held-out user voices
   for the test split (see :mod:`s2slib.data.conversations`), written under ``data/conversations/``.
5. ``data/rejects.jsonl`` and the data card ``data/card.{json,md}``.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from s2slib import atomic, paths
from s2slib.data import synth, text
from s2slib.data.card import compute_card, write_card
from s2slib.data.conversations import Conversation, plan_dialogues, plan_pairs, write_conversations
from s2slib.data.corpora import RawUtterance, iter_source
from s2slib.data.manifest import Utterance, assign_splits, write_splits
from s2slib.data.preprocess import PreprocessConfig, Reject, preprocess_many
from s2slib.data.sources import get_source
from s2slib.run import RunDir

SYNTHETIC = "synthetic-te"
SAMPLES = "samples-te"
REAL_TRAIN_SPEAKER = "cv_te_a"  # the only bundled speaker whose clips may be trained on; cv_te_b stays unseen


@dataclass
class DataConfig:
    """What notebook 01 builds. Zero for a count means "all there is"."""

    sources: tuple[str, ...] = (SYNTHETIC, SAMPLES)  # registered source names (s2slib.data.sources)
    n_sentences: int = 0  # sentences of data/text/sentences.tsv to synthesize (0 = all)
    renditions_per_sentence: int = 2  # voices that speak each sentence
    n_qa_pairs: int = 0  # question-answer pairs to synthesize (0 = all)
    qa_renditions: int = 2  # training user voices per pair (plus one held-out voice for test); the agent voice
    # rotates over the renditions, so 4 or more give every pair's answer in all four agent voices
    agent_voices_per_pair: int = 0  # agent voices that say each pair's answer (0: all four, given 4 renditions). 1:
    # each answer in one voice, heard by every training user: fewer distinct answers to learn (the laptop profile).
    # Dialogues follow the same rule over their renditions
    answer_sentences: int = 0  # agent turns cut to their first sentences (text.first_sentences; 0: whole answers)
    agent_jitter: bool = False  # False: the agent says a sentence the same way every time (one consistent voice per
    # agent, as a deployed voice would); users' turns always vary in pitch and rate
    n_dialogues: int = 0  # dialogues to synthesize (0 = all)
    dialogue_renditions: int = 1  # training user voices per dialogue (plus one held-out voice for test); the agent
    # voices rotate as for the pairs (agent_voices_per_pair). More renditions: each dialogue turn is heard as often as
    # a pair's answer, from several users
    n_heldout_users: int = 2  # user voices never used in training (conversation test split)
    conversation_val_fraction: float = 0.1  # pairs/dialogues also spoken by one more training voice for validation
    max_real_clips: int = 0  # bundled real clips to use (0 = all 45)
    real_train_clips: int = 20  # real clips of speaker cv_te_a moved to training (0 = all real clips test-only)
    max_hours_per_corpus: float = 2.0  # cap per downloaded/streamed corpus
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    speaker_disjoint: bool = False  # split synthetic and public speech by speaker instead of by sentence/utterance
    num_workers: int = 2  # processes for synthesis and preprocessing
    seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def __post_init__(self):
        self.sources = tuple(self.sources)
        for name in self.sources:
            get_source(name)  # an unknown name fails here, listing the known ones


@dataclass
class DataBuild:
    """What :func:`build_dataset` wrote (paths) and the data card it computed."""

    manifests: dict[str, Path]
    conversations: dict[str, Path]
    rejects: Path
    card: dict
    utterances: list[Utterance]
    conversation_list: list[Conversation]


def _take(items: list, n: int, seed: int, salt: str) -> list:
    """``n`` items chosen reproducibly (all of them when ``n`` is 0 or too large), in their original order."""
    if n <= 0 or n >= len(items):
        return list(items)
    keep = set(random.Random(f"{seed}:{salt}").sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i in keep]


def plan_synthetic_speech(cfg: DataConfig) -> list[tuple[synth.SynthJob, dict]]:
    """Which voice says which sentence with which emotion: ``[(job, meta), ...]``, fixed by ``cfg.seed``."""
    sentences = _take(text.load_sentences(), cfg.n_sentences, cfg.seed, "sentences")
    voices = sorted(synth.VOICES)
    plan = []
    for sent in sentences:
        rng = random.Random(f"{cfg.seed}:{sent.id}")
        for voice in rng.sample(voices, min(cfg.renditions_per_sentence, len(voices))):
            emotion = rng.choice(synth.EMOTIONS)
            job = synth.SynthJob(f"{sent.id}/{voice}/{emotion}", sent.text, voice, emotion, rng.randrange(2**31))
            meta = {"sentence_id": sent.id, "category": sent.category, "english": sent.english,
                    "role": synth.VOICES[voice].role, "gender": synth.VOICES[voice].gender}
            plan.append((job, meta))
    return plan


def _synthesize(jobs: list[synth.SynthJob], cfg: DataConfig, progress: bool) -> list[Path]:
    return synth.synthesize_many(jobs, paths.cache_dir() / "synth", num_workers=cfg.num_workers, progress=progress)


def synthetic_speech(cfg: DataConfig, progress: bool = True) -> list[RawUtterance]:
    """Synthesize the planned sentences (cached) and describe them as raw utterances at 22.05 kHz."""
    plan = plan_synthetic_speech(cfg)
    wavs = _synthesize([job for job, _ in plan], cfg, progress)
    return [
        RawUtterance(id=f"{SYNTHETIC}/{job.id}", speaker=job.voice, text=job.text, source=SYNTHETIC,
                     audio_path=wav, emotion=job.emotion, meta=meta)
        for (job, meta), wav in zip(plan, wavs)
    ]


def corpus_speech(name: str, cfg: DataConfig, progress: bool = True) -> list[RawUtterance]:
    """Raw utterances of a bundled or public corpus, capped at ``max_real_clips`` / ``max_hours_per_corpus``."""
    items = iter_source(name, paths.cache_dir() / "corpora", progress=progress)
    if name == SAMPLES:
        clips = _take(list(items), cfg.max_real_clips, cfg.seed, "samples")
        for clip in clips:
            clip.id = f"{SAMPLES}/{clip.id}"
        return clips
    # Budget by a rough duration estimate (12 s per utterance is the upper end for read-speech corpora); the card
    # reports the exact hours after preprocessing.
    limit = int(cfg.max_hours_per_corpus * 3600 / 12) if cfg.max_hours_per_corpus > 0 else None
    out = []
    for raw in itertools.islice(items, limit):
        raw.id = f"{name}/{raw.id}"
        out.append(raw)
    return out


def _sentence_key(sentence: str) -> str:
    """A sentence compared loosely: whitespace collapsed, final punctuation and case ignored."""
    return " ".join(sentence.split()).rstrip(".!?।").casefold()


def split_real_clips(utterances: list[Utterance], n_train: int, seed: int) -> list[Utterance]:
    """Set ``split`` and the ``real_use`` / ``speaker_seen_in_training`` meta of every ``samples-te`` utterance.

    ``n_train`` recordings of speaker ``cv_te_a`` are drawn reproducibly (fixed by ``seed``) for training; the rest
    go to test. Candidates are recordings whose sentence no other utterance in ``utterances`` speaks, so a test clip
    never repeats a training sentence. The segments of one long recording (ids ``<id>#k``) stay together. Other
    utterances are left alone, and so is a build without real clips. Raises ``ValueError`` when fewer than
    ``n_train`` candidates exist.
    """
    real = [u for u in utterances if u.source == SAMPLES]
    recordings: dict[str, list[Utterance]] = {}
    for u in real:
        recordings.setdefault(u.id.split("#")[0], []).append(u)
    if not recordings:
        return utterances
    sentence = {rec: _sentence_key(utts[0].meta.get("text_of_recording", utts[0].text))
                for rec, utts in recordings.items()}
    others = [_sentence_key(u.text) for u in utterances if u.source != SAMPLES]
    times_spoken = Counter(list(sentence.values()) + others)
    candidates = sorted(
        rec for rec, utts in recordings.items()
        if utts[0].speaker == REAL_TRAIN_SPEAKER and sentence[rec] and times_spoken[sentence[rec]] == 1
    )
    if n_train > len(candidates):
        raise ValueError(
            f"real_train_clips={n_train}, but only {len(candidates)} real clips of speaker {REAL_TRAIN_SPEAKER} can "
            f"be trained on ({len(recordings)} real clips in this build; clips whose sentence is spoken elsewhere are "
            f"never trained on). Lower real_train_clips, or use more real clips (max_real_clips=0 uses all 45)."
        )
    train = set(random.Random(f"{seed}:real-train").sample(candidates, n_train)) if n_train > 0 else set()
    seen_speakers = {recordings[rec][0].speaker for rec in train}
    for rec, utts in recordings.items():
        for u in utts:
            u.split = "train" if rec in train else "test"
            u.meta["real_use"] = u.split
            if u.split == "test":
                u.meta["speaker_seen_in_training"] = u.speaker in seen_speakers
    return utterances


def shorter_answers(pairs: list, dialogues: list, sentences: int) -> tuple[list, list]:
    """The pairs and dialogues with every agent turn cut to its first ``sentences`` sentences
    (:func:`s2slib.data.text.first_sentences`); the English glosses are of the whole answers."""
    cut = lambda t: text.first_sentences(t, sentences)  # noqa: E731
    pairs = [replace(p, answer=cut(p.answer)) for p in pairs]
    dialogues = [replace(d, turns=[replace(t, text=cut(t.text)) if t.role == "agent" else t for t in d.turns])
                 for d in dialogues]
    return pairs, dialogues


def synthesize_conversations(
    convs: list[Conversation], cfg: DataConfig, out_dir: Path, progress: bool = True
) -> tuple[list[Conversation], list[Reject]]:
    """Synthesize and preprocess every turn; a conversation with a rejected turn is dropped (and reported)."""
    jobs, where = [], []
    for c in convs:
        for k, turn in enumerate(c.turns):
            seed = random.Random(f"{cfg.seed}:{c.id}:{k}").randrange(2**31)
            if turn.role == "agent" and not cfg.agent_jitter:
                seed = None  # no jitter: the same text, voice and emotion is the same audio
            jobs.append(synth.SynthJob(f"{c.id}#{k}", turn.text, turn.speaker, turn.emotion or "neutral", seed))
            where.append((c, k))
    wavs = _synthesize(jobs, cfg, progress)
    raws = [
        RawUtterance(id=job.id, speaker=job.voice, text=job.text, source="conversations", audio_path=wav,
                     emotion=job.emotion)
        for job, wav in zip(jobs, wavs)
    ]
    kept, rejects = preprocess_many(raws, out_dir, cfg.preprocess, cfg.num_workers, progress, desc="conversations")
    # Identical turns ("నమస్కారం!" said by the same voice) are the same audio: preprocess_many reports them as
    # duplicates, which is right for the speech corpus but not here, so every turn is mapped to its audio by id and
    # duplicate rejects point at the kept copy.
    by_id = {u.id: u for u in kept}
    failed_ids = set()
    real_rejects = []
    for r in rejects:
        if r.reason.startswith("duplicate of "):
            by_id[r.id] = by_id[r.reason.removeprefix("duplicate of ")]
        else:
            failed_ids.add(r.id)
            real_rejects.append(r)
    good = []
    for c in convs:
        ids = [f"{c.id}#{k}" for k in range(len(c.turns))]
        if any(i in failed_ids or i not in by_id for i in ids):
            continue
        for turn, i in zip(c.turns, ids):
            turn.audio_path, turn.duration = by_id[i].audio_path, by_id[i].duration
        good.append(c)
    return good, real_rejects


def build_dataset(run: RunDir, cfg: DataConfig, progress: bool = True) -> DataBuild:
    """Build everything described in the module docstring into ``<run>/data``."""
    out = run.subdir("data")
    processed = paths.cache_dir() / "processed"
    raws: list[RawUtterance] = []
    for name in cfg.sources:
        raws += synthetic_speech(cfg, progress) if name == SYNTHETIC else corpus_speech(name, cfg, progress)
    utterances, rejects = preprocess_many(raws, processed, cfg.preprocess, cfg.num_workers, progress, desc="speech")

    split_real_clips(utterances, cfg.real_train_clips, cfg.seed)
    assign_splits(utterances, cfg.val_fraction, cfg.test_fraction, cfg.seed, by_speaker=cfg.speaker_disjoint,
                  group_key="sentence_id")
    manifests = write_splits(out / "manifests", utterances)

    voices_agent = sorted(synth.AGENT_VOICES)
    voices_user = list(synth.USER_VOICES)
    pairs = _take(text.load_qa_pairs(), cfg.n_qa_pairs, cfg.seed, "pairs")
    dialogues = _take(text.load_dialogues(), cfg.n_dialogues, cfg.seed, "dialogues")
    if cfg.answer_sentences:
        pairs, dialogues = shorter_answers(pairs, dialogues, cfg.answer_sentences)
    convs = plan_pairs(pairs, voices_agent, voices_user, cfg.n_heldout_users, cfg.qa_renditions,
                       cfg.conversation_val_fraction, cfg.seed, cfg.agent_voices_per_pair)
    convs += plan_dialogues(dialogues, voices_agent, voices_user, cfg.n_heldout_users, cfg.dialogue_renditions,
                            cfg.conversation_val_fraction, cfg.seed, cfg.agent_voices_per_pair)
    convs, conv_rejects = synthesize_conversations(convs, cfg, processed, progress)
    conversations = write_conversations(out / "conversations", convs)

    all_rejects = rejects + conv_rejects
    rejects_path = atomic.write_text(
        out / "rejects.jsonl", "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in all_rejects)
    )
    card = compute_card(utterances, convs, all_rejects)
    card["config"] = asdict(cfg)
    write_card(out, card)
    return DataBuild(manifests, conversations, rejects_path, card, utterances, convs)
