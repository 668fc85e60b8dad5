"""The live agent's core: turn detection, answering, barge-in, context and settings, the wire protocol."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent_fixtures import SR, make_agent_run, silence, telugu_question
from s2slib.agent.config import VAD_WINDOW, AgentConfig
from s2slib.agent.protocol import ProtocolError, encode_event, parse_audio, parse_control
from s2slib.agent.vad import TurnDetector, speech_pauses

CONFIG = AgentConfig(max_answer_s=1.0, seed=0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from s2slib.agent.engine import AgentEngine

    return AgentEngine(make_agent_run(tmp_path_factory.mktemp("agent_run")))


def feed(session, wav: np.ndarray, chunk: int = 320) -> list:
    events = []
    for i in range(0, len(wav), chunk):
        events += session.feed(wav[i:i + chunk])
    return events


# ------------------------------------------------------------------------------------------------ turn detection
def test_turn_detector_needs_min_speech_and_ends_after_the_silence():
    cfg = AgentConfig(min_speech_ms=96, end_of_turn_ms=320)  # 3 windows to start, 10 to end
    det = TurnDetector(cfg)
    decisions = [0, 1, 1, 0, 0] + [1] * 5 + [0, 0, 1] + [0] * 10 + [0] * 3
    events = [(i, e) for i, d in enumerate(decisions) if (e := det.step(bool(d)))]
    assert [e.kind for _, e in events] == ["speech_started", "speech_ended"]  # the 2-window blip started nothing
    (i0, start), (i1, end) = events
    assert i0 == 7 and start.speech_start == 5 * VAD_WINDOW
    assert end.speech_end == 13 * VAD_WINDOW  # the last speech window (index 12) ends here
    assert i1 == 22 and end.sample - end.speech_end == 10 * VAD_WINDOW


def test_speech_pauses_are_measured_inside_utterances():
    q = telugu_question()
    gap = np.concatenate([silence(0.3), q, silence(0.5), q, silence(0.3)])
    pauses = speech_pauses(gap)
    assert pauses.max() == pytest.approx(0.5, abs=0.15)  # the gap between the two, not the silence around them
    assert speech_pauses(silence(1.0)).size == 0


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="vad_threshold"):
        AgentConfig(vad_threshold=1.5)
    with pytest.raises(ValueError, match="end_of_turn_ms"):
        AgentConfig(end_of_turn_ms=0)


# ------------------------------------------------------------------------------------------------ a session
def test_session_hears_a_question_answers_it_in_chunks_and_remembers_it(engine):
    from s2slib.agent.client import speech_span
    from s2slib.agent.session import AgentSession

    s = AgentSession(engine, CONFIG, voice="Ravi", emotion="happy")
    q = telugu_question()
    events = feed(s, np.concatenate([silence(0.5), q, silence(0.6)]))
    kinds = [e.type for e in events]
    assert kinds == ["speech_started", "speech_ended"] and s.turn_ready
    first, last = speech_span(q)
    assert events[0].data["t"] == pytest.approx(0.5 + first / SR, abs=0.1)
    assert events[1].data["t"] == pytest.approx(0.5 + last / SR, abs=0.1)
    assert events[1].data["eot_delay_ms"] == pytest.approx(CONFIG.end_of_turn_ms, abs=33)
    out = list(s.respond())
    assert out[0].type == "answer_started" and out[0].data["voice"] == "Ravi" and out[0].data["emotion"] == "happy"
    audio = [e for e in out if e.type == "audio"]
    assert len(audio) > 3 and all(e.audio.dtype == np.float32 for e in audio)
    assert [e.type for e in out[-2:]] == ["answer_ended", "latency"]
    tel = out[-1].data
    frames = out[-2].data["frames"]
    assert sum(len(e.audio) for e in audio) == frames * engine.hop
    assert tel["first_audio_ms"] >= tel["first_frame_ms"] > 0 and tel["e2e_ms"] > tel["eot_delay_ms"]
    assert [t.role for t in s.context.turns] == ["user", "agent"]
    assert s.context.turns[1].n_frames == frames and s.context.turns[1].speaker == "Ravi"
    assert s.context.turns[0].n_frames == pytest.approx((last - first) / engine.hop, abs=20)
    assert not s.turn_ready and list(s.respond()) == []


def test_the_turn_is_encoded_alike_however_the_audio_is_gathered(engine):
    """encode_every_ms only changes how many samples go to the codec per call: the turn's codes, and the answer's
    chunks (a first of chunk_frames, then later_chunk_frames), follow the config."""
    from s2slib.agent.session import AgentSession

    wav = np.concatenate([silence(0.3), telugu_question(), silence(0.6)])
    codes, chunks = {}, {}
    for every in (20, 80, 500):
        s = AgentSession(engine, dataclasses.replace(CONFIG, encode_every_ms=every, later_chunk_frames=5))
        feed(s, wav)
        codes[every] = s._pending.codes.copy()
        chunks[every] = [len(e.audio) // engine.hop for e in s.respond() if e.type == "audio"]
    assert np.array_equal(codes[20], codes[80]) and np.array_equal(codes[20], codes[500])
    for sizes in chunks.values():
        # the first push of chunk_frames frames yields what the streaming decoder can finish (its overlap holds back
        # part of a frame); every later push yields later_chunk_frames frames of audio
        assert 0 < sizes[0] <= CONFIG.chunk_frames and set(sizes[1:-1]) == {5}
    with pytest.raises(ValueError, match="encode_every_ms"):
        AgentConfig(encode_every_ms=0)


def feed_preparing(session, wav: np.ndarray, chunk: int = 320) -> int:
    """Feed like a runner does: prepare the answer whenever the session asks for it. Returns how many it did."""
    done = 0
    for i in range(0, len(wav), chunk):
        session.feed(wav[i:i + chunk])
        if session.prepare_wanted:
            done += session.prepare()
    return done


def test_an_answer_prepared_during_the_silence_is_the_answer_given(engine):
    from s2slib.agent.session import AgentSession

    q = telugu_question()
    pause = q[: int(0.9 * SR)]  # the question's start, then 0.25 s of silence (under the end of turn), then all of it
    audio = {}
    for name, prepare in (("plain", False), ("prepared", True), ("paused", True)):
        s = AgentSession(engine, CONFIG, voice="Lakshmi", emotion="calm")
        head = np.concatenate([silence(0.3), pause, silence(0.25)]) if name == "paused" else silence(0.3)
        wav = np.concatenate([head, q, silence(0.6)])
        if prepare:
            made = feed_preparing(s, wav)
        else:
            feed(s, wav)
        assert s.turn_ready
        out = list(s.respond())
        tel = out[-1].data
        audio[name] = np.concatenate([e.audio for e in out if e.type == "audio"])
        if name == "plain":
            assert not tel["prepared"] and tel["first_frame_ms"] > 0
        else:
            assert made >= 2 if name == "paused" else made >= 1  # the pause's own preparation was dropped
            assert tel["prepared"] and tel["first_frame_ms"] == 0.0  # ready before the end of turn
            assert tel["first_audio_ms"] < 1000
    # the same seed, the same context, the same question codes: the prepared answer is the one made at the end
    assert np.array_equal(audio["plain"], audio["prepared"])
    assert len(audio["paused"]) > 0


def test_preparation_for_other_settings_is_not_used(engine):
    from s2slib.agent.session import AgentSession

    q = np.concatenate([silence(0.3), telugu_question()])
    s = AgentSession(engine, CONFIG, voice="Priya")
    feed_preparing(s, np.concatenate([q, silence(0.25)]))
    s.set_voice("Arjun")  # changed after the answer was started ahead
    feed(s, silence(0.35))
    out = list(s.respond())
    assert not out[-1].data["prepared"] and out[0].data["voice"] == "Arjun"
    off = AgentSession(engine, dataclasses.replace(CONFIG, prepare_after_ms=0))
    feed(off, np.concatenate([q, silence(0.6)]))
    assert not off.prepare_wanted and not list(off.respond())[-1].data["prepared"]


def test_barge_in_stops_the_answer_and_keeps_what_was_heard(engine):
    from s2slib.agent.session import AgentSession

    s = AgentSession(engine, dataclasses.replace(CONFIG, max_answer_s=4.0))
    q = telugu_question()
    feed(s, np.concatenate([silence(0.3), q, silence(0.5)]))
    answer = s.respond()
    got = [next(answer) for _ in range(6)]  # answer_started and five chunks: 0.2 s of audio sent
    assert got[0].type == "answer_started" and s.speaking
    cough = q[int(0.3 * SR):int(0.4 * SR)]  # 100 ms of speech: under barge_in_min_ms
    assert not any(e.type == "interrupted" for e in feed(s, np.concatenate([cough, silence(0.4)])))
    assert s.speaking
    start = s.received
    events = feed(s, q[: int(0.8 * SR)])
    kinds = [e.type for e in events]
    assert "interrupted" in kinds and kinds.index("interrupted") < kinds.index("speech_started")
    rest = list(answer)
    assert not any(e.type == "audio" for e in rest)  # nothing more was sent after the interruption
    tel = rest[-1].data
    assert tel["interrupted"] and not s.speaking
    agent = s.context.turns[-1]
    assert agent.role == "agent" and agent.truncated and agent.n_frames == tel["heard_frames"]
    heard_s = (start - 0) / SR  # upper bound: everything fed since the first chunk went out
    assert 0 < agent.n_frames * engine.hop / SR <= heard_s
    assert agent.n_frames < tel["frames"]  # more was generated than heard
    # the interrupting speech is the next turn
    feed(s, np.concatenate([q[int(0.8 * SR):], silence(0.5)]))
    assert s.turn_ready


def test_the_answer_keeps_pace_with_its_playback_and_an_interruption_ends_the_wait(engine):
    import threading
    import time

    from s2slib.agent.session import AgentSession

    cfg = dataclasses.replace(CONFIG, max_answer_s=2.0, max_lead_s=0.3)
    s = AgentSession(engine, cfg)
    q = telugu_question()
    feed(s, np.concatenate([silence(0.3), q, silence(0.5)]))
    t0 = time.perf_counter()
    out = list(s.respond())
    wall = time.perf_counter() - t0
    tel = out[-1].data
    assert tel["answer_s"] > 1.0, "the test needs an answer longer than the lead"
    later_chunk_s = cfg.later_chunk_frames / engine.frame_rate
    assert wall >= tel["answer_s"] - cfg.max_lead_s - later_chunk_s  # it did not run ahead of playback
    assert tel["rtf"] < 0.9 * wall / tel["answer_s"]  # the real-time factor counts the work, not the waits

    feed(s, np.concatenate([q, silence(0.5)]))
    events: list = []
    worker = threading.Thread(target=lambda: events.extend(s.respond()))
    worker.start()
    time.sleep(0.8)  # by now the answer is waiting for playback
    assert s.interrupt(reason="client")
    t_stop = time.perf_counter()
    worker.join(timeout=10)
    assert time.perf_counter() - t_stop < 0.3 and events[-1].data["interrupted"]


def test_barge_in_after_generation_finished_truncates_the_remembered_answer(engine):
    from s2slib.agent.session import AgentSession

    s = AgentSession(engine, dataclasses.replace(CONFIG, max_answer_s=2.0))
    q = telugu_question()
    feed(s, np.concatenate([silence(0.3), q, silence(0.5)]))
    out = list(s.respond())  # generated at once: the client is still playing it
    full = out[-2].data["frames"]
    assert s.speaking and s.context.turns[-1].n_frames == full
    events = feed(s, np.concatenate([silence(0.2), q[: int(0.5 * SR)]]))
    assert "interrupted" in [e.type for e in events]
    agent = s.context.turns[-1]
    assert agent.truncated and 0 < agent.n_frames < full


def test_voice_emotion_reset_and_bad_input(engine):
    from s2slib.agent.session import AgentSession

    s = AgentSession(engine, CONFIG)
    q = telugu_question()
    for voice, emotion in (("Arjun", "sad"), ("Lakshmi", "angry")):
        s.set_voice(voice)
        s.set_emotion(emotion)
        feed(s, np.concatenate([silence(0.3), q, silence(0.5)]))
        started = next(s.respond())
        assert started.data["voice"] == voice and started.data["emotion"] == emotion
    assert len(s.context) >= 2  # the first exchange (the second answer was left after its first event)
    with pytest.raises(ValueError, match="unknown voice"):
        s.set_voice("Nobody")
    with pytest.raises(ValueError, match="unknown emotion"):
        s.set_emotion("bored")
    assert [e.type for e in s.reset()][-1] == "reset" and len(s.context) == 0
    with pytest.raises(ValueError, match="NaN"):
        s.feed(np.full(320, np.nan, np.float32))
    with pytest.raises(TypeError, match="int16 or float32"):
        s.feed(np.zeros(320, np.float64))
    assert s.feed((q[:320] * 32767).astype(np.int16)) == []  # int16 is taken as it comes off the wire


def test_context_keeps_ten_turns_over_many_exchanges(engine):
    from s2slib.agent.session import AgentSession

    s = AgentSession(engine, dataclasses.replace(CONFIG, max_answer_s=0.3))
    q = telugu_question()
    for _ in range(6):
        feed(s, np.concatenate([silence(0.3), q, silence(0.5)]))
        list(s.respond())
        feed(s, silence(0.5))  # let the answer play out
    assert len(s.context) == 10 and len(s.telemetry) == 6
    summary = s.summary()
    assert summary["turns"] == 6 and summary["first_audio_ms"] > 0


def test_engine_refuses_a_run_without_checkpoints(tmp_path):
    from s2slib.agent.engine import AgentEngine, NoTrainedRun, find_run

    with pytest.raises(NoTrainedRun, match="make course"):
        find_run(tmp_path)
    (tmp_path / "laptop" / "codec").mkdir(parents=True)
    with pytest.raises(NoTrainedRun, match="notebook 02"):
        AgentEngine(tmp_path / "laptop")


def test_make_demo_runs_only_the_missing_notebooks(tmp_path):
    from s2slib.agent.serve import missing_notebooks

    run = tmp_path / "laptop"
    assert missing_notebooks(run) == ["01", "02", "05", "06"]
    (run / "data" / "manifests").mkdir(parents=True)
    (run / "codec").mkdir()
    (run / "codec" / "codec.pt").write_bytes(b"x")
    assert missing_notebooks(run) == ["05", "06"]


# ------------------------------------------------------------------------------------------------ the protocol
def test_protocol_parses_good_messages_and_names_bad_ones():
    assert parse_control('{"type": "voice", "value": "Priya"}') == ("voice", "Priya")
    assert parse_control('{"type": "reset"}') == ("reset", None)
    for text, code in (("{not json", "malformed_json"), ("[1, 2]", "malformed_message"),
                       ('{"type": "dance"}', "unknown_type"), ('{"type": "voice"}', "missing_value"),
                       ("[" * 100000, "malformed_json")):
        with pytest.raises(ProtocolError) as err:
            parse_control(text)
        assert err.value.code == code
    assert parse_audio(np.arange(4, dtype="<i2").tobytes()).tolist() == [0, 1, 2, 3]
    with pytest.raises(ProtocolError) as err:
        parse_audio(b"\x00\x01\x02")
    assert err.value.code == "odd_byte_count"
    from s2slib.agent.session import Event

    pcm = encode_event(Event("audio", {}, np.array([0.0, 0.5, -1.0, 2.0], np.float32)))
    assert np.frombuffer(pcm, "<i2").tolist() == [0, 16384, -32767, 32767]


def test_the_newest_trained_run_is_served_and_smoke_runs_only_as_a_last_resort(tmp_path):
    import os

    from s2slib.agent.engine import find_run, trained_runs

    for name, age in (("laptop", 300), ("mine", 100), ("smoke", 0)):
        for rel in ("codec/codec.pt", "s2s_answer/s2s.pt"):
            path = tmp_path / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            os.utime(path, (1e9 - age, 1e9 - age))
    (tmp_path / "half" / "codec").mkdir(parents=True)
    (tmp_path / "half" / "codec" / "codec.pt").write_bytes(b"x")  # no answer model: not a trained run
    assert [p.name for p in trained_runs(tmp_path)] == ["mine", "laptop", "smoke"]
    assert find_run(tmp_path).name == "mine"


def test_the_client_counts_the_time_its_player_waited_for_late_audio():
    from s2slib.agent.client import TurnResult

    r = TurnResult(question_s=1.0)
    r.arrived(np.zeros(SR // 10, np.float32), now=10.0)  # 0.1 s of audio: plays until 10.1
    r.arrived(np.zeros(SR // 10, np.float32), now=10.05)  # in time: queued, plays until 10.2
    assert r.underrun_ms == 0.0
    r.arrived(np.zeros(SR // 10, np.float32), now=10.23)  # 30 ms late
    r.arrived(np.zeros(SR // 10, np.float32), now=10.3)  # in time again (the late chunk plays until 10.33)
    assert r.underrun_ms == pytest.approx(30.0) and len(r.answer) == 4 * SR // 10
