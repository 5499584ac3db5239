"""Optional export of runs to TensorBoard or MLflow (local file or SQLite store), when installed.

The run directory stays the record; these are views of it for people who already use those tools.
Every scalar of ``metrics.jsonl`` (``val/worst_group_accuracy``, ``test/acc_g2``, ``train_loss``,
``terms/<name>``, ``lr``) is logged at its epoch, the config as parameters (MLflow) or text
(TensorBoard). Neither package is a dependency: a missing one is a clear error, never a crash.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Iterator

from spurmem.report.runs import Run

BACKENDS = ("tensorboard", "mlflow")


class TrackingUnavailable(RuntimeError):
    """The requested tracking package is not installed."""


def available(backend: str) -> bool:
    module = {"tensorboard": "tensorboard", "mlflow": "mlflow"}[backend]
    return importlib.util.find_spec(module) is not None


def _require(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown tracking backend {backend!r}; known: {', '.join(BACKENDS)}")
    if not available(backend):
        raise TrackingUnavailable(f"{backend} is not installed; `pip install {backend}` to export runs to it "
                                  "(the run directories hold everything either way)")


def scalars(run: Run) -> Iterator[tuple[int, str, float]]:
    """(epoch, name, value) for every numeric entry of metrics.jsonl, loss terms as ``terms/<name>``."""
    for row in run.history:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key in ("epoch", "groups"):
                continue
            if key == "terms" and isinstance(value, dict):
                for term, v in value.items():
                    if isinstance(v, (int, float)):
                        yield epoch, f"terms/{term}", float(v)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield epoch, key, float(value)


def _flat_config(run: Run) -> dict[str, Any]:
    from spurmem.config import read_yaml_mapping

    path = run.path / "config.yaml"
    config = read_yaml_mapping(path)[0] if path.is_file() else {}
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, (list, type(None))) else value

    walk("", config or {})
    return flat


def export_tensorboard(runs: list[Run], log_dir: str | Path) -> Path:
    """One TensorBoard sub-folder per run under ``log_dir``."""
    _require("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    for run in runs:
        writer = SummaryWriter(log_dir=str(log_dir / run.name))
        try:
            for epoch, name, value in scalars(run):
                writer.add_scalar(name, value, global_step=epoch)
            writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in _flat_config(run).items()))
        finally:
            writer.close()
    return log_dir


def export_mlflow(runs: list[Run], tracking_uri: str, experiment: str = "spurmem") -> str:
    """One MLflow run per run directory in ``experiment`` at ``tracking_uri`` (``file:./mlruns`` or
    ``sqlite:///mlflow.db``); the run directory is logged as a tag."""
    _require("mlflow")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    for run in runs:
        with mlflow.start_run(run_name=run.name):
            mlflow.set_tags({"spurmem.run_dir": str(run.path), "spurmem.algorithm": run.algorithm,
                             "spurmem.selection": run.describe_selection()})
            params = _flat_config(run)
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            for epoch, name, value in scalars(run):
                mlflow.log_metric(name, value, step=epoch)
    return tracking_uri
