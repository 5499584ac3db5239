"""``spurmem data ...`` sub-commands."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect the group-labelled datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    summary = data_sub.add_parser("summary", help="counts per split and group, majority/minority, provenance")
    summary.add_argument("name", help="dataset name (see DATASETS)")
    summary.add_argument("params", nargs="*", help="dataset parameters as key=value")
    summary.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> int:
    from spurmem.data import load_dataset

    params = dict(p.split("=", 1) for p in args.params)
    ds = load_dataset(args.name, **{k: _parse_value(v) for k, v in params.items()})
    info = ds.describe()
    print(f"dataset: {info['name']}   source: {info['source']}")
    for split, counts in info["counts"].items():
        total = sum(counts)
        print(f"{split}: {total} examples")
        for g, c in enumerate(counts):
            role = "majority" if g in info["majority_groups"] else "minority"
            print(f"  g{g} {info['group_names'][g]:<24} {c:>6}  {100 * c / total:5.1f}%  {role}")
    return 0


def _parse_value(v: str):
    import yaml

    return yaml.safe_load(v)
