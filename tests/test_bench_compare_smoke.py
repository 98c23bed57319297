"""benchmarks/bench_compare.py: argument parsing and dataset resolution (seconds; no training)."""

from __future__ import annotations

import pytest
from helpers import benchmark_module

pytestmark = pytest.mark.slow  # a benchmark's smoke test


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_compare") as module:
        yield module


def test_reduced_defaults(bench):
    args = bench.parse_args([])
    assert args.mode == "reduced" and args.steps == 40 and args.seeds == [0, 1, 2]
    assert args.search_fraction == 0.25 and args.retrain_init == "warm" and args.extra_trainable == ["pooler"]
    assert args.max_length == 64 and args.grid_steps == 10
    datas = bench.data_configs(args)
    assert datas["cola"]["format"] == "cola" and "train_file" not in datas["cola"]
    assert datas["sst2"]["train_file"].endswith("sst2/train.tsv")
    assert datas["mr"]["eval_file"].endswith("mr/test.tsv")


def test_report_config_is_json(bench, tmp_path):
    import json

    config = bench.run_config(bench.parse_args(["--out", str(tmp_path)]))
    assert json.loads(json.dumps(config))["out"] == str(tmp_path)  # --out is a Path: it was not JSON


def test_custom_dataset_passes_through(bench, tmp_path):
    args = bench.parse_args(
        ["--datasets", "custom", "--train-file", "t.tsv", "--eval-file", "e.tsv", "--format", "sst2",
         "--text-column", "sentence", "--data-dir", str(tmp_path)]
    )  # fmt: skip
    data = bench.data_configs(args)["custom"]
    assert data["train_file"] == "t.tsv" and data["format"] == "sst2" and data["text_column"] == "sentence"
    from autolora.data import DataConfig

    DataConfig(**data)  # every key is a DataConfig field


def test_custom_needs_train_file(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--datasets", "custom"])


def test_budget_split(bench):
    from _compare_methods import RunSpec

    spec = RunSpec(model="m", data={}, method="autolora", steps=25, search_fraction=0.5)
    assert spec.search_steps + spec.retrain_steps == 25
