"""Training the codec: one trainer for the notebook, the command line, ``torchrun`` and the tests.

    trainer = CodecTrainer(CodecConfig.laptop(), CodecTrainConfig(max_steps=2000), "run/data/manifests/train.jsonl",
                           "run/data/manifests/val.jsonl", out_dir="run/codec")
    history = trainer.fit()

What it does every step: draw a batch of random crops (a pure function of the step, see :mod:`s2slib.data.loader`),
run the codec (quantizer dropout picks 1..n_q levels per example), minimise the reconstruction loss
(multi-scale mel + multi-resolution STFT + waveform L1) plus the VQ commitment loss with AdamW, linear warm-up and
cosine decay, gradient clipping, and bfloat16/float16 autocast on CUDA. Every ``val_every`` steps it measures the
validation set; every ``ckpt_every`` steps it writes ``checkpoint.pt`` atomically (model, optimizer, scheduler, step,
RNG state, configs). Constructed again on the same ``out_dir``, it resumes from that checkpoint and continues exactly
as if never stopped. Under ``torchrun`` it wraps the model in DistributedDataParallel (gloo on CPU, NCCL on CUDA);
rank 0 writes the files.

Outputs in ``out_dir``: ``checkpoint.pt`` (full training state), ``codec.pt`` (the model alone, what later notebooks
load with :func:`load_codec`), ``history.jsonl`` (the training log).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from s2slib import metrics
from s2slib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from s2slib.codec.config import CodecConfig, dataclass_from_dict
from s2slib.codec.losses import (ReconstructionLoss, ReconstructionLossConfig, frame_magnitude_loss,
                                 phase_advance_loss)
from s2slib.codec.model import Codec
from s2slib.codec.pitch import frame_pitch, pitch_loss
from s2slib.data.augment import AugmentConfig
from s2slib.data.loader import CropSampler, load_utterances, read_crop, step_batches
from s2slib.training import (History, adamw, autocast, optimisation_state, restore_optimisation,
                             save_training_checkpoint, schedule_and_scaler, start_run)

CHECKPOINT = "checkpoint.pt"
EXPORT = "codec.pt"


@dataclass
class CodecTrainConfig:
    """How to train (the model itself is a :class:`CodecConfig`)."""

    max_steps: int = 2000  # optimizer steps
    batch_size: int = 8  # crops per step (per process under DDP)
    segment_s: float = 0.5  # crop length in seconds
    lr: float = 1e-3  # peak learning rate (AdamW)
    betas: tuple[float, float] = (0.8, 0.99)  # AdamW betas (DAC's)
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warm-up
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 100.0  # max gradient norm: a guard against spikes (norms run at about 10 with relative floors)
    vq_weight: float = 1.0  # weight of the commitment loss (its beta lives in CodecConfig.commitment_weight)
    pitch_weight: float = 1.0  # weight of the pitch loss (F0 in octaves + voicing) of a pitch-locked head (phase="pitch")
    advance_weight: float = 0.0  # weight of the phase-advance loss on codec v2's head (losses.phase_advance_loss)
    frame_mag_weight: float = 0.0  # weight of the head's log-magnitude loss (losses.frame_magnitude_loss)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    val_every: int = 250  # steps between validations (0: only at the end)
    val_items: int = 12  # validation utterances measured each time
    val_max_s: float = 4.0  # validation utterances are cut to this length
    ckpt_every: int = 250  # steps between checkpoints
    log_every: int = 25  # steps between training-log rows
    num_workers: int = 0  # data-loading processes
    seed: int = 0
    loss: ReconstructionLossConfig = field(default_factory=ReconstructionLossConfig)
    augment: AugmentConfig | None = None  # recording-chain augmentation of every crop (None: crops as recorded)
    source_shares: dict[str, float] = field(default_factory=dict)  # fixed share of crops per source, e.g. real speech

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["loss"] = self.loss.to_dict()
        out["augment"] = None if self.augment is None else self.augment.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecTrainConfig":
        data = dict(data)
        if "loss" in data:
            data["loss"] = ReconstructionLossConfig.from_dict(data["loss"])
        if data.get("augment") is not None:
            data["augment"] = AugmentConfig.from_dict(data["augment"])
        cfg = dataclass_from_dict(cls, data)
        cfg.betas = tuple(cfg.betas)
        return cfg


def load_model(path: str | Path, kinds: tuple[str, ...], model_cls: type, config_cls: type, what: str = "codec",
               device: str | torch.device = "cpu") -> torch.nn.Module:
    """A model in eval mode from a checkpoint of one of ``kinds``: ``model_cls(config_cls.from_dict(config))`` with
    the stored weights; a checkpoint whose weights do not fit its config is a :class:`CheckpointError`."""
    state = load_checkpoint(path, kind=kinds, map_location=device)
    try:
        model = model_cls(config_cls.from_dict(state["codec_config"]))
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the stored {what} configuration ({exc}).") from exc
    return model.to(device).eval()


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """A codec in eval mode from ``codec.pt`` (or from a full ``checkpoint.pt``), rebuilt from its stored config."""
    return load_model(path, ("codec", "codec_train", "codec_gan_train"), Codec, CodecConfig, "codec", device)


def export_codec(codec: torch.nn.Module, path: str | Path, extra: dict[str, Any] | None = None,
                 kind: str = "codec") -> Path:
    """Save the model alone (weights + config) as a checkpoint of ``kind``."""
    state = {"codec_config": codec.config.to_dict(), "model": codec.state_dict(), **(extra or {})}
    return save_checkpoint(path, state, kind=kind)


def validation_set(manifest: str | Path, n_items: int, max_s: float, sample_rate: int) -> list[np.ndarray]:
    """The first ``n_items`` utterances of ``manifest`` (sorted by id, so always the same), cut to ``max_s``."""
    utts = load_utterances(manifest, max_items=n_items, min_duration=0.5)
    return [read_crop(u.audio_path, 0, min(int(u.duration * sample_rate), int(max_s * sample_rate))) for u in utts]


@torch.inference_mode()
def reconstruct(codec: Codec, wav: np.ndarray, n_q: int | None = None, device: str | torch.device = "cpu",
                quantize: bool = True) -> np.ndarray:
    """Encode and decode one mono waveform ``(T,)`` at ``n_q`` levels: the decoded ``(T,)`` float32.

    ``quantize=False`` skips the quantizer: the decoder reads the encoder's latent as it is (``n_q`` is then
    ignored), the ceiling of the bitrate ladder for this encoder and decoder."""
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32)).view(1, 1, -1).to(device)  # (1, 1, T)
    if not quantize:
        return codec.bounded(codec.decoder(codec.latent(x)))[..., : x.shape[-1]].reshape(-1).float().cpu().numpy()
    codes = codec.encode(x, n_q)
    return codec.decode(codes, length=x.shape[-1]).view(-1).float().cpu().numpy()


def evaluate_codec(codec: Codec, clips: list[np.ndarray], n_q: int | None = None, with_stoi: bool = False,
                   device: str | torch.device = "cpu", with_comb: bool = False,
                   quantize: bool = True) -> dict[str, float | None]:
    """Mean metrics of ``clips`` through ``codec`` at ``n_q`` levels (or, with ``quantize=False``, without the
    quantizer: see :func:`reconstruct`): SNR, SI-SDR, mel distance, plus STOI and the comb ratio (at
    ``codec.config.comb_frequencies()``) when asked.

    A metric a clip cannot define (STOI under 0.4 s, the comb under 0.5 s) is left out of that metric's mean; a
    metric no clip defines is ``None`` (never ``nan``).
    """
    names = ["snr", "si_sdr", "mel_distance"] + (["stoi"] if with_stoi else []) + (["comb_ratio"] if with_comb else [])
    means = metrics.MetricMeans(names, comb_spacings=codec.config.comb_frequencies() if with_comb else None)
    for i, wav in enumerate(clips):
        means.add(f"clip {i}", wav, reconstruct(codec, wav, n_q, device, quantize), codec.sample_rate)
    return means.means() if clips else {}


class CodecTrainer:
    """Trains a :class:`Codec` on the crops of a manifest; see the module docstring.

    Parameters
    ----------
    codec_config: the architecture (ignored when resuming: the checkpoint's own config is used and must match).
    train_config: the optimisation settings.
    train_manifest, val_manifest: JSON Lines manifests from notebook 01 (16 kHz).
    out_dir: where checkpoints and the log go; an existing ``checkpoint.pt`` there is resumed when ``resume``.
    device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    kind = "codec_train"
    progress_desc = "codec"

    def __init__(self, codec_config: CodecConfig, train_config: CodecTrainConfig, train_manifest: str | Path,
                 val_manifest: str | Path | None, out_dir: str | Path, device: str = "auto", resume: bool = True):
        self.cfg = train_config
        start = start_run(device, out_dir, train_config.seed, CHECKPOINT, self.kind, resume)
        self.device, self.dist, self.out_dir, state = start.device, start.dist, start.out_dir, start.state
        ckpt_path = self.out_dir / CHECKPOINT
        if state is not None:
            stored = type(codec_config).from_dict(state["codec_config"])
            if stored != codec_config:
                raise CheckpointError(
                    f"{ckpt_path} was trained with a different codec configuration; resume with the same preset, "
                    "or give another output folder to start a new run."
                )
        self.codec = self.build_model(codec_config).to(self.device)
        self.model = (
            DistributedDataParallel(self.codec)
            if self.dist.enabled else self.codec
        )
        self.loss = ReconstructionLoss(codec_config.sample_rate, train_config.loss).to(self.device)
        self.optimizer = adamw(self.codec.parameters(), lr=train_config.lr, betas=train_config.betas,
                               weight_decay=train_config.weight_decay)
        self.scheduler, self.scaler = schedule_and_scaler(self.optimizer, train_config, self.device)
        self.step = 0
        self.sampler = CropSampler(load_utterances(train_manifest), int(train_config.segment_s * codec_config.sample_rate),
                                   train_config.batch_size, seed=train_config.seed, augment=train_config.augment,
                                   source_shares=train_config.source_shares or None)
        if self.sampler.sample_rate != codec_config.sample_rate:
            raise ValueError(f"the manifest is at {self.sampler.sample_rate} Hz but the codec expects "
                             f"{codec_config.sample_rate} Hz")
        self.val_clips = (validation_set(val_manifest, train_config.val_items, train_config.val_max_s,
                                         codec_config.sample_rate) if val_manifest else [])
        self._setup_extra(state)
        if state is not None:
            self._load_state(state)
        self.history = History(self.out_dir / "history.jsonl", resume_step=self.step if state else None,
                               write=self.dist.is_main)

    # ------------------------------------------------------------------ the model
    def build_model(self, codec_config) -> torch.nn.Module:
        """The model to train from its configuration. Subclasses train other codecs through the same loop: the
        model's ``forward(wav)`` must return a :class:`~s2slib.codec.model.CodecOutput`, and it needs ``config``
        (with ``to_dict``/``from_dict``), ``sample_rate``, ``encode``/``decode`` and ``num_parameters``."""
        return Codec(codec_config)

    def export(self, path: Path) -> Path:
        """Write the trained model alone (what later notebooks load)."""
        return export_codec(self.codec, path, {"train_steps": self.step})

    # ------------------------------------------------------------------ checkpoints
    def _setup_extra(self, state: dict[str, Any] | None) -> None:
        """Hook for subclasses: build what they add (discriminators, ...) before a checkpoint is loaded."""

    def _extra_state(self) -> dict[str, Any]:
        """Hook for subclasses: what they add to a checkpoint."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Hook for subclasses: restore what :meth:`_extra_state` saved."""

    def _state(self) -> dict[str, Any]:
        return {
            **self._extra_state(),
            "codec_config": self.codec.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model": self.codec.state_dict(),
            **optimisation_state(self.optimizer, self.scheduler, self.scaler, self.step),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._load_extra_state(state)
        self.codec.load_state_dict(state["model"])
        # each process continues its own random stream
        self.step = restore_optimisation(state, self.optimizer, self.scheduler, self.scaler, self.dist, self.cfg.seed)

    def save(self) -> Path | None:
        """Write ``checkpoint.pt`` (rank 0 writes; under DDP every rank must call it); returns its path."""
        return save_training_checkpoint(self.out_dir / CHECKPOINT, self._state, self.kind, self.dist)

    # ------------------------------------------------------------------ training
    def train_step(self, wav: torch.Tensor) -> dict[str, float]:
        """One optimizer step on ``wav: Tensor[B, 1, T]``; returns the step's losses and codebook statistics."""
        self.model.train()
        with autocast(self.device, self.cfg.amp):
            out = self.model(wav)
            terms = self.loss(wav, out.wav_hat.float())
            total = terms["total"] + self.cfg.vq_weight * out.vq_loss
            if out.head_input is not None:
                total = total + self._head_terms(wav, out.head_input, terms)
        return self._update_codec(total, terms, out)

    def _head_terms(self, wav: torch.Tensor, head_input: torch.Tensor,
                    terms: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """The losses on codec v2's iSTFT head beside the waveform's, added to ``terms``; returns their weighted sum
        (0.0, at no cost, when the head has no pitch channels and ``advance_weight`` and ``frame_mag_weight`` are 0:
        the default).

        A pitch-locked head learns F0 and voicing from the pitch measured on ``wav: Tensor[B, 1, T]`` in the codec's
        frames (:func:`s2slib.codec.pitch.pitch_loss`); with ``advance_weight`` the head's phases learn how far each
        bin turns per frame (:func:`s2slib.codec.losses.phase_advance_loss`); with ``frame_mag_weight`` its log
        magnitudes learn the crop's in the head's own frames (:func:`s2slib.codec.losses.frame_magnitude_loss`)."""
        c, head = self.codec.config, self.codec.decoder.head
        logits = head.pitch_logits(head_input)
        if logits is None and self.cfg.advance_weight <= 0 and self.cfg.frame_mag_weight <= 0:
            return 0.0
        padded = self.codec._pad(wav).float()
        total = head_input.new_zeros(())
        if logits is not None:
            f0, voiced = frame_pitch(padded, c.sample_rate, c.hop_length, c.window_length)
            for name, value in pitch_loss(logits, f0, voiced).items():
                terms[f"pitch_{name}"] = value
                total = total + self.cfg.pitch_weight * value
        if self.cfg.advance_weight > 0:
            terms["phase_advance"] = phase_advance_loss(head.phases(head_input), padded, c.hop_length, c.window_length)
            total = total + self.cfg.advance_weight * terms["phase_advance"]
        if self.cfg.frame_mag_weight > 0:
            terms["frame_mag"] = frame_magnitude_loss(head_input[:, : head.n_bins], padded, c.hop_length,
                                                      c.window_length, self.cfg.loss.stft_floor_db)
            total = total + self.cfg.frame_mag_weight * terms["frame_mag"]
        return total

    def _update_codec(self, total: torch.Tensor, terms: dict[str, torch.Tensor], out) -> dict[str, float]:
        """Backpropagate the codec's loss ``total``, clip, step its optimizer and schedule; the row to log (the
        reconstruction ``terms``, the VQ loss, gradient norm, learning rate and first-level codebook statistics)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.codec.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        row = {f"loss_{k}": float(v.detach()) for k, v in terms.items()}
        row.update(loss_vq=float(out.vq_loss.detach()), grad_norm=float(grad_norm), lr=self.scheduler.get_last_lr()[0],
                   usage_l1=float(out.codebook_usage[0]), perplexity_l1=float(out.perplexity[0]))
        return row

    def validate(self) -> dict[str, float]:
        """Validation metrics at all levels and at one level (the quality range quantizer dropout buys)."""
        if not self.val_clips:
            return {}
        self.codec.eval()
        full = evaluate_codec(self.codec, self.val_clips, None, device=self.device)
        one = evaluate_codec(self.codec, self.val_clips, 1, device=self.device)
        return {**{f"val_{k}": v for k, v in full.items()}, "val_mel_distance_nq1": one["mel_distance"]}

    def fit(self, progress: bool = True, stop_after: int | None = None) -> History:
        """Train until ``max_steps`` (or for ``stop_after`` more steps); returns the training log.

        Checkpoints every ``ckpt_every`` steps and at the end; exports ``codec.pt`` when ``max_steps`` is reached.
        """
        cfg = self.cfg
        end = cfg.max_steps if stop_after is None else min(cfg.max_steps, self.step + stop_after)
        batches = step_batches(self.sampler, self.step, end, self.dist.rank, cfg.num_workers)
        bar = tqdm(total=end, initial=self.step, desc=self.progress_desc, disable=not (progress and self.dist.is_main))
        window: list[dict[str, float]] = []
        t0 = time.perf_counter()
        for wav in batches:
            row = self.train_step(wav.to(self.device, non_blocking=True))
            self.step += 1
            window.append(row)
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                keys = dict.fromkeys(k for r in window for k in r)  # every key, in first-seen order
                mean = {k: float(np.mean([r[k] for r in window if k in r])) for k in keys}
                mean.update(step=self.step, seconds=round(time.perf_counter() - t0, 2))
                bar.set_postfix(mel=f"{mean['loss_mel']:.3f}", vq=f"{mean['loss_vq']:.3f}")
                self.history.log(mean)
                window = []
            if cfg.val_every and self.step % cfg.val_every == 0 and self.dist.is_main:
                self.history.log({"step": self.step, **self.validate()})
            if self.step % cfg.ckpt_every == 0 and self.step != end:
                self.save()
        bar.close()
        if self.step >= cfg.max_steps and self.dist.is_main:
            if not cfg.val_every or self.step % cfg.val_every:
                self.history.log({"step": self.step, **self.validate()})
            self.export(self.out_dir / EXPORT)
        self.save()
        return self.history
