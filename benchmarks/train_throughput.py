"""Images per second of spurmem's trainer vs a minimal hand-written PyTorch loop (evaluation off).

Both train the same model (fresh, same seed) on the same uint8 training split with the same batch
size, optimiser and schedule, in one process, interleaved (hand, ours, hand, ours, ...) so that
load on a shared machine hits both alike. Ours is the whole ``spurmem.train.train`` call (model
build, per-epoch checkpoint and resume-state writes, run.json) with ``eval_splits=[]``; the hand
loop is shuffle -> index -> float/normalise -> forward -> backward -> Adam step -> cosine step.

    .venv/bin/python benchmarks/train_throughput.py [--dataset fashion-waterbirds] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F


def hand_loop(dataset, model_name: str, model_params: dict, epochs: int, batch_size: int, seed: int) -> float:
    """The obvious loop; returns images per second."""
    from spurmem.models import build_model

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    c, h, _ = dataset.image_shape
    model = build_model(model_name, dataset.n_classes, in_channels=c, img_size=h, **model_params)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = dataset["train"]
    n = len(train)
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = (train.images[idx].float() / 255.0 - mean) / std
            loss = F.cross_entropy(model(x), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return epochs * n / (time.perf_counter() - t0)


def spurmem_loop(dataset, model_name: str, model_params: dict, epochs: int, batch_size: int, seed: int) -> float:
    from spurmem.train import TrainConfig, train

    config = TrainConfig(name="throughput", dataset=dataset.name, model=model_name, model_params=model_params,
                         epochs=epochs, batch_size=batch_size, seed=seed, eval_splits=[], eval_init=False,
                         selection="last", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(config, run_dir=f"{tmp}/run", progress=False, dataset=dataset)
        seconds = time.perf_counter() - t0
    return epochs * len(dataset["train"]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-waterbirds")
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from spurmem.data import load_dataset

    dataset = load_dataset(args.dataset)
    print(f"{args.dataset}: {len(dataset['train'])} training images {dataset.image_shape}, model {args.model}, "
          f"batch {args.batch_size}, {args.epochs} epochs per measurement, {torch.get_num_threads()} threads")
    hand, ours = [], []
    for r in range(args.repeats):
        hand.append(hand_loop(dataset, args.model, {}, args.epochs, args.batch_size, seed=r))
        ours.append(spurmem_loop(dataset, args.model, {}, args.epochs, args.batch_size, seed=r))
        print(f"repeat {r}: hand {hand[-1]:8.1f} img/s   spurmem {ours[-1]:8.1f} img/s   ratio {ours[-1] / hand[-1]:.3f}")
    ratios = [o / h for o, h in zip(ours, hand)]
    print(f"median: hand {statistics.median(hand):.1f} img/s, spurmem {statistics.median(ours):.1f} img/s, "
          f"ratio (spurmem / hand) {statistics.median(ratios):.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
