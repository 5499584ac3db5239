"""Seconds per training step: the framework (`spurmem`, two forward passes) vs plain ERM, and the
published three-pass formulation, on the same model, batch and optimiser, in one run.

Each step is forward + backward + Adam step. Steps are timed in interleaved rounds (ERM, framework,
three-pass, ERM, ...) so that load changes on a shared machine hit all three alike; the median step
of each is reported with the ratios to ERM. Target: framework <= 2.2x ERM.

    .venv/bin/python benchmarks/mitigate_step.py --model small-cnn --batch 100 --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--dataset", default="fashion-waterbirds")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15, help="timed steps per method")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    dataset = load_dataset(args.dataset)
    batch = next(iterate_batches(dataset["train"], args.batch, dataset.mean, dataset.std, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)))
    channels, size, _ = dataset.image_shape
    model = build_model(args.model, dataset.n_classes, in_channels=channels, img_size=size).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    erm = Algorithm(dataset)
    framework = SpurMemFramework(dataset)
    framework.setup(model, torch.device("cpu"))
    methods = {
        "erm": erm.loss,
        "spurmem (2 passes)": framework.loss,
        "published (3 passes)": lambda m, b: three_pass_loss(framework, m, b),
    }

    def step(loss_fn) -> float:
        t0 = time.perf_counter()
        loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        for fn in methods.values():
            step(fn)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            times[name].append(step(fn))
    base = statistics.median(times["erm"])
    print(f"model {args.model}, batch {args.batch} of {args.dataset}, {args.rounds} interleaved rounds, "
          f"{args.threads} thread(s); median seconds per step (forward + backward + Adam)")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:<22} {med:.4f} s   ratio to erm {med / base:.2f}x")


if __name__ == "__main__":
    main()
