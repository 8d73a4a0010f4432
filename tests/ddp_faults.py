"""emojilm.train under torchrun with a fault planted, for tests/test_distributed.py:

    torchrun --nproc-per-node 2 tests/ddp_faults.py FAULT [emojilm.train options]

FAULT is one of:
  shifted-shards  every rank's part of the global batch starts one row late
                  (the first row is left out, a row beyond a part's end is repeated)
  rank-1-dies     rank 1 is killed (SIGKILL) as it builds its third batch
  rank-1-data     rank 1 reads one training pair fewer (as a node with another copy of --data)
"""

from __future__ import annotations

import os
import signal
import sys

from emojilm import train


def shifted_shard(batch: list, rank: int, world_size: int) -> list:
    size = len(batch) // world_size
    return batch[rank * size + 1 : (rank + 1) * size + 1]


def dying_make_batch(examples, device, calls=[0]):  # noqa: B006 (the call counter)
    calls[0] += 1
    if os.environ["RANK"] == "1" and calls[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_make_batch(examples, device)


def rank_1_data(cfg):
    pairs = real_load_training_pairs(cfg)
    return pairs.iloc[1:] if os.environ["RANK"] == "1" else pairs


real_make_batch, real_load_training_pairs = train.make_batch, train.load_training_pairs

if __name__ == "__main__":
    fault = sys.argv.pop(1)
    if fault == "shifted-shards":
        train.shard = shifted_shard
    elif fault == "rank-1-dies":
        train.make_batch = dying_make_batch
    elif fault == "rank-1-data":
        train.load_training_pairs = rank_1_data
    else:
        sys.exit(f"unknown fault {fault!r}")
    train.main()
