"""The run directory written by ``spurmem train`` and read by every later stage.

::

    runs/<name>/
      config.yaml      the resolved TrainConfig (every field)
      run.json         status, selection {rule, epoch, metric, value}, provenance, timings
      metrics.jsonl    one JSON object per evaluated epoch (epoch 0 = initialisation; NaN/inf as null)
      checkpoints/     epoch_EEEE.safetensors + epoch_EEEE.json (see ``checkpoint.py``)
      resume/          optimiser/schedule/RNG/algorithm state of the last complete epoch
      predictions/     <split>.csv of the selected checkpoint
      records/         command records (``spurmem.record``)
      .lock            while a process writes the run (``spurmem.locks``)

``config.yaml`` is written before the command record and ``run.json`` of a new run; a folder in
which an earlier version wrote the record first and was killed is recognised by :func:`is_half_made`.

Later stages go through :func:`load_run`, :func:`read_history` and
:func:`~spurmem.train.checkpoint.list_epochs` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from spurmem.config import ConfigError, read_yaml_mapping, validate_config
from spurmem.data import GroupDataset, load_dataset
from spurmem.device import resolve_device
from spurmem.errors import UnreadableFileError
from spurmem.record import dumps_strict, write_json_atomic, write_text_atomic
from spurmem.train.checkpoint import list_epochs, load_epoch_weights, missing_checkpoint
from spurmem.train.config import TrainConfig
from spurmem.untrusted import read_json_file, read_text_file

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
PREDICTIONS = "predictions"

EpochSpec = Literal["selected", "last"] | int


@dataclass
class LoadedRun:
    """A trained model (weights of ``epoch``, eval mode, on the requested device) with its data and provenance."""

    model: torch.nn.Module
    dataset: GroupDataset
    config: TrainConfig
    info: dict[str, Any]
    epoch: int
    run_dir: Path


def is_half_made(run_dir: str | Path) -> bool:
    """A folder left by a ``train`` killed after its command record and before ``config.yaml``: it
    holds nothing but ``records/``, ``run.json`` and lock/temporary files, so there is nothing to
    resume and nothing of value to lose by starting it afresh."""
    from spurmem.locks import LOCK_FILE
    from spurmem.record import RECORDS_DIR, TEMP_SUFFIX

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / CONFIG_FILE).exists():
        return False
    names = {p.name for p in run_dir.iterdir() if not (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX))}
    return bool(names & {RECORDS_DIR, RUN_FILE}) and names <= {RECORDS_DIR, RUN_FILE, LOCK_FILE}


def recorded_config(run_dir: str | Path) -> TrainConfig | None:
    """The config of the newest ``train`` command record of a run (what a half-made folder still
    holds of its config), or None without one."""
    from spurmem.record import read_records

    configs = [r["config"] for r in read_records(run_dir) if r.get("command") == "train" and r.get("config")]
    return validate_config(TrainConfig, configs[-1], source=f"{run_dir}/records") if configs else None


def read_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {CONFIG_FILE}); expected the output of `spurmem train`")
    data, lines = read_yaml_mapping(path)
    return validate_config(TrainConfig, data, source=str(path), lines=lines)


def read_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {RUN_FILE}); expected the output of `spurmem train`")
    info = read_json_file(path, "a run record (JSON)")
    if not isinstance(info, dict):
        raise UnreadableFileError(path, "a run record (JSON)", "expected a JSON object")
    return info


def run_status(run_dir: str | Path) -> str:
    """``complete`` (run.json says so), ``partial`` (a folder to resume) or ``new`` (no folder, or an
    empty one)."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        return "partial" if run_dir.is_dir() and any(run_dir.iterdir()) else "new"
    return "complete" if read_info(run_dir).get("status") == "complete" else "partial"


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl, in epoch order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    expected = "a metrics history (one JSON object a line)"
    for n, line in enumerate(read_text_file(path, expected).splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnreadableFileError(path, expected, f"line {n} is not valid JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise UnreadableFileError(path, expected, f"line {n} has no integer 'epoch'")
            rows.append(row)
    return sorted(rows, key=lambda r: r["epoch"])


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically (it is small; appends could be torn by a kill)."""
    text = "".join(dumps_strict(r) + "\n" for r in sorted(rows, key=lambda r: r["epoch"]))
    write_text_atomic(run_dir / METRICS_FILE, text)


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    write_json_atomic(run_dir / RUN_FILE, info)


def resolve_epoch(run_dir: str | Path, epoch: EpochSpec) -> int:
    """``"selected"`` (run.json's selection), ``"last"`` (latest complete checkpoint) or an epoch number."""
    available = list_epochs(run_dir)
    if not available:
        raise FileNotFoundError(f"{run_dir}: no complete checkpoint")
    if epoch == "last":
        return available[-1]
    if epoch == "selected":
        selection = read_info(run_dir).get("selection")
        if not selection:
            raise FileNotFoundError(f"{run_dir}: run.json has no selection yet (is the run finished?); "
                                    f"pass an epoch, one of {available}")
        return int(selection["epoch"])
    if isinstance(epoch, str) and epoch.isdigit():
        epoch = int(epoch)
    if not isinstance(epoch, int):
        raise ValueError(f"epoch must be 'selected', 'last' or an integer, got {epoch!r}")
    if epoch not in available:
        raise missing_checkpoint(run_dir, epoch)
    return epoch


def build_dataset(config: TrainConfig) -> GroupDataset:
    return load_dataset(config.dataset, **config.dataset_params)


def build_run_model(config: TrainConfig, dataset: GroupDataset) -> torch.nn.Module:
    """The architecture of a run (randomly initialised; weights come from a checkpoint or the trainer)."""
    from spurmem.models import build_model

    channels, height, _ = dataset.image_shape
    return build_model(config.model, dataset.n_classes, in_channels=channels, img_size=height, **config.model_params)


def load_run(
    run_dir: str | Path,
    epoch: EpochSpec = "selected",
    device: str | torch.device = "cpu",
    dataset: GroupDataset | None = None,
) -> LoadedRun:
    """Rebuild a run's model with the weights of ``epoch`` and its dataset (pass ``dataset`` to reuse one)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    info = read_info(run_dir)
    chosen = resolve_epoch(run_dir, epoch)
    if dataset is None:
        dataset = build_dataset(config)
    model = build_run_model(config, dataset)
    try:
        model.load_state_dict(load_epoch_weights(run_dir, chosen))
    except RuntimeError as exc:
        raise ConfigError(f"{run_dir}: checkpoint of epoch {chosen} does not fit model {config.model!r}: {exc}") from None
    model.to(resolve_device(device)).eval()
    return LoadedRun(model=model, dataset=dataset, config=config, info=info, epoch=chosen, run_dir=run_dir)
