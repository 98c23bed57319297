"""What an output folder holds, checked before a run writes into it: a finished run is never replaced
without --overwrite-output-dir, an unfinished one is continued only under --resume and only with the
options and data it was started with.

config.json records the options and the data's fingerprint (a hash of each data file); --resume
compares them with this run's and lists every difference that matters to the checkpoints (options
that only change how a run is shown or where it logs may differ).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from autolora.config import PipelineConfig
from autolora.errors import InputError

CONFIG_NAME = "config.json"
FINISHED = "metrics.json"  # written last: a folder holding it holds a finished run
PHASE_DIRS = ("search", "retrain")
# Options a resumed run may change: they do not touch what the checkpoints hold.
FREE_ON_RESUME = frozenset(
    {"resume", "progress", "debug", "overwrite_output_dir", "report_to", "dist_timeout", "output_dir",
     "eval_batch_size", "save_total_limit", "log_every", "checkpoint_every", "save_merged"}
)  # fmt: skip


def data_fingerprint(config: PipelineConfig) -> dict[str, str]:
    """sha256 of each data file the run reads (a Hub dataset is named by its id and configuration)."""
    out = {}
    for key in ("train_file", "eval_file"):
        path = getattr(config.data, key)
        if path is not None and Path(path).is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out[key] = digest.hexdigest()
    if config.data.hub_dataset is not None:
        out["hub_dataset"] = f"{config.data.hub_dataset}/{config.data.hub_config}"
    return out


def run_record(config: PipelineConfig) -> dict:
    """What config.json holds: the options and the data's fingerprint."""
    return {**config.to_dict(), "data_fingerprint": data_fingerprint(config)}


def _flat(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict) and key != "data_fingerprint":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def differences(saved: dict, now: dict) -> list[str]:
    """'name: was X, now Y' for every option (and the data fingerprint) a resume must keep."""
    old, new = _flat(saved), _flat(now)
    keys = sorted((set(old) | set(new)) - FREE_ON_RESUME)
    return [f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check_run_folder(config: PipelineConfig) -> None:
    """Refuse, before anything is written, a folder this run must not write into.

    Raises:
        InputError: output_dir holds a finished run (without overwrite_output_dir) or an unfinished
            one (without resume or overwrite_output_dir), or resume finds checkpoints written with
            other options or data (each difference listed).
    """
    out = Path(config.output_dir)
    started = any((out / d).is_dir() for d in PHASE_DIRS)
    if config.overwrite_output_dir and not config.resume:
        return
    if config.resume:
        saved = out / CONFIG_NAME
        if not started:
            return  # nothing to resume: the run starts afresh
        if not saved.is_file():
            raise InputError(
                "resume", f"{out} holds checkpoints but no {CONFIG_NAME}: not a run autolora can resume"
            )
        try:
            record = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError("resume", f"cannot read the run's options ({err})", path=str(saved)) from None
        diff = differences(record, run_record(config))
        if diff:
            raise InputError(
                "resume",
                f"{out} holds checkpoints of a run with other options or data; resume it with the same "
                "ones, or start afresh in another folder (or with --overwrite-output-dir): "
                + "; ".join(diff),
            )
        check_checkpoints(out)
        return
    if (out / FINISHED).exists():
        raise InputError(
            "output_dir",
            f"{out} holds a finished run ({FINISHED}); choose another folder, or pass "
            "--overwrite-output-dir to replace it",
        )
    if started:
        raise InputError(
            "output_dir",
            f"{out} holds an unfinished run (its checkpoints in {', '.join(PHASE_DIRS)}/); pass --resume "
            "to continue it, or --overwrite-output-dir to start afresh",
        )


def check_checkpoints(out: Path) -> None:
    """Read what a resume will read (search/result.pt and each phase's latest autolora_state.pt), so a
    torn file is named now rather than after a phase has run again.

    Raises:
        InputError: a corrupt or truncated file, named (autolora.train.state.load_checkpoint).
    """
    from autolora.integrations.trainer_state import last_complete_checkpoint
    from autolora.train.state import load_checkpoint

    load_checkpoint(out / "search" / "result.pt")
    for d in PHASE_DIRS:
        last = last_complete_checkpoint(out / d)
        if last is not None:
            load_checkpoint(Path(last) / "autolora_state.pt")


def clear_checkpoints(config: PipelineConfig) -> None:
    """--overwrite-output-dir: the previous run's checkpoints and its finished mark (metrics.json) go,
    once every check has passed; its other files are replaced as this run writes them."""
    if config.overwrite_output_dir and not config.resume:
        out = Path(config.output_dir)
        for d in PHASE_DIRS:
            shutil.rmtree(out / d, ignore_errors=True)
        (out / FINISHED).unlink(missing_ok=True)
