"""One rank of AutoLoraTrainer under a torchrun-like environment (gloo, CPU), for
test_trainer_integration's multi-process test. Writes its ranks and final trainable weights as JSON."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def run_rank(rank: int, world: int, port: int, out_dir: str, result: str, batch: int) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    )  # fmt: skip
    try:
        import torch

        torch.set_num_threads(1)
        sys.path.insert(0, str(Path(__file__).parent))
        from test_trainer_integration import _model, _trainer

        trainer = _trainer(out_dir, _model(), search_steps=2, max_steps=3, per_device_train_batch_size=batch)
        trainer.train()
        params = {n: p.detach().tolist() for n, p in trainer.model.named_parameters() if p.requires_grad}
        payload = {"ok": True, "world": trainer.args.world_size, "ranks": trainer.ranks, "params": params}
    except Exception:  # the test reports the traceback
        payload = {"ok": False, "error": traceback.format_exc()}
    Path(result).write_text(json.dumps(payload))
