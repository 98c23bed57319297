"""load_checkpoint on a torn or foreign file: one InputError naming `resume` and the file, saying how
to go on. Before: torch.load's own error (OSError: Invalid argument, PytorchStreamReader failed
reading zip archive, UnpicklingError, EOFError or KeyError, by where the bytes stop) as a traceback."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model
from pipeline_fixtures import save_tiny_bert

from autolora.cli import main
from autolora.errors import InputError
from autolora.train.state import load_checkpoint, save_checkpoint


@pytest.fixture
def real_checkpoint(tmp_path):
    """What a phase saves: model and optimizer state after a step, RNG state, the step count."""
    model = tiny_model("bert")
    opt = torch.optim.AdamW(model.parameters())
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    state = {
        "step": 1,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
    }
    return save_checkpoint(tmp_path / "checkpoints" / "search.pt", state)


def test_round_trip_and_absent(real_checkpoint, tmp_path):
    assert load_checkpoint(real_checkpoint)["step"] == 1
    assert load_checkpoint(tmp_path / "none.pt") is None


@pytest.mark.parametrize("keep", [0, 100, 0.5, -1])  # bytes kept: none, the zip header, half, all but one
def test_truncated_checkpoint_is_named(real_checkpoint, keep):
    body = real_checkpoint.read_bytes()
    n = int(len(body) * keep) if isinstance(keep, float) else keep
    real_checkpoint.write_bytes(body[:n])
    with pytest.raises(InputError) as info:
        load_checkpoint(real_checkpoint)
    msg = str(info.value)
    assert info.value.arg == "resume" and info.value.path == str(real_checkpoint), msg
    assert msg.startswith(f"resume: {real_checkpoint}: corrupt or truncated ("), msg
    assert msg.endswith("); delete it to start that phase afresh") and "\n" not in msg, msg


@pytest.mark.parametrize("body", [b"\x00search", b"hello, not a checkpoint", b"\x00" * 5000])
def test_garbage_checkpoint_is_named(tmp_path, body):
    path = tmp_path / "search.pt"
    path.write_bytes(body)
    with pytest.raises(
        InputError, match=r"^resume: .*search.pt: corrupt or truncated \(\w+: .*\); delete it"
    ):
        load_checkpoint(path)


def test_a_foreign_object_is_no_checkpoint(tmp_path):
    path = tmp_path / "retrain.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(InputError, match=r"^resume: .*retrain.pt: holds a Tensor, not a training checkpoint"):
        load_checkpoint(path)


def test_cli_resume_from_a_torn_checkpoint_exits_2(tmp_path, capsys):
    from autolora.config import load_config
    from autolora.io.atomic import atomic_write_json
    from autolora.run_folder import run_record

    bert = save_tiny_bert(tmp_path / "bert")
    out = tmp_path / "out"
    options = {"model": str(bert), "data.format": "cola", "data.max_train_samples": 16,
               "data.max_eval_samples": 8, "output_dir": str(out), "progress": False}  # fmt: skip
    atomic_write_json(out / "config.json", run_record(load_config(None, options)))
    (out / "search").mkdir(parents=True)
    (out / "search" / "result.pt").write_bytes(b"\x00search")
    args = ["run", "--resume", "--model", str(bert), "--format", "cola", "--max-train-samples", "16"]
    code = main([*args, "--max-eval-samples", "8", "--output-dir", str(out), "--no-progress"])
    full = capsys.readouterr().err
    err = full.splitlines()[-1]  # after the loading bars
    assert "Traceback" not in full, full
    assert (
        code == 2 and err.startswith("autolora: error: resume: ") and "result.pt: corrupt or truncated" in err
    )
    assert (out / "search" / "result.pt").read_bytes() == b"\x00search"  # left for the user to judge


def test_a_checkpoint_torn_while_saving_is_passed_over(tmp_path):
    """The Trainer writes trainer_state.json last: a newer folder without a readable one (killed while
    saving) is skipped for the one before it."""
    from autolora.integrations.trainer_state import last_complete_checkpoint

    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, '{"global_st')):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(state)
        (folder / "autolora_state.pt").write_bytes(b"")
    (tmp_path / "checkpoint-8").mkdir()  # killed before its trainer_state.json
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(tmp_path / "missing") is None
