"""The probe's Python API, mirroring ``spurmem probe``.

* :func:`probe` runs a grid on a model and dataset in memory;
* :func:`probe_run` probes a run directory (the checkpoint of ``config.epoch``, the rewind source
  ``rewind_epochs`` earlier) and writes ``RUN_DIR/probes/<name>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from torch import nn

from spurmem.config import ConfigError, validate_config
from spurmem.data.schema import GroupDataset
from spurmem.probes.config import ProbeConfig
from spurmem.probes.runner import ProbeResult, run_probe

PROBES_DIR = "probes"


def _as_list(v: Any) -> list | None:
    if v is None:
        return None
    return list(v) if isinstance(v, (list, tuple)) else [v]


def probe(
    model: nn.Module,
    dataset: GroupDataset,
    scorer: str | Iterable[str] | None = None,
    k: int | Iterable[int] | None = None,
    intervention: str | Iterable[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    rewind_source: Any = None,
    progress: bool = False,
    **options: Any,
) -> ProbeResult:
    """Run a probe grid on ``model`` (left untouched). ``scorer``, ``k`` and ``intervention`` take one
    value or a list; ``options`` are the other :class:`ProbeConfig` fields (``sigmas``, ``repeats``,
    ``groups``, ``per_layer``, ``thresholds``, ...). Returns the rows, summary, verdicts and claims.

    >>> result = probe(model, dataset, scorer="group-gradient", k=[1, 3], intervention="zero")
    >>> result.summary.verdicts[["setting", "group_name", "verdict"]]
    """
    data = dict(options)
    for key, value in (("scorers", scorer), ("k", k), ("interventions", intervention)):
        if value is not None:
            data[key] = _as_list(value)
    config = validate_config(ProbeConfig, data, source="probe() arguments")
    return run_probe(model, dataset, config, out_dir=out_dir, rewind_source=rewind_source, progress=progress)


def probe_run(run_dir: str | Path, config: ProbeConfig | None = None, *, progress: bool = True) -> ProbeResult:
    """Probe the checkpoint ``config.epoch`` of a training run; results go to ``RUN_DIR/probes/<name>``
    (its lock held, so a second probe of the same name fails at once with ``RunLockedError``)."""
    from spurmem.locks import folder_lock
    from spurmem.record import record_command
    from spurmem.train import list_epochs, load_epoch_weights, load_run

    config = config or ProbeConfig()
    run_dir = Path(run_dir)
    loaded = load_run(run_dir, epoch=config.epoch, device="cpu")
    rewind_source, rewind_epoch = None, None
    if "rewind" in config.interventions:
        rewind_epoch = loaded.epoch - config.rewind_epochs
        available = list_epochs(run_dir)
        if rewind_epoch not in available:
            raise ConfigError(f"rewind_epochs={config.rewind_epochs}: the probed epoch is {loaded.epoch}, so rewind "
                              f"needs epoch {rewind_epoch}, but {run_dir} has checkpoints {available} (train with "
                              f"keep_rewind={config.rewind_epochs} or checkpoints=all to keep it)")
        rewind_source = load_epoch_weights(run_dir, rewind_epoch)
    out_dir = run_dir / PROBES_DIR / config.name
    source = {"run_dir": str(run_dir), "epoch": loaded.epoch, "rewind_epoch": rewind_epoch,
              "dataset": loaded.dataset.name, "model": loaded.config.model}
    with folder_lock(out_dir, f"probe {config.name}"), \
            record_command(run_dir, "probe", config=config.model_dump(mode="json"), seeds=[config.seed]) as rec:
        result = run_probe(loaded.model, loaded.dataset, config, out_dir=out_dir, rewind_source=rewind_source,
                           source=source, progress=progress)
        rec.outputs.append(str(Path(PROBES_DIR) / config.name))
    return result
