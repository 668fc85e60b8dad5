"""Stages 2 and 3: fine-tuning the pretrained S2S model to answer, in a chosen voice and emotion, remembering the
conversation. One trainer for the notebook, the command line, ``torchrun`` and the tests.

    examples = answer_examples(tokens.conversations["pairs_train"] + tokens.conversations["dialogues_train"], n_q=8)
    trainer = AnswerTrainer(config, AnswerTrainConfig(max_steps=750), examples, val_examples,
                            out_dir="run/s2s_answer", pretrained="run/s2s_pretrain/s2s.pt")
    trainer.fit()

Every agent turn of every training conversation is one example: the encoder reads the earlier turns (up to
``AnswerTask.max_turns``, separated, cut to ``max_source_frames``: :func:`s2slib.s2s.context.source_codes`, the
live agent's code path) and the user's question; the decoder writes the agent's answer from BOS to EOS, conditioned
on the agent voice and the emotion label of the answer. A question-answer pair is a one-turn conversation (stage
2), a dialogue gives one example per agent turn with its history (stage 3). The loss, optimiser, schedule,
checkpoints, exact resume and DDP are stage 1's (:class:`s2slib.s2s.train.S2STrainer`); the weights start from
stage 1's ``s2s.pt``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2slib.checkpoint import CheckpointError, load_checkpoint
from s2slib.codec.config import dataclass_from_dict
from s2slib.data.manifest import stable_fraction
from s2slib.s2s.config import NO_LABEL, S2SConfig
from s2slib.s2s.context import DEFAULT_MAX_TURNS, question_frames, source_codes
from s2slib.s2s.data import Batch, ContinuationSampler, collate
from s2slib.s2s.model import S2SModel, transcription_loss
from s2slib.s2s.train import S2STrainConfig, S2STrainer, micro_batches
from s2slib.s2s.transcript import TEXT_VOCAB, char_error_rate, greedy_ctc, ids_text, text_ids
from s2slib.training import autocast


@dataclass
class AnswerExample:
    """One agent turn to learn or evaluate: the earlier turns' codes (oldest first), the user's question and the
    answer (each ``int16[n_q, F]``), the answer's voice and emotion, and where it comes from."""

    id: str  # "<conversation id>/turn<k>"
    conversation: str
    kind: str  # "pair" or "dialogue"
    source_id: str  # the written pair or dialogue (the same text in every split)
    turn: int  # index of the answer in its conversation
    history: list[np.ndarray]
    user: np.ndarray
    answer: np.ndarray
    speaker: str
    emotion: str | None
    depends_on: int | None = None  # the earlier turn the answer needs (a context-dependent follow-up)
    text: str = ""
    user_text: str = ""
    user_speaker: str = ""
    history_roles: list[str] = field(default_factory=list)  # "user" / "agent" for each earlier turn

    @property
    def codes(self) -> np.ndarray:
        """The target codes (what :func:`s2slib.s2s.train.unigram_counts` counts)."""
        return self.answer


def select_sources(rows: list[dict], n_pairs: int = 0, n_dialogues: int = 0, seed: int = 0) -> set[str]:
    """The written pairs and dialogues a profile works with: ``n_pairs`` pairs and ``n_dialogues`` dialogues (0: all)
    drawn by a hash of their id, so every split and every machine picks the same ones. Dialogues with more
    context-dependent follow-ups (turns with ``depends_on``) come first: a budget that keeps a few dialogues keeps
    the ones that measure context."""
    followups: dict[str, set] = {}
    for r in rows:
        if r.get("kind") == "dialogue" and r.get("depends_on") is not None:
            followups.setdefault(r["source_id"], set()).add(r.get("turn"))
    chosen: set[str] = set()
    for kind, n in (("pair", n_pairs), ("dialogue", n_dialogues)):
        ids = sorted({r["source_id"] for r in rows if r.get("kind") == kind},
                     key=lambda i: (-len(followups.get(i, ())), stable_fraction(f"select:{i}", seed)))
        chosen.update(ids if n <= 0 else ids[:n])
    return chosen


def answer_examples(rows: list[dict], n_q: int, max_turns: int = DEFAULT_MAX_TURNS,
                    sources: set[str] | None = None) -> list[AnswerExample]:
    """Token-index rows of conversation turns (:func:`s2slib.s2s.tokens.tokenize_conversations`) -> one example per
    agent turn that follows a user turn, sorted by id; ``sources`` keeps only those written pairs/dialogues.

    A conversation with a turn missing from the rows (rejected at tokenization) contributes only the answers whose
    history is complete."""
    missing_keys = [k for k in ("conversation", "turn", "role", "kind", "source_id") if rows and k not in rows[0]]
    if missing_keys:
        raise ValueError(f"conversation token rows lack {missing_keys}: tokenize them again with "
                         "s2slib.s2s.tokens.tokenize_run (the index format gained these fields)")
    by_conv: dict[str, dict[int, dict]] = {}
    for r in rows:
        if sources is None or r["source_id"] in sources:
            by_conv.setdefault(r["conversation"], {})[int(r["turn"])] = r
    cache: dict[str, np.ndarray] = {}

    def codes(row: dict) -> np.ndarray:
        if row["codes_path"] not in cache:
            c = np.load(Path(row["codes_path"]))
            if c.ndim != 2 or c.shape[0] < n_q:
                raise ValueError(f"{row['codes_path']} holds codes of shape {c.shape}; the model needs {n_q} codebooks")
            cache[row["codes_path"]] = c[:n_q]
        return cache[row["codes_path"]]

    out = []
    for conv_id, turns in by_conv.items():
        for k, row in sorted(turns.items()):
            if row["role"] != "agent" or k == 0 or any(j not in turns for j in range(k)):
                continue
            user = turns[k - 1]
            if user["role"] != "user":
                continue
            earlier = range(max(0, k - 1 - max_turns), k - 1)
            history = [codes(turns[j]) for j in earlier]
            out.append(AnswerExample(
                id=row["id"], conversation=conv_id, kind=row["kind"], source_id=row["source_id"], turn=k,
                history=history, user=codes(user), answer=codes(row), speaker=row["speaker"],
                emotion=row.get("emotion"), depends_on=row.get("depends_on"), text=row.get("text") or "",
                user_text=user.get("text") or "", user_speaker=user.get("speaker") or "",
                history_roles=[turns[j]["role"] for j in earlier]))
    return sorted(out, key=lambda e: e.id)


@dataclass
class AnswerTask:
    """How conversations become examples (lengths in frames)."""

    max_turns: int = DEFAULT_MAX_TURNS  # earlier turns the encoder may read (the seed plan's 10-turn memory)
    max_answer_frames: int = 400  # 8 s at 50 Hz; a longer answer is cropped (and then has no EOS)
    drop_emotion: float = 0.1  # probability that the emotion label is withheld (the model then picks one)
    input_dropout: float = 0.0  # share of the decoder's input codes hidden (PAD) in training: the answer's own past
    # then cannot tell the decoder everything, so it has to read the question. Measured at the laptop profile (0.5,
    # 750 steps): no gain in how well the model ranks the right answer; measured again with the codec-latent encoder:
    # response top-1 0/63 (as without it), fewer answers ending by themselves (0.75 against 0.89). Off by default
    self_feed: float = 0.0  # share of the decoder's input codes replaced by codes the model itself draws (scheduled
    # sampling, Bengio et al. 2015): teacher forcing shows the decoder only true pasts, so in training the answer's own
    # first frames tell it which answer it is saying and it can ignore the question; free-running, one wrong early code
    # then leads it into another answer or a loop. Fed its own draws, it has to read the question and learns to recover.
    # Measured on 16 pairs of long (6 s) answers, 400 steps: 0.5 gave free-running top-1 3/16 on training questions
    # against 1/16 without, at twice the step time. Off by default: short, consistent answers did far more (notebook 06)
    transcribe_weight: float = 0.5  # weight of the encoder's auxiliary transcription (CTC) loss on the user's words
    # (s2slib.s2s.transcript); 0 turns it and the model's transcription head off
    speak_q: int = 0  # codebooks the fine-tuned decoder speaks (S2SConfig.speak_q; 0: all). Measured on 16 pairs, one
    # agent voice per answer, 300 steps: with all 8, greedy answers to held-out voices 15/16 right but 6/16 at
    # temperature 0.7; with 2 (1 kbps), 14/16 at both, and the first codebook's loss 0.08 against 0.34 at step 200.
    # The agent's earlier answers in the encoder's input then hold those codebooks too, as the live agent's do
    pair_history: float = 0.0  # share of the training batches of pairs asked after earlier exchanges of other pairs
    # (a question and its answer each, 1 to pair_history_turns of them): a model trained on lone pairs has only seen
    # questions asked alone, and in a live conversation every question after the first has turns before it. Measured
    # on the 64 held-out laptop questions, asked alone / after one unrelated exchange / after four: 36, 16 and 12
    # right trained on lone pairs; 37, 18 and 16 with 0.2 (notebook 06, 1,150 steps): a small gain
    pair_history_turns: int = 2  # most earlier exchanges such a pair gets
    length_buckets: int = 1  # each kind of example split by length (encoder input plus answer) into this many
    # buckets, a batch drawn from one: less padding. Measured at the laptop profile (notebook 06, 1,150 steps): 4
    # buckets pad a batch to 1.32 times its frames instead of 1.61 and made fine-tuning 21.9 min instead of 28.8, but
    # the model learnt less in those steps (training loss 0.034 against 0.014; response top-1 23/64 against 37/64,
    # context 3/13 with and without). Off by default

    def __post_init__(self) -> None:
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"AnswerTask.input_dropout must lie in [0, 1), got {self.input_dropout}")
        if not 0.0 <= self.self_feed <= 1.0:
            raise ValueError(f"AnswerTask.self_feed must lie in [0, 1], got {self.self_feed}")
        if self.transcribe_weight < 0:
            raise ValueError(f"AnswerTask.transcribe_weight must be >= 0, got {self.transcribe_weight}")
        if self.speak_q < 0:
            raise ValueError(f"AnswerTask.speak_q must be >= 0 (0: every codebook), got {self.speak_q}")
        if not 0.0 <= self.pair_history <= 1.0:
            raise ValueError(f"AnswerTask.pair_history must lie in [0, 1], got {self.pair_history}")
        if self.pair_history_turns < 1:
            raise ValueError(f"AnswerTask.pair_history_turns must be >= 1, got {self.pair_history_turns}")
        if self.length_buckets < 1:
            raise ValueError(f"AnswerTask.length_buckets must be >= 1, got {self.length_buckets}")


def example_parts(example: AnswerExample, config: S2SConfig, task: AnswerTask, with_history: bool = True,
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(source, target answer, ends)`` for one example: the encoder input (with or without the earlier turns) and
    the answer cropped to ``task.max_answer_frames`` (``ends``: it was not cropped, so EOS follows). The agent's
    earlier answers keep only the codebooks the model speaks (``config.spoken_q``), as a live conversation holds
    them."""
    history = example.history[-task.max_turns:] if with_history and task.max_turns else []
    roles = example.history_roles[len(example.history_roles) - len(history):] if example.history_roles else None
    src = source_codes(history, example.user, config, roles)
    answer = example.answer[:, : task.max_answer_frames]
    return src, answer, answer.shape[1] == example.answer.shape[1]


def _labelled(ex: AnswerExample, config: S2SConfig, task: AnswerTask, rng: np.random.Generator | None) -> tuple:
    """``(source, answer, ends, speaker row, emotion row)`` for :func:`s2slib.s2s.data.collate`; ``rng`` None keeps
    every label (validation)."""
    src, answer, ends = example_parts(ex, config, task)
    drop = rng is not None and rng.random() < task.drop_emotion
    return src, answer, ends, config.speaker_index(ex.speaker), NO_LABEL if drop else config.emotion_index(ex.emotion)


def with_transcripts(batch: Batch, examples: list[AnswerExample], config: S2SConfig) -> Batch:
    """``batch`` (of ``examples``, in order) with the user's words attached for the transcription loss: the
    characters of each question and how many frames of it end the source. A question cut to fit
    ``config.max_source_frames`` has lost words, so it gets no text (length 0)."""
    ids = [text_ids(ex.user_text) for ex in examples]
    frames = [ex.user.shape[1] for ex in examples]
    kept = [question_frames(f, config) for f in frames]
    lengths = [len(t) if k == f else 0 for t, k, f in zip(ids, kept, frames)]
    text = torch.zeros((len(ids), max(max(lengths), 1)), dtype=torch.long)
    for i, (t, n) in enumerate(zip(ids, lengths)):
        text[i, :n] = torch.from_numpy(t[:n])
    batch.text, batch.text_lengths, batch.user_lengths = text, torch.tensor(lengths), torch.tensor(kept)
    return batch


class AnswerSampler(ContinuationSampler):
    """Draws fine-tuning batches of :class:`AnswerExample`; ``batch(step, rank)`` is a pure function of
    ``(seed, step, rank)``.

    A batch holds examples of one group: one kind (pairs or dialogue turns) and, with ``task.length_buckets``, one
    range of lengths. The group is drawn in proportion to how many examples it has, so every example is still drawn
    as often as under uniform draws; a batch of short pairs is then not padded to the length of a dialogue's earlier
    turns (measured at the laptop profile: a batch of pairs takes about 1 s, one of dialogue turns with 25 s of
    context about 3 s). With ``task.pair_history``, a share of the pair batches is asked after earlier exchanges
    (:meth:`after_other_pairs`)."""

    empty_message = ("no conversation examples to fine-tune on: notebook 01 writes the conversations and notebook 05 "
                     "(or s2slib.s2s.tokens.tokenize_run) tokenizes them")

    def __init__(self, items: list, config: S2SConfig, batch_size: int, task, seed: int = 0):
        super().__init__(items, config, batch_size, task, seed)
        self.groups = []
        for kind in sorted({e.kind for e in items}):
            mine = [e for e in items if e.kind == kind]
            if task.length_buckets > 1:
                mine.sort(key=lambda e: (self.frames(e), e.id))
            self.groups += [[mine[i] for i in chunk] for chunk in np.array_split(np.arange(len(mine)),
                                                                                 task.length_buckets) if len(chunk)]
        sizes = np.array([len(g) for g in self.groups], dtype=float)
        self.group_share = sizes / sizes.sum()  # a group is drawn as often as its examples together
        self.pairs = [e for e in items if e.kind == "pair"]

    def frames(self, ex: AnswerExample) -> int:
        """How long ``ex`` is to the model: its encoder input and its (cropped) answer, in frames."""
        src, answer, _ = example_parts(ex, self.config, self.task)
        return src.shape[1] + answer.shape[1]

    def example(self, ex: AnswerExample, rng: np.random.Generator) -> tuple:
        return _labelled(ex, self.config, self.task, rng)

    def after_other_pairs(self, ex: AnswerExample, rng: np.random.Generator) -> AnswerExample:
        """Pair ``ex`` asked after 1 to ``task.pair_history_turns`` exchanges of other written pairs (their questions
        and answers as the earlier turns)."""
        others = [i for i, o in enumerate(self.pairs) if o.source_id != ex.source_id]
        n = min(int(rng.integers(1, self.task.pair_history_turns + 1)), len(others))
        chosen = [self.pairs[others[i]] for i in rng.choice(len(others), size=n, replace=False)]
        return dataclasses.replace(ex, history=[c for o in chosen for c in (o.user, o.answer)],
                                   history_roles=["user", "agent"] * n)

    def draw(self, step: int, rank: int = 0) -> tuple[list[AnswerExample], np.random.Generator]:
        """The examples of batch ``step`` (earlier exchanges added where drawn) and the generator that labels them."""
        rng = np.random.default_rng([self.seed, step, rank])
        group = self.groups[int(rng.choice(len(self.groups), p=self.group_share))]
        chosen = [group[i] for i in rng.integers(0, len(group), self.batch_size)]
        if (self.task.pair_history > 0 and chosen[0].kind == "pair" and len(self.pairs) > 1
                and rng.random() < self.task.pair_history):
            chosen = [self.after_other_pairs(ex, rng) for ex in chosen]
        return chosen, rng

    def collate(self, items: list, parts: list[tuple]) -> Batch:
        return with_transcripts(super().collate(items, parts), items, self.config)

    def batch(self, step: int, rank: int = 0) -> Batch:
        chosen, rng = self.draw(step, rank)
        b = self.collate(chosen, [self.example(ex, rng) for ex in chosen])
        p = self.task.input_dropout
        if p > 0:
            rng = np.random.default_rng([self.seed, step, rank, 1])
            hide = torch.from_numpy(rng.random(tuple(b.inputs.shape)) < p) & (b.inputs < self.config.codebook_size)
            b.inputs = b.inputs.masked_fill(hide, self.config.pad_id)
        return b


@torch.no_grad()
def self_fed(model: S2SModel, batch: Batch, share: float, generator: torch.Generator) -> Batch:
    """``batch`` with a ``share`` of its decoder input codes replaced by the model's own draws (at temperature 1,
    from one teacher-forced pass without gradients): the input at step ``t + 1`` is what the model drew at step
    ``t``. BOS, PAD and EOS inputs stay, and a drawn EOS never replaces a code. ``generator`` (on the batch's device)
    makes it reproducible."""
    c = model.config
    logits = model(batch.src, batch.src_lengths, batch.inputs, batch.speaker, batch.emotion)  # (B, n_q, L, V)
    B, n_q, L, V = logits.shape
    drawn = torch.multinomial(logits.float().softmax(-1).reshape(-1, V), 1, generator=generator).view(B, n_q, L)
    fed = torch.cat([batch.inputs[..., :1], drawn[..., :-1]], dim=-1)
    chosen = torch.rand(batch.inputs.shape, generator=generator, device=generator.device) < share
    replace = chosen & (batch.inputs < c.codebook_size) & (fed < c.codebook_size)
    return dataclasses.replace(batch, inputs=torch.where(replace, fed, batch.inputs))


def fixed_answer_batches(examples: list[AnswerExample], config: S2SConfig, batch_size: int,
                         task: AnswerTask) -> list[Batch]:
    """Validation batches: every example once, with its labels."""
    parts = [_labelled(ex, config, task, None) for ex in examples]
    return [with_transcripts(collate(config, *zip(*parts[i:i + batch_size])), examples[i:i + batch_size], config)
            for i in range(0, len(parts), batch_size)]


@torch.no_grad()
def heard_text(model: S2SModel, example: AnswerExample, config: S2SConfig, task: AnswerTask) -> str:
    """What the encoder's transcription head reads in ``example``'s question, with its earlier turns before it
    (best-path CTC): a window on what the encoder understood. Empty when the model has no head."""
    if model.transcriber is None:
        return ""
    (b,) = fixed_answer_batches([example], config, 1, task)
    model.eval()
    b = b.to(next(model.parameters()).device)
    memory, keep = model.encode(b.src, b.src_lengths)
    log_probs = model.transcribe(memory, keep, b.user_lengths)[0]
    return ids_text(greedy_ctc(log_probs.cpu().numpy()))


@torch.no_grad()
def transcription_scores(model: S2SModel, batches: list[Batch], device: torch.device | str = "cpu",
                         ) -> dict[str, float]:
    """How well the encoder's transcription head reads the questions of ``batches``: CTC loss per character and the
    character error rate of its best-path transcripts (``cer``: 0 is every character right; 1 is as bad as
    writing nothing). Empty when the model has no head or the batches no text."""
    if model.transcriber is None:
        return {}
    model.eval()
    total, chars, hyps, refs = 0.0, 0, [], []
    for b in batches:
        if b.text_lengths is None or not bool((b.text_lengths > 0).any()):
            continue
        b = b.to(device)
        memory, keep = model.encode(b.src, b.src_lengths)
        log_probs = model.transcribe(memory, keep, b.user_lengths)
        n = int(b.text_lengths.sum())
        total += float(transcription_loss(log_probs, b.user_lengths, b.text, b.text_lengths)) * n
        chars += n
        for lp, u, t, m in zip(log_probs.cpu().numpy(), b.user_lengths.tolist(), b.text.cpu().numpy(),
                               b.text_lengths.tolist()):
            if m:
                hyps.append(greedy_ctc(lp[:u]))
                refs.append(t[:m])
    if not chars:
        return {}
    return {"ctc": total / chars, "cer": char_error_rate(hyps, refs)}


@dataclass
class AnswerTrainConfig(S2STrainConfig):
    """Fine-tuning: stage 1's optimisation settings with gentler defaults, and an :class:`AnswerTask`."""

    max_steps: int = 750
    lr: float = 5e-4  # half of stage 1's peak: the weights start trained
    warmup_steps: int = 50
    answer: AnswerTask = field(default_factory=AnswerTask)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnswerTrainConfig":
        data = dict(data)
        answer = data.pop("answer", None)
        cfg = super().from_dict(data)
        if answer is not None:
            cfg.answer = dataclass_from_dict(AnswerTask, answer)
        return cfg


def architecture(config: S2SConfig) -> S2SConfig:
    """``config`` without the settings that do not shape the weights (what a checkpoint can be fine-tuned into; the
    transcription head is new in fine-tuning, so it does not count either, nor do the codebooks it speaks)."""
    return dataclasses.replace(config, max_source_frames=0, max_frames=0, text_vocab=0, speak_q=0)


def answer_model_config(config: S2SConfig, task: AnswerTask) -> S2SConfig:
    """The model to fine-tune: ``config`` with a transcription head exactly when ``task`` trains one, speaking the
    codebooks ``task`` asks for."""
    if task.speak_q > config.n_q:
        raise ValueError(f"AnswerTask.speak_q is {task.speak_q} but the model has {config.n_q} codebooks")
    return dataclasses.replace(config, text_vocab=TEXT_VOCAB if task.transcribe_weight > 0 else 0,
                               speak_q=task.speak_q)


class AnswerTrainer(S2STrainer):
    """Fine-tunes a stage-1 model to answer (module docstring). Arguments as :class:`S2STrainer`, with
    ``AnswerExample`` lists instead of utterances, an :class:`AnswerTrainConfig`, ``pretrained``: the stage-1
    ``s2s.pt`` whose weights a new run starts from (a resumed run continues from its own checkpoint), and
    ``sources``: the written pairs and dialogues selected (stored in ``s2s.pt``, so evaluation uses the same);
    ``codec_latent``: the codec's codebook vectors, for a run without ``pretrained`` (which has its own).
    Writes ``checkpoint.pt``, ``s2s.pt`` and ``history.jsonl`` into ``out_dir``."""

    kind = "s2s_answer_train"
    progress_desc = "s2s fine-tuning"

    def __init__(self, model_config: S2SConfig, train_config: AnswerTrainConfig, train_examples: list[AnswerExample],
                 val_examples: list[AnswerExample], out_dir: str | Path, pretrained: str | Path | None = None,
                 device: str = "auto", resume: bool = True, codec_fingerprint: str = "",
                 sources: set[str] | None = None, codec_latent: np.ndarray | None = None):
        if not isinstance(train_config, AnswerTrainConfig):
            raise TypeError(f"AnswerTrainer takes an AnswerTrainConfig, got {type(train_config).__name__}")
        model_config = answer_model_config(model_config, train_config.answer)
        self.transcribe_weight = train_config.answer.transcribe_weight
        super().__init__(model_config, train_config, train_examples, val_examples, out_dir, device, resume,
                         codec_fingerprint, codec_latent)
        self.pretrained = str(pretrained) if pretrained else ""
        self.sources = sorted(sources) if sources is not None else sorted({e.source_id for e in train_examples})
        if not self.resumed and pretrained:
            self._load_pretrained(Path(pretrained))

    def _load_pretrained(self, path: Path) -> None:
        state = load_checkpoint(path, kind=("s2s", "s2s_train"), map_location=self.device)
        theirs = S2SConfig.from_dict(state["s2s_config"])
        if architecture(theirs) != architecture(self.model.config):
            raise CheckpointError(f"{path} is a different architecture from the one being fine-tuned; fine-tune with "
                                  "the configuration stored in it (S2SConfig.from_dict(checkpoint_info(path)"
                                  "['s2s_config'])).")
        if state.get("codec_fingerprint", "") != self.codec_fingerprint:
            raise CheckpointError(f"{path} was pretrained on tokens of another codec than these; fine-tune on the "
                                  "tokens of the codec it was pretrained with.")
        # the transcription head is fine-tuning's own: it starts fresh (and a pretrained one is not used)
        weights = {k: v for k, v in state["model"].items() if not k.startswith("transcriber.")}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith("transcriber.") for k in missing):
            raise CheckpointError(f"{path}: weights do not fit the model (missing {missing}, unexpected {unexpected})")

    def validate(self) -> dict[str, float]:
        """Stage 1's validation, and how well the encoder transcribes the validation questions (``val_ctc``,
        ``val_cer``) when the model learns to."""
        row = super().validate()
        batches = micro_batches(self.val_batches, self.cfg.micro_batch)
        row.update({f"val_{k}": v for k, v in transcription_scores(self.model, batches, self.device).items()})
        return row

    def decoder_inputs(self, batch: Batch) -> Batch:
        """With ``AnswerTask.self_feed``, the decoder reads some of its own draws (:func:`self_fed`); the draws depend
        only on the weights, the batch and ``(seed, step, rank)``, so a resumed run draws the same."""
        share = self.cfg.answer.self_feed
        if share <= 0:
            return batch
        generator = torch.Generator(device=batch.inputs.device)
        generator.manual_seed(int(np.random.default_rng([self.cfg.seed, self.step, self.dist.rank, 3]).integers(2**62)))
        with autocast(self.device, self.cfg.amp, self.cfg.cpu_bf16):
            return self_fed(self.model, batch, share, generator)

    def build_data(self, model_config: S2SConfig, train_items: list, val_items: list) -> tuple[Any, list[Batch], list]:
        task = self.cfg.answer
        sampler = AnswerSampler(train_items, model_config, self.cfg.batch_size, task, seed=self.cfg.seed)
        return sampler, fixed_answer_batches(val_items, model_config, self.cfg.batch_size, task), train_items

    def export(self, path: Path, extra: dict[str, Any] | None = None) -> Path:
        return super().export(path, {"stage": "answer", "pretrained": self.pretrained, "sources": self.sources,
                                     "answer_task": dataclasses.asdict(self.cfg.answer), **(extra or {})})




def finetune_inputs(tokens, pretrained: str | Path, n_pairs: int, n_dialogues: int, max_context_s: float,
                    seed: int = 0) -> tuple[S2SConfig, set[str], dict[str, list[AnswerExample]]]:
    """What fine-tuning starts from, as notebook 06, ``python -m s2slib.s2s finetune`` and ``python -m s2slib.bench
    finetune`` choose it: the pretrained model's configuration with an encoder input of at most ``max_context_s``,
    the written pairs and dialogues (:func:`select_sources`) and their examples by split (:func:`split_examples`).
    ``tokens``: a run's :class:`s2slib.s2s.tokens.RunTokens`."""
    from s2slib.s2s.train import checkpoint_info

    config = S2SConfig.from_dict(checkpoint_info(pretrained)["s2s_config"])
    config = dataclasses.replace(config, max_source_frames=int(max_context_s * config.frame_rate))
    rows = [r for rows in tokens.conversations.values() for r in rows]
    sources = select_sources(rows, n_pairs, n_dialogues, seed)
    return config, sources, split_examples(tokens.conversations, config.n_q, sources)


def split_examples(conversations: dict[str, list[dict]], n_q: int, sources: set[str] | None = None,
                   max_turns: int = DEFAULT_MAX_TURNS) -> dict[str, list[AnswerExample]]:
    """A run's tokenized conversation files (:attr:`s2slib.s2s.tokens.RunTokens.conversations`, by file stem such as
    ``pairs_train``) -> answer examples by split (``train``, ``val``, ``test``), pairs and dialogues together."""
    out: dict[str, list[AnswerExample]] = {"train": [], "val": [], "test": []}
    for stem, rows in sorted(conversations.items()):
        split = stem.rsplit("_", 1)[-1]
        if split in out:
            out[split] += answer_examples(rows, n_q, max_turns, sources)
    return {split: sorted(examples, key=lambda e: e.id) for split, examples in out.items()}


def heldout_sets(test: list[AnswerExample]) -> tuple[list[AnswerExample], list[AnswerExample], list[str]]:
    """What the evaluation asks of the held-out (test) examples: ``(pairs, context-dependent follow-ups, every agent
    answer text of the dialogues)``."""
    pairs = [e for e in test if e.kind == "pair"]
    followups = [e for e in test if e.kind == "dialogue" and e.depends_on is not None]
    return pairs, followups, sorted({e.text for e in test if e.kind == "dialogue"})
