"""The decoding options: one config, reachable from a config file and from flags, checked by name."""

from __future__ import annotations

import dataclasses
import json

import pytest

from autolora.cli import build_parser
from autolora.config import load_config
from autolora.decoding import DecodingConfig


def test_the_defaults_are_the_lora_papers_e2e_setting():
    d = DecodingConfig()
    assert (d.num_beams, d.length_penalty, d.no_repeat_ngram_size) == (10, 0.9, 4)
    expected = {"num_beams": 10, "length_penalty": 0.9, "no_repeat_ngram_size": 4, "max_new_tokens": 64}
    assert d.generate_kwargs() == {**expected, "do_sample": False}
    assert "length_penalty" not in DecodingConfig(num_beams=1).generate_kwargs()  # greedy has none


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_round_trips_the_decoding_options(tmp_path, suffix):
    chosen = {"num_beams": 4, "length_penalty": 1.2, "no_repeat_ngram_size": 0, "max_new_tokens": 20}
    body = {"max_generate": -1, "decoding": chosen, "data": {"task": "causal-lm", "format": "e2e"}}
    first = tmp_path / f"a{suffix}"
    first.write_text(json.dumps(body))  # JSON is YAML too
    config = load_config(first)
    assert dataclasses.asdict(config.decoding) == chosen and config.max_generate == -1
    # What a run writes to config.json loads back to the same config.
    (tmp_path / "b.json").write_text(json.dumps(config.to_dict()))
    assert load_config(tmp_path / "b.json") == config


def test_flags_set_the_decoding_options_over_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("decoding:\n  num_beams: 4\n  max_new_tokens: 30\n")
    args = build_parser().parse_args(
        ["run", "--config", str(tmp_path / "c.yaml"), "--num-beams", "2", "--length-penalty", "0.8"]
    )
    overrides = {
        k: v for k, v in vars(args).items() if k not in ("command", "config", "dry_run") and v is not None
    }
    decoding = load_config(args.config, overrides).decoding
    assert decoding == DecodingConfig(num_beams=2, length_penalty=0.8, max_new_tokens=30)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_beams": 0}, "decoding.num_beams: expected an integer >= 1, got 0"),
        ({"max_new_tokens": 0}, "decoding.max_new_tokens: expected an integer >= 1, got 0"),
        ({"no_repeat_ngram_size": -1}, "decoding.no_repeat_ngram_size: expected an integer >= 0, got -1"),
        ({"beams": 3}, "config.decoding: unknown option(s) ['beams']"),
        ({"num_beams": "many"}, "decoding.num_beams: expected int, got 'many'"),
    ],
)
def test_bad_decoding_options_are_named(tmp_path, values, message):
    (tmp_path / "c.json").write_text(json.dumps({"decoding": values}))
    with pytest.raises(ValueError) as err:
        load_config(tmp_path / "c.json")
    assert message in str(err.value)
