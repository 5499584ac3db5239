"""`spurmem sweep` with `kind: probe`: two tiny trained runs (trained once for the module) x two
probe settings on the local executor with two workers; every probe folder complete, one results
row per job whose verdicts match the probe's own verdicts.json, a re-run that probes nothing, and
the config errors (an unknown probe key, a missing or unfinished run folder)."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spurmem.cli import main
from spurmem.config import ConfigError, load_config
from spurmem.jobs.sweep import SweepConfig, load_sweep, plan_sweep, run_sweep
from sweep_jobs import lock_held_elsewhere

PROBE_BASE = {"name": "pk", "scorers": ["weight-norm"], "interventions": ["zero"], "repeats": 2,
              "eval_splits": ["train", "test"], "device": "cpu",
              "thresholds": {"fit_min_train": 0.0, "fit_min_gap": 0.0, "control_p": 0.34}}  # 5.1 testable


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished one-epoch runs of a tiny small-cnn on synthetic-shapes (seeds 0 and 1)."""
    from spurmem.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        config = TrainConfig(name=f"tiny-s{seed}", dataset="synthetic-shapes", seed=seed,
                             dataset_params={"n_train": 120, "n_val": 40, "n_test": 40, "size": 12},
                             model="small-cnn", model_params={"widths": [4, 8]}, epochs=1, batch_size=64,
                             lr=0.01, selection="last", device="cpu", eval_init=False)
        train(config, run_dir=folder / f"tiny-s{seed}", progress=False)
    return folder


def write_probe_sweep(folder, runs, **fields):
    data = {"name": "probes", "out_dir": str(folder / "out"), "kind": "probe", "runs": runs, "base": PROBE_BASE,
            "grid": {"k": [1, 2]}, "workers": 2, "threads_per_job": 1, "retries": 0, **fields}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def manifest_stamps(runs_folder):
    return {str(p): p.stat().st_mtime_ns for p in sorted(runs_folder.glob("*/probes/pk-*/probe.manifest.json"))}


@pytest.fixture(scope="module")
def swept(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    path = write_probe_sweep(folder, str(trained / "tiny-s*"))
    t0 = time.perf_counter()
    status = main(["sweep", str(path), "--no-progress"])
    print(f"probe sweep of 4 jobs on 2 workers: {time.perf_counter() - t0:.1f} s")
    return path, folder / "out", status


def test_probe_jobs_run_in_two_workers_with_one_thread_each(trained, tmp_path):
    path = write_probe_sweep(tmp_path, [str(trained / "tiny-s0"), str(trained / "tiny-s1")], grid={"k": [4]},
                             base={**PROBE_BASE, "name": "threads"})
    sweep, relative_to = load_sweep(path)
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["complete", "complete"]
    assert [o.value["threads"] for o in result.outcomes] == [1, 1]  # threads_per_job in each worker
    for o in result.outcomes:
        written = json.loads((o.job.run_dir / "verdicts.json").read_text())
        assert o.value["settings_computed"] == written["settings_computed"] > 0


def test_every_probe_is_written_and_its_verdicts_are_in_the_table(trained, swept):
    from spurmem.fileset import check_set

    path, out, status = swept
    assert status == 0
    folders = sorted(trained.glob("*/probes/pk-*"))
    assert len(folders) == 4 and {f.parent.parent.name for f in folders} == {"tiny-s0", "tiny-s1"}
    for f in folders:
        assert json.loads((f / "probe.manifest.json").read_text())["complete"] is True and check_set(f, "probe") is None
        assert (f / "verdicts.json").is_file() and (f / "summary.md").is_file()
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and (table["status"] == "complete").all()
    assert table["k"].tolist() == [1, 2, 1, 2]
    assert [Path(r).name for r in table["run"]] == ["tiny-s0", "tiny-s0", "tiny-s1", "tiny-s1"]
    assert sorted(table["probe_dir"]) == sorted(str(f) for f in folders)
    for row in table.to_dict("records"):
        verdicts = json.loads((Path(row["probe_dir"]) / "verdicts.json").read_text())
        claims = {c["claim"]: c["verdict"] for c in verdicts["claims"]}
        assert row["claim_5_1_sensitivity"] == claims["5.1 sensitivity"]
        assert row["claim_5_2_group_specificity"] == claims["5.2 group specificity"]
        counts = verdicts["setting_verdict_counts"]
        assert row["n_class_collapse"] == counts["class collapse"]
        assert row["n_localised_memorisation"] == counts["localised memorisation"]
        assert row["n_no_effect"] == counts["no effect"]
        assert sum(row[c] for c in table.columns if c.startswith("n_")) == sum(counts.values())
        config = yaml.safe_load((Path(row["probe_dir"]) / "config.yaml").read_text())
        assert config["k"] == [row["k"]]  # a scalar grid value of a list key is the one-element list
    summary = (out / "summary.md").read_text()
    assert "4 jobs: 4 complete" in summary and "5.1 sensitivity" in summary and "Varied: k." in summary
    records = sorted(p.name for p in (out / "jobs").glob("*.json"))
    assert len(records) == 4 and all(r.startswith(("tiny-s0.pk-", "tiny-s1.pk-")) for r in records)


def test_a_rerun_skips_every_finished_probe(trained, swept):
    path, out, _ = swept
    before = manifest_stamps(trained)
    assert len(before) == 4
    sweep, relative_to = load_sweep(path, ["workers=1"])
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["skipped"] * 4
    assert manifest_stamps(trained) == before
    table = pd.read_csv(out / "results.csv")
    assert table["status"].tolist() == ["skipped"] * 4 and table["claim_5_1_sensitivity"].notna().all()


def test_unknown_probe_keys_name_the_nearest(trained, tmp_path):
    runs = [str(trained / "tiny-s0")]
    with pytest.raises(ConfigError, match="did you mean 'k'"):
        plan_sweep(load_config(SweepConfig, write_probe_sweep(tmp_path, runs, grid={"kk": [1, 2]})))
    with pytest.raises(ConfigError, match="did you mean 'scorers'"):
        plan_sweep(load_config(SweepConfig, write_probe_sweep(tmp_path, runs, base={**PROBE_BASE, "scorer": ["x"]})))
    with pytest.raises(ConfigError, match="make the same probe"):  # device does not change a probe
        plan_sweep(load_config(SweepConfig, write_probe_sweep(tmp_path, runs, grid={"device": ["cpu", "auto"]})))
    with pytest.raises(ConfigError, match="train: sets TrainConfig fields"):
        load_config(SweepConfig, write_probe_sweep(tmp_path, runs, train={"epochs": 2}))
    with pytest.raises(ConfigError, match="kind probe needs runs"):
        load_config(SweepConfig, write_probe_sweep(tmp_path, None))


def test_a_missing_or_unfinished_run_is_one_clear_line(trained, tmp_path, capsys):
    missing = tmp_path / "nope"
    path = write_probe_sweep(tmp_path, [str(trained / "tiny-s0"), str(missing)])
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"run folder {missing} does not exist" in err
    unfinished = tmp_path / "half"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("name: half\n")
    with pytest.raises(ConfigError, match=f"{unfinished} is not a finished training run"):
        plan_sweep(load_config(SweepConfig, write_probe_sweep(tmp_path, [str(unfinished)])))
    with pytest.raises(ConfigError, match="matches no folder"):
        plan_sweep(load_config(SweepConfig, write_probe_sweep(tmp_path, str(tmp_path / "erm-*"))))
    assert not (tmp_path / "out").exists()  # nothing was written


def test_a_failing_probe_is_retried_then_reported_and_the_other_completes(trained, tmp_path):
    path = write_probe_sweep(tmp_path, [str(trained / "tiny-s0")], grid={"epoch": [1, 9]}, retries=1, workers=1,
                             base={**PROBE_BASE, "name": "fail"})
    sweep, relative_to = load_sweep(path)
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["complete", "failed"]
    assert result.outcomes[1].attempts == 2 and "9" in result.outcomes[1].error
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert table["status"].tolist() == ["complete", "failed"]
    assert table["claim_5_1_sensitivity"].notna().tolist() == [True, False]
    assert "## Failed\n\n- tiny-s0 epoch=9: " in (tmp_path / "out" / "summary.md").read_text()


def test_a_probe_folder_locked_by_another_live_process_is_left_to_it(trained, tmp_path):

    from spurmem.jobs.tasks import run_job

    path = write_probe_sweep(tmp_path, [str(trained / "tiny-s1")], grid={"k": [3]}, workers=1,
                             base={**PROBE_BASE, "name": "lock"})
    sweep, relative_to = load_sweep(path)
    (job,) = plan_sweep(sweep, relative_to)
    with lock_held_elsewhere(job.run_dir) as pid:
        result = run_sweep(sweep, relative_to, progress=False)
        attempt = run_job(job.job())  # past the driver's check: the probe code itself takes the lock
    (outcome,) = result.outcomes
    assert outcome.status == "running elsewhere" and f"pid {pid}" in outcome.error
    assert not attempt.ok and attempt.locked and f"pid {pid}" in attempt.error
    assert not (job.run_dir / "verdicts.json").exists()


def test_a_random_search_over_probe_keys_is_seeded(trained, tmp_path):
    random_search = {"trials": 3, "seed": 1, "params": {"k": {"int_uniform": [1, 5]},
                                                         "thresholds.control_p": {"uniform": [0.05, 0.2]}}}
    path = write_probe_sweep(tmp_path, [str(trained / "tiny-s0"), str(trained / "tiny-s1")],
                             grid={"interventions": ["zero", "mean-activation"]}, random=random_search)
    jobs = plan_sweep(load_config(SweepConfig, path))
    again = plan_sweep(load_config(SweepConfig, path))
    assert len(jobs) == 12 and [j.run_dir for j in jobs] == [j.run_dir for j in again]
    assert len({j.run_dir.name for j in jobs}) == 6  # the same six probes of each run
    assert all(len(j.config.k) == 1 and 1 <= j.config.k[0] <= 5 for j in jobs)
    assert all(0.05 <= j.config.thresholds.control_p <= 0.2 for j in jobs)
    assert {tuple(j.config.interventions) for j in jobs} == {("zero",), ("mean-activation",)}
