"""``spurmem compare``: algorithms x seeds on one dataset and backbone under one protocol (docs/method.md §7).

Every run goes through the shared trainer into ``<out>/runs/<algorithm>-<config hash>-s<seed>``;
a finished run is skipped and an interrupted one resumed, so a killed comparison continues where it
stopped. The comparison folder's lock is held while it runs and each run's own lock while it
trains (``spurmem.locks``): a second ``compare`` on the same folder fails at once with
``RunLockedError`` naming the first. The protocol is the same for every algorithm:

* from-scratch algorithms (erm, reweight, groupdro, jtt) train for ``epochs`` (``budget:
  as-configured``) or for ``epochs + fine_tune_epochs`` (``budget: matched``, the total of ERM plus
  fine-tuning); the ERM run the others build on always trains ``epochs``;
* fine-tuning algorithms (erm-continue, spurmem) start from that ERM run of the same seed (its
  ``init_epoch`` checkpoint) and train for ``fine_tune_epochs``; ``erm-continue`` is the control with
  the framework's exact optimiser, schedule and budget; dfr and neurontune refit the head of that
  ERM model (0 epochs);
* jtt's stage 1 is that ERM run at ``identification_epoch``;
* one selection rule for all: validation WGA with group labels, worst-class validation accuracy
  without (then algorithms that use group labels are refused).

Hyper-parameters come from :mod:`spurmem.train.hparams` (defaults per algorithm and dataset), then
the config's ``hparams`` overrides; with ``search.trials > 0`` each algorithm's search space is
sampled (seeded) and the draw with the best selection value on the first seed is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spurmem.config import ConfigError, config_hash, nearest_key, validate_config
from spurmem.data import GroupDataset, load_dataset
from spurmem.progress import Progress
from spurmem.train import hparams as registry
from spurmem.train.config import HASH_EXCLUDE, TrainConfig

ALL_ALGORITHMS = ["erm", "erm-continue", "reweight", "groupdro", "jtt", "dfr", "neurontune", "spurmem"]
BUDGETS = ("as-configured", "matched")


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(0, ge=0, description="random draws per algorithm (0: registry defaults only)")
    seed: int = 0


class CompareConfig(BaseModel):
    """A comparison: one dataset and backbone, several algorithms and seeds, one protocol."""

    model_config = ConfigDict(extra="forbid")

    name: str = "compare-fashion-waterbirds"
    out_dir: str | None = Field(None, description="default runs/<name>")
    dataset: str = "fashion-waterbirds"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    model: str = "small-cnn"
    model_params: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    algorithms: list[str] = Field(
        default_factory=lambda: list(ALL_ALGORITHMS), description="registered algorithms or names of `variants`"
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named settings of an algorithm, compared as rows of their own, e.g. "
                    "{spurmem-logits: {algorithm: spurmem, params: {contrast_on: logits}}}",
    )
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    epochs: int = Field(30, ge=1, description="budget of every from-scratch algorithm")
    fine_tune_epochs: int = Field(21, ge=1, description="budget of every fine-tuning algorithm")
    budget: Literal["as-configured", "matched"] = Field(
        "as-configured", description="'matched': from-scratch algorithms train epochs + fine_tune_epochs, the "
                                     "total of ERM plus fine-tuning; 'as-configured': they train epochs"
    )
    init_epoch: Literal["selected", "last"] | int = Field(
        "last", description="ERM checkpoint that fine-tuning algorithms and dfr start from"
    )
    group_labels: bool = Field(True, description="whether validation group labels may be used")
    train_eval: Literal["every_epoch", "selected"] = Field(
        "every_epoch", description="evaluate the train split every epoch, or only at the selected epoch (for the "
                                   "memorisation gap; saves about a fifth of the compute)"
    )
    selection: Literal["auto", "val_wga", "val_worst_class"] = "auto"
    hparams: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per algorithm: TrainConfig fields and 'params' (algorithm_params)"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields for every run (device, ...)")
    search: SearchConfig = Field(default_factory=SearchConfig)
    executor: Literal["local", "ray"] = Field("local", description="where the runs go (docs/scale.md); local with "
                                              "workers 1: one after another in this process")
    workers: int | None = Field(1, ge=1, description="runs at a time (null: cores // threads_per_job)")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads of each run (default: cores // workers)")
    ray_address: str | None = Field(None, description="executor=ray: 'auto' or ray://HOST:PORT (default: a Ray "
                                                     "instance started here)")

    @model_validator(mode="after")
    def _algorithms(self) -> "CompareConfig":
        known = [*ALL_ALGORITHMS, *self.variants]
        for name in self.algorithms:
            if name not in known:
                near = nearest_key(name, known)
                raise ValueError(f"algorithms: unknown algorithm {name!r}" + (f"; did you mean {near!r}?" if near else "")
                                 + f" Known: {', '.join(known)} (or define it under variants)")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError("algorithms: an algorithm is listed twice")
        for name, spec in self.variants.items():
            if name in ALL_ALGORITHMS:
                raise ValueError(f"variants.{name}: a variant needs a name of its own, not an algorithm's")
            if spec.get("algorithm") not in ALL_ALGORITHMS:
                raise ValueError(f"variants.{name}.algorithm must be one of {', '.join(ALL_ALGORITHMS)}, "
                                 f"got {spec.get('algorithm')!r}")
        return self

    def base_algorithm(self, label: str) -> str:
        """The registered algorithm behind a row label (itself, or a variant's ``algorithm``)."""
        return self.variants[label]["algorithm"] if label in self.variants else label

    @property
    def selection_rule(self) -> str:
        if self.selection != "auto":
            return self.selection
        return "val_wga" if self.group_labels else "val_worst_class"

    @property
    def scratch_epochs(self) -> int:
        """Epochs of a reported from-scratch run under the budget (the ERM base always trains ``epochs``)."""
        return self.epochs + self.fine_tune_epochs if self.budget == "matched" else self.epochs

    @property
    def output(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


@dataclass
class PlannedRun:
    """One training run of the comparison (``algorithm`` is the row label: an algorithm or a variant)."""

    algorithm: str
    seed: int
    hparams: registry.HParams
    config: TrainConfig
    run_dir: Path
    trial: int | None = None  # index of the random-search draw, None for the chosen setting
    base: bool = False  # the ERM run the others start from

    @property
    def label(self) -> str:
        return f"{self.algorithm} (base)" if self.base and self.trial is None else self.algorithm


@dataclass
class CompareResult:
    config: CompareConfig
    runs: list[PlannedRun]
    chosen: dict[str, registry.HParams]
    search_log: list[dict[str, Any]] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)
    dataset: GroupDataset | None = field(default=None, repr=False)
    bases: list[PlannedRun] = field(default_factory=list)  # the ERM runs the others start from, when not reported


def check_protocol(cmp: CompareConfig) -> None:
    """Refuse combinations the protocol does not allow, naming the key."""
    from spurmem.train.algorithms import ALGORITHMS

    missing = [a for a in cmp.algorithms if cmp.base_algorithm(a) not in ALGORITHMS]
    if missing:
        raise ConfigError(f"algorithms {missing} are not in the ALGORITHMS registry ({', '.join(ALGORITHMS)})")
    if not cmp.group_labels:
        grouped = [a for a in cmp.algorithms if ALGORITHMS[cmp.base_algorithm(a)].group_labels != "none"]
        if grouped:
            raise ConfigError(f"group_labels=false, but {grouped} use group labels (training or validation); "
                              f"remove them or set group_labels=true")
        if cmp.selection == "val_wga":
            raise ConfigError("selection=val_wga needs validation group labels (group_labels=false)")
    for name in cmp.hparams:
        if name not in cmp.algorithms:
            near = nearest_key(name, cmp.algorithms)
            raise ConfigError(f"hparams.{name}: not one of the compared algorithms"
                              + (f"; did you mean {near!r}?" if near else ""))
    fixed = {"epochs", "seed", "init_from", "init_epoch", "selection", "algorithm", "dataset", "model"}
    variants = {f"variants.{k}": {kk: vv for kk, vv in v.items() if kk != "algorithm"} for k, v in cmp.variants.items()}
    for name, values in {**cmp.hparams, **variants, "train": cmp.train}.items():
        clash = fixed & set(values)
        if clash:
            where = name if name == "train" or name.startswith("variants.") else f"hparams.{name}"
            raise ConfigError(f"{where}: {sorted(clash)} are set by the "
                              f"protocol (epochs, fine_tune_epochs, seeds, init_epoch, selection at the top level)")


def hparams_for(cmp: CompareConfig, label: str, draw: registry.HParams | None = None) -> registry.HParams:
    """Registry defaults, then the random-search draw, then ``train`` (every run), then the variant's
    settings, then ``hparams.<label>``. The epoch budget is the protocol's, not the registry's."""
    h = registry.defaults(cmp.base_algorithm(label), cmp.dataset)
    h.train.pop("epochs", None)
    if draw is not None:
        h = h.merged(draw)
    h = h.merged(registry.HParams(train=dict(cmp.train)))
    if label in cmp.variants:
        spec = {k: v for k, v in cmp.variants[label].items() if k != "algorithm"}
        h = h.merged(registry.from_overrides(spec, f"variants.{label}"))
    return h.merged(registry.from_overrides(cmp.hparams.get(label, {}), f"hparams.{label}"))


def plan_run(
    cmp: CompareConfig, label: str, seed: int, h: registry.HParams, erm_dir: Path | None, trial: int | None = None,
    base: bool = False,
) -> PlannedRun:
    """The TrainConfig of one run under the protocol; its folder is named by the config's hash (name,
    device and workers aside), so a changed setting never reuses a run made under another. ``base``:
    the ERM run the others start from (``epochs`` whatever the budget)."""
    algorithm = cmp.base_algorithm(label)
    fields: dict[str, Any] = {
        "dataset": cmp.dataset, "dataset_params": cmp.dataset_params,
        "model": cmp.model, "model_params": cmp.model_params, "weights": cmp.weights,
        **({"eval_splits": ["val", "test"]} if cmp.train_eval == "selected" else {}),
        **h.train,
        "algorithm": algorithm, "algorithm_params": dict(h.params), "seed": seed,
        "selection": cmp.selection_rule,
    }
    if algorithm in registry.FINE_TUNES:
        assert erm_dir is not None
        fields.update(init_from=str(erm_dir), init_epoch=cmp.init_epoch)
        fields["epochs"] = 0 if algorithm in registry.POST_HOC else cmp.fine_tune_epochs
        fields["weights"] = None
    else:
        fields["epochs"] = cmp.epochs if base else cmp.scratch_epochs
    if algorithm == "erm":  # the others load these epochs of the ERM run; keep_epochs is not in the hash
        fields["keep_epochs"] = sorted({*fields.get("keep_epochs", []), *stage1_epochs(cmp)})
    if algorithm in registry.NEEDS_STAGE1:
        assert erm_dir is not None
        params = fields["algorithm_params"]
        params.setdefault("identification_run", str(erm_dir))
        t = params.get("identification_epoch", 1)
        if isinstance(t, int) and not 1 <= t <= cmp.epochs:
            raise ConfigError(f"hparams.jtt.params.identification_epoch={t} must be within the ERM budget 1..{cmp.epochs}")
    config = validate_config(TrainConfig, fields, source=f"compare {cmp.name}: {label} seed {seed}")
    name = f"{label}-{config_hash(config, HASH_EXCLUDE)[:6]}-s{seed}"
    config = config.model_copy(update={"name": name})
    return PlannedRun(label, seed, h, config, cmp.output / "runs" / name, trial, base)


def stage1_epochs(cmp: CompareConfig) -> set[int]:
    """Epochs of the ERM runs the other algorithms load: an integer ``init_epoch`` and every
    ``identification_epoch`` JTT may use (configured, or any the random search may draw)."""
    epochs = {cmp.init_epoch} if isinstance(cmp.init_epoch, int) else set()
    for label in cmp.algorithms:
        algorithm = cmp.base_algorithm(label)
        if algorithm not in registry.NEEDS_STAGE1:
            continue
        epochs.add(hparams_for(cmp, label).params.get("identification_epoch", 1))
        space = registry.SEARCH_SPACES.get(algorithm, {}).get("params.identification_epoch")
        if cmp.search.trials and space is not None:
            epochs.update(space.values)
    return {e for e in epochs if isinstance(e, int)}


def run_job(planned: PlannedRun, progress: bool = False):
    """The executor job that trains (or resumes) one planned run (``spurmem.jobs``)."""
    from spurmem.jobs.executor import Job

    name = f"{planned.label} seed {planned.seed}" + (f" trial {planned.trial}" if planned.trial is not None else "")
    return Job(name, "train", {"config": planned.config.model_dump(mode="json"), "run_dir": str(planned.run_dir),
                               "progress": progress}, planned.run_dir)


def run_compare(cmp: CompareConfig, progress: bool = True, log=print, dry_run: bool = False) -> CompareResult:
    """Run every algorithm x seed and return the plan.

    The runs go through the executor of ``cmp.executor`` (``local`` with ``workers: 1``, the default:
    one after another in this process) in waves of runs that do not depend on each other. Phase 1
    fixes each algorithm's hyper-parameters (a random search, when asked, runs its trials on the first
    seed as one wave, ERM first because the others build on it). Phase 2 runs every run that starts
    from scratch (the ERM runs of every seed among them), then every run that builds on an ERM run.
    A run that fails stops the comparison after its wave (:class:`~spurmem.jobs.JobsFailedError`).
    """
    check_protocol(cmp)
    if dry_run:
        return _run_compare(cmp, progress, log, None)
    from spurmem.jobs.executor import make_executor
    from spurmem.jobs.tasks import shared_dataset
    from spurmem.locks import folder_lock

    with folder_lock(cmp.output, f"compare {cmp.name}"):
        dataset = load_dataset(cmp.dataset, **cmp.dataset_params)
        with make_executor(cmp.executor, workers=cmp.workers, threads_per_job=cmp.threads_per_job,
                           address=cmp.ray_address) as executor, \
                shared_dataset(cmp.dataset, cmp.dataset_params, dataset):
            return _run_compare(cmp, progress, log, executor, dataset)


def _run_compare(cmp: CompareConfig, progress: bool, log, executor, dataset: GroupDataset | None = None
                 ) -> CompareResult:
    from spurmem.jobs.executor import raise_for_failures, run_jobs

    dry_run = executor is None
    order = ["erm"] + [a for a in cmp.algorithms if a != "erm"]
    first = cmp.seeds[0]
    chosen: dict[str, registry.HParams] = {}
    runs: list[PlannedRun] = []
    search_log: list[dict[str, Any]] = []
    erm_dirs: dict[int, Path] = {}
    executed: set[Path] = set()

    def base(label: str, seed: int) -> Path | None:
        algorithm = cmp.base_algorithm(label)
        return erm_dirs[seed] if algorithm in registry.FINE_TUNES or algorithm in registry.NEEDS_STAGE1 else None

    bar = Progress(f"compare {cmp.name}", len(cmp.seeds) * len(order), unit="runs", enabled=progress and not dry_run,
                   cost=f"{len(order)} algorithms x {len(cmp.seeds)} seeds x {cmp.epochs} epochs "
                        f"(+ search trials), finished runs skipped"
                        + ("" if dry_run else f"; {executor.describe()}"))
    inline = not dry_run and executor.name == "local" and executor.slots == 1

    def wave(planned: list[PlannedRun]) -> None:
        """Train the runs of ``planned`` (independent of each other), each once."""
        todo = list({p.run_dir: p for p in planned if p.run_dir not in executed}.values())
        if dry_run or not todo:
            return
        outcomes = run_jobs([run_job(p, progress=progress and inline) for p in todo], executor, progress=bar, log=log)
        raise_for_failures(outcomes, f"compare {cmp.name}")
        executed.update(p.run_dir for p in todo)

    def selection_value(p: PlannedRun) -> float | None:
        from spurmem.train.run import read_info

        return (read_info(p.run_dir).get("selection") or {}).get("value")

    for algorithm in order:  # phase 1
        h = hparams_for(cmp, algorithm)
        draws = [] if dry_run else registry.search_draws(cmp.base_algorithm(algorithm), cmp.search.trials,
                                                         cmp.search.seed)
        if draws:
            if base(algorithm, first) is not None:
                wave([plan_run(cmp, "erm", first, chosen["erm"], None, base=True)])
            candidates = [h] + [hparams_for(cmp, algorithm, d) for d in draws]
            bar.set_total(bar.total + len(candidates) - 1)  # the chosen trial is phase 2's run of this seed
            trials = [plan_run(cmp, algorithm, first, cand, base(algorithm, first), t) for t, cand in enumerate(candidates)]
            runs.extend(trials)
            wave(trials)
            scores = []
            for t, (cand, trial) in enumerate(zip(candidates, trials)):
                value = selection_value(trial)
                scores.append(float("-inf") if value is None else value)
                search_log.append({"algorithm": algorithm, "trial": t, "seed": first, "hparams": cand.to_dict(),
                                   "selection_value": value})
            h = candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))]
        chosen[algorithm] = h
        if algorithm == "erm":
            erm_dirs = {seed: plan_run(cmp, "erm", seed, h, None, base=True).run_dir for seed in cmp.seeds}

    needs_base = any(base(a, first) is not None for a in cmp.algorithms)
    reported = [a for a in order if a != "erm" or "erm" in cmp.algorithms]
    bases: list[PlannedRun] = []
    from_scratch: list[PlannedRun] = []
    building: list[PlannedRun] = []  # runs that start from (or read) the ERM run of their seed
    for seed in cmp.seeds:  # phase 2
        b = plan_run(cmp, "erm", seed, chosen["erm"], None, base=True)
        if needs_base:
            if "erm" in cmp.algorithms and b.run_dir == plan_run(cmp, "erm", seed, chosen["erm"], None).run_dir:
                b.base = False  # the reported erm row itself
            else:
                bases.append(b)  # trained for the others, not a row of the table
            from_scratch.append(b)
        for algorithm in reported:
            p = plan_run(cmp, algorithm, seed, chosen[algorithm], base(algorithm, seed))
            runs.append(p)
            (building if base(algorithm, seed) is not None else from_scratch).append(p)
    wave(from_scratch)
    wave(building)
    bar.close()
    if "erm" not in cmp.algorithms:
        chosen.pop("erm", None)
    return CompareResult(cmp, runs, chosen, search_log, dataset.group_names if dataset is not None else [], dataset,
                         bases)
