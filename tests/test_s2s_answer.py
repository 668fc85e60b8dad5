"""Stages 2-3: the conversation context, answer examples, fine-tuning (learning, exact resume), and the measures of
whether the agent answers (matcher, voice classifier)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s2slib.checkpoint import CheckpointError
from s2slib.s2s.context import ConversationContext, source_codes
from s2slib.s2s.finetune import (AnswerExample, AnswerSampler, AnswerTask, AnswerTrainConfig, AnswerTrainer,
                                 answer_examples, heard_text, heldout_sets, select_sources, self_fed)
from s2slib.s2s.model import S2SModel
from s2slib.s2s.match import AnswerMatcher, dtw_distances, match_features
from s2slib.s2s.train import S2STrainConfig, S2STrainer, load_s2s
from s2slib.s2s.transcript import TEXT_VOCAB, ids_text, text_ids
from s2s_fixtures import CONFIG, TASK, patterned_items

SR = 16000


def codes(frames: int, value: int = 0, n_q: int = CONFIG.n_q) -> np.ndarray:
    return np.full((n_q, frames), value, dtype=np.int16)


# ------------------------------------------------------------------------------------------------ the context
def test_context_keeps_the_last_ten_turns_and_serialises_losslessly():
    ctx = ConversationContext()
    rng = np.random.default_rng(0)
    turns = [rng.integers(0, 32, (CONFIG.n_q, 3 + k)).astype(np.int16) for k in range(13)]
    for k, c in enumerate(turns):
        ctx.append("user" if k % 2 == 0 else "agent", c, speaker=None if k % 2 == 0 else "Priya",
                   emotion="happy" if k % 2 else None, text=f"turn {k}", truncated=k == 11)
    assert len(ctx) == 10
    assert [t.text for t in ctx.turns] == [f"turn {k}" for k in range(3, 13)]
    back = ConversationContext.from_json(ctx.to_json())
    assert back.max_turns == 10 and len(back) == 10
    for a, b in zip(ctx.turns, back.turns):
        assert np.array_equal(a.codes, b.codes) and a.codes.dtype == b.codes.dtype
        assert (a.role, a.speaker, a.emotion, a.text, a.truncated) == (b.role, b.speaker, b.emotion, b.text,
                                                                       b.truncated)
    ctx.reset()
    assert len(ctx) == 0


def test_context_rejects_bad_input_with_a_clear_error():
    ctx = ConversationContext()
    with pytest.raises(ValueError, match="role"):
        ctx.append("narrator", codes(3))
    with pytest.raises(ValueError, match="shape"):
        ctx.append("user", np.zeros(5, dtype=np.int16))
    with pytest.raises(ValueError, match="serialised"):
        ConversationContext.from_json("{not json")
    with pytest.raises(ValueError, match="serialised"):
        ConversationContext.from_dict({"turns": [{"role": "user", "codes": "!!", "shape": [4, 2]}]})


def test_source_joins_turns_with_separators_and_drops_the_oldest_first():
    config = dataclasses.replace(CONFIG, max_source_frames=20)
    history = [codes(8, 1), codes(6, 2)]
    src = source_codes(history, codes(5, 3), config)
    assert src.shape == (CONFIG.n_q, 6 + 1 + 5)  # the 8-frame turn does not fit: dropped whole
    assert (src[:, 6] == config.eos_id).all() and (src[:, :6] == 2).all() and (src[:, 7:] == 3).all()
    unlimited = source_codes(history, codes(5, 3), dataclasses.replace(CONFIG, max_source_frames=0))
    assert unlimited.shape[1] == 8 + 1 + 6 + 1 + 5
    long_question = source_codes([], np.arange(30)[None].repeat(CONFIG.n_q, 0), config)
    assert long_question.shape[1] == 20 and long_question[0, -1] == 29  # the question's last frames are kept


# ------------------------------------------------------------------------------------------------ examples
def conversation_rows(tmp_path, n_pairs: int = 6, n_dialogues: int = 2, split: str = "train") -> list[dict]:
    """Token-index rows of pairs (question k -> answer pattern k) and 4-turn dialogues whose last answer repeats
    what the user said in turn 0 (a context-dependent follow-up)."""
    rows = []

    def add(conv: str, kind: str, source: str, k: int, role: str, arr: np.ndarray, speaker: str, emotion=None,
            depends_on=None):
        # what was said: the Latin part is not heard (s2slib.s2s.transcript drops it); a user's question also says
        # one Telugu letter per code value, so the encoder's transcription head has something to learn
        word = f" {chr(0x0C15 + int(arr[0, 0]) % 30)}!" if role == "user" else ""
        path = tmp_path / f"{conv.replace('/', '_')}_{k}.npy"
        np.save(path, arr)
        rows.append({"id": f"{conv}/turn{k}", "codes_path": str(path), "speaker": speaker, "emotion": emotion,
                     "role": role, "conversation": conv, "turn": k, "kind": kind, "source_id": source,
                     "depends_on": depends_on, "text": f"{source} turn {k}{word}", "n_frames": arr.shape[1]})

    rng = np.random.default_rng(1)
    for p in range(n_pairs):
        conv = f"qa_{p}/{split}/User"
        add(conv, "pair", f"qa_{p}", 0, "user", codes(6 + p % 3, p), "User")
        add(conv, "pair", f"qa_{p}", 1, "agent", rng.integers(0, 32, (CONFIG.n_q, 10)).astype(np.int16),
            ("Arjun", "Priya")[p % 2], "happy")
    for d in range(n_dialogues):
        conv = f"dlg_{d}/{split}/User"
        add(conv, "dialogue", f"dlg_{d}", 0, "user", codes(5, 20 + d), "User")
        add(conv, "dialogue", f"dlg_{d}", 1, "agent", codes(4, 30), "Priya", "neutral")
        add(conv, "dialogue", f"dlg_{d}", 2, "user", codes(5, 29), "User")  # the same follow-up question
        add(conv, "dialogue", f"dlg_{d}", 3, "agent", codes(6, 20 + d), "Priya", "neutral", depends_on=0)
    return rows


def test_answer_examples_carry_history_labels_and_follow_ups(tmp_path):
    rows = conversation_rows(tmp_path)
    examples = answer_examples(rows, CONFIG.n_q)
    assert len(examples) == 6 + 2 * 2
    follow = [e for e in examples if e.depends_on is not None]
    assert len(follow) == 2 and all(len(e.history) == 2 and e.turn == 3 for e in follow)
    pair = next(e for e in examples if e.source_id == "qa_1")
    assert pair.history == [] and pair.speaker == "Priya" and pair.emotion == "happy"
    chosen = select_sources(rows, n_pairs=3, n_dialogues=1)
    assert len(chosen) == 4 and chosen == select_sources(rows, n_pairs=3, n_dialogues=1)
    assert {e.source_id for e in answer_examples(rows, CONFIG.n_q, sources=chosen)} == chosen
    pairs, followups, texts = heldout_sets(examples)
    assert len(pairs) == 6 and len(followups) == 2 and len(texts) == 4
    with pytest.raises(ValueError, match="tokenize them again"):
        answer_examples([{k: v for k, v in rows[0].items() if k != "kind"}], CONFIG.n_q)


def test_select_sources_keeps_the_dialogues_that_measure_context(tmp_path):
    rows = conversation_rows(tmp_path, n_dialogues=4)
    plain = {"dlg_1", "dlg_3"}  # these two lose their follow-up: nothing in them needs an earlier turn
    rows = [{**r, "depends_on": None} if r["source_id"] in plain else r for r in rows]
    for seed in range(4):  # whatever the hash order, the dialogues with follow-ups come first
        assert select_sources(rows, n_pairs=1, n_dialogues=2, seed=seed) - {f"qa_{p}" for p in range(6)} \
            == {"dlg_0", "dlg_2"}
    assert {"dlg_0", "dlg_1", "dlg_2", "dlg_3"} <= select_sources(rows, n_dialogues=0)


def test_answer_batches_put_history_in_the_source_and_are_pure(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    sampler = AnswerSampler(examples, CONFIG, 4, AnswerTask(max_answer_frames=8), seed=2)
    a, b = sampler.batch(3), sampler.batch(3)
    assert torch.equal(a.src, b.src) and torch.equal(a.inputs, b.inputs)
    follow = next(e for e in examples if e.depends_on is not None)
    batch = AnswerSampler([follow], CONFIG, 1, AnswerTask()).batch(0)
    assert int(batch.src_lengths[0]) == 5 + 1 + 4 + 1 + 5  # turn 0, separator, turn 1, separator, question
    assert int(batch.speaker[0]) == CONFIG.speaker_index("Priya")


def test_a_batch_holds_one_kind_and_kinds_come_in_proportion(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path, n_pairs=6, n_dialogues=2), CONFIG.n_q)  # 6 pairs, 4 turns
    sampler = AnswerSampler(examples, CONFIG, 4, AnswerTask(max_answer_frames=8), seed=0)
    kinds = [{e.kind for e in sampler.draw(step)[0]} for step in range(500)]
    assert all(len(k) == 1 for k in kinds)  # a batch of pairs is never padded to a dialogue's history
    share = sum(k == {"pair"} for k in kinds) / len(kinds)
    assert 0.52 < share < 0.68, share  # 6 of the 10 examples are pairs: each example as likely as before
    drawn = [e.id for step in range(500) for e in sampler.draw(step)[0]]
    assert set(drawn) == {e.id for e in examples}
    # split by length as well: a batch's examples come from one half of its kind's lengths
    halves = AnswerSampler(examples, CONFIG, 4, AnswerTask(max_answer_frames=8, length_buckets=2), seed=0)
    assert len(halves.groups) == 4 and sorted(len(g) for g in halves.groups) == [2, 2, 3, 3]
    for step in range(100):
        chosen = halves.draw(step)[0]
        assert any({e.id for e in chosen} <= {e.id for e in g} for g in halves.groups)
    short, long_ = (g for g in halves.groups if g[0].kind == "pair")
    assert max(map(halves.frames, short)) <= min(map(halves.frames, long_))
    with pytest.raises(ValueError, match="length_buckets"):
        AnswerTask(length_buckets=0)


def test_pair_batches_asked_after_other_pairs_exchanges(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path, n_pairs=6, n_dialogues=2), CONFIG.n_q)
    pairs = [e for e in examples if e.kind == "pair"]
    task = AnswerTask(max_answer_frames=8, pair_history=0.5, pair_history_turns=2)
    sampler = AnswerSampler(examples, CONFIG, 4, task, seed=1)
    with_history = alone = 0
    for step in range(300):
        chosen, _ = sampler.draw(step)
        if chosen[0].kind == "dialogue":
            continue
        if not chosen[0].history:
            assert all(not e.history for e in chosen)  # the whole batch, or none of it
            alone += 1
            continue
        with_history += 1
        for ex in chosen:
            n = len(ex.history) // 2
            assert 1 <= n <= 2 and ex.history_roles == ["user", "agent"] * n
            for k in range(n):  # another pair's question followed by that pair's answer, never its own
                other = next(o for o in pairs if o.user is ex.history[2 * k])
                assert other.source_id != ex.source_id and ex.history[2 * k + 1] is other.answer
    assert 0.35 < with_history / (with_history + alone) < 0.65
    a, b = sampler.batch(7), sampler.batch(7)
    assert torch.equal(a.src, b.src) and torch.equal(a.inputs, b.inputs)  # still pure: exact resume
    plain = AnswerSampler(examples, CONFIG, 4, AnswerTask(), seed=1)
    assert all(not e.history for step in range(50) for e in plain.draw(step)[0] if e.kind == "pair")
    with pytest.raises(ValueError, match="pair_history"):
        AnswerTask(pair_history=1.5)


def test_input_dropout_hides_only_answer_codes_and_is_pure(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    plain = AnswerSampler(examples, CONFIG, 8, AnswerTask(max_answer_frames=12), seed=2).batch(5)
    sampler = AnswerSampler(examples, CONFIG, 8, AnswerTask(max_answer_frames=12, input_dropout=0.5), seed=2)
    hidden = sampler.batch(5)
    assert torch.equal(hidden.inputs, sampler.batch(5).inputs)  # a function of (seed, step, rank): exact resume
    assert torch.equal(hidden.src, plain.src) and torch.equal(hidden.targets, plain.targets)  # targets untouched
    changed = hidden.inputs != plain.inputs
    codes = plain.inputs < CONFIG.codebook_size
    assert not (changed & ~codes).any()  # BOS, EOS and PAD stay where they were
    assert (hidden.inputs[changed] == CONFIG.pad_id).all()
    share = float(changed.sum()) / float(codes.sum())
    assert 0.35 < share < 0.65, share


def test_self_feeding_replaces_answer_codes_with_the_models_own_draws(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    batch = AnswerSampler(examples, CONFIG, 8, AnswerTask(max_answer_frames=12), seed=2).batch(5)
    torch.manual_seed(0)
    model = S2SModel(CONFIG).eval()
    fed = lambda share, seed: self_fed(model, batch, share, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(fed(0.0, 1).inputs, batch.inputs)
    half, again = fed(0.5, 1), fed(0.5, 1)
    assert torch.equal(half.inputs, again.inputs)  # the same generator draws the same: exact resume
    assert torch.equal(half.targets, batch.targets) and torch.equal(half.src, batch.src)  # only the inputs change
    codes = batch.inputs < CONFIG.codebook_size
    changed = half.inputs != batch.inputs
    assert not (changed & ~codes).any()  # BOS, EOS and PAD stay
    assert (half.inputs[changed] < CONFIG.codebook_size).all()  # a drawn EOS never replaces a code
    share = float(changed.sum()) / float(codes.sum())
    assert 0.3 < share < 0.6, share  # about half (a draw that equals the true code changes nothing)
    # fully self-fed, the input at step t + 1 is what the model drew for step t: rerun the pass on these inputs'
    # prefix and the draws are codes the model gives probability
    full = fed(1.0, 2)
    with torch.no_grad():
        logp = model(batch.src, batch.src_lengths, batch.inputs, batch.speaker, batch.emotion).log_softmax(-1)
    moved = full.inputs[..., 1:] != batch.inputs[..., 1:]
    drawn = full.inputs[..., 1:].clamp(max=CONFIG.codebook_size)
    picked = logp[..., :-1, :].gather(-1, drawn.unsqueeze(-1)).squeeze(-1)
    assert moved.any() and torch.isfinite(picked[moved]).all()


def test_self_fed_fine_tuning_resumes_exactly(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    pre = pretrained(tmp_path)
    cfg = small_answer_config(answer=AnswerTask(max_answer_frames=12, self_feed=0.5))
    make = lambda out: AnswerTrainer(CONFIG, cfg, examples, examples[:3], out, pretrained=pre,  # noqa: E731
                                     device="cpu", codec_fingerprint="fp")
    straight = make(tmp_path / "a")
    straight.fit(progress=False)
    first = make(tmp_path / "b")
    first.fit(progress=False, stop_after=3)
    resumed = make(tmp_path / "b")
    resumed.fit(progress=False)
    plain = AnswerTrainer(CONFIG, small_answer_config(), examples, examples[:3], tmp_path / "c", pretrained=pre,
                          device="cpu", codec_fingerprint="fp")
    plain.fit(progress=False)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert any(not torch.equal(v, plain.model.state_dict()[k]) for k, v in straight.model.state_dict().items())
    with pytest.raises(ValueError, match="self_feed"):
        AnswerTask(self_feed=1.5)


def small_answer_config(**kw) -> AnswerTrainConfig:
    base = dict(max_steps=6, batch_size=4, lr=3e-3, warmup_steps=2, val_every=3, ckpt_every=2, log_every=1,
                answer=AnswerTask(max_answer_frames=12))
    return AnswerTrainConfig(**{**base, **kw})


def pretrained(tmp_path) -> str:
    trainer = S2STrainer(CONFIG, S2STrainConfig(max_steps=2, batch_size=4, val_every=0, ckpt_every=10, task=TASK),
                         patterned_items(8), patterned_items(2, seed=3), tmp_path / "pre", device="cpu",
                         codec_fingerprint="fp")
    trainer.fit(progress=False)
    return str(tmp_path / "pre" / "s2s.pt")


def test_fine_tuning_starts_from_the_pretrained_weights_and_learns(tmp_path):
    rows = conversation_rows(tmp_path)
    examples = answer_examples(rows, CONFIG.n_q)
    pre = pretrained(tmp_path)
    trainer = AnswerTrainer(CONFIG, small_answer_config(max_steps=200, val_every=200, ckpt_every=200), examples,
                            examples, tmp_path / "ft", pretrained=pre, device="cpu", codec_fingerprint="fp")
    start = load_s2s(pre).state_dict()
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in start.items())
    history = trainer.fit(progress=False)
    final = [r for r in history.rows if "val_loss" in r][-1]
    assert final["val_loss"] < 0.5 * final["val_unigram_loss"], final
    # the encoder learnt to transcribe the questions (each says one letter): its auxiliary head reads them
    assert final["val_cer"] < 0.2, final
    assert all("ctc" in r for r in history.rows if "loss" in r)
    heard = [heard_text(trainer.model, e, trainer.model.config, AnswerTask()) for e in examples]
    assert np.mean([h == ids_text(text_ids(e.user_text)) for h, e in zip(heard, examples)]) > 0.8, heard
    model = load_s2s(tmp_path / "ft" / "s2s.pt")
    assert model.config == dataclasses.replace(CONFIG, text_vocab=TEXT_VOCAB) and model.transcriber is not None
    with pytest.raises(CheckpointError, match="another codec"):
        AnswerTrainer(CONFIG, small_answer_config(), examples, examples, tmp_path / "other", pretrained=pre,
                      device="cpu", codec_fingerprint="different")


def test_killed_fine_tuning_resumes_exactly(tmp_path):
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    pre = pretrained(tmp_path)
    make = lambda out: AnswerTrainer(CONFIG, small_answer_config(), examples, examples[:3], out,  # noqa: E731
                                     pretrained=pre, device="cpu", codec_fingerprint="fp")
    straight = make(tmp_path / "a")
    straight.fit(progress=False)
    first = make(tmp_path / "b")
    first.fit(progress=False, stop_after=3)  # stopped (and checkpointed) at step 3 of 6
    resumed = make(tmp_path / "b")
    assert resumed.resumed and resumed.step == 3
    resumed.fit(progress=False)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # the data rebuilt since (an answer said differently): resuming would mix two data sets, so it is refused
    changed = [dataclasses.replace(examples[0], answer=examples[0].answer[:, :-1])] + examples[1:]
    with pytest.raises(CheckpointError, match="other examples"):
        AnswerTrainer(CONFIG, small_answer_config(), changed, examples[:3], tmp_path / "b", pretrained=pre,
                      device="cpu", codec_fingerprint="fp")


def test_micro_batches_take_the_same_step_as_one_pass(tmp_path):
    """A step split into micro-batches (less memory) sums to the one-pass gradient, the transcription loss too."""
    examples = answer_examples(conversation_rows(tmp_path), CONFIG.n_q)
    pre = pretrained(tmp_path)
    trainers = [AnswerTrainer(CONFIG, small_answer_config(micro_batch=m, max_steps=2), examples, examples[:3],
                              tmp_path / f"m{m}", pretrained=pre, device="cpu", codec_fingerprint="fp")
                for m in (0, 3, 1)]
    batch = trainers[0].sampler.batch(0)
    rows = [t.train_step(batch) for t in trainers]
    for t, row in zip(trainers[1:], rows[1:]):
        assert row["loss"] == pytest.approx(rows[0]["loss"], rel=1e-5)
        assert row["ctc"] == pytest.approx(rows[0]["ctc"], rel=1e-5) and rows[0]["ctc"] > 0
        assert row["grad_norm"] == pytest.approx(rows[0]["grad_norm"], rel=1e-4)
        for k, v in trainers[0].model.state_dict().items():
            torch.testing.assert_close(t.model.state_dict()[k], v, rtol=1e-4, atol=1e-6, msg=k)
    # validation cuts its batches the same way, with the same figures
    from s2slib.s2s.train import evaluate

    whole = evaluate(trainers[0].model, trainers[0].val_batches, "cpu")
    cut = evaluate(trainers[0].model, trainers[0].val_batches, "cpu", micro_batch=1)
    np.testing.assert_allclose(cut["loss"], whole["loss"], rtol=1e-5)
    assert (cut["count"] == whole["count"]).all() and (cut["accuracy"] == whole["accuracy"]).all()


# ------------------------------------------------------------------------------------------------ the matcher
def naive_dtw(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = np.maximum(1 - a @ b.T, 0)
    D = np.full((len(a) + 1, len(b) + 1), np.inf)
    D[0, 0] = 0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            D[i, j] = c[i - 1, j - 1] + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    return D[-1, -1] / (len(a) + len(b))


def test_dtw_equals_the_textbook_recursion():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, 5)).astype(np.float32)
    cands = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 9, 7, 12)]
    fast = dtw_distances(q, cands, chunk=3)
    assert np.allclose(fast, [naive_dtw(q, c) for c in cands], atol=1e-5)


@pytest.fixture(scope="module")
def spoken_answers():
    import librosa

    from s2slib.data.synth import synthesize

    texts = ["నమస్కారం, నేను మీ సహాయకురాలిని", "ఈ రోజు వాతావరణం చాలా బాగుంది", "మీ పేరు సురేష్ గారు",
             "హైదరాబాద్ తెలంగాణ రాజధాని", "నాకు తెలుగు పాటలు అంటే ఇష్టం", "రేపు ఉదయం పది గంటలకు రండి"]
    return {t: librosa.resample(synthesize(t, "Priya", "neutral"), orig_sr=22050, target_sr=SR) for t in texts}


def test_matcher_finds_references_and_stretched_copies_and_is_near_chance_on_noise(spoken_answers):
    import librosa

    matcher = AnswerMatcher(spoken_answers, SR)
    for text, wav in spoken_answers.items():
        assert matcher.distances(wav)[text] == pytest.approx(0.0, abs=1e-6)
        assert matcher.best(wav) == text
        for rate in (0.85, 1.15):
            assert matcher.best(librosa.effects.time_stretch(wav, rate=rate)) == text
    rng = np.random.default_rng(0)
    names = list(spoken_answers)
    hits = [matcher.best(0.1 * rng.standard_normal(SR * 2).astype(np.float32)) == names[i % len(names)]
            for i in range(24)]
    assert np.mean(hits) <= 2.5 / len(names)  # chance is 1/6: noise carries no answer
    assert match_features(np.zeros(100, dtype=np.float32), SR).shape[1] == 40  # silence is not an error


def test_voice_classifier_tells_the_agent_voices_apart():
    import librosa

    from s2slib.data.synth import synthesize
    from s2slib.s2s.voice_id import VoiceClassifier

    sentences = ["నమస్కారం", "ఈ రోజు వాతావరణం బాగుంది", "మీ పేరు ఏమిటి", "నాకు పాటలు ఇష్టం", "రేపు కలుద్దాం",
                 "హైదరాబాద్ పెద్ద నగరం"]
    voices = ["Arjun", "Ravi", "Priya", "Lakshmi"]
    wav = lambda t, v, e="neutral": librosa.resample(synthesize(t, v, e), orig_sr=22050, target_sr=SR)  # noqa: E731
    clf = VoiceClassifier.fit([wav(t, v) for t in sentences[:4] for v in voices],
                              [v for _ in sentences[:4] for v in voices], SR)
    held = [(wav(t, v, "happy"), v) for t in sentences[4:] for v in voices]
    assert clf.accuracy([w for w, _ in held], [v for _, v in held]) >= 0.75
    with pytest.raises(ValueError, match="two voices"):
        VoiceClassifier.fit([wav("నమస్కారం", "Ravi")], ["Ravi"], SR)


# ------------------------------------------------------------------------------------------------ the commands
def test_finetune_eval_and_answer_commands_on_a_small_run(tmp_path, capsys):
    """A run folder as notebooks 01-05 leave it (a tiny codec, spoken manifests and conversations, a pretrained
    model), then the three commands a user runs: finetune, eval (its JSON keys) and answer (with a saved context)."""
    import json

    import librosa

    from s2slib.audio import save_audio
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.model import Codec
    from s2slib.codec.train import export_codec, load_codec
    from s2slib.data.conversations import Conversation, SpokenTurn, write_conversations
    from s2slib.data.manifest import Utterance, write_manifest
    from s2slib.data.synth import synthesize
    from s2slib.s2s.__main__ import main
    from s2slib.s2s.config import S2SConfig
    from s2slib.s2s.data import load_items
    from s2slib.s2s.tokens import TokenCache, codec_fingerprint, tokenize_run

    run = tmp_path / "run"
    torch.manual_seed(0)
    codec_path = export_codec(Codec(CodecConfig.fast50_tiny()).eval(), run / "codec" / "codec.pt")
    audio = run / "audio"
    audio.mkdir(parents=True)

    def say(name: str, text: str, voice: str, emotion: str = "neutral") -> str:
        wav = librosa.resample(synthesize(text, voice, emotion), orig_sr=22050, target_sr=SR)
        return str(save_audio(audio / f"{name}.wav", wav.astype(np.float32), SR))

    agents, lines = ["Arjun", "Ravi", "Priya", "Lakshmi"], ["నమస్కారం", "మంచి రోజు", "సరే అండి"]
    utts = [Utterance(f"{v}_{i}", say(f"{v}_{i}", t, v), 1.0, SR, v, t, "synthetic-te", emotion="neutral",
                      split="train") for v in agents for i, t in enumerate(lines)]
    for split in ("train", "val", "test"):
        write_manifest(run / "data" / "manifests" / f"{split}.jsonl", [u for u in utts if u.split == split] or utts[:1])
    qa = [("ఎలా ఉన్నారు", "బాగున్నాను"), ("మీ పేరు ఏమిటి", "నా పేరు ప్రియ"), ("సమయం ఎంత", "పది గంటలు")]
    convs = []
    for split, user in (("train", "Kiran"), ("val", "Suresh"), ("test", "Divya")):
        for k, (q, a) in enumerate(qa):
            convs.append(Conversation(f"qa_{k}/{split}/{user}", "pair", f"qa_{k}", split, "t", [
                SpokenTurn("user", q, user, audio_path=say(f"q{k}_{split}", q, user)),
                SpokenTurn("agent", a, agents[k], "happy", audio_path=say(f"a{k}_{split}", a, agents[k], "happy"))]))
        turns = [("user", "నా పేరు రవి", None), ("agent", "సరే రవి గారు", None), ("user", "నా పేరు ఏమిటి", None),
                 ("agent", "మీ పేరు రవి", 0)]
        convs.append(Conversation(f"dlg_0/{split}/{user}", "dialogue", "dlg_0", split, "t", [
            SpokenTurn(role, text, user if role == "user" else "Priya", None if role == "user" else "neutral", dep,
                       audio_path=say(f"d{j}_{split}", text, user if role == "user" else "Priya"))
            for j, (role, text, dep) in enumerate(turns)]))
    write_conversations(run / "data" / "conversations", convs)
    codec = load_codec(codec_path)
    cache = TokenCache(run / "tokens", codec_fingerprint(codec_path))
    tokens = tokenize_run(codec, cache, run / "data", progress=False)
    config = S2SConfig.for_codec("smoke", cache.info, max_frames=60)
    S2STrainer(config, S2STrainConfig(max_steps=2, batch_size=2, val_every=0, ckpt_every=10, task=TASK),
               load_items(tokens.train, config.n_q), load_items(tokens.val, config.n_q), run / "s2s_pretrain",
               device="cpu", codec_fingerprint=cache.fingerprint, codec_latent=cache.latent_table()).fit(progress=False)
    capsys.readouterr()

    assert main(["finetune", "--run", str(run), "--pairs", "0", "--max-steps", "2", "--batch-size", "2",
                 "--no-progress"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["step"] == 2 and (run / "s2s_answer" / "s2s.pt").exists()

    assert main(["eval", "--run", str(run), "--emotion-questions", "1", "--max-answer-s", "0.4",
                 "--classifier-per-voice", "2", "--threads", "1", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("response_top1", "response_chance", "n_candidates", "context_top1", "context_ablation_top1",
                "voice_accuracy", "emotion"):
        assert key in result, key
    assert result["n_candidates"] == 3 and result["response_chance"] == pytest.approx(1 / 3)
    assert result["n_context"] == 1 and len(result["emotion"]) == 9

    ctx_file = tmp_path / "ctx.json"
    out = tmp_path / "answer.wav"
    assert main(["answer", str(audio / "q0_test.wav"), "--run", str(run), "--voice", "Ravi", "--emotion", "sad",
                 "-o", str(out), "--turn", f"user:{audio / 'q1_test.wav'}", "--turn", f"agent:{audio / 'a1_test.wav'}",
                 "--save-context", str(ctx_file), "--seconds", "0.4"]) == 0
    said = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.exists() and said["context_turns"] == 4 and said["voice"] == "Ravi"
    assert len(ConversationContext.from_json(ctx_file.read_text()).turns) == 4
    assert main(["answer", str(tmp_path / "missing.wav"), "--run", str(run), "-o", str(out)]) == 1
    assert "error" in capsys.readouterr().err

    from s2slib.bench import main as bench  # the fine-tuning benchmark, at the smoke profile's notebook 06 settings
    from s2slib.training import cpu_has_native_bf16

    before = sorted((f.name, f.read_bytes()) for f in (run / "s2s_answer").iterdir())
    assert bench(["finetune", "--run", str(run), "--profile", "smoke", "--steps", "2", "--threads", "1"]) == 0
    timed = json.loads(capsys.readouterr().out)
    assert timed["steps"] == 2 and timed["max_steps"] == 4 and timed["float32"]["s_per_step"] > 0
    assert timed["float32"]["projected_minutes"] == pytest.approx(timed["float32"]["s_per_step"] * 4 / 60, abs=0.06)
    assert ("s_per_step" in timed["bfloat16"]) is timed["cpu_native_bf16"] is cpu_has_native_bf16()
    assert sorted((f.name, f.read_bytes()) for f in (run / "s2s_answer").iterdir()) == before  # the run is untouched

