"""Export to PEFT's layout: PeftModel.from_pretrained reproduces our logits, GPT-2's slices included."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_adapters, tiny_model

import autolora
from autolora.io.peft_export import export_peft

IDS = torch.tensor([[1, 5, 7, 9, 11, 2], [3, 4, 8, 10, 12, 13]])


@pytest.mark.parametrize("family, trainable", [("bert", ["classifier"]), ("gpt2", [])])
@pytest.mark.parametrize("mode", ["fixed", "search"])
def test_peft_reproduces_our_logits(tmp_path, family, trainable, mode):
    from peft import PeftModel

    torch.manual_seed(3)
    model = tiny_model(family)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    ranks = {name: 1 + i % 3 for i, (name, _) in enumerate(_names(family))}
    autolora.inject(
        model,
        mode=mode,
        rank=4 if mode == "search" else 2,
        ranks=ranks if mode == "fixed" else None,
        trainable=trainable,
    )
    randomize_adapters(model, scale=0.2)
    if trainable:
        torch.nn.init.normal_(model.classifier.weight)
    with torch.no_grad():
        ours = model(input_ids=IDS).logits
    export_peft(model, tmp_path, trainable)
    base = tiny_model(family)
    base.load_state_dict(base_state)
    peft = PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft(input_ids=IDS).logits, ours, rtol=1e-5, atol=1e-5)


def test_modules_to_save_names_the_trained_modules_only(tmp_path):
    """A trained module is named in full: its last name part alone ("dense") would make PEFT wrap, and
    train, every module of that name."""
    from peft import PeftModel
    from peft.utils import ModulesToSaveWrapper

    torch.manual_seed(4)
    model = tiny_model("bert")
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = ["classifier", "bert.pooler.dense"]
    autolora.inject(model, mode="fixed", rank=2, trainable=trainable)
    randomize_adapters(model, scale=0.2)
    with torch.no_grad():
        model.bert.pooler.dense.weight.normal_()
        ours = model(input_ids=IDS).logits
    export_peft(model, tmp_path, trainable)
    base = tiny_model("bert")
    base.load_state_dict(base_state)
    peft = PeftModel.from_pretrained(base, tmp_path).eval()
    wrapped = {n.removeprefix("base_model.model.") for n, m in peft.named_modules()
               if isinstance(m, ModulesToSaveWrapper)}  # fmt: skip
    assert wrapped == set(trainable)
    with torch.no_grad():
        torch.testing.assert_close(peft(input_ids=IDS).logits, ours, rtol=1e-5, atol=1e-5)


def _names(family):
    model = tiny_model(family)
    autolora.inject(model)
    return list(autolora.adapters(model))
