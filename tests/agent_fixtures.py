"""A run folder the live agent can load in a second: a tiny course codec and a tiny S2S model, untrained.

The agent's tests check the plumbing (VAD, turns, streaming, barge-in, the server's limits, the browser pages),
which does not depend on what the weights say; what the trained agent answers is measured by notebook 07 and
``python -m s2slib.bench agent`` on the laptop run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SR = 16000


def make_agent_run(root: Path) -> Path:
    from s2slib.checkpoint import save_checkpoint
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.model import Codec
    from s2slib.codec.train import export_codec
    from s2slib.s2s.config import S2SConfig
    from s2slib.s2s.model import S2SModel
    from s2slib.s2s.tokens import codec_fingerprint

    torch.manual_seed(0)
    codec = Codec(CodecConfig.fast50_tiny()).eval()
    codec_path = export_codec(codec, root / "codec" / "codec.pt")
    cfg = codec.config
    config = S2SConfig.smoke(n_q=cfg.n_q, codebook_size=cfg.codebook_size, frame_rate=cfg.frame_rate,
                             max_frames=100, max_source_frames=600)
    model = S2SModel(config)
    save_checkpoint(root / "s2s_answer" / "s2s.pt", {"s2s_config": config.to_dict(), "model": model.state_dict(),
                                                     "codec_fingerprint": codec_fingerprint(codec_path, "course"),
                                                     "train_steps": 0}, kind="s2s")
    return root


@lru_cache(maxsize=None)
def telugu_question(text: str = "మీ పేరు ఏమిటి?", voice: str = "Kiran") -> np.ndarray:
    """An eSpeak Telugu question at 16 kHz."""
    import librosa

    from s2slib.data.synth import synthesize

    return librosa.resample(synthesize(text, voice), orig_sr=22050, target_sr=SR).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)
