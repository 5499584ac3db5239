"""GPU check (issue 13, item 6): what one accelerator does with spurmem on Waterbirds-size data, in minutes.

On synthetic 224-px data of the size of Waterbirds (random uint8 images; the published training
group counts 3498 / 184 / 56 / 1057, so 4,795 training images, and 1,000 validation images) it
measures, in one run:

* ResNet-50 ERM training throughput of spurmem's trainer (``spurmem.train.train``, evaluation off;
  the second epoch, so cuDNN's autotuning and the first-touch costs are left out): float32, bf16
  autocast with channels-last, and bf16 with the published rrc-flip augmentation;
* the framework's step (``algorithm=spurmem``: dense + masked pass) against the ERM step;
* the obvious alternative for both precisions: a hand-written loop over the same uint8 images held
  on the device (index, convert, normalise, forward, backward, SGD), the floor of what a trainer
  could reach; the trainer / hand ratio is its overhead;
* a screened unit scan (``ScanEngine.scan(..., screen=Screen())``) of ResNet-50's channels over
  1,000 images: ``--scan-units`` channels of each of ``--scan-layers`` layers spread over the
  network, on the model the float32 ERM run left;
* a 2-GPU DDP smoke step when two GPUs exist: ``torchrun --nproc_per_node=2 -m spurmem train`` on
  ``synthetic-shapes`` (docs/scale.md; a failure is reported in its row, not fatal).

It installs nothing and downloads nothing (random weights: a speed check needs no ImageNet file),
prints one markdown table and writes it to ``--out``. A section past the ``--budget`` seconds is
skipped and says so. ``--smoke`` shrinks everything (16 px, 16 images) so the whole path runs on a
CPU in seconds (tests/test_gpu_check.py).

    scripts/gpu_check.sh                        # or make gpu-check; PYTHON=... picks the interpreter
    python benchmarks/gpu_check.py --smoke --device cpu --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# Every row of the table, in order (tests/test_gpu_check.py asserts each is present).
ROW_KEYS = ("erm-fp32", "erm-bf16", "erm-bf16-rrc", "framework-bf16", "hand-fp32", "hand-bf16", "scan", "ddp")


@dataclass
class Row:
    key: str
    check: str
    setting: str
    value: float | None  # None: not measured (skipped or failed)
    unit: str
    note: str = ""

    def cells(self) -> list[str]:
        value = "-" if self.value is None else (f"{self.value:,.0f}" if self.value >= 100 else f"{self.value:.3g}")
        return [self.check, self.setting, value, self.unit, self.note]


def environment(device: torch.device) -> list[str]:
    """Lines describing the machine and the numeric settings the figures depend on."""
    import torchvision

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    lines = [f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
             f"CPU: {cpu}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible; "
                     f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        lines.append(f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, TF32 cuDNN "
                     f"{torch.backends.cudnn.allow_tf32}, cudnn.benchmark {torch.backends.cudnn.benchmark}")
    else:
        lines.append(f"device: {device} (no GPU figures)")
    return lines


def synthetic_waterbirds(size: int, train_counts: list[int], n_val: int, seed: int = 0):
    """A GroupDataset of random uint8 images with Waterbirds' group structure (g = 2y + a)."""
    from spurmem.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
    from spurmem.data.schema import GroupDataset, SplitData

    gen = torch.Generator().manual_seed(seed)

    def split(name: str, counts: list[int]) -> SplitData:
        g = torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(counts)])
        images = torch.randint(0, 256, (len(g), 3, size, size), dtype=torch.uint8, generator=gen)
        return SplitData(images=images, y=g // 2, a=g % 2, ids=[f"{name}-{i}" for i in range(len(g))], n_attrs=2)

    per_group = max(1, n_val // 4)
    splits = {"train": split("train", train_counts), "val": split("val", [per_group] * 4),
              "test": split("test", [1, 1, 1, 1])}
    return GroupDataset(name="synthetic-waterbirds", splits=splits, class_names=["landbird", "waterbird"],
                        attr_names=["land", "water"], mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        source=f"random uint8 images at {size} px (gpu_check)")


def trainer_rate(dataset, tmp: Path, label: str, args, **fields):
    """Images/s of the second epoch of ``spurmem.train.train`` (evaluation off), and the trained model."""
    from spurmem.train import TrainConfig, train
    from spurmem.train.checkpoint import read_checkpoint_info

    # The config names a registered dataset (the trainer checks its parameters); ``dataset=`` passes the data.
    config = TrainConfig(name=label, dataset="synthetic-shapes", model=args.model, model_params=args.model_params,
                         epochs=2, batch_size=args.batch_size, optimizer="sgd", lr=1e-3, momentum=0.9,
                         weight_decay=1e-4, schedule="constant", seed=0, device=args.device, eval_splits=[],
                         eval_init=False, selection="last", **fields)
    run_dir = tmp / label
    start = time.perf_counter()
    result = train(config, run_dir=run_dir, progress=False, dataset=dataset)
    wall = time.perf_counter() - start
    n = len(dataset["train"])
    try:
        seconds = float(read_checkpoint_info(run_dir, 2)["train"]["seconds"])
        note = ""
    except (KeyError, TypeError, OSError, ValueError):  # another layout of the checkpoint info: whole call / 2
        seconds, note = wall / 2, "from the whole call (per-epoch time not recorded)"
    model = result.model
    shutil.rmtree(run_dir, ignore_errors=True)  # 2 x 94 MB of ResNet-50 checkpoints
    return n / seconds, model, note


def hand_rate(dataset, args, amp: bool, channels_last: bool) -> float:
    """The obvious loop with the uint8 images on the device: images/s over ``args.hand_steps`` steps
    after 3 warm-up steps (cuDNN autotuning)."""
    from spurmem.models import build_model

    device = torch.device(args.device_resolved)
    torch.manual_seed(0)
    model = build_model(args.model, 2, img_size=args.size, **args.model_params).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    train = dataset["train"]
    images, labels = train.images.to(device), train.y.to(device)
    mean = torch.tensor(dataset.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, device=device).view(1, -1, 1, 1)
    gen = torch.Generator(device=device).manual_seed(0)
    model.train()

    def step() -> None:
        idx = torch.randint(0, len(labels), (args.batch_size,), device=device, generator=gen)
        x = (images[idx].float() / 255.0 - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.hand_steps):
        step()
    _sync(device)
    return args.hand_steps * args.batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scan_row(model, dataset, args) -> Row:
    """A screened scan of ``args.scan_units`` channels in each of ``args.scan_layers`` conv layers
    (evenly spread over the candidates) over ``args.scan_examples`` validation images."""
    from spurmem.probes.scan import ScanEngine, Screen
    from spurmem.probes.units import Unit, candidate_layers

    layers = [lay for lay in candidate_layers(model) if lay.kind == "conv"]
    picks = [layers[i] for i in np.unique(np.linspace(0, len(layers) - 1, args.scan_layers).round().astype(int))]
    units = [Unit(lay.name, i) for lay in picks for i in range(min(args.scan_units, lay.n_units))]
    n = min(args.scan_examples, len(dataset["val"]))
    engine = ScanEngine(model.eval(), dataset, batch_size=args.scan_batch, device=args.device_resolved)
    start = time.perf_counter()
    result = engine.scan(units, "zero", "val", indices=torch.arange(n), screen=Screen(audit_units=4))
    _sync(torch.device(args.device_resolved))
    seconds = time.perf_counter() - start
    rep = result.screen
    note = (f"{len(units)} units in {seconds:.1f} s; exact pairs {100 * rep.exact_fraction:.1f}%, audit missed "
            f"{rep.audit_missed}/{rep.audit_cleared} cleared pairs" if rep is not None else f"{seconds:.1f} s (no screen report)")
    setting = f"{len(units)} channels of {len(picks)} layers ({picks[0].name} ... {picks[-1].name}) x {n} images"
    return Row("scan", "screened unit scan (zero)", setting, len(units) / seconds, "units/s", note)


def ddp_row(args) -> Row:
    """``torchrun --nproc_per_node=2 -m spurmem train`` on synthetic-shapes, when two CUDA GPUs exist."""
    check, setting = "DDP smoke step (torchrun, NCCL)", "2 GPUs, synthetic-shapes, small-cnn, 1 epoch"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2 or args.device_resolved == "cpu":
        return Row("ddp", check, setting, None, "s", f"skipped: {count} CUDA GPU(s)")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                   "spurmem", "train", "dataset=synthetic-shapes", "model=small-cnn", "epochs=1", "device=cuda",
                   "name=ddp-smoke", "--run-dir", f"{tmp}/ddp-smoke"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.ddp_timeout, env=env)
        except subprocess.TimeoutExpired:
            return Row("ddp", check, setting, None, "s", f"failed: no result in {args.ddp_timeout} s")
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1][:160]
        return Row("ddp", check, setting, None, "s", f"failed (exit {done.returncode}): {last}")
    return Row("ddp", check, setting, seconds, "s", "whole torchrun call, both ranks")


def markdown(rows: list[Row], env_lines: list[str], title: str) -> str:
    out = [f"## {title}", "", *[f"- {line}" for line in env_lines], "",
           "| check | setting | value | unit | note |", "|---|---|---:|---|---|"]
    out += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (16 px, 16 images): the CPU test path")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default=None, help="default resnet50 (small-cnn with --smoke)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hand-steps", type=int, default=30)
    p.add_argument("--scan-examples", type=int, default=1000)
    p.add_argument("--scan-layers", type=int, default=4)
    p.add_argument("--scan-units", type=int, default=32)
    p.add_argument("--scan-batch", type=int, default=250)
    p.add_argument("--ddp-timeout", type=int, default=180)
    p.add_argument("--budget", type=float, default=540.0, help="seconds; later sections are skipped past it")
    p.add_argument("--out", default=None, help="markdown file (default $OUT/gpu_check.md, else ./gpu_check.md)")
    args = p.parse_args(argv)
    args.train_counts = [3498, 184, 56, 1057]
    if args.smoke:
        args.size, args.batch_size, args.hand_steps = 16, 8, 2
        args.scan_examples, args.scan_layers, args.scan_units, args.scan_batch = 16, 2, 2, 16
        args.train_counts = [6, 2, 2, 6]
    if args.model is None:
        args.model = "small-cnn" if args.smoke else "resnet50"
    args.model_params = {"stem": "standard"} if args.model.startswith("resnet") else {}
    if args.out is None:
        args.out = str(Path(os.environ["OUT"]) / "gpu_check.md") if os.environ.get("OUT") else "gpu_check.md"
    return args


def main(argv=None) -> list[Row]:
    from spurmem.device import resolve_device

    args = parse_args(argv)
    device = resolve_device(args.device)
    args.device_resolved = str(device)
    t0 = time.perf_counter()
    dataset = synthetic_waterbirds(args.size, args.train_counts, args.scan_examples)
    batch = f"batch {args.batch_size}, {args.size} px, {len(dataset['train'])} images"
    rows: list[Row] = []
    model = None
    env = environment(device)
    title = f"GPU check ({'smoke, ' if args.smoke else ''}{device})"
    command = " ".join(["benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def add(row: Row) -> None:
        """Keep the row and rewrite the file, so that a run killed by its time limit leaves a table."""
        rows.append(row)
        partial = [f"partial: {time.perf_counter() - t0:.0f} s so far; command: {command}"]
        out.write_text(markdown(rows, env + partial, title))

    def over_budget(key: str, check: str, setting: str, unit: str) -> bool:
        if time.perf_counter() - t0 > args.budget:
            add(Row(key, check, setting, None, unit, f"skipped: past the {args.budget:.0f} s budget"))
            return True
        return False

    erm = "ERM step, spurmem trainer"
    args.amp = device.type == "cuda"  # bf16 autocast is the trainer's CUDA path; on a CPU these rows are float32
    bf16 = "bf16 autocast" if args.amp else "float32 (no bf16 off CUDA)"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # One-time costs (CUDA context, cuBLAS/cuDNN handles, lazy imports) out of the first measured run.
        warm = synthetic_waterbirds(args.size, [args.batch_size, 2, 2, args.batch_size], 4, seed=1)
        trainer_rate(warm, tmp, "warm-up", args)
        for key, setting, fields in (
            ("erm-fp32", "float32", {}),
            ("erm-bf16", f"{bf16} + channels-last", {"amp": args.amp, "channels_last": True}),
            ("erm-bf16-rrc", f"{bf16} + channels-last + rrc-flip", {"amp": args.amp, "channels_last": True,
                                                                    "augment": "rrc-flip"}),
            ("framework-bf16", f"{bf16} + channels-last", {"amp": args.amp, "channels_last": True,
                                                           "algorithm": "spurmem"}),
        ):
            check = "framework step (algorithm=spurmem)" if key.startswith("framework") else erm
            if over_budget(key, check, f"{args.model}, {setting}, {batch}", "images/s"):
                continue
            rate, trained, note = trainer_rate(dataset, tmp, key, args, **fields)
            if key == "erm-fp32":
                model = trained
            add(Row(key, check, f"{args.model}, {setting}, {batch}", rate, "images/s", note))
    by_key = {r.key: r for r in rows}

    def ratio(a: str, b: str, text: str) -> str:
        if by_key.get(a) and by_key.get(b) and by_key[a].value and by_key[b].value:
            return f"{by_key[a].value / by_key[b].value:.2f}x {text}"
        return ""

    for row, (a, b, text) in ((by_key.get("erm-bf16"), ("erm-bf16", "erm-fp32", "of float32")),
                              (by_key.get("erm-bf16-rrc"), ("erm-bf16-rrc", "erm-bf16", "of no augmentation")),
                              (by_key.get("framework-bf16"), ("framework-bf16", "erm-bf16", "of the ERM step"))):
        if row is not None:
            row.note = "; ".join(x for x in (ratio(a, b, text), row.note) if x)
    for key, setting, amp in (("hand-fp32", "float32", False), ("hand-bf16", f"{bf16} + channels-last", args.amp)):
        check = "ERM step, hand loop (uint8 on the device)"
        full = f"{args.model}, {setting}, batch {args.batch_size}, {args.hand_steps} steps"
        if over_budget(key, check, full, "images/s"):
            continue
        rate = hand_rate(dataset, args, amp=amp, channels_last=key == "hand-bf16")
        trainer_key = "erm-fp32" if key == "hand-fp32" else "erm-bf16"
        add(Row(key, check, full, rate, "images/s"))
        by_key[key] = rows[-1]
        rows[-1].note = ratio(trainer_key, key, "trainer / hand loop")
    if not over_budget("scan", "screened unit scan (zero)", f"{args.scan_examples} images", "units/s"):
        if model is None:
            from spurmem.models import build_model

            model = build_model(args.model, 2, img_size=args.size, **args.model_params)
        add(scan_row(model, dataset, args))
    if not over_budget("ddp", "DDP smoke step (torchrun, NCCL)", "2 GPUs", "s"):
        add(ddp_row(args))
    text = markdown(rows, env + [f"total {time.perf_counter() - t0:.0f} s; command: {command}"], title)
    print(text)
    out.write_text(text)
    print(f"written to {args.out}")
    return rows


if __name__ == "__main__":
    main()
