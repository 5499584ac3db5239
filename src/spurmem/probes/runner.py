"""The probe runner: every setting of a grid, every group before and after, resumable.

For each setting the runner ranks units with the scorer (rankings are cached across k and
interventions), applies the intervention in place to a private copy of the model (restored exactly
after each setting) and evaluates every group on every evaluation split. Unit selections are
evaluated on the scan engine (:class:`~spurmem.probes.scan.ScanEngine`, ``sets=``): the layers before
the earliest edited unit run once per split for all settings entering there (cached), and only the
rest of the network runs per setting (same counts as a full pass; margins equal up to float rounding).
Weight-threshold selections take the full copy-edit-predict pass. Settings that edit the
same units in the same way (several scorers often agree on the top unit) are evaluated once. Each finished setting is
written atomically to ``settings/<id>.csv`` under the output folder, so a killed grid resumes where
it stopped; the tables, summary and verdicts (:mod:`spurmem.probes.summary`) are rebuilt from all
finished settings at the end.

Row columns (one row per setting x repeat x split x group): the setting (``setting`` label,
``setting_id``, scorer, k or fraction, intervention, sigma, score_split, selected_from, per_layer,
normalise, repeat, selection_seed, intervention_seed, units edited, ``seconds`` it took to edit and
evaluate), the ``split``, the ``group``
(name, minority flag, same-class majority, count), ``acc_before``, ``acc_after``, ``drop`` (before
minus after: positive means worse), ``margin_before``/``margin_after``/``margin_change`` (mean logit
margin of the true class), ``pred_before_c``/``pred_after_c`` (predicted-class histogram) and, for
minority groups, ``specificity`` = drop(g) - drop(same-class majority).
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from spurmem.config import ConfigError, dump_config
from spurmem.data.schema import GroupDataset
from spurmem.device import resolve_device
from spurmem.metrics import Predictions, metrics_from_predictions, predict
from spurmem.probes.config import ProbeConfig
from spurmem.probes.grid import Setting, expand_grid, result_context
from spurmem.probes.interventions import INTERVENTIONS, activation_means, intervene
from spurmem.probes.scan import PREFIX_CACHE_MB, ScanEngine, ScanResult
from spurmem.probes.scorers import SCORERS, ScoreContext, score_units, select_weights, top_units
from spurmem.probes.summary import ProbeSummary, summarise, write_summary
from spurmem.probes.units import Unit, WeightSelection, candidate_layers
from spurmem.progress import Progress
from spurmem.record import write_json_atomic, write_text_atomic
from spurmem.untrusted import read_json_file

SETTINGS_DIR = "settings"


@dataclass
class ProbeResult:
    """Everything a probe produced: the tidy rows and the summary tables and verdicts built from them."""

    config: ProbeConfig
    rows: pd.DataFrame
    summary: ProbeSummary
    out_dir: Path | None
    n_computed: int
    n_resumed: int
    seconds: float
    skipped: list[str] = field(default_factory=list)


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's state (weights and buffers), to refuse resuming a folder made from another model."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def group_table(pred: Predictions, dataset: GroupDataset) -> pd.DataFrame:
    """Per group of one split: count, accuracy, mean margin and the predicted-class histogram."""
    m = metrics_from_predictions(pred, dataset)
    rows = []
    for g in m.groups:
        preds = pred.pred[pred.group == g.group]
        hist = np.bincount(preds, minlength=dataset.n_classes)
        rows.append({"group": g.group, "count": g.count, "accuracy": g.accuracy, "mean_margin": g.mean_margin,
                     **{f"pred_{c}": int(hist[c]) for c in range(dataset.n_classes)}})
    return pd.DataFrame(rows)


def scan_group_table(result: ScanResult, variant: int) -> pd.DataFrame:
    """:func:`group_table` of one variant of a scan (the same columns and counts)."""
    count, correct = result.count, result.correct[variant]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
        margin = np.where(count > 0, result.margin_sum[variant] / np.maximum(count, 1), np.nan)
    table = pd.DataFrame({"group": np.arange(len(count)), "count": count.astype(int), "accuracy": accuracy,
                          "mean_margin": margin})
    for c in range(result.pred_count.shape[2]):
        table[f"pred_{c}"] = result.pred_count[variant, :, c].astype(int)
    return table


def run_probe(
    model: nn.Module,
    dataset: GroupDataset,
    config: ProbeConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    rewind_source: Mapping[str, torch.Tensor] | str | Path | None = None,
    source: dict[str, Any] | None = None,
    progress: bool = True,
    use_engine: bool = True,
) -> ProbeResult:
    """Run the grid of ``config`` on ``model`` (never modified: the runner edits a private copy).

    ``out_dir`` (optional) receives the per-setting parts, ``rows.csv`` and the summary files, and
    makes the grid resumable. ``rewind_source`` is the earlier epoch's state dict (or file) for
    ``rewind``; ``source`` describes where the model came from (run dir, epoch) for the record.
    ``use_engine=False`` evaluates every setting by a full copy-edit-predict pass (the reference).
    """
    config = config or ProbeConfig()
    start = time.perf_counter()
    device = resolve_device(config.device)
    work = copy.deepcopy(model).to(device).eval()
    layers = candidate_layers(work, include_downsample=config.include_downsample, layers=config.layers)
    settings, skipped = expand_grid(config, dataset)
    if any(s.intervention == "rewind" for s in settings) and rewind_source is None:
        raise ConfigError("interventions: 'rewind' needs the checkpoint of an earlier epoch (probe a run directory, "
                          "or pass rewind_source=)")
    for split in config.eval_splits:
        dataset[split]  # a clear error for a split the dataset lacks
    context = result_context(config)
    out = Path(out_dir) if out_dir is not None else None
    fingerprint = model_fingerprint(work)
    done: dict[str, pd.DataFrame] = {}
    if out is not None:
        done = _prepare_folder(out, config, fingerprint, source)

    before_pred = {s: predict(work, dataset, s, config.batch_size, device) for s in config.eval_splits}
    before = {s: group_table(p, dataset) for s, p in before_pred.items()}
    score_ctx = ScoreContext(work, dataset, layers, predictions=dict(before_pred))
    means = None
    if any(INTERVENTIONS[s.intervention].needs == "means" for s in settings):
        means = activation_means(work, dataset, [l.name for l in layers], split="train",
                                 batch_size=config.batch_size, device=device)
    rankings: dict[tuple, pd.DataFrame] = {}
    pending = [(s, s.setting_id(context)) for s in settings]
    pending = [(s, sid) for s, sid in pending if sid not in done]
    parts = list(done.values())
    evaluated: dict[tuple, dict[str, pd.DataFrame]] = {}  # the same edit of the same units is evaluated once
    engine = (ScanEngine(work, dataset, batch_size=config.batch_size, device=device, cache_mb=PREFIX_CACHE_MB)
              if use_engine else None)
    cost = (f"{len(pending)} settings ({len(settings) - len(pending)} resumed) x "
            + " + ".join(f"{len(dataset[s]):,} {s}" for s in config.eval_splits) + " examples")
    with Progress(f"probe {config.name}", len(pending), unit="settings", enabled=progress and bool(pending),
                  cost=cost) as bar:
        for setting, sid in pending:
            target = _select(setting, config, score_ctx, layers, rankings)
            edit = (_signature(target), setting.intervention, setting.sigma, setting.intervention_seed)
            tick = time.perf_counter()
            if edit not in evaluated:
                edit_params = dict(sigma=setting.sigma, seed=setting.intervention_seed or 0, source=rewind_source,
                                   means=means)
                if isinstance(target, WeightSelection) or engine is None:
                    with intervene(work, target, setting.intervention, inplace=True, **edit_params) as edited:
                        evaluated[edit] = {s: group_table(predict(edited, dataset, s, config.batch_size, device),
                                                          dataset) for s in config.eval_splits}
                else:
                    evaluated[edit] = {s: scan_group_table(engine.scan([], setting.intervention, s, sets=[target],
                                                                       baseline=False, **edit_params), 0)
                                       for s in config.eval_splits}
            after = evaluated[edit]
            text = _rows(setting, sid, target, before, after, dataset, time.perf_counter() - tick).to_csv(index=False)
            if out is not None:
                write_text_atomic(out / SETTINGS_DIR / f"{sid}.csv", text)
            parts.append(_read_part(io.StringIO(text)))  # fresh and resumed rows get identical types
            bar.advance(1, info=setting.label)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    order = {sid: i for i, sid in enumerate(s.setting_id(context) for s in settings)}
    if len(rows):
        rows = rows[rows["setting_id"].isin(order)]  # parts of settings no longer in the grid are kept on disk only
        split_order = {s: i for i, s in enumerate(config.eval_splits)}
        rows = rows.assign(_o=rows["setting_id"].map(order), _s=rows["split"].map(split_order))
        rows = rows.sort_values(["_o", "_s", "group"], kind="stable").drop(columns=["_o", "_s"]).reset_index(drop=True)
    summary = summarise(rows, dataset, config)
    seconds = time.perf_counter() - start
    if out is not None:
        write_summary(out, summary, config, rows=rows, skipped=skipped, seconds=seconds,
                      n_computed=len(pending), n_resumed=len(settings) - len(pending))
    return ProbeResult(config, rows, summary, out, len(pending), len(settings) - len(pending), seconds, skipped)


def _select(setting: Setting, config: ProbeConfig, ctx: ScoreContext, layers, rankings) -> list[Unit] | WeightSelection:
    spec = SCORERS[setting.scorer]
    if spec.unstructured:
        return select_weights(ctx.model, layers, setting.fraction, config.largest, config.thinning,
                              setting.selection_seed or 0)
    key = (setting.scorer, setting.score_split, setting.selected_from, setting.normalise, setting.selection_seed)
    if key not in rankings:
        rankings[key] = score_units(
            ctx.model, ctx.dataset, setting.scorer, group=setting.selected_from,
            split=setting.score_split or "train", n_hardest=config.n_hardest, normalise=setting.normalise,
            contrast=config.contrast, seed=setting.selection_seed or 0, batch_size=config.batch_size,
            device=config.device, context=ctx,
        )
    return top_units(rankings[key], setting.k, per_layer=setting.per_layer)


def _signature(target) -> tuple:
    if isinstance(target, WeightSelection):
        import hashlib

        digest = hashlib.sha256()
        for layer in sorted(target.masks):
            digest.update(layer.encode())
            digest.update(target.masks[layer].cpu().numpy().tobytes())
        return ("weights", digest.hexdigest())
    return ("units", tuple(sorted(u.id for u in target)))


def _rows(setting: Setting, sid: str, target, before, after, dataset: GroupDataset, seconds: float) -> pd.DataFrame:
    if isinstance(target, WeightSelection):
        units = f"{target.count} weights in {len(target.units())} units"
        n_units = len(target.units())
    else:
        units = ";".join(u.id for u in target)
        n_units = len(target)
    head = {"setting": setting.label, "setting_id": sid, **asdict(setting), "n_units": n_units, "units": units,
            "seconds": round(seconds, 4)}
    frames = []
    n_classes = dataset.n_classes
    for split in after:
        b, a = before[split], after[split]
        df = pd.DataFrame({
            "split": split, "group": b["group"], "group_name": [dataset.group_names[g] for g in b["group"]],
            "minority": [dataset.is_minority(g) for g in b["group"]],
            "majority_of_class": [dataset.same_class_majority(g) for g in b["group"]],
            "count": b["count"], "acc_before": b["accuracy"], "acc_after": a["accuracy"],
            "drop": b["accuracy"] - a["accuracy"],
            "margin_before": b["mean_margin"], "margin_after": a["mean_margin"],
            "margin_change": a["mean_margin"] - b["mean_margin"],
            **{f"pred_before_{c}": b[f"pred_{c}"] for c in range(n_classes)},
            **{f"pred_after_{c}": a[f"pred_{c}"] for c in range(n_classes)},
        })
        drops = dict(zip(df["group"], df["drop"]))
        df["specificity"] = [drops[g] - drops[m] if minority else np.nan
                             for g, m, minority in zip(df["group"], df["majority_of_class"], df["minority"])]
        frames.append(df)
    body = pd.concat(frames, ignore_index=True)
    for k, v in reversed(list(head.items())):
        body.insert(0, k, [v] * len(body))
    return body


def _prepare_folder(out: Path, config: ProbeConfig, fingerprint: str, source: dict | None) -> dict[str, pd.DataFrame]:
    """Create or resume ``out``: refuse a folder made from another model; return the finished parts."""
    meta_path = out / "probe.json"
    if meta_path.exists():
        meta = read_json_file(meta_path, "a probe record (JSON)")
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("model_fingerprint") != fingerprint:
            raise ConfigError(f"{out} holds a probe of another model (fingerprint {meta.get('model_fingerprint')} "
                              f"!= {fingerprint}); choose another name= or delete the folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path, {"model_fingerprint": fingerprint, "source": source or {}})
    write_text_atomic(out / "config.yaml", dump_config(config))
    done = {}
    for path in sorted((out / SETTINGS_DIR).glob("*.csv")):
        try:
            done[path.stem] = _read_part(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue  # unreadable part (cannot happen with atomic writes): recompute it
    return done


def _read_part(source) -> pd.DataFrame:
    return pd.read_csv(source, dtype={"setting_id": str, "setting": str, "units": str, "score_split": str})
