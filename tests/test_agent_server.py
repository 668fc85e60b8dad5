"""The agent's server started for real on loopback: real-time questions, barge-in, bad input, many sessions."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import numpy as np
import pytest

from agent_fixtures import make_agent_run, silence, telugu_question
from s2slib.agent.config import AgentConfig, ServerLimits

pytestmark = pytest.mark.slow
LIMITS = ServerLimits(max_frame_bytes=8192, max_sessions=8, idle_timeout_s=4.0, max_messages_per_s=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from s2slib.agent.engine import AgentEngine
    from s2slib.agent.server import serve_in_thread

    engine = AgentEngine(make_agent_run(tmp_path_factory.mktemp("agent_run")))
    srv = serve_in_thread(engine, AgentConfig(max_answer_s=1.0), LIMITS, demo=False)
    yield srv
    srv.stop()


def health(srv) -> dict:
    return json.loads(urllib.request.urlopen(srv.url + "/health", timeout=10).read())


async def events_until(ws, kind: str, timeout: float = 60.0) -> list[dict]:
    """The events up to the first of type ``kind``. The deadline is generous: these tests check what happens, not
    how fast (the latency figures come from ``python -m s2slib.bench``), and `make test` runs them beside others."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
        if isinstance(msg, str):
            seen.append(json.loads(msg))
            if seen[-1]["type"] == kind:
                return seen
    raise AssertionError(f"no {kind} event; saw {[e['type'] for e in seen]}")


def test_a_question_streamed_in_real_time_gets_a_spoken_answer(server):
    from s2slib.agent.client import talk_ws

    assert urllib.request.urlopen(server.url + "/", timeout=10).read().startswith(b"<!doctype html>")
    results = asyncio.run(talk_ws(server.ws_url, [telugu_question()],
                                  controls=[{"type": "voice", "value": "Lakshmi"}]))
    (r,) = results
    kinds = [e["type"] for e in r.events]
    for k in ("ready", "settings", "speech_started", "speech_ended", "answer_started", "answer_ended", "latency"):
        assert k in kinds, (k, kinds)
    assert kinds.index("speech_ended") < kinds.index("answer_started") < kinds.index("latency")
    assert r.answered and len(r.answer) >= 0.5 * 16000  # the answer (cut at max_answer_s = 1 s) came back
    assert r.latency["voice"] == "Lakshmi" and r.latency["context_turns"] == 2
    # the client's own clock: the end-of-turn silence, then the answer; never before the turn ended
    assert r.e2e_ms > AgentConfig().end_of_turn_ms and r.after_eot_ms > 0


def test_speaking_over_the_answer_interrupts_it(server):
    from s2slib.agent.client import talk_ws

    q = telugu_question()
    results = asyncio.run(talk_ws(server.ws_url, [q], barge_in={0: (0.15, q)}, lead_s=0.0))
    assert len(results) == 2
    interrupted = [e for r in results for e in r.events if e["type"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["reason"] == "barge_in"
    assert 0 < interrupted[0]["heard_s"] < 1.0
    assert interrupted[0]["turn"] == 1  # the answer was generated at once and interrupted while it played
    assert results[1].answered  # the interrupting question was answered in turn


def test_bad_input_gets_error_events_and_the_session_goes_on(server):
    import websockets

    async def scenario():
        async with websockets.connect(server.ws_url) as ws:
            await events_until(ws, "ready")
            await ws.send(b"\x00\x01\x02")
            assert (await events_until(ws, "error"))[-1]["code"] == "odd_byte_count"
            for text, code in (("{oops", "malformed_json"), ('{"type": "sing"}', "unknown_type"),
                               ('{"type": "voice", "value": "Nobody"}', "bad_request"), ("42", "malformed_message")):
                await ws.send(text)
                assert (await events_until(ws, "error"))[-1]["code"] == code
            await ws.send(json.dumps({"type": "ping"}))
            await events_until(ws, "pong")
            await ws.send(np.zeros(320, "<i2").tobytes())  # audio still goes in
            await ws.send(json.dumps({"type": "reset"}))
            await events_until(ws, "reset")

    asyncio.run(scenario())


def test_oversized_frames_floods_and_silence_close_cleanly(server):
    import websockets

    async def closed_with(actions) -> tuple[int, list[dict]]:
        async with websockets.connect(server.ws_url) as ws:
            await events_until(ws, "ready")
            await actions(ws)
            seen = []
            try:
                while True:
                    msg = await asyncio.wait_for(ws.recv(), timeout=10)
                    if isinstance(msg, str):
                        seen.append(json.loads(msg))
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None, seen

    async def big(ws):
        await ws.send(b"\x00" * (LIMITS.max_frame_bytes + 2))

    async def flood(ws):
        # more than the burst allowance at once (far faster than the refill rate)
        for _ in range(int(LIMITS.max_messages_per_s * LIMITS.message_burst_s) + 20):
            await ws.send(json.dumps({"type": "ping"}))

    async def idle(ws):
        await asyncio.sleep(0)

    for action, code, error in ((big, 1009, "frame_too_large"), (flood, 1008, "flood"), (idle, 1000, "idle_timeout")):
        got, seen = asyncio.run(closed_with(action))
        assert got == code and seen[-1] == {**seen[-1], "type": "error", "code": error}, (got, seen[-1:])
    assert health(server)["status"] == "ok"


def test_a_client_catching_up_after_a_stall_is_not_a_flood(server):
    import websockets

    async def catch_up():
        async with websockets.connect(server.ws_url) as ws:
            await events_until(ws, "ready")
            await asyncio.sleep(1.0)  # a stall: nothing sent for a second
            backlog = int(1.25 * LIMITS.max_messages_per_s)  # then the backlog at once: over the per-second rate
            for _ in range(backlog):
                await ws.send(np.zeros(320, "<i2").tobytes())
            await ws.send(json.dumps({"type": "ping"}))
            return await events_until(ws, "pong")

    seen = asyncio.run(catch_up())
    assert not [e for e in seen if e["type"] == "error"], seen


def test_a_client_vanishing_mid_answer_frees_its_session(server):
    import websockets

    async def vanish():
        ws = await websockets.connect(server.ws_url)
        await events_until(ws, "ready")
        q = np.concatenate([silence(0.3), telugu_question(), silence(0.6)])

        async def microphone():  # the question, then silence, as a live microphone keeps sending while it waits
            for i in range(0, len(q), 3200):
                await ws.send((q[i:i + 3200] * 32767).astype("<i2").tobytes())
                await asyncio.sleep(0.05)
            while True:  # (without it, a machine slow to start the answer would hit the server's idle timeout)
                await ws.send(np.zeros(1600, "<i2").tobytes())
                await asyncio.sleep(0.1)

        sending = asyncio.create_task(microphone())
        try:
            await events_until(ws, "answer_started")
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        ws.transport.abort()  # no close handshake

    asyncio.run(vanish())
    deadline = time.monotonic() + 10
    while health(server)["sessions"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health(server)["sessions"] == 0


def test_eight_sessions_at_once_each_with_its_own_context_and_a_ninth_refused(server):
    import websockets

    from s2slib.agent.client import talk_ws

    voices = ["Arjun", "Ravi", "Priya", "Lakshmi"] * 2

    async def ninth():
        deadline = time.monotonic() + 30  # wait until the eight hold their sessions (slow on a busy machine)
        while (await asyncio.to_thread(health, server))["sessions"] < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        async with websockets.connect(server.ws_url) as ws:
            msg = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return msg, closed.value.rcvd.code

    async def everyone():
        talks = [talk_ws(server.ws_url, [telugu_question()], controls=[{"type": "voice", "value": v}])
                 for v in voices]
        return await asyncio.gather(*talks, ninth())

    *results, (refusal, code) = asyncio.run(everyone())
    assert refusal["type"] == "error" and refusal["code"] == "server_busy" and code == 1013
    for voice, (r,) in zip(voices, results):
        assert r.answered and r.latency["voice"] == voice and r.latency["context_turns"] == 2
