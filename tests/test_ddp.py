"""Data-parallel training under torchrun (spurmem.train.distributed): one 2-process gloo job on the CPU
(tests/ddp_worker.py) against the same runs in one process with the same global batch.

Tolerances, and why: without BatchNorm (the MLP runs) the two jobs differ only in the order of float
summation (the gradient all-reduce, the per-rank sums), so the weights agree to 1e-5 (measured: 5e-8)
and every group's correct count to one example (measured: equal). With BatchNorm (small-cnn) each
process normalises its half of the batch by its own statistics, so the runs are close, not equal:
split averages within 3 points (measured: 0.9) and the training loss within 5% (measured: 1.7%).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from spurmem.config import ConfigError
from spurmem.data import iterate_batches, load_dataset
from spurmem.data.augment import build_augment
from spurmem.errors import DistributedError
from spurmem.train import ALGORITHMS, load_epoch_weights, read_history, read_info, train
from spurmem.train.checkpoint import load_training_state
from spurmem.train.distributed import LAUNCH_VARIABLES, SINGLE, DataParallel, data_parallel, launch_environment
from spurmem.train.mitigate import mitigation_config

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import MITIGATE_OVERRIDES, framework_halves, framework_mlp, scenarios  # noqa: E402

WORKER = Path(__file__).parent / "ddp_worker.py"
SRC = Path(__file__).resolve().parents[1] / "src"
MLP_RUNS = ("erm-mlp", "groupdro-mlp", "reweight-mlp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("colored-digits")


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The 2-process job's output folder (its runs under runs/)."""
    out = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(WORKER), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory, digits, job) -> Path:
    """The same runs in one process (after the job, so the two do not compete for the 2 cores)."""
    out = tmp_path_factory.mktemp("single")
    for name, config in scenarios().items():
        train(config, run_dir=out / name, dataset=digits, progress=False)
    config = mitigation_config(job / "runs" / "erm-cnn", MITIGATE_OVERRIDES, init_epoch="last")
    train(config, run_dir=out / "mitigate", dataset=digits, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(ALGORITHMS, "spurmem-halves", framework_halves())
        train(framework_mlp(job / "runs" / "erm-mlp", "spurmem-halves"), run_dir=out / "spurmem-mlp", dataset=digits,
              progress=False)
    return out


def _correct_counts(row: dict) -> dict[tuple[str, int], int]:
    return {(split, g["group"]): g["correct"] for split, groups in row["groups"].items() for g in groups}


@pytest.mark.parametrize("name", MLP_RUNS)
def test_without_batchnorm_two_processes_match_one_to_float_precision(job, single, name):
    ddp, one = job / "runs" / name, single / name
    w2, w1 = load_epoch_weights(ddp, 2), load_epoch_weights(one, 2)
    assert w2.keys() == w1.keys()  # saved from the unwrapped model: no "module." prefix
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1) < 1e-5
    h2, h1 = read_history(ddp), read_history(one)
    assert [r["epoch"] for r in h2] == [r["epoch"] for r in h1] == [0, 1, 2]
    for r2, r1 in zip(h2, h1):
        c2, c1 = _correct_counts(r2), _correct_counts(r1)
        assert c2.keys() == c1.keys() and all(abs(c2[k] - c1[k]) <= 1 for k in c1)
        if r1["train_loss"] is not None:
            assert r2["train_loss"] == pytest.approx(r1["train_loss"], abs=1e-6)
            assert r2["terms"].keys() == r1["terms"].keys()
    if name == "groupdro-mlp":  # q from the all-reduced group losses: the one-process q
        q2 = load_training_state(ddp, 2)[0]["algorithm/q"]
        q1 = load_training_state(one, 2)[0]["algorithm/q"]
        assert torch.allclose(q2, q1, atol=1e-6) and not torch.allclose(q1, torch.full_like(q1, 0.25), atol=1e-3)


def test_with_batchnorm_two_processes_are_close_to_one(job, single):
    h2, h1 = read_history(job / "runs" / "erm-cnn"), read_history(single / "erm-cnn")
    assert h2[0] == {**h1[0], "seconds": h2[0]["seconds"]}  # epoch 0: the same initial model, evaluated sharded
    for r2, r1 in zip(h2[1:], h1[1:]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=0.05)
        for split in ("train", "val", "test"):
            assert abs(r2[f"{split}/average"] - r1[f"{split}/average"]) <= 0.03


def test_every_example_is_predicted_exactly_once(job, single, digits):
    for name in [*scenarios(), "mitigate", "spurmem-mlp"]:
        for split in ("train", "val", "test"):
            table = pd.read_csv(job / "runs" / name / "predictions" / f"{split}.csv")
            ids = digits[split].ids
            assert len(table) == len(ids) == len(pd.read_csv(single / name / "predictions" / f"{split}.csv"))
            assert table["id"].is_unique and set(table["id"]) == set(ids)
            assert list(table["id"]) == list(ids)  # gathered back into dataset order
    for name in MLP_RUNS:
        two = pd.read_csv(job / "runs" / name / "predictions" / "test.csv")
        one = pd.read_csv(single / name / "predictions" / "test.csv")
        assert (two["pred"] != one["pred"]).sum() <= 1


def test_only_rank_0_writes_and_run_json_records_the_job(job):
    rank0 = json.loads((job / "writes_rank0.json").read_text())
    assert any("run.json" in w for w in rank0) and any(".safetensors" in w for w in rank0)  # the hook sees writes
    assert json.loads((job / "writes_rank1.json").read_text()) == []
    for name in [*scenarios(), "mitigate", "spurmem-mlp", "resumed"]:
        run = job / "runs" / name
        info = read_info(run)
        assert info["status"] == "complete" and info["world_size"] == 2 and info["backend"] == "gloo"
        assert len(list((run / "records").glob("*.json"))) == (2 if name == "resumed" else 1)  # one per command


def test_framework_under_ddp_is_the_framework_on_each_rank_share(job, single):
    """Without BatchNorm, the 2-process framework run is the 1-process run whose loss is the share-weighted
    framework loss of the two halves of each batch: the masked branch's gradient goes through DDP whole."""
    ddp, one = job / "runs" / "spurmem-mlp", single / "spurmem-mlp"
    w2, w1, w0 = load_epoch_weights(ddp, 2), load_epoch_weights(one, 2), load_epoch_weights(ddp, 0)
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1) < 1e-5
    assert max(float((w2[k] - w0[k]).abs().max()) for k in w0) > 1e-3  # it trained
    h2, h1 = read_history(ddp), read_history(one)
    for r2, r1 in zip(h2[1:], h1[1:]):
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-5)
        assert r2["terms"] == pytest.approx(r1["terms"], rel=1e-4, abs=1e-6)


def test_mitigate_runs_under_torchrun_with_batchnorm(job, single):
    h2, h1 = read_history(job / "runs" / "mitigate"), read_history(single / "mitigate")
    assert read_info(job / "runs" / "mitigate")["algorithm"] == "spurmem"
    assert h2[0] == {**h1[0], "seconds": h2[0]["seconds"]}  # the same start checkpoint, evaluated sharded
    for row in h2[1:]:
        terms = row["terms"]
        assert set(terms) == {"ntxent", "ce", "masked_ce", "disagreement"} and terms["ntxent"] > 0
        assert row["train_loss"] == pytest.approx(2 * terms["ntxent"] + 0.2 * terms["ce"], rel=1e-4)
    # NT-Xent over 50 examples a process instead of 100: a smaller loss (log of fewer negatives), not the same run
    assert h2[1]["terms"]["ntxent"] < h1[1]["terms"]["ntxent"]


def test_resume_under_torchrun_gives_the_uninterrupted_run(job):
    resumed, whole = job / "runs" / "resumed", job / "runs" / "erm-mlp"
    assert read_info(resumed)["resumed_from"] == [1]
    a, b = load_epoch_weights(resumed, 2), load_epoch_weights(whole, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in read_history(resumed)] == [r["train_loss"] for r in read_history(whole)]


def test_a_refusal_or_a_divergence_on_rank_0_stops_every_rank(job):
    f0 = json.loads((job / "failures_rank0.json").read_text())
    f1 = json.loads((job / "failures_rank1.json").read_text())
    assert f0["exists"].startswith("FileExistsError") and "--resume" in f0["exists"]
    assert f1["exists"].startswith("DistributedError: rank 0 failed: FileExistsError")
    # the loss is all-reduced before it is checked: both ranks stop at the same step
    assert f0["diverges"].startswith("NumericalFaultError") and f1["diverges"].startswith("NumericalFaultError")
    assert f0["diverges"].split("step")[1] == f1["diverges"].split("step")[1]
    assert read_info(job / "runs" / "nan")["status"] == "failed"


# -- without a launch --------------------------------------------------------------------------------


def test_no_launch_variables_is_one_process(monkeypatch):
    for v in LAUNCH_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    assert launch_environment() is None
    with data_parallel(torch.device("cpu")) as dp:
        assert dp is SINGLE and not dp.active and dp.is_main and dp.shard_spec is None
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DistributedError, match="WORLD_SIZE"):
        launch_environment()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(DistributedError, match="inconsistent"):
        launch_environment()


def test_shards_partition_every_global_batch_and_keep_the_generator_in_step(digits):
    split = digits["train"]
    base = dict(batch_size=64, mean=digits.mean, std=digits.std, shuffle=True)
    whole = [b.index for b in iterate_batches(split, generator=torch.Generator().manual_seed(3), **base)]
    gens = [torch.Generator().manual_seed(3) for _ in range(2)]
    parts = [[b.index for b in iterate_batches(split, generator=gens[r], shard=(r, 2), **base)] for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for w, p0, p1 in zip(whole, *parts):
        assert torch.equal(torch.cat([p0, p1]), w) and abs(len(p0) - len(p1)) <= 1
    flip = build_augment("flip")
    gens = [torch.Generator().manual_seed(3) for _ in range(2)]
    for r in range(2):
        for _ in iterate_batches(split, generator=gens[r], shard=(r, 2), augment=flip, **base):
            pass
    assert torch.equal(gens[0].get_state(), gens[1].get_state())  # next epoch's order: the same on both ranks
    with pytest.raises(ConfigError, match="global batch"):
        DataParallel(0, 4, 0, "gloo").check(6, False, torch.device("cpu"))
    with pytest.raises(ConfigError, match="sync_bn=true needs CUDA"):
        DataParallel(0, 2, 0, "gloo").check(64, True, torch.device("cpu"))
    SINGLE.check(1, True, torch.device("cpu"))  # one process: sync_bn is ignored
