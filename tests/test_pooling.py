"""Mean pooling (--pooling mean): the head reads the masked mean of the hidden states, padding changes
nothing, and the adapter files carry it back onto a fresh model (ours and PEFT's)."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import randomize_adapters, tiny_model

import autolora
from autolora.config import PipelineConfig
from autolora.io.peft_export import PEFT_README, export_peft
from autolora.tuner.pooling import CONFIG_KEY, mean_pooling, pooling_of

IDS = torch.tensor([[1, 5, 7, 9, 11, 2], [3, 4, 8, 0, 0, 0]])
MASK = (IDS != 0).long()


def _pooled_model(seed: int = 0):
    torch.manual_seed(seed)
    model = mean_pooling(tiny_model("bert"))
    torch.nn.init.normal_(model.classifier.weight)
    return model


def test_head_reads_the_mean_over_real_tokens():
    model = _pooled_model()
    with torch.no_grad():
        logits = model(input_ids=IDS, attention_mask=MASK).logits
        hidden = model.bert(input_ids=IDS, attention_mask=MASK).last_hidden_state
        m = MASK.unsqueeze(-1).float()
        expected = model.classifier((hidden * m).sum(1) / m.sum(1))
    torch.testing.assert_close(logits, expected)
    assert pooling_of(model) == "mean" and getattr(model.config, CONFIG_KEY) == "mean"
    assert not any("pooler" in n for n, _ in model.named_parameters())  # nothing left to train there


def test_padding_changes_nothing():
    model = _pooled_model()
    short = IDS[1:, :3]
    with torch.no_grad():
        alone = model(input_ids=short, attention_mask=torch.ones_like(short)).logits
        padded = model(input_ids=IDS, attention_mask=MASK).logits[1:]
    torch.testing.assert_close(alone, padded)


def test_applying_twice_and_deepcopy_keep_one_hook_each():
    model = _pooled_model()
    assert mean_pooling(model) is model
    assert len(model.bert._forward_pre_hooks) == 1
    twin = copy.deepcopy(model)
    with torch.no_grad():
        a = model(input_ids=IDS, attention_mask=MASK).logits
        b = twin(input_ids=IDS, attention_mask=MASK).logits
    torch.testing.assert_close(a, b)
    assert twin.bert.pooler is not model.bert.pooler


def test_a_model_without_a_pooler_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        mean_pooling(tiny_model("roberta"))  # its classification head reads [CLS] itself


def test_config_names_a_bad_pooling():
    with pytest.raises(ValueError, match="pooling: expected model or mean, got 'max'"):
        PipelineConfig(pooling="max").validate()


def test_load_model_refuses_mean_pooling_without_a_sequence_head():
    from autolora.models import load_model

    with pytest.raises(ValueError, match="pooling: 'mean' pools a sequence"):
        load_model("unused", "token-classification", 3, pooling="mean")


def test_adapter_files_carry_mean_pooling(tmp_path):
    from peft import PeftModel

    torch.manual_seed(1)
    base_state = {k: v.clone() for k, v in tiny_model("bert").state_dict().items()}
    model = tiny_model("bert")
    model.load_state_dict(base_state)
    mean_pooling(model)
    autolora.inject(model, mode="fixed", rank=2, trainable=["classifier"])
    randomize_adapters(model, scale=0.2)
    with torch.no_grad():
        ours = model(input_ids=IDS, attention_mask=MASK).logits
    autolora.save_adapter(model, tmp_path / "ours", ["classifier"])
    export_peft(model, tmp_path / "peft", ["classifier"])

    fresh = tiny_model("bert")
    fresh.load_state_dict(base_state)
    autolora.load_adapter(fresh, tmp_path / "ours")
    assert pooling_of(fresh) == "mean"
    assert "mean_pooling" in (tmp_path / "peft" / PEFT_README).read_text()
    plain = tiny_model("bert")
    plain.load_state_dict(base_state)
    peft = PeftModel.from_pretrained(mean_pooling(plain), tmp_path / "peft").eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(input_ids=IDS, attention_mask=MASK).logits, ours)
        theirs = peft(input_ids=IDS, attention_mask=MASK).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
