"""The agent's ASGI app: ``/`` (a plain browser page), ``/ws`` (the WebSocket of :mod:`s2slib.agent.protocol`),
``/demo`` (the Gradio demo, :mod:`s2slib.agent.demo`) and ``/health``.

Every session gets its own :class:`~s2slib.agent.session.AgentSession` (context, VAD, encoder) over one shared
:class:`~s2slib.agent.engine.AgentEngine`. Bad input never reaches past the session that sent it: an odd byte count,
malformed or unknown JSON get an ``error`` event and the session goes on; a frame over ``max_frame_bytes`` closes
with 1009, a flood with 1008, one session too many is refused with 1013, silence past ``idle_timeout_s`` closes
with 1000; a client that vanishes mid-answer stops its answer.

:func:`serve_in_thread` starts the app on loopback in a background thread (tests, notebook 07).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import WebSocket  # at module level: FastAPI reads the endpoint's annotation by name

from s2slib.agent.config import SAMPLE_RATE, AgentConfig, ServerLimits
from s2slib.agent.engine import AgentEngine
from s2slib.agent.protocol import ProtocolError, encode_event, event_json, parse_audio, parse_control
from s2slib.agent.runner import SessionRunner
from s2slib.agent.session import AgentSession, Event

STATIC = Path(__file__).parent / "static"


class AgentServer:
    """Shared state of one server: the engine, the settings and the open sessions."""

    def __init__(self, engine: AgentEngine, config: AgentConfig | None = None, limits: ServerLimits | None = None):
        self.engine = engine
        self.config = config or AgentConfig()
        self.limits = limits or ServerLimits()
        self.sessions = 0
        self.opened = 0
        self.answers = ThreadPoolExecutor(max_workers=self.limits.max_sessions, thread_name_prefix="answer")

    def ready_event(self, session_id: int, session: AgentSession) -> Event:
        return Event("ready", {"session": session_id, "voices": list(self.engine.voices),
                               "emotions": list(self.engine.emotions), "voice": session.voice,
                               "emotion": session.emotion, "sample_rate": SAMPLE_RATE,
                               "end_of_turn_ms": self.config.end_of_turn_ms,
                               "max_frame_bytes": self.limits.max_frame_bytes,
                               "idle_timeout_s": self.limits.idle_timeout_s})

    async def handle(self, ws) -> None:
        """One WebSocket connection, from accept to close."""
        from starlette.websockets import WebSocketDisconnect

        lim = self.limits
        await ws.accept()
        if self.sessions >= lim.max_sessions:
            await ws.send_text(event_json("error", code="server_busy",
                                          message=f"the server holds {lim.max_sessions} sessions already"))
            await ws.close(code=1013)
            return
        self.sessions += 1
        self.opened += 1
        sid = self.opened
        closing: list[int] = []

        async def send(ev: Event) -> None:
            if closing and ev.type == "audio":
                return
            try:
                data = encode_event(ev)
                await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_text(data))
            except Exception:  # the client is gone; the receive loop will notice
                pass

        runner = None
        try:
            session = await asyncio.to_thread(AgentSession, self.engine, self.config)
            runner = SessionRunner(session, send, self.answers)
            runner.emit(self.ready_event(sid, session))
            t_start, samples = time.monotonic(), 0
            capacity = lim.max_messages_per_s * lim.message_burst_s
            tokens, t_last = capacity, t_start  # a token bucket: one token per message, refilled at the allowed rate
            while True:
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=lim.idle_timeout_s)
                except (asyncio.TimeoutError, TimeoutError):
                    runner.emit(Event("error", {"code": "idle_timeout",
                                                "message": f"nothing received for {lim.idle_timeout_s:g} s"}))
                    closing.append(1000)
                    break
                if msg["type"] == "websocket.disconnect":
                    break
                data, text = msg.get("bytes"), msg.get("text")
                size = len(data) if data is not None else len((text or "").encode("utf-8"))
                if size > lim.max_frame_bytes:
                    runner.emit(Event("error", {"code": "frame_too_large", "message":
                                                f"a message of {size} bytes is over the limit of "
                                                f"{lim.max_frame_bytes}"}))
                    closing.append(1009)
                    break
                now = time.monotonic()
                tokens, t_last = min(capacity, tokens + (now - t_last) * lim.max_messages_per_s), now
                tokens -= 1
                if tokens < 0:
                    runner.emit(Event("error", {"code": "flood", "message":
                                                f"more than {lim.max_messages_per_s} messages per second "
                                                f"(beyond a burst of {lim.message_burst_s:g} s worth)"}))
                    closing.append(1008)
                    break
                try:
                    if data is not None:
                        pcm = parse_audio(data)
                        samples += len(pcm)
                        allowed = SAMPLE_RATE * (lim.max_audio_rate * (now - t_start) + 2.0)
                        if samples > allowed:
                            runner.emit(Event("error", {"code": "flood", "message": "audio arrives faster than "
                                                        f"{lim.max_audio_rate:g} x real time"}))
                            closing.append(1008)
                            break
                        await runner.feed(pcm)
                    else:
                        kind, value = parse_control(text or "")
                        if kind == "ping":
                            runner.emit(Event("pong", {"t": time.time()}))
                        else:
                            await runner.control(kind, value)
                except ProtocolError as exc:
                    runner.emit(Event("error", {"code": exc.code, "message": str(exc)}))
                except ValueError as exc:  # an unknown voice or emotion, a bad audio chunk
                    runner.emit(Event("error", {"code": "bad_request", "message": str(exc)}))
        except WebSocketDisconnect:
            pass
        finally:
            if runner is not None:
                await runner.close()
            self.sessions -= 1
            if closing:
                try:
                    await ws.close(code=closing[0])
                except Exception:
                    pass


def create_app(engine: AgentEngine, config: AgentConfig | None = None, limits: ServerLimits | None = None,
               demo: bool = True):
    """The FastAPI app (see the module docstring); ``demo=False`` leaves Gradio out."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    server = AgentServer(engine, config, limits)
    app = FastAPI(title="Telugu voice agent", docs_url=None, redoc_url=None)
    app.state.agent = server

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> Any:
        return JSONResponse({"status": "ok", "sessions": server.sessions, "max_sessions": server.limits.max_sessions,
                             "run": str(engine.run), "voices": list(engine.voices)})

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket) -> None:
        await server.handle(ws)

    if demo:
        from s2slib.agent.demo import mount_demo

        app = mount_demo(app, engine, server.config)
    return app


class ServerThread:
    """A uvicorn server on a background thread: ``url``, ``ws_url``, ``stop()``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    ws_max_size=16 * 1024 * 1024, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="agent-server")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the agent server did not start")
            time.sleep(0.05)
        sock = self.server.servers[0].sockets[0].getsockname()
        self.host, self.port = sock[0], sock[1]
        self.url = f"http://{self.host}:{self.port}"
        self.ws_url = f"ws://{self.host}:{self.port}/ws"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_in_thread(engine: AgentEngine, config: AgentConfig | None = None, limits: ServerLimits | None = None,
                    demo: bool = True, host: str = "127.0.0.1", port: int = 0) -> ServerThread:
    """Start :func:`create_app` on ``host:port`` (0: any free port) in a thread; returns when it accepts."""
    return ServerThread(create_app(engine, config, limits, demo), host, port)
