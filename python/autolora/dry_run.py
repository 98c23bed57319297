"""`autolora run --dry-run`: what a run would train on and how much, checked as a real run checks it.

It goes through autolora.pipeline.prepare() (the output folder's state, tokenizer, data, D_tr/D_val
split, the model, k and data.max_length against it: autolora.fits), so every input error a run would
report before training is reported here; it trains nothing and writes nothing.
"""

from __future__ import annotations

import json

import autolora
from autolora.config import PipelineConfig
from autolora.run_args import autolora_arguments, training_arguments


def dry_run(config: PipelineConfig) -> dict:
    """The resolved config, the data sizes and the search model's parameter counts."""
    from autolora.pipeline import prepare

    prep = prepare(config)
    task, model = prep.task, prep.model
    for retrain, steps in ((False, prep.search_steps), (True, prep.retrain_steps)):  # as a run builds them
        training_arguments(config, prep.device.type, retrain=retrain, steps=max(steps, 1))
    autolora_arguments(config, max(prep.search_steps, 1))
    adapters = [a for _, a in autolora.adapters(model)]
    return {
        "config": config.to_dict(),
        "task": task.task,
        "metric": task.metric,
        "sizes": {
            "train": len(task.train),
            "d_tr": len(prep.d_tr),
            "d_val": len(prep.d_val),
            "eval": len(task.eval),
        },
        "num_labels": task.num_labels,
        "label_names": task.label_names,
        "adapters": len(adapters),
        "components": sum(a.rank for a in adapters),
        "trainable_parameters": autolora.count_trainable(model),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "device": str(prep.device),
        "search_steps": prep.search_steps,
        "retrain_steps": prep.retrain_steps,
    }


def format_config(report: dict) -> str:
    """The resolved config as JSON: saved to a file, `--config FILE` runs it as it is."""
    return json.dumps(report["config"], indent=2)


def format_dry_run(report: dict) -> str:
    """A few summary lines: the task, the data sizes, the search model and its parameters."""
    s, cfg = report["sizes"], report["config"]
    labels = report["num_labels"]
    if report["label_names"]:
        labels = f"{labels} ({', '.join(map(str, report['label_names']))})"
    total, trainable = report["total_parameters"], report["trainable_parameters"]
    return "\n".join(
        [
            f"task: {report['task']} (metric {report['metric']}), labels: {labels}",
            f"data: train {s['train']} = D_tr {s['d_tr']} + D_val {s['d_val']}; eval {s['eval']} examples",
            f"search model: {report['adapters']} adapters of k = {cfg['k']} ({report['components']} "
            f"components) on {report['device']}",
            f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)",
            f"dry run: nothing trained, nothing written to {cfg['output_dir']}",
        ]
    )
