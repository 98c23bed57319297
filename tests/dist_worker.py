"""One rank of a multi-process pipeline run (spawned by tests/test_distributed.py)."""

from __future__ import annotations

import json
import os


def run_rank(rank: int, world: int, port: int, overrides: dict, result: str, die_at_step: int = 0) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        HF_HUB_OFFLINE="1",
    )
    import torch

    torch.set_num_threads(1)
    import torch.distributed as dist

    from autolora.config import load_config
    from autolora.pipeline import run_pipeline

    if die_at_step:
        import pytest
        from pipeline_fixtures import on_search_step

        def dying(n, step):
            if n == die_at_step:
                os._exit(3)  # killed: no clean-up, no goodbye to the other rank
            return step()

        on_search_step(pytest.MonkeyPatch(), dying)  # this process's own: it ends with the run
    try:
        summary = run_pipeline(load_config(None, overrides))
        out = {"ok": True, "summary": summary}
    except Exception as err:  # reported to the test, which judges it
        out = {"ok": False, "type": type(err).__name__, "message": str(err)}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    with open(result, "w") as f:
        json.dump(out, f, default=str)
