"""AutoLoraTrainer: the search inside transformers.Trainer equals BilevelSearch, accumulates like one big
batch, resumes to the same ranks, and saves an adapter PEFT loads. Tiny BERT from a config, CPU."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import autolora
from autolora.config import PipelineConfig
from autolora.data.splits import split_train_val
from autolora.integrations.arguments import AutoLoraArguments
from autolora.integrations.trainer import AutoLoraTrainer
from autolora.search import BilevelSearch, SearchStepConfig
from autolora.search_options import SearchOptions
from autolora.train.stream import BatchStream
from autolora.tuner.rank_rules import effective_rank, rule_weights
from autolora.tuner.ranks import proportional_ranks
from autolora.tuner.selection import select_ranks, update_norms

ROOT = Path(__file__).resolve().parents[1]
LR, LR_BETA, SEED = 1e-2, 5e-2, 42


def _example():
    path = ROOT / "examples" / "trainer_autolora.py"
    spec = importlib.util.spec_from_file_location("trainer_autolora", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dropout: bool = False) -> nn.Module:
    model = EXAMPLE.tiny_model(seed=0)
    if not dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    autolora.inject(model, rank=4, trainable=["classifier"])
    return model


def _args(out, **kw):
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=8,
        learning_rate=LR,
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
        max_steps=3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=SEED,
        disable_tqdm=True,
    )
    return TrainingArguments(**{**base, **kw})


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class _Capture:
    """A callback keeping the trainable parameters after a given optimizer step of the search (the
    first run: retraining counts its steps from 1 again)."""

    def __new__(cls, at_step: int):
        from transformers import TrainerCallback

        class Capture(TrainerCallback):
            state: dict | None = None

            def on_step_end(self, args, state, control, model=None, **kw):
                if state.global_step == at_step and self.state is None:
                    self.state = _trainable(model)

        return Capture()


def _trainer(
    out, model, search_steps=2, callbacks=(), hypergradient="second-order", search=None, **kw
) -> AutoLoraTrainer:
    return AutoLoraTrainer(
        model=model,
        args=_args(out, **kw),
        train_dataset=EXAMPLE.tiny_data(),
        callbacks=list(callbacks),
        autolora=AutoLoraArguments(
            search_steps=search_steps, lr_beta=LR_BETA, hypergradient=hypergradient, **(search or {})
        ),
    )


def _reference_step(model: nn.Module, hypergradient: str = "second-order") -> dict[str, torch.Tensor]:
    """One BilevelSearch.step on the batches the trainer documents: the seeded 1:1 split of the
    training data, D_tr's stream seeded with args.seed and D_val's with args.seed + 1."""
    from transformers import default_data_collator

    d_tr, d_val = split_train_val(EXAMPLE.tiny_data(), SEED, stratify=True)
    tr = BatchStream(d_tr, 8, default_data_collator, SEED, torch.device("cpu"))
    val = BatchStream(d_val, 8, default_data_collator, SEED + 1, torch.device("cpu"))
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    search = BilevelSearch(
        model,
        inner,
        outer,
        torch.optim.AdamW(inner, lr=LR, weight_decay=0.0),
        torch.optim.Adam(outer, lr=LR_BETA),
        SearchStepConfig(hypergradient, xi=LR),
    )
    model.train()
    search.step(tr.next(), val.next())
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
@pytest.mark.parametrize(
    "checkpointing, hypergradient",
    [(False, "second-order"), (True, "second-order"), (False, "none")],
    ids=["plain", "activation-checkpointing", "w-alone"],
)
def test_search_step_equals_bilevel_search(tmp_path, checkpointing, hypergradient):
    model = _model()
    start = _trainable(model)
    expected = _reference_step(copy.deepcopy(model), hypergradient)
    capture = _Capture(at_step=1)
    _trainer(
        tmp_path,
        model,
        callbacks=[capture],
        max_steps=2,
        search_steps=1,
        hypergradient=hypergradient,
        activation_checkpointing=checkpointing,
    ).train()
    assert capture.state is not None and capture.state.keys() == expected.keys()
    betas = [n for n in expected if "beta" in n]
    assert betas and all(torch.equal(expected[n], start[n]) == (hypergradient == "none") for n in betas)
    for name, value in expected.items():
        torch.testing.assert_close(capture.state[name], value, msg=name)


@pytest.mark.slow
def test_the_search_records_equal_a_bilevel_loop_with_dropout(tmp_path):
    """Six search steps with dropout on (beta every 2): the trainer's records (losses, alpha, sizes and
    ranks, read after W's step) equal those of BilevelSearch driven by hand on the same streams, from
    the same RNG state: the Trainer's own draws between steps do not reach the search's dropout."""
    from transformers import default_data_collator

    from autolora.search import beta_moves
    from autolora.search.tracker import SearchTracker
    from autolora.tuner.allocation import RankPolicy

    steps, every = 6, 2
    torch.manual_seed(7)
    model = _model(dropout=True)
    d_tr, d_val = split_train_val(EXAMPLE.tiny_data(), SEED, stratify=True)
    tr = BatchStream(d_tr, 8, default_data_collator, SEED, torch.device("cpu"))
    val = BatchStream(d_val, 8, default_data_collator, SEED + 1, torch.device("cpu"))
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    search = BilevelSearch(
        model, inner, outer, torch.optim.AdamW(inner, lr=LR, weight_decay=0.0),
        torch.optim.Adam(outer, lr=LR_BETA), SearchStepConfig(xi=LR),
    )  # fmt: skip
    named = [(n, a) for n, a in autolora.adapters(model) if a.beta is not None]
    tracker = SearchTracker(named, policy=RankPolicy.of(len(named), 4), window=50)
    expected: list[dict] = []
    model.train()
    for done in range(steps):
        losses = (
            search.step(tr.next(), val.next())
            if beta_moves(done, "second-order", 0, every)
            else search.inner_step(tr.next())
        )
        expected.append(tracker.record(done + 1, losses, expected))
    torch.manual_seed(7)
    trainer = _trainer(tmp_path, _model(dropout=True), search_steps=steps, max_steps=steps + 1,
                       search={"beta_every": every})  # fmt: skip
    trainer.train()
    assert trainer.search_result.history == expected


@pytest.mark.slow
def test_beta_moves_after_its_warm_up_and_every_beta_every_steps(tmp_path):
    """Warm-up 1, beta every 2, four search steps: beta moves at steps 1 and 3 (0-based), W at all."""
    model = _model()
    states = [_trainable(model)]
    captures = [_Capture(at_step=i) for i in (1, 2, 3, 4)]
    search = {"beta_warmup_steps": 1, "beta_every": 2}
    _trainer(tmp_path, model, callbacks=captures, max_steps=5, search_steps=4, search=search).train()
    states += [c.state for c in captures]
    betas = [n for n in states[0] if "beta" in n]
    weights = [n for n in states[0] if n.endswith(".U")]  # V's gradient is 0 while U is (step 0)
    assert betas and weights
    for i in range(4):
        before, after = states[i], states[i + 1]
        assert all(not torch.equal(before[n], after[n]) for n in weights), i
        assert [torch.equal(before[n], after[n]) for n in betas] == [i not in (1, 3)] * len(betas), i


@pytest.mark.parametrize("field, value", [("beta_every", 0), ("beta_warmup_steps", -1), ("beta_every", 1.5)])
def test_beta_schedule_arguments_are_checked(field, value):
    with pytest.raises(ValueError, match=f"{field}: expected an integer >= "):
        AutoLoraArguments(search_steps=2, **{field: value})


@pytest.mark.parametrize("share", ["selection", "norm"])
def test_rank_total_is_shared_from_the_model_at_the_switch(tmp_path, share):
    """rank_total 10 over the tiny model's 4 adapters of k=4: the ranks the switch keeps are 10 shared by
    the unrounded effective ranks above one (selection) or by the searched updates' norms (norm), both
    read from the model as the search's last step left it."""
    capture = _Capture(at_step=2)
    search = {"rank_total": 10, "rank_share": share}
    trainer = _trainer(tmp_path, _model(), callbacks=[capture], max_steps=3, search=search)
    trainer.train()
    searched = _model()
    searched.load_state_dict(capture.state, strict=False)
    selected, norms = select_ranks(searched, "effective-rank"), update_norms(searched)
    above = {n: float(effective_rank(rule_weights("effective-rank", a.U, a.V, a.alpha(), a.scaling))) - 1
             for n, a in autolora.adapters(searched)}  # fmt: skip
    expected = proportional_ranks(above if share == "selection" else norms, 10, 4)
    record = json.loads((tmp_path / "ranks.json").read_text())
    assert record["ranks"] == trainer.ranks == autolora.current_ranks(trainer.model) == expected
    assert sum(expected.values()) == 10 and record["ranks_selected"] == selected
    if share == "norm":
        assert record["update_norms"].keys() == norms.keys() and min(norms.values()) > 0
        for name, value in norms.items():
            assert record["update_norms"][name] == pytest.approx(value, rel=1e-6), name
    else:
        assert record["update_norms"] is None


def test_rank_total_and_share_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"rank_share: expected selection without a budget"):
        AutoLoraArguments(search_steps=2, rank_share="norm", rank_budget=None)
    with pytest.raises(ValueError, match=r"rank_budget: expected none or a finite number >= 1, got 0.5"):
        AutoLoraArguments(search_steps=2, rank_budget=0.5)
    with pytest.raises(ValueError, match="rank_share: expected selection or norm, got 'size'"):
        AutoLoraArguments(search_steps=2, rank_total=8, rank_share="size")
    with pytest.raises(ValueError, match="rank_total: expected none or an integer >= 1, got 0"):
        AutoLoraArguments(search_steps=2, rank_total=0)
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=r"rank_total: expected 4\.\.16 for 4 adapters of k=4, got 17"):
        _trainer(tmp_path, model, search={"rank_total": 17})
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


@pytest.mark.slow
def test_accumulation_2x4_equals_batch_8(tmp_path):
    """Dropout off, equal-length sequences: the mean over two micro-batches of 4 is the mean over 8,
    and both runs draw the same 8 examples, so W and beta move alike."""
    states = []
    for batch, accum in ((8, 1), (4, 2)):
        capture = _Capture(at_step=1)
        _trainer(
            tmp_path / f"b{batch}",
            _model(),
            callbacks=[capture],
            max_steps=2,
            search_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
        ).train()
        states.append(capture.state)
    for name, value in states[0].items():
        torch.testing.assert_close(states[1][name], value, msg=name)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    trainer = EXAMPLE.main(["--tiny", "--output-dir", str(out), "--max-steps", "6", "--search-steps", "3"])
    return out, trainer


@pytest.mark.slow
def test_example_runs_search_switch_and_retrain(example_run):
    out, trainer = example_run
    assert trainer.state.global_step == 3 and trainer.phase == "retrain"  # retraining's 3 of the 6
    saved = json.loads((out / "ranks.json").read_text())
    assert saved["ranks"] == trainer.ranks == autolora.current_ranks(trainer.model)
    assert not autolora.selection_parameters(trainer.model)  # fixed-rank adapters, no beta left
    assert all(1 <= r <= 8 for r in trainer.ranks.values())
    assert (out / "search" / "result.pt").exists()
    assert (
        torch.load(out / "retrain" / "checkpoint-2" / "autolora_state.pt", weights_only=False)["phase"]
        == "retrain"
    )


@pytest.mark.slow
def test_saved_adapter_loads_in_peft_with_equal_logits(example_run):
    from peft import PeftModel

    out, trainer = example_run
    peft = PeftModel.from_pretrained(EXAMPLE.tiny_model(seed=0), out).eval()
    ids = torch.tensor(EXAMPLE.tiny_data(n=4, seed=9)["input_ids"])
    with torch.no_grad():
        ours = trainer.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(peft(input_ids=ids).logits, ours, rtol=1e-5, atol=1e-5)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["rank_pattern"] == trainer.ranks


def _run(out, resume=None, max_steps=8):
    trainer = _trainer(
        out, _model(dropout=True), search_steps=4, max_steps=max_steps, save_steps=2, save_strategy="steps"
    )
    trainer.train(resume_from_checkpoint=resume)
    alpha = json.loads((out / "ranks.json").read_text())
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return alpha, params


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    return out, *_run(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "cut",
    ["search/checkpoint-2", "search/checkpoint-4", "retrain/checkpoint-2", "retrain/checkpoint-4"],
    ids=["mid-search", "search-done", "mid-retrain", "retrain-done"],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, uninterrupted, cut):
    """Dropout on: the resumed run must also restore the RNG, beta's Adam, the stream positions and
    the search's records; a retraining checkpoint resumes without searching again."""
    out, alpha, params = uninterrupted
    state = torch.load(out / cut / "autolora_state.pt", weights_only=False)
    assert state["phase"] == cut.split("/")[0]
    resumed_alpha, resumed_params = _run(tmp_path, resume=str(out / cut))
    assert resumed_alpha["ranks"] == alpha["ranks"]
    for name, a in alpha["alpha"].items():
        torch.testing.assert_close(torch.tensor(resumed_alpha["alpha"][name]), torch.tensor(a), msg=name)
    for name, value in params.items():
        torch.testing.assert_close(resumed_params[name], value, msg=name)


def test_arguments_are_the_pipelines_search_options():
    """AutoLoraArguments inherits SearchOptions: the same fields, defaults and checks as `autolora run`."""
    args, config = AutoLoraArguments(search_steps=2), PipelineConfig()
    for f in dataclasses.fields(SearchOptions):
        assert getattr(args, f.name) == getattr(config, f.name), f.name
    assert AutoLoraArguments(search_steps=2, rank_rule="alpha-avg").rank_rule == "alpha-avg"
    step = AutoLoraArguments(search_epochs=0.5).step_config(3e-4)
    assert (step.xi, step.fd_r, step.fd_scheme) == (3e-4, SearchStepConfig().fd_r, config.fd_scheme)
    for field, value, says in [
        ("lr_beta", float("nan"), "lr_beta: expected a positive finite number, got nan"),
        ("fd_r", float("inf"), "fd_r: expected a positive finite number, got inf"),
        ("split_seed", -1, "split_seed: expected none or an integer in 0..4294967295, got -1"),
        ("search_epochs", float("nan"), "search_epochs: expected none or a positive finite number, got nan"),
    ]:
        steps = {} if field == "search_epochs" else {"search_steps": 2}
        with pytest.raises(ValueError, match=re.escape(says)):
            AutoLoraArguments(**steps, **{field: value})


def test_bad_input_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="search_steps/search_epochs"):
        AutoLoraArguments()
    with pytest.raises(ValueError, match="lr_beta"):
        AutoLoraArguments(search_steps=2, lr_beta=0.0)
    with pytest.raises(ValueError, match="hypergradient"):
        AutoLoraArguments(search_steps=2, hypergradient="third-order")
    with pytest.raises(
        ValueError, match="rank_rule: expected spectrum or effective-rank with hypergradient 'none'"
    ):
        AutoLoraArguments(search_steps=2, hypergradient="none", rank_rule="alpha")
    plain = EXAMPLE.tiny_model()
    with pytest.raises(ValueError, match="model: has no AutoLoRA adapters"):
        _trainer(tmp_path, plain)
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="search_steps: the search takes 3 of the run's 3"):
        _trainer(tmp_path, model, search_steps=3, max_steps=3).train()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n


@pytest.mark.slow
def test_two_processes_match_one_with_twice_the_batch(tmp_path):
    """gloo, 2 CPU processes with batch 4 against 1 with batch 8 (dropout off): the same examples, the
    search's gradients, v and hypergradients and retraining's gradients averaged across ranks."""
    from helpers import spawn_ranks
    from trainer_dist_worker import run_rank

    def launch(world: int, batch: int) -> list[dict]:
        results = [tmp_path / f"w{world}r{r}.json" for r in range(world)]
        out = str(tmp_path / f"out{world}")
        got, _ = spawn_ranks(run_rank, lambda r, port: (r, world, port, out, str(results[r]), batch), results)
        return [{"ok": False, "error": "no result"} if r is None else r for r in got]

    single = _trainer(tmp_path / "out1", _model(), search_steps=2, max_steps=3)
    single.train()
    pair = launch(2, 4)
    assert all(r["ok"] for r in pair), [r.get("error") for r in pair]
    assert pair[0]["world"] == 2 and pair[0]["ranks"] == pair[1]["ranks"] == single.ranks
    # The search: the same examples each step (one global batch of 8), gradients, v and
    # hypergradients averaged. fp32 sums in another order (per-rank means, then the all-reduce):
    # ~1e-6 relative per step; a missing average or other data moves alpha by 1e-3 or more.
    one, two = (json.loads((tmp_path / d / "ranks.json").read_text())["alpha"] for d in ("out1", "out2"))
    for name, value in one.items():
        torch.testing.assert_close(torch.tensor(two[name]), torch.tensor(value), rtol=0, atol=1e-6)
    # Retraining: the Trainer's own batches (its sampler shards them per rank, so not those of one
    # process); the averaged gradients keep the replicas identical.
    for name, value in pair[0]["params"].items():
        torch.testing.assert_close(torch.tensor(pair[1]["params"][name]), torch.tensor(value), rtol=0, atol=0)


def test_inject_like_reads_a_peft_lora_config():
    from peft import LoraConfig

    from autolora.integrations.peft_config import inject_like

    model = EXAMPLE.tiny_model()
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["value"], modules_to_save=["classifier"]
    )
    names = inject_like(model, config)
    assert names == [f"bert.encoder.layer.{i}.attention.self.value" for i in range(2)]
    layers = [a for _, a in autolora.adapters(model)]
    assert all(
        a.rank == 4 and a.lora_alpha == 8 and a.dropout.p == 0.1 and a.beta is not None for a in layers
    )
    assert model.classifier.weight.requires_grad and not model.bert.pooler.dense.weight.requires_grad
    regex = EXAMPLE.tiny_model()
    inject_like(regex, LoraConfig(r=2, target_modules=r".*layer\.0\.attention\.self\.query"))
    assert [n for n, _ in autolora.adapters(regex)] == ["bert.encoder.layer.0.attention.self.query"]
    untouched = EXAMPLE.tiny_model()
    with pytest.raises(ValueError, match="lora_config: use_dora"):
        inject_like(untouched, LoraConfig(r=2, target_modules=["query"], use_dora=True))
    assert not list(autolora.adapters(untouched))
