"""Run by tests/test_codec_train.py under torchrun: train the tiny codec with DDP (plain, then adversarial on top of
it), and save each rank's weights of both so the test can check that the ranks stayed in sync."""

import sys
from pathlib import Path

import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer
from s2slib.codec.train_gan import CodecGANTrainer, GANTrainConfig

train, val, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
common = dict(batch_size=2, segment_s=0.25, warmup_steps=1, val_every=0, val_items=1, ckpt_every=2, log_every=1)
trainer = CodecTrainer(CodecConfig.tiny(), CodecTrainConfig(max_steps=4, **common), train, val, out / "out", device="cpu")
assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
trainer.fit(progress=False)
torch.save(trainer.codec.state_dict(), out / f"rank{trainer.dist.rank}.pt")

torch.distributed.barrier()  # rank 0 has exported codec.pt
gan = CodecGANTrainer(CodecConfig.tiny(), GANTrainConfig(max_steps=4, disc_start_step=1, disc_preset="tiny", **common),
                      train, val, out / "gan", device="cpu", init_from=out / "out" / "codec.pt")
gan.fit(progress=False)
torch.save({**{f"g.{k}": v for k, v in gan.codec.state_dict().items()},
            **{f"d.{k}": v for k, v in gan.disc.state_dict().items()}}, out / f"gan_rank{gan.dist.rank}.pt")
torch.distributed.destroy_process_group()
