"""Adapters round-trip through safetensors + JSON, onto a fresh copy of the base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import randomize_adapters, tiny_model

import autolora
from autolora.tuner.pooling import pooling_of

IDS = torch.tensor([[1, 5, 7, 9, 11, 2]])


@pytest.mark.parametrize("family, trainable", [("bert", ["classifier"]), ("gpt2", [])])
def test_save_load_round_trip(tmp_path, family, trainable):
    torch.manual_seed(1)
    model = tiny_model(family)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    autolora.inject(model, trainable=trainable)
    randomize_adapters(model)
    if trainable:
        torch.nn.init.normal_(model.classifier.weight)
    with torch.no_grad():
        expected = model(input_ids=IDS).logits
    autolora.save_adapter(model, tmp_path, trainable=trainable)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "autolora_adapter.safetensors",
        "autolora_config.json",
    ]
    config = json.loads((tmp_path / "autolora_config.json").read_text())
    assert config["mode"] == "search" and all(r == 8 for r in config["ranks"].values())

    fresh = tiny_model(family)
    fresh.load_state_dict(base_state)
    autolora.load_adapter(fresh, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=IDS).logits, expected, rtol=0, atol=0)
    assert autolora.current_ranks(fresh) == autolora.current_ranks(model)


def test_fixed_mode_ranks_round_trip(tmp_path):
    model = tiny_model("bert")
    ranks = {"bert.encoder.layer.0.attention.self.query": 1, "bert.encoder.layer.1.attention.self.value": 5}
    autolora.inject(model, mode="fixed", rank=2, ranks=ranks)
    randomize_adapters(model)
    autolora.save_adapter(model, tmp_path)
    fresh = tiny_model("bert")
    fresh.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "base_layer" not in k}, strict=False
    )
    autolora.load_adapter(fresh, tmp_path)
    assert autolora.current_ranks(fresh) == autolora.current_ranks(model)


def test_save_without_adapters_fails_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="model: has no AutoLoRA adapters"):
        autolora.save_adapter(tiny_model("bert"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_open_would_give(tmp_path, umask, mode):
    """mkstemp makes private 0600 files; our outputs follow the umask like any open() would."""
    import os
    import subprocess
    import sys

    target = tmp_path / "metrics.json"
    code = (
        f"import os; os.umask({umask}); from autolora.io.atomic import atomic_write_json; "
        f"atomic_write_json({str(target)!r}, {{'ok': 1}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.stat(target).st_mode & 0o777 == mode


def test_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from autolora.io.atomic import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "ranks.json", "old")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ranks.json"]


def test_an_adapter_saved_before_the_package_layout_change_loads():
    """tests/data/legacy_adapter_0387e3c was written by commit 0387e3c's code (make.py beside it):
    the same seeded base model with that adapter loaded gives the logits that code computed."""
    from transformers import BertConfig, BertForSequenceClassification

    root = Path(__file__).parent / "data" / "legacy_adapter_0387e3c"
    expected = torch.load(root / "expected.pt", weights_only=True)
    torch.manual_seed(expected["seed"])
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    autolora.load_adapter(model, root / "adapter")
    assert autolora.current_ranks(model)["bert.encoder.layer.1.attention.self.value"] == 3
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=expected["input_ids"]).logits, expected["logits"])


def _snapshot(model: torch.nn.Module) -> tuple:
    """Everything a failed load must leave as it was: weights, module tree, trainable flags, pooling."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [(n, type(m).__name__) for n, m in model.named_modules()]
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    return state, modules, flags, pooling_of(model)


def _assert_unchanged(model: torch.nn.Module, before: tuple) -> None:
    state, modules, flags, pooling = _snapshot(model)
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert (modules, flags, pooling) == before[1:]


def _saved(tmp_path: Path, **model_config) -> Path:
    """A search-mode adapter (mean pooling, classifier trained) of a tiny BERT, hidden 32 unless given."""
    model = tiny_model("bert", **model_config)
    autolora.mean_pooling(model)
    autolora.inject(model, trainable=["classifier"])
    randomize_adapters(model)
    return autolora.save_adapter(model, tmp_path / "adapter", trainable=["classifier"])


def test_a_failed_load_leaves_the_model_as_it_was(tmp_path):
    """Before: mean pooling and the adapters went in, then the first wrong shape raised mid-copy."""
    directory = _saved(tmp_path)
    wider = tiny_model("bert", hidden=48)  # the same names, other shapes
    before = _snapshot(wider)
    with pytest.raises(
        ValueError, match=r"saved shape\(s\) differ from the model's: .*saved \(32, 8\), model has \(48, 8\)"
    ):
        autolora.load_adapter(wider, directory)
    _assert_unchanged(wider, before)


def test_a_saved_name_the_model_lacks_leaves_it_as_it_was(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = _saved(tmp_path)
    weights = directory / "autolora_adapter.safetensors"
    state = load_file(weights)
    state["bert.encoder.layer.0.attention.self.extra"] = torch.zeros(2)
    save_file(state, weights)
    model = tiny_model("bert")
    before = _snapshot(model)
    with pytest.raises(
        KeyError, match=r"saved tensors not in the model: \['bert.encoder.layer.0.attention.self.extra'\]"
    ):
        autolora.load_adapter(model, directory)
    _assert_unchanged(model, before)
    autolora.load_adapter(tiny_model("bert"), _saved(tmp_path / "again"))  # the good one still loads


WRITE_EVERYTHING = """
import os, sys
os.umask({umask})
from pathlib import Path
sys.path.insert(0, {tests!r})
import autolora
from helpers import tiny_model
from autolora.io.atomic import atomic_write_json
from autolora.io.peft_export import export_peft, save_merged
from autolora.train.state import save_checkpoint
out = Path({out!r})
model = tiny_model("bert")
autolora.inject(model, mode="fixed", rank=2, trainable=["classifier"])
autolora.save_adapter(model, out / "autolora_adapter", trainable=["classifier"])
export_peft(model, out / "adapter")
save_merged(model, out / "merged")
save_checkpoint(out / "checkpoints" / "search.pt", {{"step": 1}})
atomic_write_json(out / "metrics.json", {{"ok": 1}})
"""


@pytest.mark.parametrize(
    "umask, file_mode, dir_mode",
    [
        pytest.param(0o022, 0o644, 0o755, id="umask 022"),
        pytest.param(0o077, 0o600, 0o700, marks=pytest.mark.slow, id="umask 077"),
    ],
)
def test_every_file_a_run_writes_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    """Before, under umask 022: the .safetensors files (adapter, PEFT export, merged model) came out
    0600, as safetensors writes them, and merged/ 0700, as mkdtemp makes it."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    code = WRITE_EVERYTHING.format(umask=umask, tests=str(Path(__file__).parent), out=str(out))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, capture_output=True)
    written = sorted(out.rglob("*"))
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"autolora_adapter/autolora_adapter.safetensors", "adapter/adapter_model.safetensors",
            "merged/model.safetensors", "checkpoints/search.pt", "metrics.json"} <= names  # fmt: skip
    modes = {p.relative_to(out).as_posix(): oct(os.stat(p).st_mode & 0o777) for p in written}
    want = {p.relative_to(out).as_posix(): oct(dir_mode if p.is_dir() else file_mode) for p in written}
    assert modes == want
