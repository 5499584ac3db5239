"""``spurmem demo``: the whole method on the built-in data, in one command, in about five minutes.

Stages, in order, each reusing its output when a previous demo finished it:

1. ``erm``: train ERM on fashion-waterbirds (through ``spurmem compare``'s protocol, so the same run
   is the base of the mitigation stage);
2. ``probe``: a probe grid with the random control on the ERM run's last checkpoint (docs/method.md §4, 5.1, 5.2);
3. ``scan``: the unit-level memorisation scan of the ERM run (docs/method.md §5.3);
4. ``examples``: example-level memorisation from models trained on random halves (docs/method.md §5.3);
   the demo's 2 models are a smoke setting (the scores come out ``not testable``; 8 or more are needed);
5. ``compare``: the framework, ERM, the ``erm-continue`` control and one baseline (docs/method.md §6, 7);
6. ``report``: the HTML report, opening with the verdicts on the claims; its path and a summary table
   are printed.

:class:`DemoConfig` holds every setting; ``key=value`` overrides shrink it (a test runs it in under
two minutes with ``erm_epochs=2 n_train=400 ...``).
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field
from spurmem.config import ConfigError
from spurmem.locks import LOCK_FILE, folder_lock
from spurmem.progress import Progress
from spurmem.record import record_command, write_json_atomic
from spurmem.untrusted import read_json_file

if TYPE_CHECKING:
    from rich.console import Console

    from spurmem.report.html import Report


class DemoConfig(BaseModel):
    """Settings of the demo; the defaults finish in about five minutes on two CPU cores."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str = Field("runs/demo", description="where the runs, the comparison and the report go")
    dataset: str = Field("fashion-waterbirds", description="a DATASETS name")
    n_train: int = Field(4800, ge=40, description="training examples (fashion-waterbirds n_train)")
    n_eval_per_group: int = Field(250, ge=5, description="validation and test examples per group")
    dataset_params: dict[str, Any] = Field(default_factory=dict, description="more dataset parameters")
    model: str = Field("small-cnn", description="a MODELS name")
    erm_epochs: int = Field(20, ge=1, description="ERM budget (minority examples are fitted by ~epoch 12)")
    fine_tune_epochs: int = Field(4, ge=1, description="budget of the framework and the erm-continue control")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="seeds of the comparison (the framework verdict needs two or more)")
    baseline: str = Field("dfr", description="the robust-training baseline next to the framework")
    eval_every: int = Field(1, ge=1, description="evaluate every N epochs (curves get coarser, runs faster)")
    device: str = Field("auto", description="auto, cpu or cuda")
    threads: int = Field(0, ge=0, description="torch CPU threads for every stage (0: torch's default; on a busy "
                         "machine 1 is often fastest)")
    probe: dict[str, Any] = Field(default_factory=dict, description="overrides of the probe grid (ProbeConfig)")
    example_models: int = Field(2, ge=0, description="half-data models for example-level memorisation "
                                "(even; 0 skips it and the grid of the most memorised images). The default 2 is "
                                "a smoke setting: below 8 the scores are marked not testable")
    example_epochs: int | None = Field(None, ge=1, description="epochs of each half-data model (null: erm_epochs)")

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def all_dataset_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"n_train": self.n_train}
        if self.dataset == "fashion-waterbirds":
            params.update(n_val_per_group=self.n_eval_per_group, n_test_per_group=self.n_eval_per_group)
        return {**params, **self.dataset_params}

    def compare_config(self, algorithms: list[str]):
        """The ``spurmem compare`` config of the demo (ERM alone first, then every algorithm)."""
        from spurmem.train.compare import CompareConfig

        return CompareConfig(
            name="demo", out_dir=str(self.out), dataset=self.dataset, dataset_params=self.all_dataset_params(),
            model=self.model, algorithms=algorithms, seeds=self.seeds, epochs=self.erm_epochs,
            fine_tune_epochs=self.fine_tune_epochs,
            train={"device": self.device, "eval_every": self.eval_every},
        )

    def probe_config(self):
        """The demo's probe grid: gradient, contrast and weight-norm scorers, k in {1, 3, 10}, zeroing, each
        against 5 random draws, on the last ERM checkpoint (the one that memorised its training set)."""
        from spurmem.config import validate_config
        from spurmem.probes.config import ProbeConfig

        grid = {"name": "demo", "epoch": "last", "scorers": ["group-gradient", "group-contrast", "weight-norm"],
                "k": [1, 3, 10], "interventions": ["zero"], "repeats": 10, "eval_splits": ["train", "test"],
                "heldout_split": "test", "device": self.device}
        return validate_config(ProbeConfig, {**grid, **self.probe}, source="demo probe settings")

    @property
    def scan_epoch(self) -> str | int:
        epoch = self.probe.get("epoch", "last")
        return int(epoch) if str(epoch).isdigit() else str(epoch)

    @property
    def algorithms(self) -> list[str]:
        return ["erm", "erm-continue", "spurmem", self.baseline]


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "reused" (finished by an earlier demo) or "skipped" (by a setting)
    seconds: float
    note: str = ""


@dataclass
class DemoResult:
    report_path: Path
    report: "Report"
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Stage:
    name: str
    title: str
    done: Callable[["_Demo"], bool]
    run: Callable[["_Demo"], str | None]
    skip: Callable[["_Demo"], str] = lambda demo: ""  # the setting that leaves this stage out, if any


class _Demo:
    """The demo's shared state: config, console, the ERM run it builds on."""

    def __init__(self, config: DemoConfig, console: Console, progress: bool) -> None:
        self.config, self.console, self.progress = config, console, progress

    def log(self, message: str) -> None:
        self.console.print(f"    {message}")

    @property
    def erm_dir(self) -> Path:
        """The ERM run of the first seed, where compare's protocol puts it."""
        from spurmem.train.compare import hparams_for, plan_run

        cmp = self.config.compare_config(["erm"])
        return plan_run(cmp, "erm", self.config.seeds[0], hparams_for(cmp, "erm"), None).run_dir

    def run_compare(self, algorithms: list[str]) -> None:
        from spurmem.train.compare import run_compare
        from spurmem.train.compare_table import write_comparison

        cmp = self.config.compare_config(algorithms)
        result = run_compare(cmp, progress=self.progress, log=self.log)
        if len(algorithms) > 1:
            write_comparison(result)


def _run_status(run_dir: Path) -> str:
    from spurmem.train.run import run_status

    return run_status(run_dir)


def _stages() -> list[_Stage]:
    return [
        _Stage("erm", "train ERM",
               lambda d: _run_status(d.erm_dir) == "complete",
               lambda d: d.run_compare(["erm"])),
        _Stage("probe", "probe the ERM model's units (with the random control)",
               lambda d: (d.erm_dir / "probes" / d.config.probe_config().name / "verdicts.json").is_file(),
               _probe),
        _Stage("scan", "scan every unit for memorisation",
               lambda d: (d.erm_dir / "memorization" / "units_summary.json").is_file(),
               _scan_units),
        _Stage("examples", "example-level memorisation (models on random halves)",
               lambda d: (d.erm_dir / "memorization" / "examples.csv").is_file(),
               _scan_examples, skip=lambda d: "example_models=0" if d.config.example_models == 0 else ""),
        _Stage("compare", "framework, ERM, erm-continue control and baseline",
               lambda d: _comparison_done(d),
               lambda d: d.run_compare(d.config.algorithms)),
        _Stage("report", "write the report", lambda d: False, _write_report),
    ]


def _probe(demo: _Demo) -> str:
    from spurmem.probes.api import probe_run

    result = probe_run(demo.erm_dir, demo.config.probe_config(), progress=demo.progress)
    claims = "; ".join(f"{c.claim}: {c.status}" for c in result.summary.claims)
    demo.log(claims)
    return f"{result.n_computed} settings computed, {result.n_resumed} reused"


def _scan_units(demo: _Demo) -> None:
    from spurmem.memorization.stage import scan_run_units

    scan_run_units(demo.erm_dir, epoch=demo.config.scan_epoch, device=demo.config.device, progress=demo.progress)


def _scan_examples(demo: _Demo) -> None:
    from spurmem.memorization.stage import score_run_examples

    c = demo.config
    epochs = c.example_epochs or c.erm_epochs
    # Only the last epoch of each half model is used, so evaluating it alone saves time.
    score_run_examples(demo.erm_dir, {"epochs": epochs, "eval_every": epochs, "keep_every": 0},
                       models=c.example_models, device=c.device, progress=demo.progress)


def _comparison_done(demo: _Demo) -> bool:
    return (demo.config.out / "comparison.json").is_file() and all(
        _run_status(p) == "complete" for p in (demo.config.out / "runs").iterdir()
    )


def _write_report(demo: _Demo) -> None:
    from spurmem.report.build import assemble_report
    from spurmem.report.html import write_report

    demo.report = assemble_report([demo.config.out], title="spurmem demo: spurious memorisation on "
                                  f"{demo.config.dataset}", progress=demo.progress)
    demo.report_path = write_report(demo.report, demo.config.out / "report")


CONFIG_FILE = "demo_config.json"
NEUTRAL_SETTINGS = ("out_dir", "device", "threads")  # settings that do not change what is computed


def prepare_folder(config: DemoConfig, fresh: bool = False) -> None:
    """Refuse to reuse a folder holding a demo made with other settings (its finished stages would be
    silently mixed in); ``fresh`` deletes such a folder first (only a demo folder)."""
    path = config.out / CONFIG_FILE
    if fresh and config.out.exists():
        if not path.is_file():
            raise ConfigError(f"{config.out} is not a demo folder (no {CONFIG_FILE}); refusing to delete it")
        for p in config.out.iterdir():  # not the folder itself: its lock is ours
            if p.name != LOCK_FILE:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    now = config.model_dump(mode="json")
    if path.is_file():
        saved = read_json_file(path, "a demo folder's settings (JSON)")
        saved = saved if isinstance(saved, dict) else {}
        diff = [f"{k}: the folder has {saved.get(k)!r}, given {now[k]!r}" for k in now
                if k not in NEUTRAL_SETTINGS and saved.get(k) != now[k]]
        if diff:
            raise ConfigError(f"{config.out} holds a demo made with other settings ({'; '.join(diff)}); pass "
                              "out_dir=ANOTHER_FOLDER, or --fresh to delete it and start over")
    write_json_atomic(path, now)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch uses ``threads`` CPU threads inside the block (0: leave it as it is), then as many as before."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_demo(config: DemoConfig, console: Console | None = None, progress: bool = True,
             fresh: bool = False) -> DemoResult:
    """Run every stage (reusing finished ones), write the report and return its path and timings.
    ``fresh`` deletes the demo folder first."""
    with folder_lock(config.out, "demo"):  # a second demo into the same folder fails at once
        return _run_demo(config, console, progress, fresh)


def _run_demo(config: DemoConfig, console: Console | None, progress: bool, fresh: bool) -> DemoResult:
    from rich.console import Console

    console = console or Console()
    demo = _Demo(config, console, progress)
    prepare_folder(config, fresh)
    stages = _stages()
    t_all = time.perf_counter()
    results: list[StageResult] = []
    bar = Progress("demo", len(stages), unit="stages", enabled=progress,
                   cost=f"{len(stages)} stages ({', '.join(s.name for s in stages)}), finished ones reused")
    with _torch_threads(config.threads), \
            record_command(config.out, "demo", config=config.model_dump(mode="json"), seeds=config.seeds) as rec, bar:
        for i, stage in enumerate(stages, 1):
            console.rule(f"[bold]{i}/{len(stages)} {stage.title}")
            t0 = time.perf_counter()
            reason = stage.skip(demo)
            if reason:
                console.print(f"    skipped ({reason})")
                results.append(StageResult(stage.name, "skipped", 0.0, reason))
                continue
            if stage.done(demo):
                console.print("    finished by an earlier demo: reused")
                results.append(StageResult(stage.name, "reused", 0.0))
                bar.advance(1, info=f"{stage.name} reused")
                continue
            bar.advance(0, info=stage.name)
            with rec.timed(stage.name):
                note = stage.run(demo) or ""
            seconds = time.perf_counter() - t0
            console.print(f"    done in {seconds:.0f} s (total {time.perf_counter() - t_all:.0f} s)")
            results.append(StageResult(stage.name, "ran", seconds, note))
            bar.advance(1, info=f"{stage.name} done")
        rec.outputs.append(str(demo.report_path))
    return DemoResult(report_path=demo.report_path, report=demo.report, stages=results, seconds=time.perf_counter() - t_all)
