"""The ray executor on a local Ray instance (num_cpus=2, shared by the module): the same four-job
sweep as tests/test_sweep.py (one job fails on purpose: retried, then reported; the others
complete) and a re-run that trains nothing. Skipped when Ray is not installed (the dev extra has it)."""

import pandas as pd
import pytest

from spurmem.jobs.executor import Job, make_executor, run_jobs
from spurmem.jobs.sweep import load_sweep, run_sweep
from sweep_jobs import RHOS, run_json_stamps, write_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_sweep_retries_reports_and_skips(ray_instance, tmp_path):
    path = write_sweep(tmp_path, executor="ray", workers=None)
    sweep, relative_to = load_sweep(path)
    result = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in result.outcomes] == ["complete", "complete", "complete", "failed"]
    assert result.outcomes[3].attempts == 2 and "rho must be in [0, 1]" in result.outcomes[3].error
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert table["dataset_params.rho"].tolist() == RHOS and table["test_wga"].iloc[:3].between(0, 1).all()
    before = run_json_stamps(tmp_path / "out")
    assert len(before) == 3
    again = run_sweep(sweep, relative_to, progress=False)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert run_json_stamps(tmp_path / "out") == before
    assert ray.is_initialized()  # an instance the executor did not start is left running


def test_ray_executor_uses_the_running_instance_and_its_cpus(ray_instance, tmp_path):
    with make_executor("ray", threads_per_job=1) as executor:
        assert executor.slots == 2 and executor.threads == 1
        job = Job("bad", "train", {"config": {"dataset": "no-such-dataset"}, "run_dir": str(tmp_path / "x")},
                  tmp_path / "x")
        (outcome,) = run_jobs([job], executor, retries=0)
    assert outcome.status == "failed" and outcome.attempts == 1 and "no-such-dataset" in outcome.error
