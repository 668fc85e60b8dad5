"""Whose voice is this? A small classifier of the four agent voices, to check that the agent speaks in the voice it
was asked for.

Each utterance becomes one vector of voice statistics: the median pitch and the pitch range (YIN,
:func:`s2slib.prosody.measure_prosody`) and the mean and spread of every log-mel band over the loud frames, with the
utterance's overall level removed (a voice is its pitch and its spectral envelope, not its loudness). A multinomial
logistic regression over the standardised vectors (L2-regularised, fitted with L-BFGS) tells the voices apart. It is
trained on the data set's agent speech **passed through the codec** (decoded from its tokens), so it hears what the
S2S model's answers sound like; its accuracy on held-out agent speech is its own calibration (a classifier that
cannot tell the references apart could not judge the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2slib.prosody import measure_prosody

N_MELS = 40


def voice_features(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wav (T,)`` -> ``float32[2 + 2 * N_MELS]``: log2 median F0, F0 range (semitones), band means and spreads."""
    import torchaudio

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    p = measure_prosody(wav, sample_rate)
    f0 = p["f0_median_hz"] if np.isfinite(p["f0_median_hz"]) and p["f0_median_hz"] > 0 else 100.0
    rng = p["f0_range_semitones"] if np.isfinite(p["f0_range_semitones"]) else 0.0
    hop = sample_rate // 100
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, win_length=sample_rate // 40,
                                               hop_length=hop, n_mels=N_MELS, f_min=60.0,
                                               f_max=min(7600.0, sample_rate / 2))(torch.from_numpy(wav))
    logmel = torch.log(mel + 1e-6).numpy()  # (N_MELS, frames)
    energy = 10 * np.log10(mel.sum(0).numpy() + 1e-10)
    loud = energy > energy.max() - 30
    frames = logmel[:, loud] if loud.sum() >= 3 else logmel
    frames = frames - frames.mean()  # the utterance's level out
    return np.concatenate([[np.log2(f0), rng / 12.0], frames.mean(1), frames.std(1)]).astype(np.float32)


@dataclass
class VoiceClassifier:
    """Logistic regression over :func:`voice_features`; build it with :meth:`fit`."""

    voices: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # (n_features, n_voices)
    bias: np.ndarray  # (n_voices,)
    sample_rate: int

    @classmethod
    def fit(cls, wavs: list[np.ndarray], voices: list[str], sample_rate: int, l2: float = 1e-2,
            ) -> "VoiceClassifier":
        """Train on utterances ``wavs`` spoken by ``voices`` (names, one per utterance; at least two voices)."""
        if len(wavs) != len(voices) or not wavs:
            raise ValueError(f"need one voice name per utterance, got {len(wavs)} utterances and {len(voices)} names")
        names = sorted(set(voices))
        if len(names) < 2:
            raise ValueError(f"a voice classifier needs utterances of at least two voices, got {names}")
        x = np.stack([voice_features(w, sample_rate) for w in wavs])
        mean, scale = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - mean) / scale).double()
        y = torch.tensor([names.index(v) for v in voices])
        w = torch.zeros(x.shape[1], len(names), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ w + b, y) + l2 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(names, mean, scale, w.detach().numpy(), b.detach().numpy(), sample_rate)

    def probabilities(self, wav: np.ndarray) -> dict[str, float]:
        """``{voice: probability}`` for one utterance at ``self.sample_rate``."""
        x = (voice_features(wav, self.sample_rate) - self.mean) / self.scale
        logits = x @ self.weight + self.bias
        p = np.exp(logits - logits.max())
        return dict(zip(self.voices, (p / p.sum()).tolist()))

    def predict(self, wav: np.ndarray) -> str:
        p = self.probabilities(wav)
        return max(p, key=p.get)

    def accuracy(self, wavs: list[np.ndarray], voices: list[str]) -> float:
        """Share of ``wavs`` classified as their ``voices``."""
        if not wavs:
            return float("nan")
        return float(np.mean([self.predict(w) == v for w, v in zip(wavs, voices)]))
