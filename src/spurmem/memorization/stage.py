"""The memorisation stage run on a trained run folder: score its units or its examples and write
the outputs as one file set (``spurmem.fileset``) under the folder's lock, with an experiment record.

``spurmem memorization units|examples`` and the demo both call these; the CLI only parses and prints.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Sequence

OUT_DIR = "memorization"
SCREEN_HINT_UNITS = 1000  # above this many units an exact scan of three splits takes hours on a CPU


def scan_run_units(run_dir: str | Path, *, epoch: str | int = "selected", heldout: str = "test",
                   intervention: str = "zero", null_draws: int = 1000, seed: int = 0, device: str = "auto",
                   screen=None, layers: Sequence[str] | None = None, examples_per_group: int | None = None,
                   out: str | Path | None = None, progress: bool = True):
    """Unit-level memorisation of ``run_dir`` at ``epoch`` (:func:`~spurmem.memorization.units.unit_memorization`),
    written to ``out`` (default ``RUN_DIR/memorization``) as the ``units`` set; returns ``(result, out)``."""
    from spurmem.fileset import write_set
    from spurmem.locks import folder_lock
    from spurmem.memorization.units import unit_memorization
    from spurmem.probes.units import enumerate_units
    from spurmem.record import json_text, record_command
    from spurmem.train import load_run

    run_dir = Path(run_dir)
    loaded = load_run(run_dir, epoch=epoch, device=device)
    out = Path(out) if out is not None else run_dir / OUT_DIR
    n_units = len(enumerate_units(loaded.model))
    if n_units > SCREEN_HINT_UNITS and not (screen is not None or layers):
        print(f"note: {n_units} units, each run exactly on every example of three splits; on a CPU this can take "
              f"hours. --screen runs exactly only the pairs a first-order screen cannot clear, --layers and "
              f"--examples-per-group narrow the scan (docs/memorization.md)", file=sys.stderr)
    config = {"heldout": heldout, "intervention": intervention, "epoch": loaded.epoch, "null_draws": null_draws,
              "seed": seed, "layers": None if layers is None else list(layers),
              "examples_per_group": examples_per_group,
              "screen": None if screen is None else {"factor": screen.factor, "calibration": screen.calibration,
                                                     "audit_units": screen.audit_units}}
    with folder_lock(out, "memorization units"), \
            record_command(run_dir, "memorization units", config=config, seeds=[seed]) as rec:
        with rec.timed("scan"):
            result = unit_memorization(loaded.model, loaded.dataset, heldout=heldout, intervention=intervention,
                                       null_draws=null_draws, seed=seed, device=device, progress=progress,
                                       screen=screen, layers=layers, examples_per_group=examples_per_group)
        result.summary.update({"run_dir": str(run_dir), "epoch": loaded.epoch})
        files: dict[str, str | bytes] = {
            f"{name}.csv": table.to_csv(index=False)
            for name, table in (("units_ranked", result.ranked), ("units_groups", result.groups),
                                ("units_curve", result.curve), ("units_layers", result.layers))}
        files["units_summary.json"] = json_text(result.summary)
        files["units_curve.png"] = curve_figure(result.curve, result.summary)
        write_set(out, "units", files)
        rec.outputs.append(str(out))
    return result, out


def score_run_examples(run_dir: str | Path, overrides: dict[str, Any] | None = None, *, models: int = 8,
                       flip_k: int = 10, epoch: str | int = "last", seed: int = 0, device: str = "auto",
                       executor: str = "local", parallel: int = 1, ray_address: str | None = None,
                       progress: bool = True):
    """Example-level memorisation of ``run_dir`` (:func:`~spurmem.memorization.examples.example_memorization`:
    ``models`` half-data models with the run's recipe and ``overrides``, trained on ``executor``), plus the flip
    order of the top ``flip_k`` units when a complete ``units`` set is there; written to ``RUN_DIR/memorization``
    as the ``examples`` set. Returns ``(result, out)``."""
    import pandas as pd

    from spurmem.fileset import check_set, write_set
    from spurmem.jobs.executor import make_executor
    from spurmem.locks import folder_lock
    from spurmem.memorization.examples import example_memorization, flip_order, flips_vs_memorization
    from spurmem.record import json_text, record_command
    from spurmem.train import load_run

    run_dir = Path(run_dir)
    overrides = dict(overrides or {})
    loaded = load_run(run_dir, epoch="selected", device=device)
    out = run_dir / OUT_DIR
    with folder_lock(out, "memorization examples"), \
            make_executor(executor, workers=parallel, address=ray_address) as pool, \
            record_command(run_dir, "memorization examples",
                           config={"models": models, "epoch": epoch, "overrides": overrides}, seeds=[seed]) as rec:
        result = example_memorization(loaded.config, loaded.dataset, out, models=models, seed=seed, epoch=epoch,
                                      device=device, progress=progress, executor=pool, **overrides)
        files = {"examples.csv": result.examples.to_csv(index=False),
                 "examples_groups.csv": result.groups.to_csv(index=False)}
        summary = {**result.info, "run_dir": str(run_dir)}
        ranked_path = out / "units_ranked.csv"
        units_problem = check_set(out, "units")
        if ranked_path.exists() and units_problem is None:
            ranked = pd.read_csv(ranked_path).unit.tolist()
            flips = flip_order(loaded.model, loaded.dataset, ranked, k_max=flip_k, device=device, progress=progress)
            files["examples_flips.csv"] = flips.to_csv(index=False)
            summary["flips"] = flips_vs_memorization(flips, result.examples)
            summary["flip_units"] = ranked[:flip_k]
        else:
            summary["flips"] = (f"skipped: {units_problem}" if units_problem else
                                f"skipped: {ranked_path} missing (run `spurmem memorization units` first)")
            (out / "examples_flips.csv").unlink(missing_ok=True)  # an older run's flips are not this set's
        files["examples_summary.json"] = json_text(summary)
        write_set(out, "examples", files)
        rec.outputs.append(str(out))
    return result, out


def curve_figure(curve, summary: dict) -> bytes:
    """The cumulative-share figure of a unit scan as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(curve.fraction_of_units, curve.cumulative_share, label="observed")
    ax.plot(curve.fraction_of_units, curve.null_mean, "--", label="sign-flip null (mean)")
    ax.fill_between(curve.fraction_of_units, curve.null_lo, curve.null_hi, alpha=0.2, label="null 95%")
    ax.plot(curve.fraction_of_units, curve.uniform, ":", color="grey", label="uniform")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of units (ranked by score)")
    ax.set_ylabel("cumulative share of positive score")
    ax.set_title(f"unit-level memorisation ({summary['units']} units)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
