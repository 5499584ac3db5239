"""Readers turning each stage's output files into the tidy tables the figures take.

One function per kind of input; each returns an empty frame (never a guess) when its files are
absent, and raises :class:`~spurmem.report.runs.RunDirError` naming the file when one is malformed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spurmem.fileset import check_set
from spurmem.report.runs import RUN_PARTS, Run, RunDirError, selected_groups


def majority_groups(run: Run, train_rows: pd.DataFrame) -> set[int]:
    """The majority group of each class, from the run's record when it has one, else from the training
    counts and the ``class/attribute`` group names (the schema's naming)."""
    for source in (run.info, run.info.get("dataset_info") or {}):
        if source.get("majority_groups") is not None:
            return {int(g) for g in source["majority_groups"]}
    rows = train_rows.assign(cls=train_rows["group_name"].astype(str).str.rsplit("/", n=1).str[0])
    return {int(part.loc[part["count"].idxmax(), "group"]) for _, part in rows.groupby("cls")}


def memorization_gaps(run: Run, heldout: str = "test") -> pd.DataFrame:
    """Per group at the selected epoch: train accuracy, held-out accuracy, their gap and the group's role."""
    cols = ["run", "algorithm", "seed", "epoch", "group", "group_name", "role", "train_accuracy",
            f"{heldout}_accuracy", "gap", "train_count"]
    rows = selected_groups(run)
    train = rows[rows["split"] == "train"].set_index("group")
    held = rows[rows["split"] == heldout].set_index("group")
    if train.empty or held.empty:
        return pd.DataFrame(columns=cols)
    majority = majority_groups(run, train.reset_index())
    out = []
    for g, tr in train.iterrows():
        if g not in held.index:
            continue
        out.append({
            "run": run.name, "algorithm": run.algorithm, "seed": run.seed, "epoch": run.selected_epoch,
            "group": int(g), "group_name": tr["group_name"],
            "role": "majority" if g in majority else "minority",
            "train_accuracy": tr["accuracy"], f"{heldout}_accuracy": held.loc[g, "accuracy"],
            "gap": tr["accuracy"] - held.loc[g, "accuracy"], "train_count": tr["count"],
        })
    return pd.DataFrame(out, columns=cols)


COMPARISON_FILE = "comparison.json"
METRIC_LABELS = {
    "test/worst_group_accuracy": "test WGA",
    "test/adjusted_average": "test adjusted avg",
    "test/average": "test avg",
}


@dataclass
class Comparison:
    """A ``spurmem compare`` output folder: the per-algorithm summary and the per-run metrics."""

    path: Path
    summary: pd.DataFrame  # algorithm, metric, n_seeds, mean, std
    per_run: pd.DataFrame  # algorithm, seed, run_dir, selected_epoch, test/..., gap_g*
    selection_rule: str
    seeds: list[int]


def find_comparisons(paths: list[str | Path]) -> list[Comparison]:
    """Every comparison (a folder with comparison.json) at or below ``paths``, sorted by path."""
    found: set[Path] = set()
    for root in map(Path, paths):
        if (root / COMPARISON_FILE).is_file():
            found.add(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in RUN_PARTS]
            if COMPARISON_FILE in filenames:
                found.add(Path(dirpath))
    return [read_comparison(p) for p in sorted(found)]


def read_comparison(folder: str | Path) -> Comparison:
    path = Path(folder) / COMPARISON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("summary", "runs"):
        if key not in data:
            raise RunDirError(f"{path}: no {key!r} entry; expected the output of `spurmem compare`")
    summary = pd.DataFrame(data["summary"], columns=["algorithm", "metric", "n_seeds", "mean", "std"])
    per_run = pd.DataFrame(data["runs"]).drop(columns=["terms"], errors="ignore")
    seeds = sorted({int(s) for s in per_run.get("seed", [])})
    return Comparison(Path(folder), summary, per_run, str(data.get("selection_rule", "not stated")), seeds)


PROBES_DIR = "probes"
PROBE_VERDICTS = "verdicts.json"


@dataclass
class ProbeFiles:
    """One probe folder ``RUN_DIR/probes/<name>/`` as written by ``spurmem probe``."""

    run: Run
    path: Path
    summary: pd.DataFrame  # setting x split x group: drop_mean, drop_ci95, ...
    matrix: pd.DataFrame  # selected_from x group drops of the per-group scorers
    verdicts: pd.DataFrame  # setting x minority group: verdict label and shares
    claims: list[dict]  # docs/method.md §5.1/5.2: claim, verdict, statistic, details
    verdict_counts: dict[str, int]
    config: dict
    source: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def epoch(self) -> int | None:
        return self.source.get("epoch")

    def group_names(self) -> dict[int, str]:
        names = self.summary.drop_duplicates("group")
        return {int(g): str(n) for g, n in zip(names["group"], names["group_name"])}


def _read_csv(path: Path) -> pd.DataFrame:
    """A table spurmem wrote (empty when absent); a file cut short (no final newline) is an error."""
    if not path.is_file():
        return pd.DataFrame()
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(size - 1, 0))
        if size and fh.read(1) != b"\n":
            raise RunDirError(f"{path}: truncated (the last line is incomplete); rerun the command that wrote it")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not a readable CSV ({exc})") from exc


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return data


def find_probes(run: Run) -> list[ProbeFiles]:
    """Every finished probe of a run (a folder under ``probes/`` with ``verdicts.json`` and a whole
    file set, see :func:`incomplete_sets`), by name."""
    from spurmem.config import read_yaml_mapping

    root = run.path / PROBES_DIR
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if check_set(folder, "probe") is not None:
            continue
        verdicts = _read_json(folder / PROBE_VERDICTS)
        if not verdicts:
            continue
        config_path = folder / "config.yaml"
        config = read_yaml_mapping(config_path)[0] if config_path.is_file() else {}
        out.append(ProbeFiles(
            run=run, path=folder, summary=_read_csv(folder / "summary.csv"), matrix=_read_csv(folder / "matrix.csv"),
            verdicts=_read_csv(folder / "verdicts.csv"), claims=list(verdicts.get("claims", [])),
            verdict_counts=dict(verdicts.get("setting_verdict_counts", {})), config=config or {},
            source=_read_json(folder / "probe.json").get("source", {}),
        ))
    return out


def _flag(series: pd.Series) -> pd.Series:
    """A boolean column read back from CSV (True/False, or the strings "True"/"False"; missing = False)."""
    if series.dtype == bool:
        return series
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def probe_curves(probe: ProbeFiles, intervention: str, split: str = "train") -> pd.DataFrame:
    """Rows for :func:`~spurmem.report.figures.plot_probe_curves`: one panel per scorer (per-group scorers:
    one panel per minority group the units were selected from), the ``random`` scorer as the control.
    Global top-k without per-layer normalisation only. The band of a scorer is the 95% t-interval of
    its mean over repeats (0 when one); the band of the ``random`` control is the range of its draws
    that the verdicts compare with (``draws_lo``..``draws_hi``, docs/method.md §5), where the probe
    wrote it (older probes: the t-interval)."""
    s = probe.summary
    if s.empty:
        return pd.DataFrame()
    s = s[(s["split"] == split) & (s["intervention"] == intervention) & s["k"].notna()
          & ~_flag(s["per_layer"]) & ~_flag(s["normalise"])]
    names = probe.group_names()
    minority = set(s.loc[_flag(s["minority"]), "group"].astype(int))

    def panel(row) -> str | None:
        sel = row["selected_from"]
        if _is_missing(sel):
            return row["scorer"]
        if int(sel) not in minority:
            return None  # units from a majority group: shown in the matrix, not as a curve
        return f"{row['scorer']} (units from g{int(sel)} {names.get(int(sel), '')})"

    s = s.assign(panel=s.apply(panel, axis=1)).dropna(subset=["panel"])
    ci = s["drop_ci95"].fillna(0.0)
    low, high = s["drop_mean"] - ci, s["drop_mean"] + ci
    if "draws_lo" in s and "draws_hi" in s:
        draws = (s["scorer"] == "random") & s["draws_lo"].notna() & s["draws_hi"].notna()
        low, high = low.where(~draws, s["draws_lo"]), high.where(~draws, s["draws_hi"])
    return pd.DataFrame({
        "scorer": s["panel"], "k": s["k"].astype(int), "group": s["group"].astype(int), "group_name": s["group_name"],
        "drop_mean": s["drop_mean"], "ci_low": low, "ci_high": high,
        "n_repeats": s["n_repeats"],
    }).reset_index(drop=True)


def probe_matrix(probe: ProbeFiles, intervention: str, scorer: str = "group-gradient",
                 split: str = "train") -> tuple[pd.DataFrame, int | None]:
    """The group-by-group matrix (units from group i, drop on group j) at the largest k; and that k."""
    m = probe.matrix
    if m.empty:
        return pd.DataFrame(), None
    m = m[(m["scorer"] == scorer) & (m["split"] == split) & (m["intervention"] == intervention)
          & ~_flag(m["per_layer"]) & ~_flag(m["normalise"])]
    if m.empty:
        return pd.DataFrame(), None
    k = int(m["k"].max())
    m = m[m["k"] == k]
    names = probe.group_names()
    return pd.DataFrame({
        "source_group": m["selected_from"].astype(int), "source_name": m["selected_from"].astype(int).map(names),
        "target_group": m["group"].astype(int), "target_name": m["group"].astype(int).map(names),
        "value": m["drop_mean"],
    }).reset_index(drop=True), k


MEMORIZATION_DIR = "memorization"


@dataclass
class MemorizationFiles:
    """``RUN_DIR/memorization/`` as written by ``spurmem memorization units|examples|gap``; a part that was
    not computed is an empty frame / dict."""

    run: Run
    path: Path
    ranked: pd.DataFrame  # one row per unit, best score first
    curve: pd.DataFrame  # fraction_of_units, cumulative_share, null_mean/lo/hi, uniform
    layers: pd.DataFrame  # layer, units, positive_score, share, uniform_share
    units_summary: dict
    examples: pd.DataFrame  # one row per training example: index, id, group, mem, mem_p
    example_groups: pd.DataFrame
    examples_summary: dict


def incomplete_sets(run: Run, kinds: tuple[str, ...] = ("units", "examples", "probe")) -> list[str]:
    """Why each multi-file output of ``run`` (sets ``kinds``) that is incomplete (an interrupted
    command) or mixed (a file rewritten by a later command) cannot be used (``spurmem.fileset``);
    readers leave those out."""
    sets = [(run.path / MEMORIZATION_DIR, name) for name in ("units", "examples") if name in kinds]
    root = run.path / PROBES_DIR
    if "probe" in kinds and root.is_dir():
        sets += [(p, "probe") for p in sorted(root.iterdir()) if p.is_dir()]
    return [problem for folder, name in sets if (problem := check_set(folder, name)) is not None]


def find_memorization(run: Run) -> MemorizationFiles | None:
    """The whole sets of ``RUN_DIR/memorization/`` (an incomplete or mixed set reads as absent)."""
    folder = run.path / MEMORIZATION_DIR
    if not folder.is_dir():
        return None
    units = check_set(folder, "units") is None
    examples = check_set(folder, "examples") is None

    def csv(name: str, whole: bool) -> pd.DataFrame:
        return _read_csv(folder / name) if whole else pd.DataFrame()

    files = MemorizationFiles(
        run=run, path=folder, ranked=csv("units_ranked.csv", units), curve=csv("units_curve.csv", units),
        layers=csv("units_layers.csv", units),
        units_summary=_read_json(folder / "units_summary.json") if units else {},
        examples=csv("examples.csv", examples), example_groups=csv("examples_groups.csv", examples),
        examples_summary=_read_json(folder / "examples_summary.json") if examples else {},
    )
    if files.ranked.empty and files.examples.empty:
        return None
    return files


def most_memorized_images(mem: MemorizationFiles, n: int = 16):
    """The ``n`` training examples with the highest example-level score (ties: true-class probability
    gap), their images (uint8 N x C x H x W, rebuilt from the run's dataset config) and labels."""
    from spurmem.train.run import build_dataset, read_config

    top = mem.examples.sort_values(["mem", "mem_p"], ascending=False, kind="stable").head(n)
    dataset = build_dataset(read_config(mem.run.path))
    train = dataset["train"]
    by_id = {id_: i for i, id_ in enumerate(train.ids)}
    index = [by_id[i] for i in top["id"].astype(str)] if "id" in top else top["index"].astype(int).tolist()
    images = train.images[index].numpy()
    names = dataset.group_names
    labels = [f"g{int(g)} {names[int(g)]}\nmem {m:.2f}" for g, m in zip(top["group"], top["mem"])]
    return images, labels, top
