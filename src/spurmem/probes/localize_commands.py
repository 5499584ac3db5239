"""``spurmem probe localize RUN_DIR --group G``: the greedy localisation search on a training run.

Writes ``RUN_DIR/localize/<label>/``: ``summary.json`` (units, units needed, stop reason, verdict
with its statistics, config), ``steps.csv`` and ``trajectory.csv`` (one row per step x split x
group: accuracy, count, mean logit margin), and the same two tables for the control
(``control_steps.csv``, ``control_trajectory.csv``). The files are written as one set
(``localize.manifest.json`` last, ``spurmem.fileset``) under the folder's lock (``spurmem.locks``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spurmem.cli_options import add_common_options

EPILOG = """examples:
  spurmem probe localize runs/erm-fashion-waterbirds --group 2
  spurmem probe localize runs/erm-fashion-waterbirds --group coat/land --epsilon 0.03 --max-steps 40
  spurmem probe localize runs/erm-fashion-waterbirds --group 1 --unconstrained   # finds group features too
  spurmem probe localize runs/mnv2 --group 1 --layers 'features.1*' features.17.conv.2   # a wide model: fewer candidates"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Greedily ablate the unit that most lowers group G's training accuracy (ties by loss) while "
                     "the same-class majority's training accuracy and G's validation accuracy each stay within "
                     "epsilon; stop when G's training accuracy halves or after --max-steps units. The same search "
                     "on a same-size random subset of the same-class majority is the control.")
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", type=Path, help="a run directory written by `spurmem train`")
    p.add_argument("--group", required=True, help="group index (g = y * A + a) or name such as coat/land")
    p.add_argument("--intervention", default="mean-activation",
                   help="ablation applied to each unit (default: mean-activation; any of INTERVENTIONS)")
    p.add_argument("--sigma", type=float, default=None, help="sigma for reinit/noise")
    p.add_argument("--epsilon", type=float, default=0.05, help="largest allowed drop of each constrained accuracy "
                   "(fraction, default 0.05 = 5 points)")
    p.add_argument("--max-steps", type=int, default=25, help="most units to ablate (default 25)")
    p.add_argument("--unconstrained", action="store_true",
                   help="drop both constraints (cannot tell memorised examples from the group's decision rule)")
    p.add_argument("--no-control", action="store_true", help="skip the random-majority control search")
    p.add_argument("--layers", nargs="+", metavar="LAYER", default=None,
                   help="search only the units of these layers: names or glob patterns, e.g. 'features.1*' "
                        "(every step scans every candidate, so on a wide model this bounds the cost; recorded)")
    p.add_argument("--out", default=None, help="output folder name under RUN_DIR/localize/ (default: group-G[-unconstrained])")
    add_common_options(p, {"epoch": "selected", "seed": 0, "device": "auto", "threads": 0},
                       helps={"seed": "seed of the control's random subset"})


def _group_index(text: str, names: list[str]) -> int:
    if text.isdigit():
        return int(text)
    if text in names:
        return names.index(text)
    from spurmem.config import ConfigError

    raise ConfigError(f"--group {text!r} is neither a group index nor one of {names}")


def run(args: argparse.Namespace) -> int:
    from spurmem.probes.localize import localize
    from spurmem.fileset import write_set
    from spurmem.locks import folder_lock
    from spurmem.record import json_text, record_command
    from spurmem.probes.units import enumerate_units, match_layers
    from spurmem.train import load_run

    if not args.run_dir.is_dir():
        raise FileNotFoundError(f"run directory {args.run_dir} does not exist")
    loaded = load_run(args.run_dir, epoch=args.epoch, device=args.device)
    group = _group_index(args.group, loaded.dataset.group_names)
    label = args.out or f"group-{group}" + ("-unconstrained" if args.unconstrained else "")
    out = args.run_dir / "localize" / label
    params = {} if args.sigma is None else {"sigma": args.sigma}
    candidates = None
    if args.layers:
        units = enumerate_units(loaded.model)
        keep = set(match_layers(dict.fromkeys(u.layer for u in units), args.layers))
        candidates = [u for u in units if u.layer in keep]
    config = {"group": group, "intervention": args.intervention, "epsilon": args.epsilon, "max_steps": args.max_steps,
              "constrained": not args.unconstrained, "control": not args.no_control, "epoch": loaded.epoch,
              "seed": args.seed, "layers": args.layers, **params}
    with folder_lock(out, "probe localize"), \
            record_command(args.run_dir, "probe localize", config=config, seeds=[args.seed]) as rec:
        result = localize(loaded.model, loaded.dataset, group, intervention=args.intervention, epsilon=args.epsilon,
                          max_steps=args.max_steps, constrained=not args.unconstrained, control=not args.no_control,
                          seed=args.seed, device=args.device, progress=True, candidates=candidates, **params)
        summary = result.summary()
        summary.update({"run_dir": str(args.run_dir), "epoch": loaded.epoch, "layers": args.layers})
        files = {"steps.csv": result.search.steps.to_csv(index=False),
                 "trajectory.csv": result.search.trajectory.to_csv(index=False)}
        if result.control is not None:
            files["control_steps.csv"] = result.control.steps.to_csv(index=False)
            files["control_trajectory.csv"] = result.control.trajectory.to_csv(index=False)
        else:  # an earlier search's control is not this one's
            for name in ("control_steps.csv", "control_trajectory.csv"):
                (out / name).unlink(missing_ok=True)
        files["summary.json"] = json_text(summary)
        write_set(out, "localize", files)
        rec.outputs.append(str(out))
    s = result.search
    print(f"localize {result.group_name} (group {group}), {'constrained' if s.constrained else 'UNCONSTRAINED'}, "
          f"epsilon {args.epsilon}: {len(s.units)} units, train acc {s.target_acc_start:.3f} -> {s.target_acc_end:.3f} "
          f"({s.stop_reason}); mean step {summary['mean_step_seconds'] or 0:.2f} s")
    if result.control is not None:
        c = result.control
        print(f"  control ({c.target}): {len(c.units)} units, acc {c.target_acc_start:.3f} -> {c.target_acc_end:.3f} "
              f"({c.stop_reason})")
    print(f"  verdict: {result.verdict['label']} - {result.verdict['reason']}")
    if s.note:
        print(f"  note: {s.note}")
    print(f"  -> {out}")
    return 0


def _main() -> None:  # pragma: no cover - convenience for python -m
    p = argparse.ArgumentParser(prog="spurmem probe localize")
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))


if __name__ == "__main__":  # pragma: no cover
    _main()

__all__ = ["add_arguments", "run"]
