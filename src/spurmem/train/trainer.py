"""The one training loop every algorithm runs in (``spurmem train``).

It owns batching (``iterate_batches`` with the algorithm's sampling weights), the optimiser and
schedule, device placement (AMP, channels-last, prefetching workers), evaluation every
``eval_every`` epochs, model selection, checkpoints, resume and the run directory (``run.py``).
An algorithm (``algorithm.py``) only supplies the batch loss, its logged terms and its state.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from spurmem.config import ConfigError, config_hash, dump_config
from spurmem.data import GroupDataset
from spurmem.device import resolve_device
from spurmem.errors import NumericalFaultError
from spurmem.locks import LOCK_FILE, folder_lock
from spurmem.metrics import metrics_from_predictions, summarize
from spurmem.progress import Progress
from spurmem.record import environment, record_command, utc_now, write_text_atomic
from spurmem.train import checkpoint as ckpt
from spurmem.train import cuda_settings
from spurmem.train.algorithm import Algorithm, selection_group_labels
from spurmem.train.config import HASH_EXCLUDE, TrainConfig
from spurmem.train.config_checks import check_config, resolve_augment
from spurmem.train.distributed import SINGLE, DataParallel, data_parallel, training_device
from spurmem.train.device_batches import device_batches
from spurmem.train import epoch_losses
from spurmem.train.run import (
    CONFIG_FILE, PREDICTIONS, RUN_FILE, build_dataset, build_run_model, is_half_made, load_run, read_config,
    read_history, read_info, write_history, write_info,
)
from spurmem.train.retention import Retention
from spurmem.train.selection import Selection, select_epoch


@dataclass
class TrainResult:
    """What a finished ``train`` call produced; everything is also on disk in ``run_dir``.

    ``model`` holds the weights of the *last* epoch; ``load_run(run_dir)`` gives the selected one.
    """

    run_dir: Path
    config: TrainConfig
    selection: Selection
    history: list[dict[str, Any]]
    epochs_completed: int
    seconds: float
    resumed_from: int | None = None
    model: torch.nn.Module | None = field(default=None, repr=False)

    def row(self, epoch: int | None = None) -> dict[str, Any]:
        """The metrics row of ``epoch`` (default: the selected epoch)."""
        epoch = self.selection.epoch if epoch is None else epoch
        for r in self.history:
            if r["epoch"] == epoch:
                return r
        raise KeyError(f"epoch {epoch} was not evaluated")


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    dataset: GroupDataset | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (default ``runs/<name>``).

    An existing run directory is refused unless ``resume`` (continue from its last complete epoch;
    a complete run is returned as it is) or ``overwrite`` (delete it and start over). The run
    directory's lock (``spurmem.locks``) is held throughout: a second process training into it
    fails at once with :class:`~spurmem.errors.RunLockedError`. A non-finite loss or non-finite
    weights stop the run with :class:`~spurmem.errors.NumericalFaultError` (run marked ``failed``,
    the last good epoch kept).

    Under ``torchrun`` (``spurmem.train.distributed``) every process calls this; they train one model
    data-parallel, and only rank 0 holds the lock and writes.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / config.name
    check_config(config)  # before touching the run directory (--overwrite deletes it)
    device = training_device(resolve_device(config.device))
    with data_parallel(device) as dp, contextlib.ExitStack() as held:
        dp.check(config.batch_size, config.sync_bn, device)  # before the run folder is touched

        def prepare() -> tuple[int | None, bool]:
            held.enter_context(folder_lock(run_dir, f"train {config.name}"))
            start = _prepare_run_dir(run_dir, config, resume, overwrite)
            return start, start is not None and read_info(run_dir).get("status") == "complete"

        start, complete = dp.from_main(prepare)  # rank 0 only; the others get its answer (or its error)
        if complete:
            return dp.from_main(lambda: _finished_result(run_dir, config))
        threads_before = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(config.threads)
        undo_cuda_settings = cuda_settings.apply(config.tf32, config.cudnn_benchmark) if device.type == "cuda" else None
        try:
            loop = _Loop(config, run_dir, dataset if dataset is not None else build_dataset(config), dp, device)
            if not dp.is_main:
                return loop.run(start, progress=False)
            if start is None:  # the config first: whatever a kill leaves behind can be resumed or overwritten
                write_text_atomic(run_dir / CONFIG_FILE, dump_config(config))
            with record_command(run_dir, "train", config=config.model_dump(mode="json"), seeds=[config.seed]):
                return loop.run(start, progress)
        finally:
            torch.set_num_threads(threads_before)
            if undo_cuda_settings is not None:
                undo_cuda_settings()


class _Loop:
    """State of one training session: model, algorithm, optimiser, schedule, RNG, history."""

    def __init__(self, config: TrainConfig, run_dir: Path, dataset: GroupDataset,
                 dp: DataParallel = SINGLE, device: torch.device | None = None) -> None:
        from spurmem.train.algorithms import ALGORITHMS

        self.config, self.run_dir, self.dataset, self.dp = config, run_dir, dataset, dp
        self.device = device if device is not None else resolve_device(config.device)
        self.hash = config_hash(config, HASH_EXCLUDE)
        missing = [s for s in config.eval_splits if s not in dataset.splits]
        if missing:
            raise ConfigError(f"eval_splits {missing} are not splits of {dataset.name!r} ({sorted(dataset.splits)})")
        self.amp = config.amp and self.device.type == "cuda"
        if config.amp and not self.amp:
            warnings.warn("amp=true is for CUDA only; training in float32 on " + str(self.device), stacklevel=3)
        self.augment = resolve_augment(config.augment, config.augment_params)

        torch.manual_seed(config.seed)
        self.model = build_run_model(config, dataset)
        self.weights_report = None
        if config.weights:
            from spurmem.models import load_weights

            self.weights_report = load_weights(self.model, config.weights)
        if config.init_from:
            source = load_run(config.init_from, epoch=config.init_epoch, dataset=dataset)
            self.model.load_state_dict(source.model.state_dict())
            self.init_source = {"run": str(config.init_from), "epoch": source.epoch}
        else:
            self.init_source = None
        self.model.to(self.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model = dp.prepare_model(self.model, self.device, config.sync_bn)
        self.algorithm: Algorithm = ALGORITHMS[config.algorithm](dataset, **config.algorithm_params)
        self.algorithm.setup(self.model, self.device)
        if config.compile:  # in place: state_dict keys, hooks and submodule names stay those of the model
            self.model.compile()
        self.step = dp.step(self.model, self.algorithm)  # the batch loss (inside DDP when data-parallel)
        self.generator = torch.Generator().manual_seed(config.seed)
        n_train = self.n_train = len(dataset["train"])
        # a batch of 1 breaks BatchNorm: the last batch is dropped when it would leave a process fewer than 2
        remainder = n_train % config.batch_size
        self.drop_last = 0 < remainder < 2 * dp.world_size and n_train > remainder
        self.steps_per_epoch = n_train // config.batch_size if self.drop_last else math.ceil(n_train / config.batch_size)
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.retention = Retention.of(config)
        self.history: list[dict[str, Any]] = []
        self.timings = {"train": 0.0, "eval": 0.0, "checkpoint": 0.0}

    # -- setup --------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _scheduler(self):
        c = self.config
        if c.schedule == "cosine":  # per step, reaching 0 after the last step
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(1, c.epochs * self.steps_per_epoch))
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=c.plateau_factor, patience=c.plateau_patience)
        return None

    # -- main ---------------------------------------------------------------------------------
    def run(self, start: int | None, progress: bool) -> TrainResult:
        self._t0 = time.perf_counter()
        info = self.info = self._initial_info(start)
        self._write_info()
        try:
            if start is None:
                self._finish_epoch(0, None)
                first = 1
            else:
                self._restore(start)
                first = start + 1
            c = self.config
            epochs = c.epochs - first + 1
            with Progress(f"train {c.name}", epochs * self.steps_per_epoch, unit="steps", enabled=progress,
                          cost=f"{epochs} epochs x {self.steps_per_epoch} steps of {c.batch_size} examples "
                               f"({c.algorithm}, {c.model})") as bar:
                for epoch in range(first, c.epochs + 1):
                    stats = self._train_epoch(epoch, bar)
                    self._finish_epoch(epoch, stats)
                    wga = self._last_val_wga()
                    bar.log(f"epoch {epoch}/{c.epochs}  loss {stats['train_loss']:.4f}  val WGA "
                            f"{'-' if wga is None else f'{100 * wga:.1f}'}  {stats['seconds']:.1f} s")
        except BaseException as exc:
            info.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished=utc_now())
            self._write_info()
            raise
        selection = self._select()
        self._write_predictions(selection.epoch)
        info.update(status="complete", selection=selection.to_dict(), finished=utc_now(), **self._progress_fields(),
                    algorithm_info=self.algorithm.describe())
        self._write_info()
        return TrainResult(self.run_dir, self.config, selection, self.history, self.config.epochs,
                           info["seconds"], start, self.model)

    def _train_epoch(self, epoch: int, bar: Progress) -> dict[str, Any]:
        t0 = time.perf_counter()
        model, algorithm, c = self.model, self.algorithm, self.config
        algorithm.on_epoch_start(epoch, model)
        model.train()
        weights = algorithm.sample_weights()
        batches = device_batches(
            self.dataset["train"], c.batch_size, self.dataset.mean, self.dataset.std, self.device,
            shuffle=weights is None, generator=self.generator, sample_weights=weights, augment=self.augment,
            drop_last=self.drop_last, workers=c.workers, channels_last=c.channels_last,
            shard=self.dp.shard_spec,
        )
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        losses = epoch_losses.EpochLosses(epoch_losses.check_interval(self.device))  # no per-step sync on CUDA
        step = 0
        for step, batch in enumerate(batches, 1):
            with autocast:
                loss, batch_terms = self.step(batch)
            n_global = min(c.batch_size, self.n_train - (step - 1) * c.batch_size)
            loss, value = self.dp.rank_share(loss, len(batch.y), n_global, algorithm.loss_over_ranks)
            self._check_finite(epoch, losses.add(step, value, len(batch.y), batch_terms))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if c.schedule == "cosine":
                self.scheduler.step()
            bar.advance(1, info=None if losses.unread else f"epoch {epoch}/{c.epochs} loss {losses.mean:.4f}")
        self._check_finite(epoch, losses.read())
        n_seen, loss_sum, batch_loss_sum = losses.n_seen, losses.loss_sum, losses.batch_loss_sum
        # Once per epoch, not per step: non-finite weights mid-epoch make the next step's (checked) loss
        # non-finite; this catches the last step's, before the epoch's weights are saved.
        bad = _nonfinite_tensor(model.named_parameters()) if n_seen else None
        if bad is not None:
            raise self._fault(epoch, step, f"weight {bad!r} is not finite after the optimiser step")
        terms = dict(losses.terms)
        if self.dp.active:  # the epoch's sums over every rank's examples
            keys = list(terms)  # the same order on every rank
            loss_sum, n_seen, *sums = self.dp.sum_floats([loss_sum, n_seen, *(terms[k] for k in keys)])
            terms = dict(zip(keys, sums))
        if c.schedule == "plateau":
            self.scheduler.step(batch_loss_sum)  # the epoch's summed (per-batch) training loss
        seconds = time.perf_counter() - t0
        self.timings["train"] += seconds
        return {"train_loss": loss_sum / max(n_seen, 1), "terms": {k: v / max(n_seen, 1) for k, v in terms.items()},
                "seconds": round(seconds, 3)}

    def _finish_epoch(self, epoch: int, stats: dict[str, Any] | None) -> None:
        """Evaluate (when due), then save weights, resume state, history and run.json, in that order."""
        c = self.config
        row = None
        due = (epoch == 0 and c.eval_init) or (epoch > 0 and (epoch % c.eval_every == 0 or epoch == c.epochs))
        self.dp.broadcast_state(self.model)  # rank 0's BatchNorm statistics: what it evaluates is what it saves
        if due and c.eval_splits:
            t0 = time.perf_counter()
            results = {s: metrics_from_predictions(
                self.dp.predict(self.model, self.dataset, s, c.eval_batch_size, self.device), self.dataset)
                for s in c.eval_splits}
            self.timings["eval"] += time.perf_counter() - t0
            row = {"epoch": epoch, "lr": self._lr(), "train_loss": None, "terms": {}, "seconds": 0.0,
                   **(stats or {}), **summarize(results),
                   "groups": {s: m.to_dict()["groups"] for s, m in results.items()}}
            self.history.append(row)
        if not self.dp.is_main:
            return
        t0 = time.perf_counter()
        ckpt.save_epoch_weights(self.run_dir, epoch, self.model)
        tensors, meta = ckpt.pack_training_state(self.optimizer, self.scheduler, self.generator,
                                                 self.algorithm.state_dict())
        ckpt.save_training_state(self.run_dir, epoch, tensors, {**meta, "config_hash": self.hash})
        # The checkpoint JSON comes last: only now is the epoch complete (listed and resumable).
        ckpt.mark_epoch_complete(self.run_dir, epoch, self._checkpoint_info(row, stats))
        if row is not None:
            write_history(self.run_dir, self.history)
        ckpt.prune_training_state(self.run_dir, keep=epoch)
        self._prune_checkpoints(epoch)
        self.timings["checkpoint"] += time.perf_counter() - t0
        self.info.update(epochs_completed=epoch, **self._progress_fields())
        write_info(self.run_dir, self.info)  # so that a killed run still says how far it got and how long it took

    # -- helpers ------------------------------------------------------------------------------
    def _check_finite(self, epoch: int, bad: tuple[int, float] | None) -> None:
        """Raise the fault for ``bad`` = (step, loss) from :class:`EpochLosses` (None: all finite)."""
        if bad is not None:
            raise self._fault(epoch, bad[0], f"the training loss is {bad[1]}")

    def _fault(self, epoch: int, step: int, what: str) -> NumericalFaultError:
        good = ckpt.list_epochs(self.run_dir)
        kept = f"the last good checkpoint is epoch {good[-1]}" if good else "no checkpoint was saved"
        return NumericalFaultError(
            f"{self.run_dir}: numerical fault at epoch {epoch}, step {step}/{self.steps_per_epoch}: {what} "
            f"(optimizer={self.config.optimizer}, lr={self.config.lr:g}); training stopped, {kept}. Lower lr "
            f"(or add warm-up/clipping in the algorithm) and start again with --overwrite")

    def _checkpoint_info(self, row: dict | None, stats: dict | None) -> dict[str, Any]:
        return {"config_hash": self.hash, "seed": self.config.seed, "metrics": row, "train": stats}

    def _progress_fields(self) -> dict[str, Any]:
        seconds = self._seconds_before + time.perf_counter() - self._t0
        return {"seconds": round(seconds, 3), "timings": {k: round(v, 3) for k, v in self.timings.items()}}

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _last_val_wga(self) -> float | None:
        for row in reversed(self.history):
            if "val/worst_group_accuracy" in row:
                return row["val/worst_group_accuracy"]
        return None

    def _select(self) -> Selection:
        if not self.history:  # nothing evaluated (eval_splits empty): fall back to the last epoch
            return Selection("last", self.config.epochs, None, None)
        return select_epoch(self.history, self.config.selection)

    def _prune_checkpoints(self, latest: int) -> None:
        """Delete the epoch checkpoints the retention policy does not keep (``retention.py``)."""
        present = ckpt.list_epochs(self.run_dir)
        resumable = ckpt.resumable_epochs(self.run_dir)
        finished = latest == self.config.epochs
        keep = self.retention.kept(present, latest, resumable, self._selected_epochs(resumable, finished), finished)
        for e in present:
            if e not in keep:
                ckpt.delete_epoch_weights(self.run_dir, e)

    def _selected_epochs(self, resumable: list[int], finished: bool) -> list[int]:
        """The epoch selected over the history so far and, until the run is finished, over the history
        up to the resume fallback (the epoch a ``--resume`` past an unreadable newest epoch starts from)."""
        limits = [math.inf] + ([resumable[-2]] if len(resumable) > 1 and not finished else [])
        out = []
        for upto in limits:
            rows = [r for r in self.history if r["epoch"] <= upto]
            if any(r["epoch"] > 0 for r in rows):
                out.append(select_epoch(rows, self.config.selection).epoch)
        return out

    def _restore(self, epoch: int) -> None:
        """Load weights, optimiser, schedule, RNG and algorithm state of a complete epoch (rank 0 reads them;
        every rank of a data-parallel job gets the same)."""
        def read() -> tuple[dict, dict, dict, list[dict]]:
            rows = [r for r in read_history(self.run_dir) if r["epoch"] <= epoch]
            marker = ckpt.read_checkpoint_info(self.run_dir, epoch).get("metrics")
            if marker is not None and all(r["epoch"] != epoch for r in rows):
                rows.append(marker)  # killed between the checkpoint marker and metrics.jsonl
            return (ckpt.load_epoch_weights(self.run_dir, epoch, "cpu"), *ckpt.load_training_state(self.run_dir, epoch),
                    sorted(rows, key=lambda r: r["epoch"]))

        weights, tensors, meta, self.history = self.dp.from_main(read)
        self.model.load_state_dict(weights)
        algo_state = ckpt.unpack_training_state(tensors, meta, self.optimizer, self.scheduler, self.generator)
        self.algorithm.load_state_dict({k: v.to(self.device) for k, v in algo_state.items()})
        if self.dp.is_main:
            write_history(self.run_dir, self.history)
            ckpt.prune_training_state(self.run_dir, keep=epoch)  # a kill before the epoch's own pruning
        self.info["epochs_completed"] = epoch  # so a resume at the final epoch still says it

    def _write_predictions(self, epoch: int) -> None:
        """Per-example predictions of the selected checkpoint on every evaluated split."""
        model = self.model
        if epoch != self.config.epochs:
            model = build_run_model(self.config, self.dataset)
            if self.dp.is_main:
                model.load_state_dict(ckpt.load_epoch_weights(self.run_dir, epoch))
            model.to(self.device)
            self.dp.broadcast_state(model)
        for split in self.config.eval_splits:
            table = self.dp.predict(model, self.dataset, split, self.config.eval_batch_size, self.device).table()
            table.insert(0, "epoch", epoch)
            if self.dp.is_main:
                write_text_atomic(self.run_dir / PREDICTIONS / f"{split}.csv", table.to_csv(index=False))

    def _write_info(self) -> None:
        if self.dp.is_main:
            write_info(self.run_dir, self.info)

    def _initial_info(self, start: int | None) -> dict[str, Any]:
        c = self.config
        previous = read_info(self.run_dir) if start is not None and self.dp.is_main else {}  # only rank 0 writes it
        self._seconds_before = float(previous.get("seconds") or 0.0)
        self.timings = {**self.timings, **(previous.get("timings") or {})}
        env = environment()
        return {
            "name": c.name, "kind": "train", "status": "running", "algorithm": c.algorithm,
            "dataset": c.dataset, "model": c.model, "seed": c.seed, "config_hash": self.hash,
            "selection": None, "selection_rule": c.selection, "epochs": c.epochs,
            "steps_per_epoch": self.steps_per_epoch, "group_labels": self.algorithm.group_labels,
            "labels_note": self.algorithm.labels_note, "selection_group_labels": selection_group_labels(c.selection),
            "spurmem_version": env["spurmem_version"], "git_commit": env["git_commit"], "host": env["host"],
            "pid": env["pid"],
            "torch_version": env["torch_version"], "device": str(self.device), "amp": self.amp,
            "compile": c.compile, "cuda_settings": {"applied": self.device.type == "cuda", **cuda_settings.current()},
            "threads": torch.get_num_threads(), "n_parameters": sum(p.numel() for p in self.model.parameters()),
            **self.dp.describe(),
            "weights": None if self.weights_report is None else self.weights_report.summary(),
            "init_from": self.init_source, "dataset_info": self.dataset.describe(),
            "retention": self.retention.to_dict(),
            "started": previous.get("started", utc_now()), "finished": None,
            "resumed_from": [*previous.get("resumed_from", []), start] if start is not None else [],
        }


def _nonfinite_tensor(named: Iterator[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, else None (one sync)."""
    named = [(k, t) for k, t in named if t.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def _prepare_run_dir(run_dir: Path, config: TrainConfig, resume: bool, overwrite: bool) -> int | None:
    """Check the run directory (its lock held); return the epoch to resume from, or None to start
    afresh. A half-made folder (:func:`~spurmem.train.run.is_half_made`) is started afresh."""
    contents = [p for p in run_dir.iterdir() if p.name != LOCK_FILE] if run_dir.is_dir() else []
    if contents and is_half_made(run_dir):
        print(f"note: {run_dir} was left half-made by a killed `train` (command records, no {CONFIG_FILE}); "
              f"starting it afresh", file=sys.stderr)
        overwrite = True
    if contents and overwrite:
        if not ((run_dir / RUN_FILE).exists() or (run_dir / CONFIG_FILE).exists() or is_half_made(run_dir)):
            raise FileExistsError(f"{run_dir} exists and is not a run directory; refusing to delete it")
        for p in contents:  # not the folder itself: its lock is ours
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        contents = []
    if contents and not resume:
        raise FileExistsError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not contents or not (run_dir / CONFIG_FILE).is_file():
        return None
    saved = read_config(run_dir)
    if config_hash(saved, HASH_EXCLUDE) != config_hash(config, HASH_EXCLUDE):
        a, b = saved.model_dump(mode="json"), config.model_dump(mode="json")
        diff = [f"{k}: run has {a[k]!r}, given {b[k]!r}" for k in a if a[k] != b[k] and k not in HASH_EXCLUDE]
        raise ConfigError(f"cannot resume {run_dir} with a different config: " + "; ".join(diff))
    return ckpt.newest_good_epoch(run_dir)  # falls back past an unreadable newest epoch, with a warning


def _finished_result(run_dir: Path, config: TrainConfig) -> TrainResult:
    info = read_info(run_dir)
    sel = info["selection"]
    return TrainResult(run_dir, config, Selection(sel["rule"], sel["epoch"], sel["metric"], sel["value"]),
                       read_history(run_dir), info.get("epochs_completed", config.epochs), info.get("seconds", 0.0),
                       None, load_run(run_dir, "last").model)
