"""The models every session shares: the course codec and the fine-tuned S2S model of one run.

:func:`find_run` picks the newest run directory that holds both trained checkpoints (``codec/codec.pt`` from
notebook 02 and ``s2s_answer/s2s.pt`` from notebook 06); :class:`AgentEngine` loads them once, in eval mode with
weight norm folded, and checks that the S2S model was trained on this codec's tokens. Inference keeps no state in
the modules, so sessions on several threads can share one engine. Every session's answer is decoded by the engine's
one :class:`~s2slib.agent.decoding.DecodeService` (:meth:`AgentEngine.frames`): the answers in progress advance
together, one batched decoder step per frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from s2slib.agent.config import SAMPLE_RATE
from s2slib.runtime import set_threads

CODEC_REL = "codec/codec.pt"
MODEL_REL = "s2s_answer/s2s.pt"


class NoTrainedRun(FileNotFoundError):
    """No run directory holds both trained checkpoints yet."""


def trained_runs(runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run directories under ``runs_dir`` (default: the course's runs folder) with both checkpoints, newest first;
    smoke runs last, whatever their age: their models are a few steps old and say nothing."""
    from s2slib import paths

    root = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    found = [d for d in sorted(root.iterdir()) if (d / CODEC_REL).is_file() and (d / MODEL_REL).is_file()] \
        if root.is_dir() else []

    def key(d: Path) -> tuple[bool, float]:  # smoke runs (tiny models, a few steps) only when nothing else is there
        return (d.name.startswith("smoke"), -(d / MODEL_REL).stat().st_mtime)

    return sorted(found, key=key)


def find_run(runs_dir: str | os.PathLike | None = None) -> Path:
    """The newest run with trained checkpoints; :class:`NoTrainedRun` says what to run when there is none."""
    runs = trained_runs(runs_dir)
    if not runs:
        from s2slib import paths

        root = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
        raise NoTrainedRun(f"no run under {root} has both {CODEC_REL} (notebook 02) and {MODEL_REL} (notebook 06). "
                           "Train them first: make course PROFILE=laptop (or make demo, which does it for you).")
    return runs[0]


@dataclass
class EngineInfo:
    run: str
    codec_params: int
    model_params: int
    frame_rate: float
    n_q: int


class AgentEngine:
    """The run's codec and answer model, loaded once (see the module docstring)."""

    def __init__(self, run: str | os.PathLike | None = None, device: str = "cpu", threads: int | None = None):
        from s2slib.codec.layers import fold_weight_norm
        from s2slib.codec.train import load_codec
        from s2slib.s2s.tokens import codec_fingerprint
        from s2slib.s2s.train import checkpoint_info, load_s2s

        if threads:
            set_threads(threads)
        self.run = Path(run) if run is not None else find_run()
        codec_path, model_path = self.run / CODEC_REL, self.run / MODEL_REL
        for path, made_by in ((codec_path, "notebook 02"), (model_path, "notebook 06")):
            if not path.is_file():
                raise NoTrainedRun(f"{path} does not exist: run {made_by} for {self.run} first")
        info = checkpoint_info(model_path)
        if info.get("codec_fingerprint") != codec_fingerprint(codec_path, "course"):
            raise ValueError(f"{model_path} was trained on another codec's tokens than {codec_path}; rerun "
                             "notebook 06 for this run")
        codec = load_codec(codec_path, device)
        self.codec_params = codec.num_parameters()
        self.codec = fold_weight_norm(codec).eval()
        self.model = load_s2s(model_path, device).eval()
        self.device = device
        if self.codec.sample_rate != SAMPLE_RATE:
            raise ValueError(f"the agent speaks {SAMPLE_RATE} Hz; this codec runs at {self.codec.sample_rate} Hz")
        c = self.model.config
        if (c.n_q, c.codebook_size) != (self.codec.config.n_q, self.codec.config.codebook_size):
            raise ValueError(f"{model_path} reads {c.n_q} x {c.codebook_size} codes; {codec_path} makes "
                             f"{self.codec.config.n_q} x {self.codec.config.codebook_size}")
        self.hop = self.codec.hop_length
        self.frame_rate = c.frame_rate
        self.voices = tuple(c.speakers)
        self.sources = frozenset(info.get("sources") or [])  # the written pairs and dialogues it learnt
        self.emotions = tuple(c.emotions)
        from s2slib.agent.decoding import DecodeService

        self.decoder = DecodeService(self.model)

    def frames(self, src, voice: str | None, emotion: str | None, sampling=None):
        """The frames of the answer to ``src: LongTensor[1, n_q, S]`` as they are made (a
        :class:`~s2slib.agent.decoding.FrameStream`; ``cancel()`` it to stop)."""
        return self.decoder.frames(src, voice, emotion, sampling)

    def close(self) -> None:
        """Stop the decoder thread (answers in progress end with an error)."""
        self.decoder.close()

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def info(self) -> EngineInfo:
        return EngineInfo(str(self.run), self.codec_params, self.model.num_parameters(), self.frame_rate,
                          self.model.config.n_q)

    def check_voice(self, voice: str) -> str:
        if voice not in self.voices:
            raise ValueError(f"unknown voice {voice!r}; this model speaks {', '.join(self.voices)}")
        return voice

    def check_emotion(self, emotion: str) -> str:
        if emotion not in self.emotions:
            raise ValueError(f"unknown emotion {emotion!r}; this model knows {', '.join(self.emotions)}")
        return emotion
