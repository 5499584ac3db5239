"""One rank of the 2-process data-parallel job of tests/test_ddp.py (run it under torchrun: ``python -m
torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py OUT``).

Every rank trains the scenarios of :func:`scenarios` into ``OUT/runs`` through the public ``train`` (and
``spurmem mitigate`` through the CLI), then resumes a copy of one run cut back to epoch 1. Every rank records
each file it writes, renames, deletes or creates under ``OUT/runs`` (an audit hook) into
``OUT/writes_rank<R>.json``: rank 0's list shows the hook sees the writes, the other ranks' must be empty.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MITIGATE_OVERRIDES = ["epochs=2", "threads=1", "fraction=0.05", "contrast_on=logits"]


def framework_halves():
    """The framework as two processes compute it, in one process: each half of the batch (the ranks' shares)
    gets its own loss (its own NT-Xent negatives), weighted by its share of the batch. Without BatchNorm, a
    2-process ``spurmem`` run must match a 1-process run of this algorithm to float precision."""
    import torch

    from spurmem.data.batches import Batch
    from spurmem.train.algorithms.framework import SpurMemFramework

    class FrameworkHalves(SpurMemFramework):
        name = "spurmem-halves"

        def loss(self, model, batch):
            n = len(batch.y)
            halves = zip(*(torch.tensor_split(t, 2) for t in (batch.x, batch.y, batch.a, batch.g, batch.index)))
            total, terms = 0.0, {}
            for part in (Batch(*h) for h in halves):
                loss, part_terms = super().loss(model, part)
                total = total + loss * (len(part.y) / n)
                for k, v in part_terms.items():
                    terms[k] = terms.get(k, 0.0) + v * len(part.y) / n
            return total, terms

    return FrameworkHalves


def framework_mlp(source: Path, algorithm: str = "spurmem"):
    """The framework fine-tuning the MLP run ``source`` (no BatchNorm)."""
    from spurmem.train import TrainConfig

    return TrainConfig(name="spurmem-mlp", algorithm=algorithm, dataset="colored-digits", model="mlp",
                       model_params={"hidden": [64]}, init_from=str(source), init_epoch="last", epochs=2,
                       batch_size=100, lr=2e-4, threads=1, algorithm_params={"fraction": 0.05, "contrast_on": "logits"})


def scenarios():
    """name -> TrainConfig of every run the job trains (the test trains the same ones in one process)."""
    from spurmem.train import TrainConfig

    base = dict(dataset="colored-digits", epochs=2, batch_size=64, threads=1, seed=0)
    return {
        # no BatchNorm: the 2-process run is the 1-process run up to summation order
        "erm-mlp": TrainConfig(name="erm-mlp", model="mlp", model_params={"hidden": [64]}, **base),
        "groupdro-mlp": TrainConfig(name="groupdro-mlp", algorithm="groupdro", model="mlp",
                                    model_params={"hidden": [64]}, algorithm_params={"eta": 0.1}, **base),
        "reweight-mlp": TrainConfig(name="reweight-mlp", algorithm="reweight", model="mlp",
                                    model_params={"hidden": [64]}, **base),
        # BatchNorm, statistics per process: close, not equal
        "erm-cnn": TrainConfig(name="erm-cnn", **base),
    }


def cut_back_to_epoch_1(src: Path, dst: Path) -> None:
    """A copy of the finished run ``src`` as a kill during epoch 2 leaves it (epoch 1 the last complete one)."""
    shutil.copytree(src, dst)
    for folder in ("checkpoints", "resume"):
        for f in (dst / folder).glob("epoch_0002.*"):
            f.unlink()
    shutil.rmtree(dst / "predictions")
    lines = (dst / "metrics.jsonl").read_text().splitlines()
    (dst / "metrics.jsonl").write_text("".join(line + "\n" for line in lines if json.loads(line)["epoch"] <= 1))
    info = json.loads((dst / "run.json").read_text())
    info.update(status="running", selection=None, epochs_completed=1)
    (dst / "run.json").write_text(json.dumps(info))


def _record_writes(root: Path, log: list[str]) -> None:
    root_text = str(root)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def under(path) -> bool:
        try:
            return str(Path(os.fsdecode(path)).resolve()).startswith(root_text)
        except (TypeError, ValueError):
            return False

    def hook(event: str, args) -> None:
        if event == "open" and args and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags)
            if writing and under(args[0]):
                log.append(f"open {args[0]} {mode!r}")
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "shutil.rmtree",
                       "os.link", "os.symlink") and args and under(args[0]):
            log.append(f"{event} {args[0]}")

    sys.addaudithook(hook)


def main(out: Path) -> None:
    sys.path.insert(0, str(SRC))
    import torch
    import torch.distributed as dist

    from spurmem.cli import main as cli
    from spurmem.data import load_dataset
    from spurmem.train import train

    rank = int(os.environ["RANK"])
    runs = (out / "runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)
    writes: list[str] = []
    _record_writes(runs, writes)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # the job's own group: train() joins it and leaves it up
    dataset = load_dataset("colored-digits")
    configs = scenarios()
    for name, config in configs.items():
        train(config, run_dir=runs / name, dataset=dataset, progress=False)
    train(framework_mlp(runs / "erm-mlp"), run_dir=runs / "spurmem-mlp", dataset=dataset, progress=False)
    code = cli(["mitigate", str(runs / "erm-cnn"), *MITIGATE_OVERRIDES, "--out", str(runs / "mitigate")])
    assert code == 0, f"rank {rank}: spurmem mitigate exited {code}"
    if rank == 0:  # (rank 0's list: the writes of train and mitigate, not this copy)
        (out / "writes_rank0.json").write_text(json.dumps(writes))
        cut_back_to_epoch_1(runs / "erm-mlp", runs / "resumed")
    dist.barrier()
    result = train(configs["erm-mlp"], run_dir=runs / "resumed", resume=True, dataset=dataset, progress=False)
    assert result.resumed_from == 1, result.resumed_from
    failures = {}  # what each rank raises when rank 0 refuses the run folder, and when training diverges
    diverging = configs["erm-mlp"].model_copy(update={"name": "nan", "optimizer": "sgd", "lr": 1e6,
                                                      "eval_splits": ["val"]})
    for label, config, run_dir in (("exists", configs["erm-mlp"], runs / "erm-mlp"), ("diverges", diverging,
                                                                                      runs / "nan")):
        try:
            train(config, run_dir=run_dir, dataset=dataset, progress=False)
            failures[label] = None
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            failures[label] = f"{type(exc).__name__}: {exc}"
    (out / f"failures_rank{rank}.json").write_text(json.dumps(failures))
    dist.destroy_process_group()
    if rank != 0:
        (out / f"writes_rank{rank}.json").write_text(json.dumps(writes))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
