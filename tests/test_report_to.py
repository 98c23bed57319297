"""The Trainer's settings reach a CLI run: report_to tensorboard writes each phase's event files with
the losses logged every log_every steps, the search's rank readings among them."""

from __future__ import annotations

import pytest
from pipeline_fixtures import cola, run, save_tiny_bert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def test_report_to_tensorboard_writes_event_files(bert_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(bert_dir, tmp_path / "run", report_to=["tensorboard"], log_every=2, **cola())
    events = sorted((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert events, sorted(str(p) for p in (tmp_path / "run").rglob("*"))
    tags = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"train/loss", "train/rank_sum", "train/search_val_loss"} <= tags, tags
