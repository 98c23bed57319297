"""check_fits: k and data.max_length against the model, before any training.

Before: `--k 1000` on a narrower model passed --dry-run and built (every component past the width
cannot differ from the others); `--max-length` above the position table passed every check and failed
mid-run, at the first example that long (an IndexError or RuntimeError in the embeddings).
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model
from pipeline_fixtures import save_tiny_bert

import autolora
from autolora.cli import main
from autolora.errors import InputError
from autolora.fits import check_fits, max_positions, narrowest_target


def injected(family: str, rank: int = 4, **config):
    model = tiny_model(family, hidden=32, positions=64, **config)
    autolora.inject(model, None, rank=rank)
    return model


@pytest.mark.parametrize(
    "family, narrowest, positions",
    [
        ("bert", ("bert.encoder.layer.0.attention.self.query", 32, 32), 64),
        ("roberta", ("roberta.encoder.layer.0.attention.self.query", 32, 32), 64),  # 66 rows, offset 2
        ("gpt2", ("transformer.h.0.attn.c_attn.adapters.q", 32, 32), 64),  # a slice of the fused c_attn
        ("llama", ("model.layers.0.self_attn.v_proj", 32, 16), None),  # 2 kv heads of 8; rotary: no table
    ],
)
def test_widths_and_positions(family, narrowest, positions):
    extra = {"num_key_value_heads": 2} if family == "llama" else {}
    model = injected(family, **extra)
    assert narrowest_target(model) == narrowest
    assert (max_positions(model) or (None,))[0] == positions
    width = min(narrowest[1:])
    check_fits(model, width, positions)  # at the limits: fine


def test_k_above_the_width_is_named():
    model = injected("llama", rank=17, num_key_value_heads=2)
    with pytest.raises(InputError) as info:
        check_fits(model, 17, 128)
    assert info.value.arg == "k"
    assert str(info.value) == (
        "k: 17 is above the smallest in/out width among the targeted modules: "
        "model.layers.0.self_attn.v_proj has in 32, out 16, so its update has at most 16 independent "
        "components; set k <= 16"
    )


@pytest.mark.parametrize("family, says", [
    ("bert", "65 is above the 64 positions the model takes (its position table "
             "bert.embeddings.position_embeddings has 64 rows)"),
    ("roberta", "65 is above the 64 positions the model takes (its position table "
                "roberta.embeddings.position_embeddings has 66 rows, 2 taken by the padding offset)"),
])  # fmt: skip
def test_max_length_above_the_positions_is_named(family, says):
    model = injected(family)
    with pytest.raises(InputError, match=r"^data\.max_length: ") as info:
        check_fits(model, 4, 65)
    assert says in str(info.value)
    # What it saves the user from: the forward of a 65-token example fails mid-run.
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids=torch.full((1, 65), 5))  # 5: not the padding id


def test_dry_run_names_k_and_max_length(tmp_path, capsys):
    """save_tiny_bert is 16 wide with 128 positions."""
    bert = save_tiny_bert(tmp_path / "bert")
    capsys.readouterr()
    base = ["run", "--dry-run", "--model", str(bert), "--format", "cola", "--max-train-samples", "16"]
    base += ["--output-dir", str(tmp_path / "out"), "--no-progress"]
    cases = [
        (["--k", "1000"], "k: 1000 is above the smallest in/out width"),
        (["--max-length", "1000"], "data.max_length: 1000 is above the 128 positions"),
    ]
    for flags, says in cases:
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err.splitlines()[-1]  # after the loading bars
        assert err.startswith(f"autolora: error: {says}") and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
