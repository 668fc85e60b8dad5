"""The data build (notebook 01's engine): manifests, held-out conversation voices, rejects and the data card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from s2slib.data import synth, text
from s2slib.data.build import (DataConfig, build_dataset, plan_synthetic_speech, shorter_answers,
                               split_real_clips, synthesize_conversations)
from s2slib.data.conversations import plan_dialogues, plan_pairs, read_conversations
from s2slib.data.manifest import Utterance, read_manifest
from s2slib.run import RunDir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    cfg = DataConfig(n_sentences=30, renditions_per_sentence=2, n_qa_pairs=8, qa_renditions=2, n_dialogues=3,
                     max_real_clips=0, real_train_clips=12, num_workers=1, val_fraction=0.2, test_fraction=0.2)
    run = RunDir.open(root / "run", "smoke")
    return run, build_dataset(run, cfg, progress=False)


def test_manifests_hold_clean_16k_speech_split_by_sentence(built):
    run, result = built
    splits = {s: read_manifest(p, check_audio=True) for s, p in result.manifests.items()}
    assert set(splits) == {"train", "val", "test"}
    assert all(u.sample_rate == 16000 and u.duration > 0.3 for us in splits.values() for u in us)
    synthetic = {s: {u.meta["sentence_id"] for u in us if u.source == "synthetic-te"} for s, us in splits.items()}
    assert synthetic["train"] and synthetic["test"]
    assert not synthetic["train"] & synthetic["test"] and not synthetic["train"] & synthetic["val"]
    real = [u for us in splits.values() for u in us if u.source == "samples-te"]
    assert len(real) == 45 and {u.split for u in real} == {"train", "test"}  # real speech is never validation
    emotions = {u.emotion for u in splits["train"] if u.source == "synthetic-te"}
    assert emotions <= set(synth.EMOTIONS) and len(emotions) >= 4


def test_real_clips_split_keeps_test_clips_out_of_training(built):
    run, result = built
    splits = {s: read_manifest(p) for s, p in result.manifests.items()}
    real = {s: [u for u in us if u.source == "samples-te"] for s, us in splits.items()}
    assert not real["val"]
    assert len(real["train"]) == 12 and len(real["test"]) == 45 - 12  # the requested number of training clips
    assert {u.speaker for u in real["train"]} == {"cv_te_a"}  # cv_te_b is never trained on
    assert {u.speaker for u in real["test"]} == {"cv_te_a", "cv_te_b"}  # unseen speaker and unseen utterances
    for split, utts in real.items():  # the manifests say which use each clip has
        for u in utts:
            assert u.meta["real_use"] == split
            if split == "test":
                assert u.meta["speaker_seen_in_training"] is (u.speaker == "cv_te_a")
            else:
                assert "speaker_seen_in_training" not in u.meta
    train, test = splits["train"], splits["test"]
    assert not {u.id for u in train} & {u.id for u in test}
    assert not {u.meta["content_sha1"] for u in train} & {u.meta["content_sha1"] for u in test}  # no shared audio
    train_texts, test_texts = {u.text for u in train}, {u.text for u in test}
    assert not {u.text for u in real["test"]} & train_texts and not {u.text for u in real["train"]} & test_texts
    # cv_te_a and cv_te_b both say one sentence: that cv_te_a clip is never drawn for training
    shared = "పల్లె పైరుగాలి పరిరంభణమ్ములు"
    assert [u.speaker for u in real["test"] if u.text == shared] == ["cv_te_a", "cv_te_b"]


def _fake_real_clips() -> list[Utterance]:
    clips = [Utterance(f"samples-te/a{i}", "", 2.0, 16000, "cv_te_a", f"sentence {i}", "samples-te") for i in range(8)]
    clips += [Utterance(f"samples-te/b{i}", "", 2.0, 16000, "cv_te_b", f"other {i}", "samples-te") for i in range(3)]
    clips.append(Utterance("samples-te/b3", "", 2.0, 16000, "cv_te_b", "sentence 0.", "samples-te"))  # as a0 says
    clips += [Utterance(f"samples-te/a8#{k}", "", 9.0, 16000, "cv_te_a", "", "samples-te",
                        meta={"segment": k, "n_segments": 2, "text_of_recording": "a long one"}) for k in range(2)]
    clips.append(Utterance("synthetic-te/s1/Priya/happy", "", 2.0, 16000, "Priya", "sentence 1", "synthetic-te"))
    return clips


def test_split_real_clips_is_seeded_and_never_trains_on_a_repeated_sentence():
    def trained(n, seed):
        utts = split_real_clips(_fake_real_clips(), n, seed)
        return sorted(u.id for u in utts if u.meta.get("real_use") == "train"), utts

    ids, utts = trained(4, 0)
    assert ids == trained(4, 0)[0] and any(trained(4, seed)[0] != ids for seed in range(1, 5))
    assert all(u.split is None and "real_use" not in u.meta for u in utts if u.source != "samples-te")
    # a0 shares its sentence with b3, a1 with a synthetic utterance; a8 is one recording in two segments
    everything, _ = trained(7, 0)
    assert everything == sorted([f"samples-te/a{i}" for i in range(2, 8)] + ["samples-te/a8#0", "samples-te/a8#1"])
    with pytest.raises(ValueError, match="real_train_clips=8.*only 7"):
        split_real_clips(_fake_real_clips(), 8, 0)
    none = split_real_clips(_fake_real_clips(), 0, 0)
    assert all(u.split == "test" and u.meta["speaker_seen_in_training"] is False
               for u in none if u.source == "samples-te")


def test_conversations_test_split_uses_only_heldout_user_voices(built):
    run, result = built
    folder = run / "data" / "conversations"
    train = read_conversations(folder / "pairs_train.jsonl")
    test = read_conversations(folder / "pairs_test.jsonl")
    assert len(train) == 16 and len(test) == 8  # 8 pairs x 2 training voices; 8 pairs x 1 held-out voice
    train_users = {c.turns[0].speaker for c in train}
    test_users = {c.turns[0].speaker for c in test}
    assert not train_users & test_users
    assert test_users <= set(list(synth.USER_VOICES)[-2:])
    for conv in train + test:
        user, agent = conv.turns
        assert user.role == "user" and agent.role == "agent" and agent.speaker in synth.AGENT_VOICES
        assert agent.emotion in synth.EMOTIONS and user.duration > 0.3 and agent.duration > 0.3
    dialogues = read_conversations(folder / "dialogues_train.jsonl")
    assert len(dialogues) == 3 and all(3 <= len(d.turns) <= 10 for d in dialogues)
    assert all(len({t.speaker for t in d.turns if t.role == "user"}) == 1 for d in dialogues)


def test_card_and_rejects_are_written(built):
    run, result = built
    card = json.loads((run / "data" / "card.json").read_text())
    assert card["n_utterances"] == len(result.utterances)
    assert card["hours_by_source"]["samples-te"] > 0 and card["hours_by_source"]["synthetic-te"] > 0
    total = sum(card["hours_by_split"].values())
    assert total == pytest.approx(card["hours_total"], abs=1e-3)
    assert card["conversations"]["pair"]["train"] == 16 and card["conversations"]["pair"]["test"] == 8
    assert "## Hours per speaker" in (run / "data" / "card.md").read_text()
    real = card["real_speech_by_use"]
    assert real["train"]["clips"] == 12 and real["train"]["by_speaker"].keys() == {"cv_te_a"}
    assert real["train"]["seconds"] == pytest.approx(sum(u.duration for u in result.utterances
                                                         if u.meta.get("real_use") == "train"), abs=0.1)
    assert real["test"]["clips"] == 33 and real["test"]["by_speaker"]["cv_te_b"]["clips"] == 5
    assert real["train"]["hours"] + real["test"]["hours"] == pytest.approx(card["hours_by_source"]["samples-te"],
                                                                           abs=1e-3)
    assert "## Real recordings: training and test" in (run / "data" / "card.md").read_text()
    assert (run / "data" / "rejects.jsonl").exists()


def test_plans_are_deterministic_and_cover_voices():
    cfg = DataConfig(n_sentences=40, renditions_per_sentence=3, seed=5)
    a = [(j.id, j.jitter_seed) for j, _ in plan_synthetic_speech(cfg)]
    assert a == [(j.id, j.jitter_seed) for j, _ in plan_synthetic_speech(cfg)]
    assert a != [(j.id, j.jitter_seed) for j, _ in plan_synthetic_speech(DataConfig(n_sentences=40, seed=6))]
    assert len(a) == 120 and len({i.split("/")[1] for i, _ in a}) >= 10  # many voices used

    pairs = text.load_qa_pairs()[:50]
    users = list(synth.USER_VOICES)
    plan = plan_pairs(pairs, sorted(synth.AGENT_VOICES), users, n_heldout_users=2, renditions=2, val_fraction=0.2)
    assert plan == plan_pairs(pairs, sorted(synth.AGENT_VOICES), users, 2, 2, 0.2)
    val = [c for c in plan if c.split == "val"]
    assert 3 <= len(val) <= 20
    for pair in pairs:  # a val rendition uses a training voice not used for that pair in train
        mine = [c for c in plan if c.source_id == pair.id]
        train_voices = {c.turns[0].speaker for c in mine if c.split == "train"}
        assert len(train_voices) == 2
        for c in mine:
            if c.split == "val":
                assert c.turns[0].speaker not in train_voices and c.turns[0].speaker in users[:-2]
    dialogs = plan_dialogues(text.load_dialogues()[:5], ["Priya"], users, 2)
    assert all(t.depends_on is None or t.depends_on < i for d in dialogs for i, t in enumerate(d.turns))
    with pytest.raises(ValueError, match="n_heldout"):
        plan_pairs(pairs, ["Priya"], users, n_heldout_users=len(users))


def test_four_renditions_give_every_answer_in_every_agent_voice_and_test_in_a_trained_one():
    pairs = text.load_qa_pairs()[:30]
    voices = sorted(synth.AGENT_VOICES)
    plan = plan_pairs(pairs, voices, list(synth.USER_VOICES), n_heldout_users=2, renditions=4, val_fraction=0.3)
    for pair in pairs:
        mine = [c for c in plan if c.source_id == pair.id]
        trained = {c.turns[1].speaker for c in mine if c.split == "train"}
        assert trained == set(voices)
        assert all(c.turns[1].speaker in trained for c in mine if c.split == "test")
    starts = {next(c for c in plan if c.source_id == p.id).turns[1].speaker for p in pairs}
    assert len(starts) > 1  # the rotation starts at a hashed voice, not always the first


def test_fewer_agent_voices_per_pair_keep_the_test_voice_among_the_trained_ones():
    pairs = text.load_qa_pairs()[:30]
    voices = sorted(synth.AGENT_VOICES)
    for m in (1, 2):
        plan = plan_pairs(pairs, voices, list(synth.USER_VOICES), n_heldout_users=2, renditions=4, val_fraction=0.3,
                          agent_voices_per_pair=m)
        for pair in pairs:
            mine = [c for c in plan if c.source_id == pair.id]
            trained = {c.turns[1].speaker for c in mine if c.split == "train"}
            assert len(trained) == m and len({c.turns[0].speaker for c in mine if c.split == "train"}) == 4
            assert all(c.turns[1].speaker in trained for c in mine if c.split != "train")
        assert len({next(c for c in plan if c.source_id == p.id).turns[1].speaker for p in pairs}) == len(voices)
    with pytest.raises(ValueError, match="agent_voices_per_item"):
        plan_pairs(pairs, voices, list(synth.USER_VOICES), agent_voices_per_pair=-1)


def test_dialogue_renditions_have_several_users_and_one_agent_voice():
    dialogues = text.load_dialogues()[:6]
    voices = sorted(synth.AGENT_VOICES)
    users = list(synth.USER_VOICES)
    plan = plan_dialogues(dialogues, voices, users, n_heldout_users=2, renditions=4, val_fraction=0.3,
                          agent_voices_per_dialogue=1)
    for dlg in dialogues:
        mine = [c for c in plan if c.source_id == dlg.id]
        train = [c for c in mine if c.split == "train"]
        assert len(train) == 4 and len({c.turns[0].speaker for c in train}) == 4
        assert all(c.turns[0].speaker in users[:-2] for c in train)
        assert [c for c in mine if c.split == "test"][0].turns[0].speaker in users[-2:]
        agents = {t.speaker for c in mine for t in c.turns if t.role == "agent"}
        assert len(agents) == 1 and [t.text for t in mine[0].turns] == [t.text for t in dlg.turns]
    # the default stays one rendition per dialogue, its agent voices rotating over all four
    assert len([c for c in plan_dialogues(dialogues, voices, users, 2, val_fraction=0.0) if c.split == "train"]) == 6


def test_answers_cut_to_their_first_sentence_and_said_the_same_way_each_time(tmp_path):
    assert text.first_sentences("అవునా! పుట్టినరోజు శుభాకాంక్షలు! ఈ ఏడాదంతా బాగుండాలి.", 1) == (
        "అవునా! పుట్టినరోజు శుభాకాంక్షలు!")  # a short exclamation joins the next sentence
    assert text.first_sentences("ఒకటి రెండు మూడు నాలుగు. ఐదు ఆరు ఏడు ఎనిమిది.", 0) == (
        "ఒకటి రెండు మూడు నాలుగు. ఐదు ఆరు ఏడు ఎనిమిది.")
    assert text.first_sentences("no sentence end here", 1) == "no sentence end here"
    with pytest.raises(ValueError, match=">= 0"):
        text.first_sentences("x", -1)
    pairs, dialogues = shorter_answers(text.load_qa_pairs()[:20], text.load_dialogues()[:3], 1)
    full = {p.id: p.answer for p in text.load_qa_pairs()[:20]}
    assert all(full[p.id].startswith(p.answer) for p in pairs) and any(full[p.id] != p.answer for p in pairs)
    originals = {d.id: d for d in text.load_dialogues()[:3]}
    for d in dialogues:
        for t, o in zip(d.turns, originals[d.id].turns):
            assert t.text == o.text if t.role == "user" else o.text.startswith(t.text)
    # the agent says the same words in the same voice identically; a user's renditions vary
    plan = plan_pairs(text.load_qa_pairs()[:1], ["Priya"], list(synth.USER_VOICES), n_heldout_users=2,
                      renditions=2, val_fraction=0.0)
    convs, rejects = synthesize_conversations(plan, DataConfig(num_workers=1), tmp_path, progress=False)
    assert not rejects and len(convs) == 3
    assert len({c.turns[1].audio_path for c in convs}) == 1
    jittered, _ = synthesize_conversations(plan_pairs(text.load_qa_pairs()[:1], ["Priya"], list(synth.USER_VOICES),
                                                      2, 2, 0.0),
                                           DataConfig(num_workers=1, agent_jitter=True), tmp_path / "j",
                                           progress=False)
    assert len({c.turns[1].audio_path for c in jittered}) == 3


def test_unknown_source_is_a_clear_error():
    with pytest.raises(KeyError, match="synthetic-te"):
        DataConfig(sources=("synthetic-tel",))


def test_command_line_builds_a_run(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "s2slib.data", "build", "--out", str(out), "--sources", "synthetic-te",
         "--n-sentences", "4", "--renditions-per-sentence", "1", "--n-qa-pairs", "2", "--qa-renditions", "1",
         "--n-dialogues", "1", "--num-workers", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "utterances" in proc.stdout
    assert sum(len(read_manifest(out / "data" / "manifests" / f"{s}.jsonl")) for s in ("train", "val", "test")) == 4
