"""``spurmem probe RUN_DIR [--config FILE] [KEY=VALUE ...]`` and the probe's sub-actions.

``spurmem probe ACTION ...`` dispatches to a sub-action registered in ``PROBE_ACTIONS`` (name ->
module defining ``add_arguments(parser)`` and ``run(args)``), e.g. ``spurmem probe localize``.
Any other first argument is a run directory and runs the probe grid.
"""

from __future__ import annotations

import argparse
import importlib
import textwrap
from pathlib import Path

from spurmem import progress
from spurmem.cli_options import add_common_options, apply_common_options

# Sub-actions of ``spurmem probe``: name -> module with add_arguments(parser) and run(args) -> int.
PROBE_ACTIONS: dict[str, str] = {
    "localize": "spurmem.probes.localize_commands",
}

EXAMPLES = """examples:
  spurmem probe runs/erm-fashion-waterbirds
  spurmem probe runs/erm-fashion-waterbirds name=contrast scorers=[group-contrast] k=[1,2,5] per_layer=[false,true]
  spurmem probe runs/erm-fashion-waterbirds --config configs/probe.yaml repeats=20

outputs (RUN_DIR/probes/<name>/): rows.csv (setting x repeat x split x group: acc before/after, drop,
count, logit margins, predicted-class histogram, specificity), summary.csv (mean/std/95% CI over
repeats), control.csv (position in the random control with the same k), matrix.csv (group-by-group),
verdicts.csv + verdicts.json (per-setting verdicts, docs/method.md §5.1/5.2 claims), summary.md, settings/ (one
atomic file per finished setting: an interrupted grid resumes where it stopped)."""


def grid_parser(prog: str = "spurmem probe") -> argparse.ArgumentParser:
    from spurmem.probes.config import ProbeConfig

    keys = "\n".join(
        f"  {name:<20} {field.description or ''} (default: {_default(field)})"
        for name, field in ProbeConfig.model_fields.items()
    )
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Rank units with each scorer, edit the top k with each intervention (reversibly, on a copy), and "
            "evaluate every group before and after on every split; random scorers and random interventions are "
            "repeated with recorded seeds, and every setting is set against the random control with the same k. "
            "The summary names what each setting did (no effect, within random control, class collapse, broad "
            "disruption, prediction shift, group feature, localised memorisation, inconclusive) and answers the claims of docs/method.md §5.1-5.2.", 100),
        epilog=f"config keys (ProbeConfig; YAML file or KEY=VALUE):\n{keys}\n\n{EXAMPLES}",
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by `spurmem train`")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. k=[1,5] repeats=20")
    p.add_argument("--config", type=Path, help="YAML ProbeConfig (defaults: the grid described below)")
    progress.add_options(p)
    add_common_options(p, {"threads": 0}, config_keys={"epoch": "epoch", "device": "device", "seed": "seed"})
    return p


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return str(value.model_dump() if hasattr(value, "model_dump") else value)
    return str(field.default)


def available_actions() -> dict[str, str]:
    """The registered sub-actions whose module is installed (a stage may not have landed yet)."""
    from importlib.util import find_spec

    return {name: mod for name, mod in PROBE_ACTIONS.items() if find_spec(mod) is not None}


def register(sub: argparse._SubParsersAction) -> None:
    grid = grid_parser()
    actions_available = available_actions()
    actions = ", ".join(f"`spurmem probe {a} --help`" for a in actions_available)
    p = sub.add_parser(
        "probe", help="probe critical units: scorers x k x interventions, every group, verdicts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="spurmem probe RUN_DIR [--config FILE] [--no-progress] [--epoch EPOCH] [--device DEVICE] [--seed N] "
              "[--threads N] [KEY=VALUE ...]"
              + (f"\n       spurmem probe {{{','.join(actions_available)}}} ..." if actions_available else ""),
        description=grid.description + (f"\n\nSub-actions: {actions}." if actions_available else ""),
        epilog=grid.epilog,
    )
    p.add_argument("target", metavar="RUN_DIR|ACTION", help="a run directory, or a sub-action: "
                   + (", ".join(actions_available) or "none installed"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_dispatch, _probe_parser=p)


def _dispatch(args: argparse.Namespace) -> int:
    from spurmem.cli import parse_with_overrides

    if args.target in ("-h", "--help"):
        args._probe_parser.print_help()
        return 0
    if args.target in available_actions():
        module = importlib.import_module(PROBE_ACTIONS[args.target])
        sub = argparse.ArgumentParser(prog=f"spurmem probe {args.target}")
        module.add_arguments(sub)
        progress.add_options(sub)
        parsed = parse_with_overrides(sub, args.rest)
        apply_common_options(parsed)
        with progress.options(parsed):
            return int(module.run(parsed) or 0)
    parsed = parse_with_overrides(grid_parser(), [args.target, *args.rest])
    apply_common_options(parsed)
    with progress.options(parsed):
        return _grid(parsed)


def _grid(args: argparse.Namespace) -> int:
    from spurmem.config import load_config
    from spurmem.probes.api import probe_run
    from spurmem.probes.config import ProbeConfig

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run directory {args.run_dir} does not exist")
    config = load_config(ProbeConfig, args.config, args.overrides)
    result = probe_run(args.run_dir, config, progress=True)
    print(f"probe {config.name}: {result.n_computed} settings computed, {result.n_resumed} resumed, "
          f"{result.seconds:.1f} s -> {result.out_dir}")
    for claim in result.summary.claims:
        print(f"  {claim.claim}: {claim.status} - {claim.statistic}")
    if len(result.summary.verdicts):
        from spurmem.probes.summary import outcome_counts

        print("  setting verdicts: " + outcome_counts(result.summary.verdicts))
    return 0
