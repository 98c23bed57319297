"""The whole pipeline end to end on tiny models: every task type, export to PEFT, resume, NaN, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from pipeline_fixtures import (
    FAST,
    cola,
    on_retrain_step,
    on_search_step,
    run,
    save_tiny_bert,
    save_tiny_gpt2,
    write_data_to_text,
    write_ner,
    write_regression,
)

import autolora
from autolora.cli import main
from autolora.config import load_config
from autolora.io.adapter_format import WEIGHTS_NAME
from autolora.io.plots import FIGURES
from autolora.pipeline import prepare
from autolora.train.host import NonFiniteLoss

pytestmark = pytest.mark.slow  # whole runs: search, selection, retraining, evaluation


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def test_classification_end_to_end_and_peft_reproduces_logits(bert_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "run"
    summary = run(bert_dir, out, **cola())
    for name in [
        "config.json",
        "ranks.json",
        "alpha_history.json",
        "rank_heatmap.png",
        "alpha_trajectories.png",
        "metrics.json",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "autolora_adapter/autolora_config.json",
    ]:
        assert (out / name).exists(), name
    ranks = json.loads((out / "ranks.json").read_text())["ranks"]
    assert len(ranks) == 4 and all(1 <= r <= 8 for r in ranks.values())
    assert summary["ranks"] == ranks and -1 <= summary["eval"]["matthews_correlation"] <= 1
    history = json.loads((out / "alpha_history.json").read_text())["history"]
    assert len(history) == 6 and set(history[-1]["alpha"]) == set(ranks)
    peft_config = json.loads((out / "adapter/adapter_config.json").read_text())
    assert peft_config["rank_pattern"] == ranks and set(peft_config["alpha_pattern"]) == set(ranks)

    tok = AutoTokenizer.from_pretrained(bert_dir)
    batch = tok(["the cat sat on the mat .", "mat the on sat"], return_tensors="pt", padding=True)
    ours = AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2)
    autolora.load_adapter(ours, out / "autolora_adapter")
    peft = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(bert_dir, num_labels=2), out / "adapter"
    )
    with torch.no_grad():
        expected, got = ours.eval()(**batch).logits, peft.eval()(**batch).logits
    assert autolora.current_ranks(ours) == ranks
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_regression_end_to_end(bert_dir, tmp_path):
    train, dev = write_regression(tmp_path / "train.tsv", 40), write_regression(tmp_path / "dev.tsv", 12)
    summary = run(
        bert_dir,
        tmp_path / "run",
        **{"data.task": "regression", "data.train_file": str(train), "data.eval_file": str(dev)},
    )
    assert summary["metric"] == "spearman" and {"pearson", "spearman"} <= set(summary["eval"])


def test_token_classification_end_to_end(bert_dir, tmp_path):
    train, dev = write_ner(tmp_path / "train.jsonl", 32), write_ner(tmp_path / "dev.jsonl", 8)
    summary = run(
        bert_dir,
        tmp_path / "run",
        **{"data.task": "token-classification", "data.train_file": str(train), "data.eval_file": str(dev)},
    )
    assert summary["metric"] == "f1" and 0 <= summary["eval"]["f1"] <= 1


@pytest.mark.parametrize("hypergradient, fd_scheme", [("second-order", "central"), ("exact", "forward")])
def test_causal_lm_end_to_end_on_gpt2(gpt2_dir, tmp_path, hypergradient, fd_scheme):
    train, dev = (
        write_data_to_text(tmp_path / "train.jsonl", 24),
        write_data_to_text(tmp_path / "dev.jsonl", 6),
    )
    summary = run(
        gpt2_dir,
        tmp_path / "run",
        hypergradient=hypergradient,
        fd_scheme=fd_scheme,
        **{"data.task": "causal-lm", "data.train_file": str(train), "data.eval_file": str(dev)},
    )
    assert summary["metric"] == "perplexity" and summary["eval"]["perplexity"] > 1
    assert all(name.endswith(("adapters.q", "adapters.v")) for name in summary["ranks"])


def test_resume_after_interruption_gives_identical_ranks(bert_dir, tmp_path, monkeypatch, capsys):
    full = run(bert_dir, tmp_path / "full", **cola())

    def dying(n, step):
        if n == 5:
            raise KeyboardInterrupt  # as if killed after the checkpoint of step 4
        return step()

    restore = on_search_step(monkeypatch, dying)
    with pytest.raises(KeyboardInterrupt):
        run(bert_dir, tmp_path / "cut", **cola())
    assert sorted(p.name for p in (tmp_path / "cut/search").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    restore()
    capsys.readouterr()
    resumed = run(bert_dir, tmp_path / "cut", resume=True, **cola())
    assert "autolora: resuming the search after step 4 (" in capsys.readouterr().err
    assert resumed["ranks"] == full["ranks"]
    alpha = [json.loads((tmp_path / d / "ranks.json").read_text())["alpha"] for d in ("full", "cut")]
    assert alpha[0] == alpha[1]
    assert resumed["eval"] == full["eval"]


def test_beta_moves_only_after_its_warm_up_and_every_beta_every_steps(bert_dir, tmp_path):
    run(bert_dir, tmp_path, beta_warmup_steps=1, beta_every=2, **cola())
    history = json.loads((tmp_path / "alpha_history.json").read_text())["history"]
    assert [("loss_val" in h) for h in history] == [False, True, False, True, False, True]
    alphas = [h["alpha"] for h in history]  # beta steps at 1, 3 and 5: the warm-up's end, then every 2
    assert [alphas[i] != alphas[i - 1] for i in range(1, 6)] == [True, False, True, False, True]


def _adapters_equal(tmp_path, a: str, b: str) -> bool:
    from safetensors.torch import load_file

    weights = [load_file(tmp_path / d / "autolora_adapter" / WEIGHTS_NAME) for d in (a, b)]
    return weights[0].keys() == weights[1].keys() and all(
        torch.equal(weights[0][k], weights[1][k]) for k in weights[0]
    )


def test_warm_retraining_resumes_inside_the_retrain_phase(bert_dir, tmp_path, monkeypatch):
    """Warm retraining turns the searched model into the fixed one in place; a run cut during
    retraining rebuilds that model from search/result.pt and continues from retraining's checkpoint,
    its eval curve included."""
    full = run(bert_dir, tmp_path / "full", retrain_init="warm", eval_every=1, **cola())
    assert [p["step"] for p in full["eval_curve"]] == [1, 2, 3, 4]
    assert {k: v for k, v in full["eval_curve"][-1].items() if k != "step"} == full["eval"]
    plain = run(bert_dir, tmp_path / "plain", retrain_init="warm", **cola())
    assert plain["eval"] == full["eval"] and plain["eval_curve"] is None  # scoring left training alone

    def cut(n, trainer, step):
        if n == 3:
            raise KeyboardInterrupt  # as if killed after the checkpoint of retraining step 2
        return step()

    restore = on_retrain_step(monkeypatch, cut)
    with pytest.raises(KeyboardInterrupt):
        run(bert_dir, tmp_path / "cut", retrain_init="warm", eval_every=1, **cola())
    assert [p.name for p in (tmp_path / "cut/retrain").glob("checkpoint-*")] == ["checkpoint-2"]
    restore()
    resumed = run(bert_dir, tmp_path / "cut", retrain_init="warm", resume=True, eval_every=1, **cola())
    assert resumed["ranks"] == full["ranks"]
    assert resumed["eval"] == full["eval"] and resumed["eval_curve"] == full["eval_curve"]
    assert _adapters_equal(tmp_path, "full", "cut")


def test_linear_retrain_schedule_falls_to_zero_and_resumes_where_it_was(bert_dir, tmp_path, monkeypatch):
    """--retrain-schedule linear: step n of N runs at lr * (1 - (n - 1) / N); a run cut during
    retraining resumes on the same rates and ends with the same adapters; resuming the constant
    schedule's run with the linear one is refused, naming the option."""
    lrs, cut = [], {"at": None}

    def watched(n, trainer, step):
        if n == cut["at"]:
            raise KeyboardInterrupt  # as if killed after the checkpoint of retraining step 2
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return step()

    on_retrain_step(monkeypatch, watched)
    run(bert_dir, tmp_path / "constant", **cola())
    assert lrs == pytest.approx([1e-2] * 4)
    lrs.clear()
    run(bert_dir, tmp_path / "full", retrain_schedule="linear", **cola())
    assert lrs == pytest.approx([1e-2, 0.75e-2, 0.5e-2, 0.25e-2])
    lrs.clear()
    cut["at"] = 3
    with pytest.raises(KeyboardInterrupt):
        run(bert_dir, tmp_path / "cut", retrain_schedule="linear", **cola())
    cut["at"] = None
    resumed = run(bert_dir, tmp_path / "cut", retrain_schedule="linear", resume=True, **cola())
    assert lrs == pytest.approx([1e-2, 0.75e-2, 0.5e-2, 0.25e-2])  # two before the cut, two after
    assert _adapters_equal(tmp_path, "full", "cut")
    assert resumed["eval"] == json.loads((tmp_path / "full/metrics.json").read_text())["eval"]
    with pytest.raises(ValueError, match="resume: .* retrain_schedule: was 'constant', now 'linear'"):
        run(bert_dir, tmp_path / "constant", retrain_schedule="linear", resume=True, **cola())


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(bert_dir, tmp_path, monkeypatch):
    def nan_at_3(n, step):
        out = step()
        return {**out, "loss_tr": torch.tensor(float("nan"))} if n == 3 else out

    on_search_step(monkeypatch, nan_at_3)
    with pytest.raises(NonFiniteLoss, match=r"search: non-finite loss .* at step 3; the checkpoints"):
        run(bert_dir, tmp_path / "run", **cola())
    assert [p.name for p in (tmp_path / "run/search").glob("checkpoint-*")] == ["checkpoint-2"]


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"targets": ["q_proj"]}, "targets: 'q_proj' matches no module"),
        ({"data.train_file": "missing.tsv", "data.eval_file": "missing.tsv"}, "missing.tsv"),
        ({"k": 0}, "k: expected"),
        ({"fd_scheme": "backward"}, "fd_scheme: expected"),
        ({"beta_every": 0}, "beta_every: expected an integer >= 1, got 0"),
    ],
)
def test_bad_input_fails_before_training(bert_dir, tmp_path, overrides, words, capsys):
    args = [
        "run",
        "--model",
        str(bert_dir),
        "--output-dir",
        str(tmp_path / "run"),
        "--format",
        "cola",
        "--no-progress",
    ]
    for key, value in overrides.items():
        flag = "--" + key.removeprefix("data.").replace("_", "-")
        args += [flag, *(value if isinstance(value, list) else [str(value)])]
    assert main(args) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written, not even the folder


def test_unwritable_output_dir_fails_before_training(bert_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "--model", str(bert_dir), "--output-dir", str(blocker / "out"), "--no-progress"]) == 2
    assert "output_dir: cannot create" in capsys.readouterr().err


def test_unknown_config_option_is_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1.0}))
    with pytest.raises(ValueError, match=r"config: unknown option\(s\) \['lr'\]"):
        load_config(path)


def test_large_batch_options_end_to_end(bert_dir, tmp_path):
    summary = run(
        bert_dir,
        tmp_path / "run",
        precision="bf16",
        grad_accum=2,
        gradient_checkpointing=True,
        selection="sigmoid",
        hypergradient="first-order",
        **cola(),
    )
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["precision"] == "bf16" and config["grad_accum"] == 2
    assert all(1 <= r <= 8 for r in summary["ranks"].values())


def test_trainable_head_alias_adds_modules_to_the_new_head(bert_dir, tmp_path):
    options = {"model": str(bert_dir), "output_dir": str(tmp_path / "run"), **FAST, **cola()}
    cfg = load_config(None, {**options, "trainable": ["@head", "pooler"]})
    prep = prepare(cfg)
    assert prep.trainable == ["classifier", "pooler"]
    trained = {n.rsplit(".", 1)[0] for n, p in prep.model.named_parameters() if p.requires_grad}
    assert {"classifier", "bert.pooler.dense"} <= trained
    assert not any(n.startswith("bert.encoder") and not n.endswith(("query", "value")) for n in trained)


@pytest.mark.parametrize("background", [True, False])
def test_the_plots_are_drawn_and_a_failing_plot_fails_the_run(bert_dir, tmp_path, monkeypatch, background):
    """The plots come from a child process while retraining runs (a free core) or at once (none);
    either way they are written, and a failure to write them fails the run."""
    monkeypatch.setattr("autolora.pipeline.spare_core", lambda device: background)
    run(bert_dir, tmp_path / "ok", **cola())
    assert all((tmp_path / "ok" / name).stat().st_size > 1000 for name in FIGURES)
    (tmp_path / "bad" / "rank_heatmap.png").mkdir(parents=True)  # a directory where the figure goes
    with pytest.raises((RuntimeError, OSError), match="rank_heatmap.png"):
        run(bert_dir, tmp_path / "bad", **cola())
