"""Seconds per training step: the framework (`spurmem`, two forward passes) vs plain ERM, and the
published three-pass formulation, on the same model, batch and optimiser, in one run.

Each step is forward + backward + Adam step. Steps are timed in interleaved rounds (ERM, framework,
the framework without the shared first block, three-pass, ERM, ...) so that load changes on a shared machine hit all three alike; per method the
median step, wall and CPU (``time.process_time``, less sensitive to other jobs), and the median of
the per-round ratios to ERM are reported, for each model of ``--models``. Target: framework <= 2.0x ERM.

    .venv/bin/python benchmarks/mitigate_step.py --models small-cnn --rounds 15
    .venv/bin/python benchmarks/mitigate_step.py --models resnet18 --rounds 5 --warmup 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from spurmem.data import load_dataset
from spurmem.data.batches import iterate_batches
from spurmem.models import build_model
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.contrastive import nt_xent
from spurmem.train.algorithms.framework import SpurMemFramework
from spurmem.train.algorithms.masking import masked_forward


def three_pass_loss(algo: SpurMemFramework, model, batch):
    """The published formulation: dense pass, masked pass, and a separate no-grad dense pass for the
    stop-gradient target (SPEC 6, same value and gradients as the two-pass loss)."""
    z_d = model(batch.x)
    z_p = masked_forward(model, algo.mask, batch.x)
    with torch.no_grad():
        z_t = model(batch.x)
    tau = algo.params.tau
    loss = (nt_xent(torch.softmax(z_t, 1), torch.softmax(z_p, 1), tau)
            + nt_xent(torch.softmax(z_d, 1), torch.softmax(z_p, 1).detach(), tau)
            + algo.params.lam * F.cross_entropy(z_d, batch.y))
    return loss, {}


def stacked_loss(algo: SpurMemFramework, model, batch):
    """The two branches as one pass: ``torch.func.vmap`` over the dense and masked parameters stacked
    along a new axis (one batched call per layer), same loss. Timing only: its BatchNorm statistics
    go to throw-away copies in both branches."""
    params = dict(model.named_parameters())
    stacked = {k: torch.stack([p, p * algo.mask[k] if k in algo.mask else p]) for k, p in params.items()}
    buffers = {k: torch.stack([b, b]) for k, b in model.named_buffers()}
    z_d, z_p = vmap(lambda p, b: functional_call(model, (p, b), (batch.x,)), randomness="same")(stacked, buffers)
    nt = nt_xent(torch.softmax(z_d, 1), torch.softmax(z_p, 1), algo.params.tau)
    return nt + nt.detach() + algo.params.lam * F.cross_entropy(z_d, batch.y), {}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"{model}, {os.cpu_count()} logical CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def bench(model_name: str, dataset, args) -> None:
    torch.manual_seed(0)
    batch = next(iterate_batches(dataset["train"], args.batch, dataset.mean, dataset.std, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)))
    channels, size, _ = dataset.image_shape
    model = build_model(model_name, dataset.n_classes, in_channels=channels, img_size=size).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    erm = Algorithm(dataset)
    framework = SpurMemFramework(dataset)
    framework.setup(model, torch.device("cpu"))
    generic = SpurMemFramework(dataset)  # the same mask, the masked pass without the shared stem (before)
    generic.share_stem, generic.mask = False, framework.mask
    methods = {
        "erm": erm.loss,
        "spurmem (2 passes)": framework.loss,
        "spurmem, no stem share": generic.loss,
        "published (3 passes)": lambda m, b: three_pass_loss(framework, m, b),
    }
    if args.stacked:
        methods["vmap-stacked (1 pass)"] = lambda m, b: stacked_loss(framework, m, b)

    def step(loss_fn) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0, time.process_time() - c0

    for _ in range(args.warmup):
        for fn in methods.values():
            step(fn)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            times[name].append(step(fn))
    print(f"model {model_name}, batch {args.batch} of {args.dataset}, {args.rounds} interleaved rounds, "
          f"{args.threads} thread(s); {machine()}")
    print("  median seconds per step (forward + backward + Adam), wall (CPU); median of per-round ratios to erm")
    for name, values in times.items():
        wall = [w / e[0] for (w, _), e in zip(values, times["erm"])]
        cpu = [c / e[1] for (_, c), e in zip(values, times["erm"])]
        print(f"  {name:<22} {statistics.median(v[0] for v in values):.4f} s "
              f"({statistics.median(v[1] for v in values):.4f} s)   ratio to erm {statistics.median(wall):.2f}x wall "
              f"({statistics.median(cpu):.2f}x CPU, rounds {min(cpu):.2f}-{max(cpu):.2f})")
    plan = framework._pass
    if plan is not None and plan.last_shared:
        kind = "a chain of top-level modules" if plan.chain is not None else f"module {plan.stem[0]}"
        print(f"  stem share: used ({kind}; {plan.channels.numel()} of {plan.parts[0].out_channels} "
              f"first-block channels recomputed)")
    else:
        print("  stem share: not used (the generic masked pass)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="small-cnn", help="comma-separated, e.g. small-cnn,resnet18")
    ap.add_argument("--dataset", default="fashion-waterbirds")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15, help="timed steps per method")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stacked", action="store_true", help="also time the branches as one vmap-stacked pass")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    for name in args.models.split(","):
        bench(name, dataset, args)


if __name__ == "__main__":
    main()
