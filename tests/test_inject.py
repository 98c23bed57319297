"""inject() on BERT, GPT-2 and LLaMA: identity at init, what trains, all-or-nothing errors."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_adapters, tiny_model

import autolora
from autolora import FusedAutoLoraLinear, SlicedAutoLoraLinear
from autolora.tuner.allocation import RankPolicy
from autolora.tuner.selection import policy_ranks

IDS = torch.tensor([[1, 5, 7, 9, 11, 2], [3, 4, 8, 10, 12, 13]])


def outputs(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {n: type(m) for n, m in model.named_modules()},
        {n: p.requires_grad for n, p in model.named_parameters()},
    )


def assert_unchanged(model, snap):
    state, types, grads = snap
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_identity_at_init_and_only_adapters_train(family):
    model = tiny_model(family)
    before = outputs(model)
    trainable = ["classifier"] if family == "bert" else []
    names = autolora.inject(model, trainable=trainable)
    assert len(names) == 2 * (family != "gpt2") * 2 + 2 * (family == "gpt2")
    torch.testing.assert_close(outputs(model), before, rtol=0, atol=0)
    train_names = {n for n, p in model.named_parameters() if p.requires_grad}
    for n in train_names:
        leaf = n.rsplit(".", 1)[-1]
        assert leaf in {"U", "V", "beta"} or n.startswith("classifier."), n
    assert len(autolora.adapter_parameters(model)) == 2 * len(list(autolora.adapters(model)))
    assert len(autolora.selection_parameters(model)) == len(list(autolora.adapters(model)))
    if family == "bert":
        assert {"classifier.weight", "classifier.bias"} <= train_names


def test_default_targets_by_family():
    bert, gpt2, llama = tiny_model("bert"), tiny_model("gpt2"), tiny_model("llama")
    assert all(n.endswith(("query", "value")) for n in autolora.inject(bert))
    assert all(n.endswith(("q_proj", "v_proj")) for n in autolora.inject(llama))
    assert all(n.endswith("c_attn") for n in autolora.inject(gpt2))
    layer = gpt2.transformer.h[0].attn.c_attn
    assert isinstance(layer, SlicedAutoLoraLinear) and set(layer.adapters) == {"q", "v"}


@pytest.mark.slow
def test_gpt2_k_slice_untouched_by_training():
    model = tiny_model("gpt2")
    autolora.inject(model)
    c_attn = model.transformer.h[0].attn.c_attn
    w0 = c_attn.base_layer.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=IDS, labels=IDS).loss.backward()
        opt.step()
    assert torch.equal(c_attn.base_layer.weight, w0)
    x = torch.randn(2, 4, 32)
    with torch.no_grad():
        y, base = c_attn(x), c_attn.base_layer(x)
    k = c_attn.slices["k"]
    assert torch.equal(y[..., k], base[..., k])
    assert not torch.allclose(y[..., c_attn.slices["q"]], base[..., c_attn.slices["q"]])
    assert not torch.allclose(y[..., c_attn.slices["v"]], base[..., c_attn.slices["v"]])


def test_matching_exact_suffix_and_regex():
    model = tiny_model("bert")
    exact = "bert.encoder.layer.1.attention.self.query"
    assert autolora.inject(model, [exact]) == [exact]
    model = tiny_model("bert")
    assert len(autolora.inject(model, ["self.value"])) == 2
    model = tiny_model("bert")
    got = autolora.inject(model, [r"re:.*layer\.0\.attention\.self\.(query|key)"])
    assert got == ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.key"]


def test_target_matching_nothing_lists_candidates_and_changes_nothing():
    model = tiny_model("bert")
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"targets: 'q_proj' matches no module.*attention\.self\.query"):
        autolora.inject(model, ["query", "q_proj"])
    assert_unchanged(model, snap)


def test_unsupported_module_type_changes_nothing():
    model = tiny_model("bert")
    snap = snapshot(model)
    with pytest.raises(TypeError, match="targets: module 'bert.embeddings.LayerNorm' is a LayerNorm"):
        autolora.inject(model, ["query", "embeddings.LayerNorm"])
    assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs, err", [({"rank": 0}, "rank"), ({"trainable": ["nohead"]}, "trainable")])
def test_bad_arguments_change_nothing(kwargs, err):
    model = tiny_model("llama")
    snap = snapshot(model)
    with pytest.raises(ValueError, match=err):
        autolora.inject(model, **kwargs)
    assert_unchanged(model, snap)


def test_bad_fused_parts_spec():
    with pytest.raises(ValueError, match="targets: 'c_attn\\[q,x\\]'"):
        autolora.inject(tiny_model("gpt2"), ["c_attn[q,x]"])


def test_double_injection_is_refused():
    model = tiny_model("bert")
    autolora.inject(model)
    with pytest.raises(ValueError, match="already has AutoLoRA adapters"):
        autolora.inject(model)


def test_rank_summary_and_fixed_ranks():
    model = tiny_model("bert")
    autolora.inject(model)
    randomize_adapters(model)
    summary = autolora.rank_summary(model, RankPolicy("alpha", None, "selection", 8))  # the paper's rule
    assert len(summary) == 4
    for row, (_, a) in zip(summary, autolora.adapters(model), strict=True):
        expected = sum(v >= 1 / 8 for v in torch.softmax(a.beta, 0).tolist())
        assert row["rank"] == expected >= 1 and row["k"] == 8
        assert abs(sum(row["alpha"]) - 1) < 1e-5
    assert "rank/k" in autolora.format_rank_summary(model)
    # by default: what `autolora run` applies, 4 ranks an adapter shared by the effective ranks
    default = autolora.current_ranks(model)
    assert default == policy_ranks(model, RankPolicy.of(4, 8))[2] and sum(default.values()) == 16
    assert [r["rank"] for r in autolora.rank_summary(model)] == list(default.values())
    fixed = tiny_model("bert")
    ranks = {"bert.encoder.layer.0.attention.self.query": 3}
    autolora.inject(fixed, mode="fixed", rank=2, ranks=ranks)
    got = autolora.current_ranks(fixed)
    assert got["bert.encoder.layer.0.attention.self.query"] == 3
    assert got["bert.encoder.layer.1.attention.self.value"] == 2
    assert autolora.selection_parameters(fixed) == []


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_merge_unload_matches_adapted_model(family):
    model = tiny_model(family)
    autolora.inject(model)
    randomize_adapters(model)
    adapted = outputs(model)
    autolora.merge(model)
    torch.testing.assert_close(outputs(model), adapted, rtol=1e-4, atol=1e-5)
    autolora.unmerge(model)
    torch.testing.assert_close(outputs(model), adapted, rtol=1e-4, atol=1e-5)
    autolora.unload(model)
    assert not list(autolora.adapter_layers(model))
    assert not any(isinstance(m, FusedAutoLoraLinear) for m in model.modules())
    torch.testing.assert_close(outputs(model), adapted, rtol=1e-4, atol=1e-5)
