"""``spurmem data ...`` sub-commands."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from spurmem.registry import RegistryNames

    data = sub.add_parser("data", help="inspect the group-labelled datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    summary = data_sub.add_parser(
        "summary",
        help="counts per split and group, names, majority/minority, provenance",
        description="Build a dataset and print, per split and group, the counts, the group names, "
        "which groups are majority/minority (from training counts) and where the data came from.",
        epilog="examples:\n  spurmem data summary fashion-waterbirds\n"
        "  spurmem data summary fashion-waterbirds variant=hard rho=0.9 seed=1\n"
        "  spurmem data summary waterbirds root=/data/waterbird_complete95_forest2water2 size=64\n"
        "  spurmem data summary celeba root=/data/celeba target=Blond_Hair spurious=Male size=64\n"
        "  spurmem data summary metadata-csv csv=my/meta.csv class_names=cat,dog attr_names=indoor,outdoor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    summary.add_argument("name", choices=RegistryNames("spurmem.data.datasets", "DATASETS"), metavar="NAME",
                         help="dataset: %(choices)s")
    summary.add_argument("params", nargs="*", metavar="KEY=VALUE",
                         help="dataset parameters (values parsed as YAML: 0.9, true, [a, b])")
    summary.add_argument("--json", action="store_true", help="print the description as JSON instead of a table")
    summary.set_defaults(func=_summary)
    listing = data_sub.add_parser("list", help="the registered datasets and their parameters with defaults")
    listing.set_defaults(func=_list)


def parse_params(items: list[str]) -> dict:
    """``["rho=0.9", "variant=hard"]`` -> ``{"rho": 0.9, "variant": "hard"}`` (values as YAML scalars)."""
    import yaml

    from spurmem.data.schema import DataError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(f"dataset parameter {item!r} should be KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def _summary(args: argparse.Namespace) -> int:
    from spurmem.data import load_dataset
    from spurmem.data.summary import group_count_table

    ds = load_dataset(args.name, **parse_params(args.params))
    if args.json:
        print(json.dumps({**ds.describe(), "mean": ds.mean, "std": ds.std}, indent=1, default=str))
        return 0
    table = group_count_table(ds)
    print(f"dataset: {ds.name}   images: {'x'.join(map(str, ds.image_shape))} uint8")
    print(f"source:  {ds.source}")
    print(f"params:  {' '.join(f'{k}={v}' for k, v in ds.params.items())}")
    print(f"classes: {ds.class_names}   attributes: {ds.attr_names}   group g = y * {ds.n_attrs} + a")
    print(f"normalisation: mean {_fmt(ds.mean)} std {_fmt(ds.std)}")
    for split, part in table.groupby("split", sort=False):
        print(f"{split}: {int(part['count'].sum())} examples")
        for row in part.itertuples():
            print(f"  g{row.group} {row.name:<28} {row.count:>7}  {100 * row.fraction:5.1f}%  {row.role}")
    return 0


def _list(args: argparse.Namespace) -> int:
    import inspect

    from spurmem.data import DATASETS, dataset_parameters

    for name, loader in DATASETS.items():
        doc = (inspect.getdoc(loader) or "").split("\n\n")[0].replace("\n", " ")
        print(f"{name}: {doc}")
        params = " ".join(f"{k}={v!r}" if v is not inspect.Parameter.empty else k
                          for k, v in dataset_parameters(name).items())
        print(f"    {params}")
    return 0


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
