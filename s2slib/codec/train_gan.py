"""Adversarial training of the codec (notebook 03): the codec of notebook 02 against MPD and MS-STFT discriminators.

    trainer = CodecGANTrainer(codec_config, GANTrainConfig(max_steps=400), train_manifest, val_manifest,
                              out_dir="run/codec_gan", init_from="run/codec/codec.pt")
    trainer.fit()

Every step, once ``disc_start_step`` is reached (the warm-up lets the discriminators start against a codec that
already reconstructs something):

1. **Discriminator step**: real crops and the codec's (detached) reconstructions go through the discriminators in one
   batch; the discriminator loss (hinge by default) is minimised with its own AdamW optimizer and schedule.
2. **Generator step**: the reconstructions go through the discriminators again; the codec minimises
   ``recon_weight * reconstruction + vq_weight * commitment + adv_weight * adversarial + feat_weight * feature
   matching``.

Before ``disc_start_step`` only the reconstruction and VQ terms train the codec, as in notebook 02. Checkpoints hold
both networks, both optimizers and both schedules (kind ``codec_gan_train``); everything else (exact resume, DDP,
mixed precision, clipping) is the base :class:`~s2slib.codec.train.CodecTrainer`'s.

Loss weights. The seed plan's values are available as :meth:`GANTrainConfig.seed_weights` (adv 1.0, feature 10.0,
recon 0.1, vq 1.0); with this course's reconstruction loss (mel weighted 15, as in DAC) they leave the mel term
weaker than the adversarial ones. The default follows DAC's balance instead (adv 1, feature 2, recon 1 with mel 15),
which keeps the spectral fidelity of notebook 02 while the discriminators sharpen the detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from s2slib.checkpoint import CheckpointError, load_checkpoint
from s2slib.codec.config import CodecConfig
from s2slib.codec.discriminators import DiscriminatorConfig, Discriminators
from s2slib.codec.losses import ADVERSARIAL_LOSSES, feature_matching_loss
from s2slib.codec.train import CodecTrainConfig, CodecTrainer
from s2slib.training import adamw, autocast, cosine_with_warmup


@dataclass
class GANTrainConfig(CodecTrainConfig):
    """:class:`CodecTrainConfig` plus the adversarial settings."""

    lr: float = 1e-4  # generator learning rate: a fine-tune of notebook 02's codec
    warmup_steps: int = 20
    disc_lr: float = 2e-4  # discriminator learning rate
    disc_betas: tuple[float, float] = (0.8, 0.99)
    disc_start_step: int = 50  # steps of reconstruction-only training before the discriminators join
    loss_type: str = "hinge"  # "hinge" or "lsgan"
    adv_weight: float = 1.0
    feat_weight: float = 2.0
    recon_weight: float = 1.0
    disc_preset: str = "laptop"  # DiscriminatorConfig preset: seed, laptop or tiny

    def __post_init__(self) -> None:
        self.betas, self.disc_betas = tuple(self.betas), tuple(self.disc_betas)
        if self.loss_type not in ADVERSARIAL_LOSSES:
            raise ValueError(f"loss_type must be one of {sorted(ADVERSARIAL_LOSSES)}, got {self.loss_type!r}")
        DiscriminatorConfig.preset(self.disc_preset)  # an unknown preset fails here

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["disc_betas"] = list(self.disc_betas)
        return out

    @staticmethod
    def seed_weights() -> dict[str, float]:
        """The seed plan's loss weights, to pass as ``GANTrainConfig(**GANTrainConfig.seed_weights())``."""
        return {"adv_weight": 1.0, "feat_weight": 10.0, "recon_weight": 0.1, "vq_weight": 1.0}


class CodecGANTrainer(CodecTrainer):
    """Adversarial fine-tuning of a codec; see the module docstring.

    ``init_from``: a ``codec.pt`` (notebook 02) whose weights start the generator when ``out_dir`` holds no checkpoint
    yet. Its configuration must be ``codec_config``.
    """

    kind = "codec_gan_train"
    progress_desc = "codec GAN"

    def __init__(self, codec_config: CodecConfig, train_config: GANTrainConfig, train_manifest, val_manifest,
                 out_dir, device: str = "auto", resume: bool = True, init_from: str | Path | None = None):
        self._init_from = init_from
        super().__init__(codec_config, train_config, train_manifest, val_manifest, out_dir, device, resume)

    def _setup_extra(self, state: dict[str, Any] | None) -> None:
        cfg: GANTrainConfig = self.cfg
        disc_config = (DiscriminatorConfig.from_dict(state["disc_config"]) if state is not None
                       else DiscriminatorConfig.preset(cfg.disc_preset))
        self.disc = Discriminators(disc_config).to(self.device)
        self.disc_model = DistributedDataParallel(self.disc) if self.dist.enabled else self.disc
        self.opt_d = adamw(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.disc_betas)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(
            self.opt_d, lambda s: cosine_with_warmup(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio))
        self.d_loss_fn, self.g_loss_fn = ADVERSARIAL_LOSSES[cfg.loss_type]
        if state is None and self._init_from is not None:
            start = load_checkpoint(self._init_from, kind=("codec", "codec_train"))
            if CodecConfig.from_dict(start["codec_config"]) != self.codec.config:
                raise CheckpointError(f"{self._init_from} holds a codec of another configuration than {cfg}")
            self.codec.load_state_dict(start["model"])

    def _extra_state(self) -> dict[str, Any]:
        return {"disc_config": self.disc.config.to_dict(), "disc": self.disc.state_dict(),
                "opt_d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_d.load_state_dict(state["sched_d"])

    def train_step(self, wav: torch.Tensor) -> dict[str, float]:
        """One discriminator step then one generator step on ``wav: Tensor[B, 1, T]`` (only the generator step
        before ``disc_start_step``)."""
        cfg: GANTrainConfig = self.cfg
        adversarial = self.step >= cfg.disc_start_step
        self.model.train()
        self.disc.train()
        B = wav.shape[0]
        row: dict[str, float] = {}
        with autocast(self.device, cfg.amp):
            out = self.model(wav)
            wav_hat = out.wav_hat.float()
        if adversarial:
            with autocast(self.device, cfg.amp):
                logits, _ = self.disc_model(torch.cat([wav, wav_hat.detach()]))  # real and fake in one pass
                d_loss = self.d_loss_fn([x[:B] for x in logits], [x[B:] for x in logits])
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.unscale_(self.opt_d)
            row["grad_norm_d"] = float(torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip))
            self.scaler.step(self.opt_d)
            self.sched_d.step()  # the discriminators' schedule counts their own steps
            row.update(loss_d=float(d_loss.detach()),
                       d_real=float(torch.stack([x[:B].mean() for x in logits]).mean().detach()),
                       d_fake=float(torch.stack([x[B:].mean() for x in logits]).mean().detach()))

        with autocast(self.device, cfg.amp):
            terms = self.loss(wav, wav_hat)
            total = cfg.recon_weight * terms["total"] + cfg.vq_weight * out.vq_loss
            if adversarial:
                logits, features = self.disc_model(torch.cat([wav, wav_hat]))
                g_adv = self.g_loss_fn([x[B:] for x in logits])
                feat = feature_matching_loss([[f[:B] for f in fs] for fs in features],
                                             [[f[B:] for f in fs] for fs in features])
                total = total + cfg.adv_weight * g_adv + cfg.feat_weight * feat
                row.update(loss_g_adv=float(g_adv.detach()), loss_feat=float(feat.detach()))
        row.update(self._update_codec(total, terms, out))
        return row
