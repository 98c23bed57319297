"""experiments/token_lengths.py: sentence lengths in tokens, nothing cut (a hand-made file)."""

from __future__ import annotations

import pytest
from helpers import experiment_module, minilm_tokenizer


def test_lengths_count_every_token_of_every_sentence(tmp_path):
    long = " ".join(["word"] * 300)  # past any max_length a run would use
    (tmp_path / "t.tsv").write_text(f"1\thello world\n0\t{long}\n")  # label, sentence
    with experiment_module("token_lengths") as module:
        data = {
            "format": "sentence-tsv",
            "train_file": str(tmp_path / "t.tsv"),
            "eval_file": str(tmp_path / "t.tsv"),
        }
        n = module.lengths(data, minilm_tokenizer())
    assert sorted(n["train"].tolist()) == [4, 302] and sorted(n["eval"].tolist()) == [
        4,
        302,
    ]  # [CLS] .. [SEP]
    with pytest.raises(SystemExit, match="--lengths"):
        module.main(["--lengths", "0"])
