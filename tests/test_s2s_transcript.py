"""The encoder's auxiliary transcription: character ids, best-path decoding, error rate, the head's frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from s2slib.s2s.finetune import AnswerTask, answer_model_config, with_transcripts
from s2slib.s2s.model import S2SModel, transcription_loss
from s2slib.s2s.transcript import (BLANK, SPACE, TEXT_VOCAB, char_error_rate, edit_distance, greedy_ctc, ids_text,
                                   text_ids)
from s2s_fixtures import CONFIG


def test_text_ids_keep_telugu_letters_and_one_boundary_between_words():
    ids = text_ids("  నమస్కారం!  మీరు ఎలా ఉన్నారు? ok 42 ")
    assert BLANK not in ids and ids.dtype == np.int64 and ids.max() < TEXT_VOCAB
    assert ids_text(ids) == "నమస్కారం మీరు ఎలా ఉన్నారు"  # punctuation, Latin and digits are not heard
    assert ids[0] != SPACE and ids[-1] != SPACE and not np.any((ids[1:] == SPACE) & (ids[:-1] == SPACE))
    assert len(text_ids("hello, world")) == 0


def test_best_path_decoding_merges_repeats_and_drops_blanks():
    path = [5, 5, BLANK, 5, 7, 7, BLANK, BLANK, SPACE, 9]
    log_probs = np.log(np.full((len(path), TEXT_VOCAB), 1e-3))
    log_probs[np.arange(len(path)), path] = 0.0
    assert greedy_ctc(log_probs).tolist() == [5, 5, 7, SPACE, 9]


def test_edit_distance_and_error_rate():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], [1, 2]) == 2
    assert char_error_rate([[1, 2, 3]], [[1, 2, 3]]) == 0.0
    assert char_error_rate([[]], [[1, 2, 3, 4]]) == 1.0
    with pytest.raises(ValueError):
        char_error_rate([[]], [[]])


def test_the_head_reads_the_users_turn_at_the_end_of_each_source():
    torch.manual_seed(0)
    model = S2SModel(dataclasses.replace(CONFIG, text_vocab=TEXT_VOCAB)).eval()
    src = torch.randint(0, CONFIG.codebook_size, (2, CONFIG.n_q, 9))
    lengths, users = torch.tensor([9, 6]), torch.tensor([4, 3])
    memory, keep = model.encode(src, lengths)
    out = model.transcribe(memory, keep, users)
    assert out.shape == (2, 4, TEXT_VOCAB)
    for b, (n, u) in enumerate(zip(lengths.tolist(), users.tolist())):
        # memory row 0 is the start frame, so source frames n-u .. n-1 sit at memory rows n-u+1 .. n
        want = torch.log_softmax(model.transcriber(memory[b, n - u + 1: n + 1]), dim=-1)
        torch.testing.assert_close(out[b, :u], want)
    text, text_lengths = torch.tensor([[5, 6], [7, 0]]), torch.tensor([2, 1])
    loss = transcription_loss(out, users, text, text_lengths)
    assert torch.isfinite(loss) and loss > 0
    # a row without text is left out; none at all gives 0 (and still a graph to back-propagate through)
    assert float(transcription_loss(out, users, text, torch.tensor([0, 0]))) == 0.0
    with pytest.raises(RuntimeError, match="no transcription head"):
        S2SModel(CONFIG).transcribe(memory, keep, users)


def test_transcripts_follow_the_examples_and_questions_cut_to_fit_get_none():
    from types import SimpleNamespace

    config = dataclasses.replace(CONFIG, max_source_frames=10)
    exs = [SimpleNamespace(user_text="ఎలా ఉన్నారు?", user=np.zeros((CONFIG.n_q, 8))),
           SimpleNamespace(user_text="నమస్కారం", user=np.zeros((CONFIG.n_q, 12)))]  # longer than the source limit
    from s2slib.s2s.data import Batch

    b = with_transcripts(Batch(*(torch.zeros(1),) * 6), exs, config)
    assert b.text_lengths.tolist() == [len(text_ids("ఎలా ఉన్నారు")), 0] and b.user_lengths.tolist() == [8, 10]
    assert ids_text(b.text[0, : b.text_lengths[0]]) == "ఎలా ఉన్నారు"
    assert answer_model_config(CONFIG, AnswerTask(transcribe_weight=0.0)) == CONFIG
    assert answer_model_config(CONFIG, AnswerTask()).text_vocab == TEXT_VOCAB
    with pytest.raises(ValueError, match="transcribe_weight"):
        AnswerTask(transcribe_weight=-1.0)
