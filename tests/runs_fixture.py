"""Fabricated run directories in the contract format of docs/architecture.md, for the report tests.

The numbers follow the shape of docs/method.md §9 (minority groups memorised on train, low on test) so
figures have something to show; they are made up, and no test asserts them as results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GROUP_NAMES = ["pullover/land", "pullover/water", "coat/land", "coat/water"]
MINORITY = (1, 2)


TRAIN_COUNTS = (228, 12, 12, 228)


def _group_rows(split: str, epoch: int, epochs: int, rng: np.random.Generator, count: int) -> list[dict]:
    rows = []
    t = epoch / max(epochs, 1)
    for g, name in enumerate(GROUP_NAMES):
        if split == "train":
            acc = min(1.0, 0.6 + 0.5 * t) if g in MINORITY else min(1.0, 0.9 + 0.1 * t)
        else:
            acc = 0.35 + 0.2 * t if g in MINORITY else 0.97
        acc = float(np.clip(acc + rng.normal(0, 0.02), 0, 1))
        n = TRAIN_COUNTS[g] if split == "train" else count
        correct = int(round(acc * n))
        rows.append({"group": g, "name": name, "correct": correct, "count": n,
                     "accuracy": correct / n, "mean_margin": float(3 * acc - 1)})
    return rows


def make_run(root: Path, name: str, algorithm: str = "erm", seed: int = 0, epochs: int = 4,
             status: str = "complete", dataset: str = "fashion-waterbirds") -> Path:
    """Write run.json, config.yaml and metrics.jsonl for a fake run; returns its directory."""
    rng = np.random.default_rng(seed + 17 * len(algorithm))
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch in range(1, epochs + 1):
        groups = {s: _group_rows(s, epoch, epochs, rng, 50) for s in ("train", "val", "test")}
        rec = {"epoch": epoch, "lr": 1e-3, "train_loss": 1.0 / epoch, "terms": {"ce": 1.0 / epoch}, "seconds": 1.5,
               "groups": groups}
        for split, rows in groups.items():
            accs = [r["accuracy"] for r in rows]
            rec[f"{split}/worst_group_accuracy"] = min(accs)
            rec[f"{split}/average"] = float(np.mean(accs))
            rec[f"{split}/adjusted_average"] = float(np.average(accs, weights=[0.475, 0.025, 0.025, 0.475]))
            rec[f"{split}/balanced_accuracy"] = float(np.mean(accs))
            for r in rows:
                rec[f"{split}/acc_g{r['group']}"] = r["accuracy"]
        lines.append(json.dumps(rec))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    val = [json.loads(l)["val/worst_group_accuracy"] for l in lines]
    best = int(np.argmax(val)) + 1
    info = {
        "name": name, "kind": "train", "status": status, "algorithm": algorithm, "dataset": dataset,
        "model": "small-cnn", "seed": seed,
        "selection": {"rule": "val_wga", "epoch": best, "value": val[best - 1]},
        "spurmem_version": "0.1.0", "git_commit": "0" * 40, "host": "test", "torch_version": "2.14.1",
        "device": "cpu", "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
        "seconds": 60.0,
    }
    (run / "run.json").write_text(json.dumps(info, indent=2))
    (run / "config.yaml").write_text(f"algorithm: {algorithm}\nseed: {seed}\nepochs: {epochs}\n")
    return run


def make_comparison(root: Path, algorithms=("erm", "erm-continue", "spurmem", "dfr"), seeds=(0, 1),
                    wga: dict[str, float] | None = None) -> Path:
    """A `spurmem compare` folder: runs/<alg>-s<seed>/ plus comparison.json in compare_table's format
    (``summary``: algorithm x metric mean/std/n_seeds; ``runs``: one row per run). ``wga`` sets each
    algorithm's mean test WGA (seed s adds 0.01 * s)."""
    wga = wga or {}
    runs, summary = [], []
    for alg in algorithms:
        values = []
        for seed in seeds:
            run = make_run(root / "runs", f"{alg}-s{seed}", alg, seed, epochs=3)
            value = wga.get(alg, 0.4) + 0.01 * seed
            values.append(value)
            runs.append({"algorithm": alg, "seed": seed, "run_dir": str(run), "selected_epoch": 2,
                         "selection_value": value, "test/worst_group_accuracy": value,
                         "test/adjusted_average": 0.9, "test/average": 0.7, "gap_g1": 0.4, "terms": {}})
        arr = np.asarray(values)
        for metric, vals in (("test/worst_group_accuracy", arr), ("test/adjusted_average", np.full(len(arr), 0.9)),
                             ("test/average", np.full(len(arr), 0.7)), ("gap_g1", np.full(len(arr), 0.4))):
            summary.append({"algorithm": alg, "metric": metric, "n_seeds": len(vals), "mean": float(vals.mean()),
                            "std": float(vals.std(ddof=1)) if len(vals) > 1 else None})
    (root / "comparison.json").write_text(json.dumps(
        {"config": {}, "selection_rule": "val_wga", "chosen_hparams": {}, "search": [], "summary": summary,
         "runs": runs}, indent=1))
    return root


def make_probe(run: Path, name: str = "grid", ks=(1, 3, 10), repeats: int = 4) -> Path:
    """RUN_DIR/probes/<name>/ with the files `spurmem probe` writes that the report reads (summary.csv,
    matrix.csv, verdicts.csv, verdicts.json, config.yaml, probe.json), for a gradient, a weight-norm and
    the random scorer with one intervention."""
    out = run / "probes" / name
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    summary, matrix = [], []
    scorers = [("group-gradient", g) for g in range(4)] + [("weight-norm", None)] + [("random", None)]
    for scorer, sel in scorers:
        for k in ks:
            for split in ("train", "test"):
                for g, gname in enumerate(GROUP_NAMES):
                    drop = float(np.clip(0.02 * k + (0.3 if sel == g else 0) + rng.normal(0, 0.02), -1, 1))
                    n = repeats if scorer == "random" else 1
                    summary.append({
                        "setting": f"{scorer}[{sel}] k={k} zero", "scorer": scorer, "k": k, "fraction": None,
                        "intervention": "zero", "sigma": None, "score_split": "train", "selected_from": sel,
                        "per_layer": False, "normalise": False, "split": split, "group": g, "group_name": gname,
                        "minority": g in MINORITY, "majority_of_class": 0 if g < 2 else 3, "count": 50,
                        "n_repeats": n, "acc_before": 0.9, "acc_after": 0.9 - drop, "drop_mean": drop,
                        "drop_std": 0.03 if n > 1 else None, "drop_ci95": 0.05 if n > 1 else None,
                    })
                    if scorer == "group-gradient":
                        matrix.append({"scorer": scorer, "k": k, "intervention": "zero", "sigma": None,
                                       "per_layer": False, "normalise": False, "score_split": "train", "split": split,
                                       "selected_from": sel, "group": g, "drop_mean": drop, "margin_change": -drop})
    import pandas as pd

    pd.DataFrame(summary).to_csv(out / "summary.csv", index=False)
    pd.DataFrame(matrix).to_csv(out / "matrix.csv", index=False)
    pd.DataFrame([{"setting": "group-gradient[1] k=3 zero", "scorer": "group-gradient", "selected_from": 1, "group": 1,
                   "group_name": GROUP_NAMES[1], "verdict": "class collapse", "reason": "majority dropped too",
                   "train_share": 0.5, "heldout_share": 0.4, "majority_share": 0.45, "margin_change": -1.0,
                   "heldout_split": "test", "drop_z": 1.0}]).to_csv(out / "verdicts.csv", index=False)
    (out / "verdicts.json").write_text(json.dumps({
        "claims": [
            {"claim": "5.1 sensitivity", "supported": False, "verdict": "not supported",
             "statistic": "0 of 12 settings (k <= 10) have specificity >= 0.10 beyond the random control"},
            {"claim": "5.2 group specificity", "supported": True, "verdict": "supported",
             "statistic": "diagonal beats the rest of its row for every minority group in 3 of 3 matrices"},
        ],
        "setting_verdict_counts": {"no effect": 10, "class collapse": 2, "group feature, not memorisation": 0,
                                   "localised memorisation": 0, "inconclusive": 0},
    }))
    (out / "config.yaml").write_text(f"name: {name}\nepoch: selected\nrepeats: {repeats}\nseed: 0\nsplits: [train]\n")
    (out / "probe.json").write_text(json.dumps({"source": {"run_dir": str(run), "epoch": 2}}))
    return out


SHAPES_CONFIG = ("dataset: synthetic-shapes\ndataset_params: {n_train: 60, n_val: 20, n_test: 20, size: 12}\n"
                 "model: small-cnn\nalgorithm: erm\nepochs: 3\n")


def make_memorization(run: Path, n_units: int = 40) -> Path:
    """RUN_DIR/memorization/ with the files `spurmem memorization units` and `examples` write (ranked units,
    curve with a null, per-layer totals, summary; example scores over the run's real training ids)."""
    import pandas as pd

    from spurmem.data import load_dataset

    (run / "config.yaml").write_text(SHAPES_CONFIG)  # the example grid rebuilds the dataset from it
    train = load_dataset("synthetic-shapes", n_train=60, n_val=20, n_test=20, size=12)["train"]
    out = run / "memorization"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    score = rng.exponential(0.01, n_units) ** 2 * np.where(rng.random(n_units) < 0.7, 1, -1)
    layers = [f"stages.{i // 10}.conv" for i in range(n_units)]
    ranked = pd.DataFrame({"unit": [f"{l}:{i % 10}" for i, l in enumerate(layers)], "layer": layers, "score": score,
                           "train_drop": np.abs(score), "heldout_drop": 0.0})
    ranked = ranked.sort_values("score", ascending=False).reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, n_units + 1))
    ranked.to_csv(out / "units_ranked.csv", index=False)
    frac = np.arange(1, n_units + 1) / n_units
    pd.DataFrame({"rank": np.arange(1, n_units + 1), "fraction_of_units": frac, "cumulative_share": frac ** 0.3,
                  "null_mean": frac ** 0.5, "null_lo": frac ** 0.6, "null_hi": frac ** 0.4, "uniform": frac}
                 ).to_csv(out / "units_curve.csv", index=False)
    pd.DataFrame([{"layer": f"stages.{i}.conv", "units": 10, "positive_score": 0.1 * (i + 1), "share": 0.1 * (i + 1),
                   "uniform_share": 0.25} for i in range(4)]).to_csv(out / "units_layers.csv", index=False)
    (out / "units_summary.json").write_text(json.dumps({
        "units": n_units, "heldout_split": "test", "epoch": 3, "total_positive_score": float(np.clip(score, 0, None).sum()),
        "top_shares": {"top_1pct": 0.30, "top_10pct": 0.70},
        "null": {"top_1pct": {"uniform": 0.025, "null_hi": 0.2}, "top_10pct": {"uniform": 0.1, "null_hi": 0.5}},
        "statement": "memorisation is concentrated in few units, beyond the random expectation: (made up)",
    }))
    mem = rng.choice([-0.5, 0.0, 0.5, 1.0], size=len(train))
    pd.DataFrame({"index": np.arange(len(train)), "id": train.ids, "group": train.group.numpy(), "y": train.y.numpy(),
                  "a": train.a.numpy(), "mem": mem, "mem_p": mem / 2}).to_csv(out / "examples.csv", index=False)
    pd.DataFrame([{"group": g, "group_name": f"g{g}", "minority": g in (1, 2), "count": 15, "mem_mean": 0.1,
                   "share_high": 0.2, "share_of_all_high": 0.25} for g in range(4)]).to_csv(
        out / "examples_groups.csv", index=False)
    (out / "examples_summary.json").write_text(json.dumps({"models": 2, "epoch": "last",
                                                            "design": "complementary random halves"}))
    return out
