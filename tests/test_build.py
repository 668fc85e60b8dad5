"""The data build (notebook 01's engine): manifests, held-out conversation voices, rejects and the data card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from s2slib.data import synth, text
from s2slib.data.build import DataConfig, build_dataset, plan_synthetic_speech
from s2slib.data.conversations import plan_dialogues, plan_pairs, read_conversations
from s2slib.data.manifest import read_manifest
from s2slib.run import RunDir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    cfg = DataConfig(n_sentences=30, renditions_per_sentence=2, n_qa_pairs=8, qa_renditions=2, n_dialogues=3,
                     max_real_clips=5, num_workers=1, val_fraction=0.2, test_fraction=0.2)
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
    assert len(real) == 5 and all(u.split == "test" for u in real)  # real speech is held out
    emotions = {u.emotion for u in splits["train"] if u.source == "synthetic-te"}
    assert emotions <= set(synth.EMOTIONS) and len(emotions) >= 4


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
