"""`spurmem sweep` on the local executor: a four-job grid with one job that fails on purpose
(retried, then reported, the others complete), a re-run that trains nothing, shards, config errors,
the results table; and `compare` on 1 vs 2 workers gives the same table."""

import sys
import time

import pandas as pd
import pytest

from spurmem.cli import main
from spurmem.config import ConfigError, load_config
from spurmem.jobs.executor import make_executor, parse_shard, plan_slots, shard
from spurmem.jobs.sweep import SweepConfig, cells, load_sweep, plan_sweep, run_sweep
from sweep_jobs import RHOS, lock_held_elsewhere, run_json_stamps, write_sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The sweep run once through the CLI (2 workers, 1 retry), its exit status and output."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder)
    status = main(["sweep", str(path), "--no-progress"])
    return path, folder / "out", status


def test_failed_job_is_retried_then_reported_and_the_others_complete(swept):
    path, out, status = swept
    assert status == 1  # a job failed
    table = pd.read_csv(out / "results.csv")
    assert table["dataset_params.rho"].tolist() == RHOS
    assert table["status"].tolist() == ["complete", "complete", "complete", "failed"]
    bad = table.iloc[3]
    assert bad["attempts"] == 2 and "rho must be in [0, 1]" in bad["error"]
    done = table.iloc[:3]
    assert (done["attempts"] == 1).all() and done["error"].isna().all()
    assert (done["selection_rule"] == "val_wga").all() and (done["selected_epoch"] == 1).all()
    for column in ("val_wga", "test_wga", "val_average", "test_average"):
        assert done[column].between(0, 1).all()
    assert (done["val_wga"] == done["selection_value"]).all()  # selected by validation WGA
    assert len(run_json_stamps(out)) == 3  # the failed job never made a run folder
    summary = (out / "summary.md").read_text()
    assert "3 complete, 1 failed" in summary and "rho must be in [0, 1]" in summary


def test_rerun_skips_finished_jobs_without_retraining(swept):
    path, out, _ = swept
    before = run_json_stamps(out)
    sweep, relative_to = load_sweep(path, ["workers=1", "retries=0"])
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert run_json_stamps(out) == before  # nothing retrained
    assert pd.read_csv(out / "results.csv")["status"].tolist() == ["skipped", "skipped", "skipped", "failed"]


def test_shards_cover_every_job_exactly_once(swept, capsys):
    path, out, _ = swept
    sweep, relative_to = load_sweep(path)
    jobs = [j.run_dir for j in plan_sweep(sweep, relative_to)]
    parts = [[j.run_dir for j in shard(plan_sweep(sweep, relative_to), parse_shard(f"{i}/2"))] for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(jobs) and not set(parts[0]) & set(parts[1])
    assert all(len(p) == 2 for p in parts)
    assert main(["sweep", str(path), "--shard", "1/2", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in listed] == [str(p) for p in parts[1]]
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(ConfigError, match="shard must be i/N"):
            parse_shard(bad)


def test_collect_builds_the_table_from_the_folders(swept):
    path, out, _ = swept
    sweep, relative_to = load_sweep(path)
    (out / "results.csv").unlink()
    assert main(["sweep", str(path), "--collect"]) == 1  # the failed job is still failed
    table = pd.read_csv(out / "results.csv")
    assert table["status"].tolist() == ["complete", "complete", "complete", "failed"]
    assert table.iloc[3]["attempts"] == 1  # the record of the last session (retries=0)


def test_a_job_locked_by_another_live_process_is_left_to_it(swept, tmp_path):
    path, out, _ = swept
    sweep, relative_to = load_sweep(path, [f"out_dir={tmp_path / 'other'}", "grid={dataset_params.rho: [0.5]}"])
    (job,) = plan_sweep(sweep, relative_to)
    with lock_held_elsewhere(job.run_dir) as pid:
        result = run_sweep(sweep, relative_to, progress=False)
    (outcome,) = result.outcomes
    assert outcome.status == "running elsewhere" and f"pid {pid}" in outcome.error
    assert not (job.run_dir / "run.json").exists()


def test_unknown_keys_are_errors_naming_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'grid'"):
        load_config(SweepConfig, write_sweep(tmp_path, gird={"lr": [0.1]}))
    with pytest.raises(ConfigError, match="did you mean 'random.params.lr.log_uniform'"):
        load_config(SweepConfig, None, ["random.trials=2", "random.params.lr.log_uniforn=[0.001,0.01]"])
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        plan_sweep(load_config(SweepConfig, write_sweep(tmp_path, grid={"lrr": [0.1, 0.2]})))
    with pytest.raises(ConfigError, match="lr"):
        plan_sweep(load_config(SweepConfig, write_sweep(tmp_path, grid={"lr": [0.1, -1]})))
    with pytest.raises(ConfigError, match="make the same run"):  # device does not change a run
        plan_sweep(load_config(SweepConfig, write_sweep(tmp_path, grid={"device": ["cpu", "auto"]})))
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("rey")


def test_random_search_is_seeded_and_crossed_with_the_grid():
    fields = {"grid": {"seed": [0, 1]}, "random": {"trials": 3, "seed": 5, "params": {
        "lr": {"log_uniform": [1e-4, 1e-2]}, "batch_size": {"choice": [32, 64]}, "epochs": {"int_uniform": [1, 3]}}}}
    a, b = cells(SweepConfig(**fields)), cells(SweepConfig(**fields))
    assert a == b and len(a) == 6
    assert [c["seed"] for c in a] == [0, 0, 0, 1, 1, 1] and a[:3] == [{**c, "seed": 0} for c in a[3:]]
    assert all(1e-4 <= c["lr"] <= 1e-2 and c["batch_size"] in (32, 64) and 1 <= c["epochs"] <= 3 for c in a)
    other = cells(SweepConfig(**{**fields, "random": {**fields["random"], "seed": 6}}))
    assert [c["lr"] for c in other] != [c["lr"] for c in a]


def test_workers_times_threads_fit_the_cores():
    assert plan_slots(None, None, cores=8) == (8, 1)
    assert plan_slots(2, None, cores=8) == (2, 4)
    assert plan_slots(None, 3, cores=8) == (2, 3)
    assert plan_slots(4, 4, cores=2) == (4, 4)  # both given: as asked (the local executor warns)
    with pytest.warns(UserWarning, match="compete"):
        make_executor("local", workers=4, threads_per_job=4).close()


def test_compare_on_two_workers_gives_the_same_table_as_on_one(tmp_path):
    from spurmem.train.compare import CompareConfig, run_compare
    from spurmem.train.compare_table import per_run_table

    def table(workers: int) -> pd.DataFrame:
        cmp = CompareConfig(name="w", out_dir=str(tmp_path / f"w{workers}"), dataset="synthetic-shapes",
                            dataset_params=dict(n_train=120, n_val=40, n_test=40, size=12, seed=0),
                            model_params={"width": 0.25}, algorithms=["erm", "erm-continue"], seeds=[0, 1],
                            epochs=2, fine_tune_epochs=1, train={"batch_size": 40}, workers=workers,
                            threads_per_job=1)
        t0 = time.perf_counter()
        result = run_compare(cmp, progress=False, log=lambda _: None)
        print(f"{workers} worker(s): {time.perf_counter() - t0:.1f} s")
        return per_run_table(result).drop(columns=["run_dir", "terms"])

    one, two = table(1), table(2)
    assert len(one) == 4
    pd.testing.assert_frame_equal(one, two)


def test_train_fields_are_set_on_the_base_for_every_job(tmp_path):
    sweep = load_config(SweepConfig, write_sweep(tmp_path, train={"epochs": 3, "dataset_params.seed": 4}))
    jobs = plan_sweep(sweep)
    assert [j.config.epochs for j in jobs] == [3] * 4
    assert all(j.config.dataset_params == {"upscale": 1, "seed": 4, "rho": r} for j, r in zip(jobs, RHOS))
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        plan_sweep(load_config(SweepConfig, write_sweep(tmp_path, train={"epoch": 3})))


def test_ray_missing_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'spurmem\[ray\]'"):
        make_executor("ray")


def test_a_sweep_of_comparisons_has_a_row_per_job_and_algorithm(tmp_path):
    base = {"name": "c", "dataset": "synthetic-shapes", "model_params": {"width": 0.25}, "algorithms": ["erm", "dfr"],
            "dataset_params": dict(n_train=120, n_val=40, n_test=40, size=12, seed=0), "seeds": [0],
            "fine_tune_epochs": 1, "train": {"batch_size": 40}}
    path = write_sweep(tmp_path, kind="compare", base=base, grid={"epochs": [1, 2]}, retries=0,
                       workers=1)  # the comparisons one after another here (the pool is tested above)
    sweep, relative_to = load_sweep(path)
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["complete", "complete"]
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert table[["epochs", "algorithm"]].values.tolist() == [[1, "erm"], [1, "dfr"], [2, "erm"], [2, "dfr"]]
    assert (table["seeds"] == 1).all() and table["test_wga"].between(0, 1).all()
    erm = table[table["algorithm"] == "erm"]
    assert all(0 <= int(e) <= n for e, n in zip(erm["selected_epoch"], erm["epochs"]))  # within each job's budget
    for job in result.jobs:
        assert (job.run_dir / "comparison.json").is_file() and (job.run_dir / "runs").is_dir()
    again = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
