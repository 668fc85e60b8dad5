"""The live Telugu voice agent (notebook 07): the seed's whole loop, streaming.

User speech arrives as 16 kHz PCM in small chunks. Silero VAD finds the turn, the codec encodes it while it is
spoken, the fine-tuned S2S model (notebook 06) streams answer frames after the remembered turns, the codec decodes
them a few frames at a time, and audio goes out as soon as it exists. Speech during the answer interrupts it
(barge-in).

One code path serves every user:

* :mod:`s2slib.agent.config`  ``AgentConfig`` (VAD, end of turn, barge-in, sampling) and ``ServerLimits``
* :mod:`s2slib.agent.vad`     the streaming voice activity detector and the turn detector
* :mod:`s2slib.agent.engine`  the models every session shares, loaded from the newest trained run
* :mod:`s2slib.agent.session` ``AgentSession``: one conversation, synchronous, with its context and telemetry
* :mod:`s2slib.agent.runner`  ``SessionRunner``: a session driven from asyncio (answers on a worker thread)
* :mod:`s2slib.agent.protocol` the WebSocket messages (binary PCM16, JSON control and events)
* :mod:`s2slib.agent.server`  the ASGI app: ``/`` (plain page), ``/ws``, ``/demo`` (Gradio), ``/health``
* :mod:`s2slib.agent.demo`    the Gradio demo (``build_demo``)
* :mod:`s2slib.agent.client`  headless conversations (notebook 07, ``bench agent``, tests)

``python -m s2slib.agent.serve`` (``make demo``) serves it on http://127.0.0.1:7860.
"""
