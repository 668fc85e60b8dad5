"""Run by tests/test_codec_train.py under torchrun: train the tiny codec with DDP, save each rank's weights."""

import sys
from pathlib import Path

import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer

train, val, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
cfg = CodecTrainConfig(max_steps=4, batch_size=2, segment_s=0.25, warmup_steps=1, val_every=0, val_items=1,
                       ckpt_every=2, log_every=1)
trainer = CodecTrainer(CodecConfig.tiny(), cfg, train, val, out / "out", device="cpu")
assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
trainer.fit(progress=False)
torch.save(trainer.codec.state_dict(), out / f"rank{trainer.dist.rank}.pt")
torch.distributed.destroy_process_group()
