"""Stage 1: pretraining the S2S model as an audio language model. One trainer for the notebook, the command line,
``torchrun`` and the tests.

    trainer = S2STrainer(S2SConfig.for_codec("laptop", cache_info), S2STrainConfig(max_steps=1500),
                         train_rows, val_rows, out_dir="run/s2s_pretrain")
    history = trainer.fit()

Every step draws a batch of prompt/continuation examples (:mod:`s2slib.s2s.data`, a pure function of the step) and
minimises the next-token cross-entropy of every codebook (averaged over codebooks, as MusicGen does) with AdamW,
warm-up and cosine decay, gradient clipping and bfloat16/float16 autocast on CUDA (bfloat16 on CPU with
``cpu_bf16``). Validation measures the loss, top-1 accuracy and perplexity of each codebook on fixed held-out
examples, next to a **unigram baseline**: the perplexity of each codebook's code frequencies in the training set,
what a model that ignores all context would score. Checkpoints are atomic and hold the model, optimizer, schedule,
step and every rank's random generators, so a run killed at any point resumes exactly (tested against an
uninterrupted run, also under DDP with gloo).

Outputs in ``out_dir``: ``checkpoint.pt``, ``s2s.pt`` (the model alone, :func:`load_s2s`), ``history.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from s2slib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from s2slib.codec.config import dataclass_from_dict
from s2slib.s2s.config import S2SConfig
from s2slib.s2s.data import Batch, ContinuationSampler, ContinuationTask, TokenItem, fixed_batches
from s2slib.s2s.delay import IGNORE
from s2slib.s2s.model import S2SModel, codebook_losses, transcription_loss
from s2slib.training import (History, adamw, autocast, optimisation_state, restore_optimisation,
                             save_training_checkpoint, schedule_and_scaler, start_run)

CHECKPOINT = "checkpoint.pt"
EXPORT = "s2s.pt"
TRAINED_KINDS = ("s2s", "s2s_train", "s2s_answer_train")  # what load_s2s reads: an export or a trainer checkpoint


@dataclass
class S2STrainConfig:
    """How to train (the model is an :class:`S2SConfig`; how utterances become examples a :class:`ContinuationTask`)."""

    max_steps: int = 1500  # optimizer steps
    batch_size: int = 16  # examples per step (per process under DDP)
    micro_batch: int = 0  # examples per forward/backward pass: a step's batch is split into passes of this many and
    # their gradients summed (the same step, less memory: a GPU or CPU that cannot hold batch_size); 0: one pass
    lr: float = 1e-3  # peak learning rate (AdamW)
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    cpu_bf16: bool = False  # bfloat16 autocast on CPU as well (s2slib.training.cpu_bf16_choice: fast only where the
    # CPU multiplies bfloat16 natively); validation and generation stay float32
    val_every: int = 250  # steps between validations (0: only at the end)
    ckpt_every: int = 250
    log_every: int = 25
    seed: int = 0
    task: ContinuationTask = field(default_factory=ContinuationTask)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "S2STrainConfig":
        data = dict(data)
        if "task" in data:
            data["task"] = dataclass_from_dict(ContinuationTask, data["task"])
        cfg = dataclass_from_dict(cls, data)
        cfg.betas = tuple(cfg.betas)
        return cfg


def unigram_counts(items: list[TokenItem], config: S2SConfig) -> np.ndarray:
    """How often each class (codes, then EOS) appears per codebook in ``items``: ``int64[n_q, codebook_size + 1]``
    (one EOS per utterance)."""
    counts = np.zeros((config.n_q, config.output_vocab), dtype=np.int64)
    for item in items:
        for k in range(config.n_q):
            counts[k] += np.bincount(item.codes[k].astype(np.int64), minlength=config.output_vocab)
    counts[:, config.eos_id] += len(items)
    return counts


def unigram_loss(counts: np.ndarray, batches: list[Batch]) -> np.ndarray:
    """Mean negative log-likelihood (nats) per codebook of the targets in ``batches`` under add-one-smoothed code
    frequencies ``counts`` ``[n_q, V]``: the score of a model that ignores all context (0 where there are none)."""
    logp = np.log((counts + 1) / (counts + 1).sum(axis=1, keepdims=True))  # (n_q, V)
    total, n = np.zeros(counts.shape[0]), np.zeros(counts.shape[0])
    for b in batches:
        t = b.targets.numpy()  # (B, n_q, L)
        for k in range(counts.shape[0]):
            valid = t[:, k][t[:, k] >= 0]
            total[k] -= logp[k, valid].sum()
            n[k] += valid.size
    return total / np.maximum(n, 1)


@torch.no_grad()
def evaluate(model: S2SModel, batches: list[Batch], device: torch.device, micro_batch: int = 0,
             ) -> dict[str, np.ndarray]:
    """Loss (nats), accuracy and target count per codebook over ``batches``: arrays ``[n_q]`` (``micro_batch``: at
    most this many examples per forward pass, as in training)."""
    model.eval()
    n_q = model.config.n_q
    nll, correct, count = torch.zeros(n_q), torch.zeros(n_q), torch.zeros(n_q)
    for b in micro_batches(batches, micro_batch):
        b = b.to(device)
        logits = model(b.src, b.src_lengths, b.inputs, b.speaker, b.emotion)
        s, c, n = codebook_losses(logits, b.targets)
        nll, correct, count = nll + s.cpu(), correct + c.cpu(), count + n.cpu()
    count = count.clamp(min=1)
    return {"loss": (nll / count).numpy(), "accuracy": (correct / count).numpy(), "count": count.numpy()}


def micro_batches(batches: list[Batch], size: int) -> list[Batch]:
    """``batches`` cut into slices of at most ``size`` examples (0: as they are)."""
    if size <= 0:
        return list(batches)
    return [b.rows(slice(i, i + size)) for b in batches for i in range(0, b.targets.shape[0], size)]


def load_s2s(path: str | Path, device: str | torch.device = "cpu") -> S2SModel:
    """The model in eval mode from ``s2s.pt`` (or a training ``checkpoint.pt``), rebuilt from its stored config."""
    state = load_checkpoint(path, kind=TRAINED_KINDS, map_location=device)
    try:
        model = S2SModel(S2SConfig.from_dict(state["s2s_config"]))
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the stored S2S configuration ({exc}).") from exc
    return model.to(device).eval()


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What an ``s2s.pt`` says about itself besides its weights (codec fingerprint, steps, validation figures)."""
    state = load_checkpoint(path, kind=TRAINED_KINDS)
    return {k: v for k, v in state.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng",
                                                         "rng_ranks")}


def data_fingerprint(items: list) -> str:
    """A hash of the training examples (ids and codes: an utterance's, or a fine-tuning example's question and
    answer), kept in the checkpoint so a run is never resumed on other data."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda it: it.id):
        h.update(item.id.encode())
        for part in (item.codes, getattr(item, "user", None)):
            if part is not None:
                h.update(str(part.shape).encode())
                h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()[:16]


class S2STrainer:
    """Pretrains an :class:`S2SModel` on tokenized utterances; see the module docstring.

    Parameters
    ----------
    model_config: the architecture (a resumed run must use the same).
    train_config: optimisation and the prompt/continuation task.
    train_items, val_items: :func:`s2slib.s2s.data.load_items` of the token index rows.
    out_dir: checkpoints and the log; an existing ``checkpoint.pt`` there is resumed when ``resume``.
    codec_fingerprint: the token cache's codec fingerprint, stored in the exported model so generation can refuse
        a codec the model was not trained on.
    codec_latent: the codec's codebook vectors (:meth:`s2slib.s2s.tokens.TokenCache.latent_table`), needed by a new
        model whose encoder hears the codec's latent (``model_config.latent_dim`` > 0); a resumed run has them.
    """

    kind = "s2s_train"
    progress_desc = "s2s pretraining"
    transcribe_weight = 0.0  # weight of the encoder's transcription loss (fine-tuning sets it; stage 1 has no text)

    def __init__(self, model_config: S2SConfig, train_config: S2STrainConfig, train_items: list[TokenItem],
                 val_items: list[TokenItem], out_dir: str | Path, device: str = "auto", resume: bool = True,
                 codec_fingerprint: str = "", codec_latent: np.ndarray | None = None):
        self.cfg, self.codec_fingerprint = train_config, codec_fingerprint
        self.data_fingerprint = data_fingerprint(train_items)
        start = start_run(device, out_dir, train_config.seed, CHECKPOINT, self.kind, resume)
        self.device, self.dist, self.out_dir, state = start.device, start.dist, start.out_dir, start.state
        ckpt_path = self.out_dir / CHECKPOINT
        if state is not None:
            stored = S2SConfig.from_dict(state["s2s_config"])
            if stored != model_config:
                changed = ", ".join(f"{f.name} {getattr(stored, f.name)!r} -> {getattr(model_config, f.name)!r}"
                                    for f in dataclasses.fields(S2SConfig)
                                    if getattr(stored, f.name) != getattr(model_config, f.name))
                raise CheckpointError(f"{ckpt_path} was trained with a different model configuration ({changed}); "
                                      "resume with the same settings, or give another output folder (or delete "
                                      "this one) to start a new run.")
            if state.get("codec_fingerprint", "") != codec_fingerprint:
                raise CheckpointError(f"{ckpt_path} was trained on tokens of another codec; give another output "
                                      "folder to train on this codec's tokens.")
            if state.get("data_fingerprint", self.data_fingerprint) != self.data_fingerprint:
                raise CheckpointError(f"{ckpt_path} was trained on other examples than these {len(train_items)} "
                                      "(the data was rebuilt or chosen differently since): resuming would mix the "
                                      "two. Give another output folder, or delete this one to train afresh.")
        self.model = S2SModel(model_config).to(self.device)
        if codec_latent is not None and self.model.latent_input is not None:
            self.model.set_codec_latent(codec_latent)
        self.ddp = DistributedDataParallel(self.model) if self.dist.enabled else self.model
        decay, no_decay = [], []  # weight decay on weight matrices only, not on embeddings, biases or norms
        for name, p in self.model.named_parameters():
            (decay if p.ndim >= 2 and "embed" not in name and "table" not in name else no_decay).append(p)
        self.optimizer = adamw([{"params": decay, "weight_decay": train_config.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=train_config.lr, betas=train_config.betas)
        self.scheduler, self.scaler = schedule_and_scaler(self.optimizer, train_config, self.device)
        self.sampler, self.val_batches, targets = self.build_data(model_config, train_items, val_items)
        self.unigram_loss = unigram_loss(unigram_counts(targets, model_config), self.val_batches)  # (n_q,) nats
        self.step = 0
        self.resumed = state is not None
        if state is not None:
            self._load_state(state)
        self.history = History(self.out_dir / "history.jsonl", resume_step=self.step if state else None,
                               write=self.dist.is_main)

    def build_data(self, model_config: S2SConfig, train_items: list, val_items: list) -> tuple[Any, list[Batch], list]:
        """``(sampler, validation batches, utterances whose codes are the targets)``: stage 1's prompt/continuation
        task. The sampler's ``batch(step, rank)`` must be a pure function of its arguments (exact resume)."""
        cfg = self.cfg
        sampler = ContinuationSampler(train_items, model_config, cfg.batch_size, cfg.task, seed=cfg.seed)
        return sampler, fixed_batches(val_items, model_config, cfg.batch_size, cfg.task), train_items

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "s2s_config": self.model.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "codec_fingerprint": self.codec_fingerprint,
            "data_fingerprint": self.data_fingerprint,
            "model": self.model.state_dict(),
            **optimisation_state(self.optimizer, self.scheduler, self.scaler, self.step),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.step = restore_optimisation(state, self.optimizer, self.scheduler, self.scaler, self.dist, self.cfg.seed)

    def save(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (every rank must call it under DDP; rank 0 writes)."""
        return save_training_checkpoint(self.out_dir / CHECKPOINT, self._state, self.kind, self.dist)

    def export(self, path: Path, extra: dict[str, Any] | None = None) -> Path:
        """The model alone (config, weights, codec fingerprint, steps and the last validation): ``s2s.pt``."""
        state = {"s2s_config": self.model.config.to_dict(), "model": self.model.state_dict(),
                 "codec_fingerprint": self.codec_fingerprint, "train_steps": self.step, **(extra or {})}
        return save_checkpoint(path, state, kind="s2s")

    # ------------------------------------------------------------------ training
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step; the row to log (mean loss, per-codebook losses, gradient norm, learning rate).

        With ``micro_batch`` the batch goes through the model in slices whose losses are scaled by the whole
        batch's target counts, so the summed gradient is the one-pass gradient (up to float rounding)."""
        self.ddp.train()
        b = self.decoder_inputs(batch.to(self.device))
        transcribe = self.transcribe_weight > 0 and b.user_lengths is not None
        spoken = self.model.config.spoken_q  # codebooks with targets (the rest are not spoken: S2SConfig.speak_q)
        count = (b.targets[:, :spoken] != IGNORE).sum(dim=(0, 2)).clamp(min=1)  # (spoken,) targets of the whole batch
        chars = int(b.text_lengths[b.text_lengths > 0].sum()) if transcribe else 0
        parts = micro_batches([b], self.cfg.micro_batch)
        self.optimizer.zero_grad(set_to_none=True)
        nll_total, ctc_total = torch.zeros_like(count, dtype=torch.float32), 0.0
        for i, part in enumerate(parts):
            last = i == len(parts) - 1  # DDP averages the gradients across processes once, after the last slice
            with (contextlib.nullcontext() if last or not self.dist.enabled else self.ddp.no_sync()):
                with autocast(self.device, self.cfg.amp, self.cfg.cpu_bf16):
                    out = self.ddp(part.src, part.src_lengths, part.inputs, part.speaker, part.emotion,
                                   part.user_lengths if transcribe else None, codebooks=spoken)
                logits, text_log_probs = out if transcribe else (out, None)
                nll, _, _ = codebook_losses(logits, part.targets[:, :spoken])  # (spoken,)
                loss = (nll / count).mean()
                if transcribe:
                    n = int(part.text_lengths[part.text_lengths > 0].sum())
                    if n:
                        ctc = transcription_loss(text_log_probs, part.user_lengths, part.text, part.text_lengths)
                        ctc_total += float(ctc.detach()) * n
                        loss = loss + self.transcribe_weight * ctc * (n / chars)
                self.scaler.scale(loss).backward()
            nll_total += nll.detach().float()
        per_codebook = nll_total / count  # (spoken,)
        extra = {"ctc": ctc_total / max(chars, 1)} if transcribe else {}
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        # "loss" stays the speech tokens' loss (comparable across stages); the transcription loss is logged beside it
        row = {"loss": float(per_codebook.detach().mean()), "grad_norm": float(grad_norm),
               "lr": self.scheduler.get_last_lr()[0], **extra}
        row.update({f"loss_cb{k}": float(v) for k, v in enumerate(per_codebook.detach().cpu())})
        return row

    def decoder_inputs(self, batch: Batch) -> Batch:
        """The batch the model learns from at ``self.step`` (a subclass may change what the decoder reads; pure in
        the batch and the step, for exact resume). Stage 1: the batch as drawn."""
        return batch

    def validate(self) -> dict[str, float]:
        """Validation loss, accuracy and perplexity per codebook, and the unigram baseline's perplexity."""
        if not self.val_batches:
            return {}
        out = evaluate(self.model, self.val_batches, self.device, self.cfg.micro_batch)
        spoken = self.model.config.spoken_q  # the codebooks the decoder writes
        row = {"val_loss": float(out["loss"][:spoken].mean()),
               "val_unigram_loss": float(self.unigram_loss[:spoken].mean())}
        for k in range(spoken):
            row[f"val_loss_cb{k}"] = float(out["loss"][k])
            row[f"val_acc_cb{k}"] = float(out["accuracy"][k])
            row[f"val_ppl_cb{k}"] = float(math.exp(min(out["loss"][k], 50.0)))
            row[f"unigram_ppl_cb{k}"] = float(math.exp(min(self.unigram_loss[k], 50.0)))
        return row

    def fit(self, progress: bool = True, stop_after: int | None = None) -> History:
        """Train until ``max_steps`` (or ``stop_after`` more steps); exports ``s2s.pt`` when ``max_steps`` is reached."""
        cfg = self.cfg
        if self.model.latent_input is not None and not self.model.latent_input.is_set:
            raise ValueError("the model's encoder hears the codec's latent (latent_dim "
                             f"{self.model.config.latent_dim}) but has no codebook vectors: pass "
                             "codec_latent=TokenCache.latent_table() (or start from a checkpoint that has them)")
        end = cfg.max_steps if stop_after is None else min(cfg.max_steps, self.step + stop_after)
        bar = tqdm(total=end, initial=self.step, desc=self.progress_desc, disable=not (progress and self.dist.is_main))
        window: list[dict[str, float]] = []
        t0 = time.perf_counter()
        while self.step < end:
            row = self.train_step(self.sampler.batch(self.step, self.dist.rank))
            self.step += 1
            window.append(row)
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                mean = {k: float(np.mean([r[k] for r in window])) for k in window[0]}
                mean.update(step=self.step, seconds=round(time.perf_counter() - t0, 2))
                bar.set_postfix(loss=f"{mean['loss']:.3f}")
                self.history.log(mean)
                window = []
            if cfg.val_every and self.step % cfg.val_every == 0 and self.dist.is_main:
                self.history.log({"step": self.step, **self.validate()})
            if self.step % cfg.ckpt_every == 0 and self.step != end:
                self.save()
        bar.close()
        if self.step >= cfg.max_steps and self.dist.is_main:
            last = [r for r in self.history.rows if "val_loss" in r and r["step"] == self.step]
            val = last[-1] if last else {"step": self.step, **self.validate()}
            if not last:
                self.history.log(val)
            self.export(self.out_dir / EXPORT, {"validation": {k: v for k, v in val.items() if k != "step"}})
        self.save()
        return self.history
