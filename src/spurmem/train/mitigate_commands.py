"""``spurmem mitigate`` and ``spurmem compare``."""

from __future__ import annotations

import argparse
from pathlib import Path

from spurmem.cli_options import add_common_options


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "mitigate", help="fine-tune the spurious-memorisation framework (docs/method.md §6) from an ERM run",
        description="Fine-tune from RUN_DIR's checkpoint with the framework: dense and masked branches sharing "
                    "weights, L = NTXent(sg(z_d), z_p) + NTXent(z_d, sg(z_p)) + lambda CE(z_d, y), the mask "
                    "recomputed every epoch. Dataset, model and seed come from RUN_DIR; defaults are the "
                    "published ones (Adam 2e-4, batch 100, 21 epochs, plateau 0.5/1 on the summed loss, "
                    "fraction=0.01 smallest weights, tau=0.5, lambda=0.2, contrast on probabilities). "
                    "Framework keys: target=smallest|largest|critical, granularity=weight|unit, fraction, "
                    "critical_units=FILE|ids, tau, lambda, contrast_on=probabilities|logits|features, "
                    "ce=logits|double-softmax, masked_bn_stats=discard|update. Any TrainConfig field "
                    "(epochs, lr, schedule, selection, ...) is accepted too. algorithm=erm-continue runs the "
                    "plain cross-entropy control with the same start and budget. metrics.jsonl 'terms' "
                    "holds ntxent, ce, masked_ce and the dense/masked disagreement rate per epoch.",
        epilog="example: spurmem mitigate runs/erm-fashion-waterbirds fraction=0.05 contrast_on=logits epochs=10",
    )
    m.add_argument("run_dir", type=Path, help="an ERM run directory written by `spurmem train`")
    m.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="framework parameters or TrainConfig fields")
    add_common_options(m, {"epoch": "last"}, config_keys={"device": "device", "seed": "seed", "threads": "threads"},
                       helps={"epoch": "checkpoint of RUN_DIR to start from: last, selected or an epoch number"})
    m.add_argument("--name", help="name of the new run (default <source name>-<algorithm>)")
    m.add_argument("--out", type=Path, help="run directory of the new run (default runs/<name>)")
    mode = m.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted mitigation run")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    m.set_defaults(func=_mitigate)

    c = sub.add_parser(
        "compare", help="compare algorithms x seeds under one protocol and print one table (docs/method.md §7)",
        description="Run every listed algorithm (erm, erm-continue, reweight, groupdro, jtt, dfr, neurontune, "
                    "spurmem) for every seed on one dataset and backbone through the shared trainer, under one "
                    "budget (budget=matched gives from-scratch algorithms epochs + fine_tune_epochs, the total of "
                    "ERM plus fine-tuning; as-configured gives them epochs) and one selection rule (val WGA with "
                    "group labels, worst-class val accuracy without), then write comparison.md/.csv/.json and "
                    "per_run.csv into runs/<name>/ and print the table: per algorithm the group labels it uses "
                    "(none / validation / training), its epochs and optimiser steps, and mean ± std over seeds of "
                    "test WGA, adjusted and plain average, per-group test accuracy and memorisation gap. "
                    "Finished runs are skipped and "
                    "interrupted ones resumed, so rerunning the same command continues a killed comparison. "
                    "Keys: name, out_dir, dataset, dataset_params, model, model_params, weights, algorithms, "
                    "seeds, epochs, fine_tune_epochs, budget, init_epoch, group_labels, selection, train_eval, "
                    "hparams.<algorithm>.<field or params.NAME>, variants.<label>.{algorithm, field, params}, "
                    "train.<TrainConfig field>, search.trials, search.seed, executor (local|ray), workers (runs at a time; "
                    "default 1), threads_per_job, ray_address (docs/scale.md).",
        epilog="example: spurmem compare seeds=[0,1,2] epochs=30 'algorithms=[erm,erm-continue,spurmem]' "
               "hparams.spurmem.params.fraction=0.05 train.device=cpu",
    )
    c.add_argument("--config", type=Path, help="YAML CompareConfig, or the name of a config shipped with spurmem such as "
                   "compare_fashion_waterbirds")
    c.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    add_common_options(c, {}, config_keys={"device": "train.device", "threads": "train.threads"})
    c.add_argument("--dry-run", action="store_true", help="list the runs (and their status) without training")
    c.set_defaults(func=_compare)


def _mitigate(args: argparse.Namespace) -> int:
    from spurmem.train import train
    from spurmem.train.distributed import is_main_process
    from spurmem.train.mitigate import mitigation_config

    epoch = args.epoch
    config = mitigation_config(args.run_dir, args.overrides, init_epoch=epoch, name=args.name)
    result = train(config, run_dir=args.out, resume=args.resume, overwrite=args.overwrite,
                   progress=True)
    if not is_main_process():  # under torchrun: rank 0 prints the summary
        return 0
    start, row = result.history[0], result.row()
    sel = result.selection
    print(f"run: {result.run_dir}   {config.algorithm} from {args.run_dir} (epoch {epoch})   "
          f"selected epoch {sel.epoch} by {sel.rule}")
    for label, r in (("start", start), ("selected", row)):
        groups = " ".join(f"{100 * r[f'test/acc_g{g}']:5.1f}" for g in range(len(r["groups"]["test"])))
        print(f"  {label:<8} test WGA {100 * r['test/worst_group_accuracy']:5.1f}  "
              f"avg {100 * r['test/average']:5.1f}  groups {groups}")
    terms = result.history[-1].get("terms") or {}
    if terms:
        print("  last epoch terms: " + "  ".join(f"{k} {v:.4f}" for k, v in terms.items()))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from spurmem.config import load_config
    from spurmem.train.compare import CompareConfig, run_compare
    from spurmem.train.run import run_status
    from spurmem.train.compare_table import write_comparison

    config = load_config(CompareConfig, args.config, args.overrides)
    if args.dry_run:
        result = run_compare(config, progress=False, log=lambda _: None, dry_run=True)
        listed = [*result.bases, *result.runs]
        width = max(len(r.label) for r in listed)
        for r in listed:
            print(f"{r.label:<{width}}  seed {r.seed}  epochs {r.config.epochs:>3}  "
                  f"{run_status(r.run_dir):<8} {r.run_dir}")
        return 0
    result = run_compare(config, progress=True, log=lambda msg: print(f"[compare] {msg}", flush=True))
    text, paths = write_comparison(result)
    print(text)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
