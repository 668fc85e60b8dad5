"""Run by the tests under torchrun with two gloo processes on CPU.

    ddp_codec_worker.py TRAIN VAL OUT
        (tests/test_codec_train.py) train the tiny codec with DDP, plain then adversarial on top of it, and save each
        rank's weights of both so the test can check that the ranks stayed in sync.

    ddp_codec_worker.py TRAIN VAL OUT --resume-run MAX_STEPS [--step-delay SECONDS]
        (tests/test_resume.py) train the plain codec for MAX_STEPS steps in OUT/run with a checkpoint every 2 steps,
        resuming from OUT/run/checkpoint.pt when it is there, as the command line would. Each rank saves the first
        batch it trains on (OUT/first_batch_rank{rank}_step{step}.pt) and, at the end, its model and optimizer state
        (OUT/final_rank{rank}.pt). ``--step-delay`` sleeps after every step (it changes no number) so that the test
        can kill the run reliably between two checkpoints.
"""

import argparse
import time
from pathlib import Path

import torch

from s2slib.codec.config import CodecConfig
from s2slib.codec.train import CodecTrainConfig, CodecTrainer
from s2slib.codec.train_gan import CodecGANTrainer, GANTrainConfig

parser = argparse.ArgumentParser()
parser.add_argument("train")
parser.add_argument("val")
parser.add_argument("out", type=Path)
parser.add_argument("--resume-run", type=int, metavar="MAX_STEPS", default=0)
parser.add_argument("--step-delay", type=float, default=0.0)
args = parser.parse_args()
train, val, out = args.train, args.val, args.out
common = dict(batch_size=2, segment_s=0.25, warmup_steps=1, val_every=0, val_items=1, ckpt_every=2, log_every=1)


def resume_run(max_steps: int, step_delay: float) -> None:
    trainer = CodecTrainer(CodecConfig.tiny(), CodecTrainConfig(max_steps=max_steps, **common), train, val, out / "run",
                           device="cpu")
    assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
    rank, start = trainer.dist.rank, trainer.step
    step = trainer.train_step

    def recorded_step(wav: torch.Tensor) -> dict[str, float]:
        if trainer.step == start:  # the batch this rank really trains on first, for the test to compare across ranks
            torch.save(wav, out / f"first_batch_rank{rank}_step{start}.pt")
        row = step(wav)
        time.sleep(step_delay)
        return row

    trainer.train_step = recorded_step
    trainer.fit(progress=False)
    torch.save({"model": trainer.codec.state_dict(), "optimizer": trainer.optimizer.state_dict()},
               out / f"final_rank{rank}.pt")


def sync_run() -> None:
    trainer = CodecTrainer(CodecConfig.tiny(), CodecTrainConfig(max_steps=4, **common), train, val, out / "out",
                           device="cpu")
    assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
    trainer.fit(progress=False)
    torch.save(trainer.codec.state_dict(), out / f"rank{trainer.dist.rank}.pt")

    torch.distributed.barrier()  # rank 0 has exported codec.pt
    gan = CodecGANTrainer(CodecConfig.tiny(), GANTrainConfig(max_steps=4, disc_start_step=1, disc_preset="tiny",
                                                             **common),
                          train, val, out / "gan", device="cpu", init_from=out / "out" / "codec.pt")
    gan.fit(progress=False)
    torch.save({**{f"g.{k}": v for k, v in gan.codec.state_dict().items()},
                **{f"d.{k}": v for k, v in gan.disc.state_dict().items()}}, out / f"gan_rank{gan.dist.rank}.pt")


if args.resume_run:
    resume_run(args.resume_run, args.step_delay)
else:
    sync_run()
torch.distributed.destroy_process_group()
