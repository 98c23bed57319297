"""BatchStream sharding: ranks split one global batch; accumulation splits it further; wrap-around."""

from __future__ import annotations

import torch

from autolora.train.stream import BatchStream


def collate(rows):
    return {"i": torch.tensor([r["i"] for r in rows])}


def ids(batches):
    return [b["i"].tolist() for b in batches]


def test_ranks_and_micro_batches_partition_the_single_process_batch():
    data = [{"i": i} for i in range(20)]
    single = BatchStream(data, 8, collate, seed=3, device=torch.device("cpu"))
    ranks = [
        BatchStream(data, 2, collate, 3, torch.device("cpu"), rank=r, world_size=2, accum=2) for r in (0, 1)
    ]
    for _ in range(5):  # crosses an epoch boundary (20 / 8 -> 3 steps per epoch)
        (whole,) = ids(single.next())
        parts = [ids(s.next()) for s in ranks]
        assert sorted(sum(parts[0] + parts[1], [])) == sorted(whole)
        assert all(len(m) == 2 for p in parts for m in p)
    assert single.state_dict() == ranks[0].state_dict() == {"epoch": 1, "index": 2}


def test_last_batch_is_topped_up_from_the_epoch_start():
    data = [{"i": i} for i in range(5)]
    s = BatchStream(data, 4, collate, seed=0, device=torch.device("cpu"))
    first, second = ids(s.next())[0], ids(s.next())[0]
    order = torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    assert first == order[:4] and second == [order[4]] + order[:3]
    assert s.state_dict() == {"epoch": 1, "index": 0}
