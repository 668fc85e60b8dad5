"""Run by tests/test_resume.py under torchrun with two gloo processes on CPU.

    ddp_s2s_worker.py OUT MAX_STEPS [--step-delay SECONDS]

Pretrains the smoke-size S2S model on patterned tokens for MAX_STEPS steps in OUT/run (a checkpoint every 2 steps),
resuming from OUT/run/checkpoint.pt when it is there, as the command line would. Each rank saves the first batch it
trains on (OUT/first_batch_rank{rank}_step{step}.pt) and, at the end, its model and optimizer state
(OUT/final_rank{rank}.pt). ``--step-delay`` sleeps after every step (it changes no number) so that the test can kill
the run between two checkpoints.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from s2s_fixtures import CONFIG, TASK, patterned_items

from s2slib.s2s.train import S2STrainConfig, S2STrainer

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("max_steps", type=int)
parser.add_argument("--step-delay", type=float, default=0.0)
args = parser.parse_args()

cfg = S2STrainConfig(max_steps=args.max_steps, batch_size=3, warmup_steps=1, val_every=4, ckpt_every=2, log_every=1,
                     task=TASK)
trainer = S2STrainer(dataclasses.replace(CONFIG, dropout=0.1), cfg, patterned_items(10), patterned_items(3, seed=4),
                     args.out / "run", device="cpu")
assert trainer.dist.world_size == 2, "expected to run under torchrun with two processes"
rank, start = trainer.dist.rank, trainer.step
step = trainer.train_step


def recorded_step(batch):
    if trainer.step == start:  # the batch this rank really trains on first, for the test to compare across ranks
        torch.save(batch.inputs, args.out / f"first_batch_rank{rank}_step{start}.pt")
    row = step(batch)
    time.sleep(args.step_delay)
    return row


trainer.train_step = recorded_step
trainer.fit(progress=False)
torch.save({"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict()},
           args.out / f"final_rank{rank}.pt")
torch.distributed.destroy_process_group()
