"""The GPU input path (uint8 -> device -> float/augment), the batched loss reads, compile and the
TF32/cuDNN record: on the CPU nothing changes, and the device-side conversion equals the CPU one."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from spurmem.data import build_augment, iterate_batches
from spurmem.errors import NumericalFaultError
from spurmem.train import TrainConfig, load_epoch_weights, read_history, train
from spurmem.train import cuda_settings, epoch_losses
from spurmem.train.device_batches import device_batches
from spurmem.train.epoch_losses import EpochLosses

SHAPES = {"n_train": 200, "n_val": 80, "n_test": 80, "size": 12, "seed": 0}
CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the pinned-memory path)")


def config(**kw) -> TrainConfig:
    base = dict(name="dev", dataset="synthetic-shapes", dataset_params=SHAPES, epochs=2, batch_size=32,
                model_params={"width": 0.5}, eval_splits=["val"], device="cpu")
    return TrainConfig(**{**base, **kw})


def reference_batches(split, dataset, augment, seed, weights=None):
    """What the loop drew before the device path: iterate_batches, float and augmented on the CPU."""
    return list(iterate_batches(split, 32, dataset.mean, dataset.std, shuffle=weights is None, sample_weights=weights,
                                generator=torch.Generator().manual_seed(seed), augment=augment))


def new_batches(split, dataset, augment, seed, device=CPU, weights=None, **kw):
    return list(device_batches(split, 32, dataset.mean, dataset.std, device, shuffle=weights is None,
                               sample_weights=weights, generator=torch.Generator().manual_seed(seed), augment=augment,
                               **kw))


@pytest.mark.parametrize("augment", ["none", "flip", "flip-crop", "rrc-flip"])
@pytest.mark.parametrize("kw", [{}, {"workers": 2}, {"convert_on_device": True}, {"convert_on_device": True, "workers": 1}])
def test_cpu_batches_equal_the_previous_path_bit_for_bit(shapes, augment, kw):
    """The CPU path, and the device-side order (uint8 first, convert and augment after the move) run on the
    CPU, give exactly the batches iterate_batches gave: same permutation, same draws, same floats."""
    aug = build_augment(augment)
    weights = torch.linspace(1, 2, len(shapes["train"])) if "workers" in kw else None  # resampling too
    ref = reference_batches(shapes["train"], shapes, aug, seed=3, weights=weights)
    got = new_batches(shapes["train"], shapes, aug, seed=3, weights=weights, **kw)
    assert len(got) == len(ref) == math.ceil(200 / 32)
    for a, b in zip(ref, got):
        assert torch.equal(a.index, b.index) and torch.equal(a.y, b.y) and torch.equal(a.g, b.g)
        assert a.x.dtype == b.x.dtype == torch.float32 and torch.equal(a.x, b.x)


def test_uint8_batches_are_the_stored_images(shapes):
    raw = next(iterate_batches(shapes["train"], 16, shapes.mean, shapes.std, as_uint8=True))
    assert raw.x.dtype == torch.uint8 and torch.equal(raw.x, shapes["train"].images[:16])
    with pytest.raises(ValueError, match="as_uint8"):
        next(iterate_batches(shapes["train"], 16, shapes.mean, shapes.std, as_uint8=True, augment=build_augment("flip")))


def test_channels_last_batches(shapes):
    got = new_batches(shapes["train"], shapes, None, seed=0, channels_last=True, convert_on_device=True)
    assert got[0].x.is_contiguous(memory_format=torch.channels_last)


@cuda
@pytest.mark.parametrize("augment", ["none", "rrc-flip"])
def test_cuda_batches_are_pinned_moved_and_match_the_cpu(shapes, augment):
    aug = build_augment(augment)
    ref = reference_batches(shapes["train"], shapes, aug, seed=1)
    got = new_batches(shapes["train"], shapes, aug, seed=1, device=torch.device("cuda"), workers=1)
    for a, b in zip(ref, got):
        assert b.x.is_cuda and torch.equal(a.index, b.index.cpu())
        tol = 0 if augment == "none" else 1e-4  # the conversion is exact; bilinear crops differ by float32 rounding
        assert torch.allclose(a.x, b.x.cpu(), atol=tol, rtol=0)
    pinned = next(b.pin_memory() for b in iterate_batches(shapes["train"], 8, shapes.mean, shapes.std, as_uint8=True))
    assert pinned.x.is_pinned() and pinned.x.dtype == torch.uint8


@cuda
@pytest.mark.parametrize("augment", ["flip-crop", "rrc-flip"])
def test_cuda_steps_do_not_wait_for_the_gpu(shapes, augment):
    """Input path, ERM loss and terms, backward, Adam and the cosine schedule with CUDA's sync debug mode
    set to error: nothing in a step synchronises with the host; only the read does."""
    from spurmem.models import build_model
    from spurmem.train.algorithm import Algorithm

    device = torch.device("cuda")
    model = build_model("small-cnn", 2, width=0.5).to(device)
    algo, opt = Algorithm(shapes), torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    losses = EpochLosses(check_every=1000)
    batches = device_batches(shapes["train"], 32, shapes.mean, shapes.std, device, augment=build_augment(augment),
                             generator=torch.Generator().manual_seed(0), workers=1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, batch in enumerate(batches, 1):
            loss, terms = algo.loss(model, batch)
            assert losses.add(step, loss, len(batch.y), terms) is None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert losses.read() is None and losses.n_seen == 200


def test_epoch_losses_read_in_batches_give_the_per_step_sums_and_the_first_bad_step():
    losses = [torch.tensor(v) for v in (0.5, 0.25, 0.125, 1.5, 2.0)]
    every, lazy = EpochLosses(1), EpochLosses(3)
    for step, loss in enumerate(losses, 1):
        terms = {"ce": loss, "share": 0.5}
        assert every.add(step, loss, 10, terms) is None and lazy.add(step, loss, 10, terms) is None
        assert lazy.unread == step % 3
    assert lazy.read() is None and lazy.unread == 0
    python_sum = 0.0
    for v in (0.5, 0.25, 0.125, 1.5, 2.0):
        python_sum = python_sum + v * 10
    assert every.loss_sum == lazy.loss_sum == python_sum and every.n_seen == lazy.n_seen == 50
    assert every.term_means() == lazy.term_means() == {"ce": python_sum / 50, "share": 0.5}
    bad = EpochLosses(4)
    results = [bad.add(s, torch.tensor(v), 8, {}) for s, v in enumerate([1.0, float("nan"), float("inf"), 1.0], 1)]
    assert results[:3] == [None, None, None] and results[3][0] == 2 and math.isnan(results[3][1])


def test_divergence_found_a_few_steps_late_still_names_its_step(tmp_path, monkeypatch):
    """As on CUDA (reads every N steps): the fault names the first non-finite step and nothing is saved."""
    monkeypatch.setattr(epoch_losses, "check_interval", lambda device: 3)
    cfg = config(dataset_params={"n_train": 96, "n_val": 16, "n_test": 16, "size": 8, "seed": 0}, batch_size=16,
                 optimizer="sgd", lr=1e6, model_params={"width": 0.25})
    with pytest.raises(NumericalFaultError, match=r"epoch 1, step (\d)/6: the training loss is (nan|inf)") as exc:
        train(cfg, run_dir=tmp_path / "nan", progress=False)
    step = int(exc.value.args[0].split("step ")[1].split("/")[0])
    assert step < 6  # located, not merely the step it was read at


def test_run_json_records_compile_and_cuda_settings_and_cpu_state_is_untouched(shapes, tmp_path):
    before = cuda_settings.current()
    result = train(config(epochs=1), run_dir=tmp_path / "r", progress=False, dataset=shapes)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["compile"] is False
    assert info["cuda_settings"] == {"applied": False, **before}
    assert {"tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "cudnn_deterministic"} <= set(info["cuda_settings"])
    assert cuda_settings.current() == before
    # tf32 and cudnn_benchmark change nothing on the CPU: the same weights
    other = train(config(epochs=1, tf32=False, cudnn_benchmark=False, name="o"), run_dir=tmp_path / "o",
                  progress=False, dataset=shapes)
    a, b = load_epoch_weights(result.run_dir, 1), load_epoch_weights(other.run_dir, 1)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_cuda_settings_apply_and_undo():
    before = cuda_settings.current()
    undo = cuda_settings.apply(tf32=True, cudnn_benchmark=True)
    on = cuda_settings.current()
    assert on["tf32_matmul"] and on["tf32_cudnn"] and on["cudnn_benchmark"]
    undo()
    assert cuda_settings.current() == before
    undo = cuda_settings.apply(tf32=False, cudnn_benchmark=False)
    off = cuda_settings.current()
    assert not off["tf32_matmul"] and not off["tf32_cudnn"] and not off["cudnn_benchmark"]
    undo()
    assert cuda_settings.current() == before


def test_compile_true_compiles_the_model_in_place_and_trains(shapes, tmp_path, monkeypatch):
    """With the 'eager' backend (inductor's compile of a CNN costs tens of seconds on this CPU; the MLP test
    below runs inductor): the option's path (in-place nn.Module.compile, unchanged state_dict keys,
    training, evaluation, checkpoints) gives the uncompiled run's weights."""
    calls = []
    real = torch.nn.Module.compile

    def eager_compile(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return real(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    plain = train(config(epochs=1), run_dir=tmp_path / "plain", progress=False, dataset=shapes)
    compiled = train(config(epochs=1, compile=True, name="c"), run_dir=tmp_path / "c", progress=False, dataset=shapes)
    assert calls == ["SmallCNN"]
    assert json.loads((compiled.run_dir / "run.json").read_text())["compile"] is True
    a, b = load_epoch_weights(plain.run_dir, 1), load_epoch_weights(compiled.run_dir, 1)
    assert a.keys() == b.keys()  # no _orig_mod. prefix
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert [r["epoch"] for r in read_history(compiled.run_dir)] == [0, 1]


@pytest.mark.slow  # ~11 s on the loaded 2-core CPU: inductor compiles the forward and backward graphs
def test_compile_true_with_inductor(shapes, tmp_path):
    cfg = config(compile=True, epochs=1, model="mlp", model_params={"hidden": [32]})
    result = train(cfg, run_dir=tmp_path / "ind", progress=False, dataset=shapes)
    assert result.history[-1]["train_loss"] > 0


def test_algorithm_terms_are_tensors_read_later(shapes):
    """The ERM family returns detached tensors (no float() sync per step); the loop turns them into floats."""
    from spurmem.train.algorithms import ALGORITHMS
    from spurmem.models import build_model

    model = build_model("small-cnn", 2, width=0.25)
    batch = next(iterate_batches(shapes["train"], 8, shapes.mean, shapes.std))
    for name in ("erm", "groupdro", "reweight"):
        algo = ALGORITHMS[name](shapes, **({"mode": "loss"} if name == "reweight" else {}))
        algo.setup(model, CPU)
        loss, terms = algo.loss(model, batch)
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in terms.values()), name
    with torch.no_grad():
        assert float(terms["ce"]) == pytest.approx(float(F.cross_entropy(model(batch.x), batch.y)))


@pytest.mark.parametrize("workers", [0, 1])
def test_sharded_device_order_equals_the_sharded_cpu_path(shapes, workers):
    """Under data-parallel training each rank's device-side batches (uint8 moved, then augmented) are the
    CPU path's sharded batches bit for bit, and the shared generator ends in the same state on every
    rank: otherwise the ranks would draw different epoch orders next."""
    aug = build_augment("rrc-flip")
    ends = []
    for rank in (0, 1):
        gen_ref, gen_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        ref = list(iterate_batches(shapes["train"], 32, shapes.mean, shapes.std, shuffle=True, generator=gen_ref,
                                   augment=aug, shard=(rank, 2)))
        got = list(device_batches(shapes["train"], 32, shapes.mean, shapes.std, CPU, generator=gen_new, augment=aug,
                                  convert_on_device=True, workers=workers, shard=(rank, 2)))
        assert len(got) == len(ref) == math.ceil(200 / 32)
        for a, b in zip(ref, got):
            assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x)
        assert torch.equal(gen_ref.get_state(), gen_new.get_state())
        ends.append(gen_new.get_state())
    assert torch.equal(ends[0], ends[1])
