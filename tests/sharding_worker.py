"""One rank of the sharded-base runs (spawned by tests/test_sharding.py): a few search steps and a few
retraining steps on its half of each global batch, with the tiny BERT's frozen base sharded over the
ranks (FSDP2, gloo). Also what one process runs on the whole batch, for the comparison."""

from __future__ import annotations

import json
import os
import traceback

import torch

GLOBAL_BATCH, STEPS, LR, LR_BETA = 8, 3, 1e-2, 5e-2


def build(mode: str, family: str = "bert") -> torch.nn.Module:
    """A tiny model with adapters of rank 4, U and beta moved off zero so every gradient and
    hypergradient is non-trivial; dropout off (one process and two must see the same computation),
    eager attention (CPU SDPA has no double backward, which the 'exact' check needs).

    family: "bert" (a classifier, q/v adapters, the head trainable) or "gpt2" (an LM whose head is
    tied to the input embeddings, adapters on the fused c_attn's q and v slices)."""
    from helpers import randomize_adapters, tiny_model

    import autolora

    torch.manual_seed(0)
    if family == "bert":
        model = tiny_model(
            "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager"
        )
        autolora.inject(model, ["query", "value"], rank=4, mode=mode, trainable=["classifier"])
    else:
        drop = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = tiny_model("gpt2", **drop, attn_implementation="eager", bos_token_id=0, eos_token_id=0)
        autolora.inject(model, ["c_attn[q,v]"], rank=4, mode=mode)
    torch.manual_seed(1)
    randomize_adapters(model)
    return model.train()


def batches(family: str = "bert") -> list[dict]:
    """2 * STEPS global batches of GLOBAL_BATCH random sequences of length 10: binary labels for
    BERT, the sequence itself (next-token loss) for GPT-2."""
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(2 * STEPS):
        ids = torch.randint(0, 100, (GLOBAL_BATCH, 10), generator=g)
        labels = torch.randint(0, 2, (GLOBAL_BATCH,), generator=g)
        out.append({"input_ids": ids, "labels": labels if family == "bert" else ids})
    return out


def share(batch: dict, rank: int, world: int) -> dict:
    """This rank's contiguous part of a global batch."""
    n = GLOBAL_BATCH // world
    return {k: v[rank * n : (rank + 1) * n] for k, v in batch.items()}


def search(model, parts: list[dict], reduce=None, hypergradient: str = "second-order") -> dict:
    """STEPS BilevelSearch steps (b_tr, b_val alternate through `parts`); returns the trainable
    parameters by name (whole tensors)."""
    import autolora
    from autolora.search import BilevelSearch, SearchStepConfig

    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    step = BilevelSearch(
        model,
        inner,
        outer,
        torch.optim.AdamW(inner, lr=LR),
        torch.optim.Adam(outer, lr=LR_BETA),
        SearchStepConfig(hypergradient, xi=LR),
        reduce=reduce,
    )
    for i in range(STEPS):
        step.step(parts[2 * i], parts[2 * i + 1])
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def retrain(model, parts: list[dict]) -> torch.nn.Module:
    """STEPS plain AdamW steps on the first STEPS batches: what retraining does."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    for batch in parts[:STEPS]:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model


def run_rank(rank: int, world: int, port: int, result: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    import torch.distributed as dist

    from autolora.train.distributed import DistContext
    from autolora.train.sharding import local_parameter_bytes, shard_frozen_base, unshard_state_dict

    out: dict = {"ok": True}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        ctx = DistContext.current()
        parts = [share(b, rank, world) for b in batches()]
        model = build("search")
        out["frozen_bytes_whole"] = local_parameter_bytes(model)
        shard_frozen_base(model)
        out["frozen_bytes_local"] = local_parameter_bytes(model)
        out["trainable_is_whole"] = all(
            not hasattr(p, "to_local") for p in model.parameters() if p.requires_grad
        )
        out["search"] = {n: t.tolist() for n, t in search(model, parts, ctx.allreduce_mean_).items()}

        # GPT-2: an LM head tied to the sharded embeddings, Conv1D projections, sliced adapters.
        gpt2_parts = [share(b, rank, world) for b in batches("gpt2")]
        gpt2 = search(shard_frozen_base(build("search", "gpt2")), gpt2_parts, ctx.allreduce_mean_)
        out["search_gpt2"] = {n: t.tolist() for n, t in gpt2.items()}

        fixed = shard_frozen_base(build("fixed"), shard_trainable=True)
        state = unshard_state_dict(retrain(fixed, parts))
        trainable = [n for n, p in fixed.named_parameters() if p.requires_grad]
        out["retrain"] = {n: state[n].tolist() for n in trainable}

        # The search refuses W sharded (autograd.grad would give it no gradient: a silent no-op).
        try:
            search(shard_frozen_base(build("search"), shard_trainable=True), parts)
            out["sharded_w"] = "ran"
        except ValueError as err:
            out["sharded_w"] = str(err)

        # 'exact' on a sharded base, each rank on its own (BilevelSearch refuses it with a reduce):
        # does the second backward find the base weights it needs?
        try:
            search(shard_frozen_base(build("search")), parts, None, "exact")
            out["exact"] = "ran"
        except RuntimeError as err:
            out["exact"] = f"RuntimeError: {err}"
    except Exception:  # the test reports the traceback
        out = {"ok": False, "error": traceback.format_exc()}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    with open(result, "w") as f:
        json.dump(out, f)


def dataset():
    """The rows of batches() as a datasets.Dataset, for transformers.Trainer."""
    import datasets

    rows = batches()
    ids = torch.cat([b["input_ids"] for b in rows]).tolist()
    return datasets.Dataset.from_dict(
        {"input_ids": ids, "labels": torch.cat([b["labels"] for b in rows]).tolist()}
    )


def run_trainer_rank(rank: int, world: int, port: int, result: str, shard: bool) -> None:
    """STEPS steps of transformers.Trainer on the fixed-rank model: the base sharded by
    shard_for_trainer (shard=True) or the Trainer's own DDP (shard=False)."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    out: dict = {"ok": True}
    try:
        from transformers import Trainer, TrainingArguments

        from autolora.train.sharding import local_parameter_bytes, shard_for_trainer

        args = TrainingArguments(  # creating them starts the process group
            output_dir=os.path.dirname(result), per_device_train_batch_size=GLOBAL_BATCH // world,
            learning_rate=LR, lr_scheduler_type="constant", max_steps=STEPS, save_strategy="no",
            report_to=[], use_cpu=True, seed=42, disable_tqdm=True,
        )  # fmt: skip
        model = build("fixed")
        if shard:
            shard_for_trainer(model)
        out["frozen_bytes_local"] = local_parameter_bytes(model)
        trainer = Trainer(model=model, args=args, train_dataset=dataset())
        trainer.train()
        out["wrapper"] = type(trainer.model_wrapped).__name__
        out["params"] = {n: p.detach().tolist() for n, p in model.named_parameters() if p.requires_grad}
    except Exception:  # the test reports the traceback
        out = {"ok": False, "error": traceback.format_exc()}
    with open(result, "w") as f:
        json.dump(out, f)


def run_autolora_trainer_rank(rank: int, world: int, port: int, result: str, shard: bool) -> None:
    """AutoLoraTrainer's whole run (2 search steps, the switch, 2 retraining steps) on
    test_trainer_integration's tiny model and data, the base sharded by shard_for_trainer or not."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    out: dict = {"ok": True}
    try:
        import test_trainer_integration as t

        from autolora.integrations.arguments import AutoLoraArguments
        from autolora.integrations.trainer import AutoLoraTrainer
        from autolora.train.sharding import local_parameter_bytes, shard_for_trainer

        args = t._args(
            os.path.dirname(result), per_device_train_batch_size=GLOBAL_BATCH // world, max_steps=4
        )
        model = t._model()
        if shard:
            shard_for_trainer(model)
        out["frozen_bytes_local"] = local_parameter_bytes(model)
        trainer = AutoLoraTrainer(
            model=model,
            args=args,
            train_dataset=t.EXAMPLE.tiny_data(),
            autolora=AutoLoraArguments(search_steps=2, lr_beta=t.LR_BETA),
        )
        trainer.train()
        out["ranks"] = trainer.ranks
        out["params"] = {n: p.detach().tolist() for n, p in model.named_parameters() if p.requires_grad}
    except Exception:  # the test reports the traceback
        out = {"ok": False, "error": traceback.format_exc()}
    with open(result, "w") as f:
        json.dump(out, f)
