"""Example-level memorisation (docs/method.md §5.3, after Feldman & Zhang 2020), estimated with M models.

The training set is split into random halves in complementary pairs: model 2j trains on half
H_j and model 2j+1 on its complement, so every training example is included in exactly M/2
models and held out from the other M/2 (M is even; default 8). Each model is trained by the shared
training loop (:func:`spurmem.train.train`, the run's own recipe) on a dataset whose training split
is the half; its run directory records the half's indices in ``subset.json``. An example's score is

    mem_i = mean accuracy on i of the models that trained on i - mean of those that did not

(``mem_p`` the same with the predicted probability of the true class). High scores mean the model
gets the example right only when it has seen it. :func:`flip_order` then asks which examples flip
first when the top critical units of the full model are zeroed together (k = 1, 2, ...).
Fewer than :data:`MIN_MODELS` models give a warning and mark the estimate ``not testable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch import nn

from spurmem.data.schema import GroupDataset
from spurmem.progress import Progress

HALVES_DIR = "halves"
MIN_MODELS = 8  # below this the scores take too few values to rank examples (2 models: only -1, 0 or 1)


def testability(models: int) -> str | None:
    """Why example-level scores from ``models`` half-data models cannot be read as a ranking, or None."""
    if models >= MIN_MODELS:
        return None
    return (f"not testable: {models} half-data model(s) (at least {MIN_MODELS} needed); every score is one of "
            f"{models + 1} values from -1 to 1 in steps of {2 / max(models, 2):g}, so "
            "'most memorised' is a tie among all examples at the top value (a smoke setting)")


@dataclass
class ExampleMemorization:
    """``examples``: one row per training example; ``groups``: the distribution per group."""

    examples: pd.DataFrame
    groups: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def half_splits(n: int, models: int, seed: int = 0) -> list[np.ndarray]:
    """Training indices of each model: ``models // 2`` random halves and their complements."""
    if models < 2 or models % 2:
        raise ValueError(f"models must be an even number >= 2 (complementary halves), got {models}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(models // 2):
        perm = rng.permutation(n)
        out += [np.sort(perm[: n // 2]), np.sort(perm[n // 2:])]
    return out


def estimate(correct: np.ndarray, p_true: np.ndarray, included: np.ndarray) -> pd.DataFrame:
    """Per example, from ``[models x examples]`` correctness, true-class probability and inclusion."""
    inc = included.astype(bool)
    n_in, n_out = inc.sum(0), (~inc).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_in = np.where(inc, correct, 0).sum(0) / n_in
        acc_out = np.where(~inc, correct, 0).sum(0) / n_out
        p_in = np.where(inc, p_true, 0).sum(0) / n_in
        p_out = np.where(~inc, p_true, 0).sum(0) / n_out
    return pd.DataFrame({"n_in": n_in, "n_out": n_out, "acc_in": acc_in, "acc_out": acc_out,
                         "mem": acc_in - acc_out, "p_in": p_in, "p_out": p_out, "mem_p": p_in - p_out})


def group_distribution(examples: pd.DataFrame, dataset: GroupDataset, high: float = 0.5) -> pd.DataFrame:
    """Per group: count, mean/median/quantiles of ``mem``, the share of examples with mem >= ``high``,
    and the group's share of all high-memorisation examples."""
    n_high = int((examples.mem >= high).sum())
    rows = []
    for g, name in enumerate(dataset.group_names):
        m = examples.mem[examples.group == g].dropna()
        rows.append({"group": g, "group_name": name, "minority": g in dataset.minority_groups, "count": len(m),
                     "mem_mean": float(m.mean()) if len(m) else np.nan,
                     "mem_median": float(m.median()) if len(m) else np.nan,
                     "mem_q10": float(m.quantile(0.1)) if len(m) else np.nan,
                     "mem_q90": float(m.quantile(0.9)) if len(m) else np.nan,
                     "share_high": float((m >= high).mean()) if len(m) else np.nan,
                     "share_of_all_high": float((m >= high).sum() / n_high) if n_high else np.nan,
                     "high_threshold": high})
    return pd.DataFrame(rows)


def half_dataset(dataset: GroupDataset, idx: np.ndarray) -> GroupDataset:
    """``dataset`` with only the training examples ``idx`` (the other splits as they are)."""
    splits = dict(dataset.splits)
    splits["train"] = dataset["train"].subset(idx)
    return GroupDataset(dataset.name, splits, dataset.class_names, dataset.attr_names, dataset.mean, dataset.std,
                        source=dataset.source, params={**dataset.params, "train_subset": f"{len(idx)} examples"})


def example_memorization(config, dataset: GroupDataset, out_dir: str | Path, *, models: int = 8, seed: int = 0,
                         epoch: str | int = "last", device: str = "auto", progress: bool = False,
                         executor=None, **overrides: Any) -> ExampleMemorization:
    """Train ``models`` half-data models with ``config`` (a :class:`~spurmem.train.TrainConfig`; fields
    in ``overrides`` replace its own) under ``out_dir/halves/`` and estimate every training example's
    memorisation. Finished models are reused, so an interrupted estimate resumes.

    The models are independent jobs of ``executor`` (a :class:`~spurmem.jobs.Executor`; default: the
    local one with one worker, i.e. one after another in this process, on ``dataset``). On more
    workers or on Ray each worker builds the dataset from ``config.dataset``/``dataset_params``, so
    ``dataset`` must be that dataset (as it is for a run loaded with ``load_run``)."""
    from spurmem.config import validate_config
    from spurmem.jobs.executor import Job, make_executor, raise_for_failures, run_jobs
    from spurmem.jobs.tasks import shared_dataset
    from spurmem.metrics import predict
    from spurmem.record import write_json_atomic
    from spurmem.train import load_run

    import warnings

    out_dir = Path(out_dir)
    if (note := testability(models)) is not None:
        warnings.warn(f"example-level memorisation {note}", stacklevel=2)
    n = len(dataset["train"])
    subsets = half_splits(n, models, seed)
    correct = np.zeros((models, n), dtype=bool)
    p_true = np.zeros((models, n))
    included = np.zeros((models, n), dtype=bool)
    epochs = overrides.get("epochs", config.epochs)
    own = executor is None
    executor = make_executor("local", workers=1) if own else executor
    inline = executor.name == "local" and executor.slots == 1
    jobs = []
    for m, idx in enumerate(subsets):
        run_dir = out_dir / HALVES_DIR / f"model_{m:02d}"
        cfg = validate_config(type(config), {**config.model_dump(), "name": f"{config.name}-half{m:02d}",
                                             "seed": config.seed + m, **overrides}, source="half-model overrides")
        write_json_atomic(run_dir.parent / f"model_{m:02d}.subset.json",
                          {"model": m, "seed": seed, "pair": m // 2, "complement_of": m ^ 1,
                           "train_indices": idx.tolist()})
        jobs.append(Job(f"half-data model {m + 1}/{models}", "train",
                        {"config": cfg.model_dump(mode="json"), "run_dir": str(run_dir),
                         "progress": progress and inline, "train_indices": idx.tolist()}, run_dir))
    try:
        with Progress("memorization examples", models, unit="models", enabled=progress,
                      cost=f"{models} half-data models x {epochs} epochs on {n // 2:,} of {n:,} training examples "
                           f"each; {executor.describe()}") as bar, \
                shared_dataset(config.dataset, config.dataset_params, dataset):
            raise_for_failures(run_jobs(jobs, executor, progress=bar), "memorization examples")
    finally:
        if own:
            executor.close()
    for m, (idx, job) in enumerate(zip(subsets, jobs)):
        loaded = load_run(job.run_dir, epoch=epoch, device=device, dataset=dataset)
        pred = predict(loaded.model, dataset, "train", device=device)
        correct[m], p_true[m], included[m, idx] = pred.correct, pred.p_true, True
    table = estimate(correct, p_true, included)
    data = dataset["train"]
    table.insert(0, "index", np.arange(n))
    table.insert(1, "id", data.ids)
    table.insert(2, "group", data.group.numpy())
    table.insert(3, "y", data.y.numpy())
    table.insert(4, "a", data.a.numpy())
    info = {"models": models, "seed": seed, "epoch": str(epoch), "design": "complementary random halves",
            "score": "mean correctness when included minus when held out", "config": config.model_dump(mode="json"),
            "overrides": overrides, "min_models": MIN_MODELS, "testable": testability(models) is None,
            "note": testability(models) or ""}
    return ExampleMemorization(examples=table, groups=group_distribution(table, dataset), info=info)


def flip_order(model: nn.Module, dataset: GroupDataset, ranked_units: Sequence[str], *, k_max: int = 10,
               intervention: str = "zero", device: str = "auto", progress: bool = False,
               **params: Any) -> pd.DataFrame:
    """For every training example, the smallest k at which zeroing the top-k units (together) makes a
    correct prediction wrong (NaN: it never flips up to ``k_max``; examples wrong already are marked)."""
    from spurmem.probes.scan import ScanEngine

    units = list(ranked_units)[:k_max]
    engine = ScanEngine(model, dataset, device=device)
    res = engine.scan([], intervention, "train", sets=[units[:k] for k in range(1, len(units) + 1)],
                      per_example=True, progress=progress, **params)
    base = res.base_example_correct
    flipped = base[None, :] & ~res.example_correct
    first = np.where(flipped.any(0), flipped.argmax(0) + 1, np.nan).astype(float)
    order = res.example_index
    return pd.DataFrame({"index": order, "group": dataset["train"].group.numpy()[order],
                         "correct_before": base, "first_flip_k": first})


def flips_vs_memorization(flips: pd.DataFrame, examples: pd.DataFrame) -> dict[str, Any]:
    """Do high-memorisation examples flip first? Mean score of flipping vs non-flipping examples
    (correct before), the Spearman correlation of score with -first_flip_k, per group and overall."""
    from scipy.stats import spearmanr

    df = flips.merge(examples[["index", "mem"]], on="index")
    df = df[df.correct_before]
    out: dict[str, Any] = {}
    for key, part in [("all", df)] + [(f"g{g}", p) for g, p in df.groupby("group")]:
        flips_k = part.first_flip_k
        flipped = flips_k.notna()
        rank = -flips_k.fillna(flips_k.max() + 1 if flipped.any() else 0)  # never flipped = last
        rho = spearmanr(part.mem, rank).statistic if rank.nunique() > 1 and part.mem.nunique() > 1 else float("nan")
        out[key] = {"examples": int(len(part)), "flipped": int(flipped.sum()),
                    "mem_flipped": float(part.mem[flipped].mean()) if flipped.any() else float("nan"),
                    "mem_not_flipped": float(part.mem[~flipped].mean()) if (~flipped).any() else float("nan"),
                    "first_flip_k_median": float(flips_k.median()) if flipped.any() else float("nan"),
                    "spearman_mem_vs_early_flip": float(rho)}
    return out
