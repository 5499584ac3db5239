"""Data-parallel training under ``torchrun`` (docs/scale.md, "Data-parallel training with torchrun").

``torchrun --nproc_per_node=N -m spurmem train ...`` starts N copies of the command and sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`data_parallel` reads them, joins the process group (``gloo``
on the CPU, ``nccl`` on CUDA, one GPU per process: ``cuda:LOCAL_RANK``) and returns the
:class:`DataParallel` the trainer asks everything distributed of. Without those variables (or with
``WORLD_SIZE=1``) it is :data:`SINGLE`, whose every method is the one-process behaviour, so a plain
``spurmem train`` computes exactly what it did before.

What the trainer gets from it:

* **Data**: ``batch_size`` is the *global* batch. Every rank draws the same epoch order (same generator,
  same seed) and takes its contiguous share of each global batch (:meth:`DataParallel.shard`: sizes
  differ by at most one). Sampling weights (reweight, JTT) are drawn from the shared generator too.
* **Gradients**: the algorithm's whole batch loss runs inside one ``DistributedDataParallel`` forward
  (:meth:`DataParallel.step`), so the framework's dense and masked passes are one DDP step (each parameter
  gets one gradient, accumulated from both passes, and DDP's hooks fire once). The loss is rescaled to the
  rank's share of the global-batch loss (:meth:`DataParallel.rank_share`), so the averaged gradient is the
  gradient of the global batch's mean loss even when the shares are uneven.
* **Evaluation**: every rank predicts its contiguous share of each split, the shares are gathered
  (:meth:`DataParallel.predict`, no padding) and every example is predicted exactly once (checked).
* **Writing**: only rank 0 (``is_main``) holds the run-folder lock and writes; :meth:`DataParallel.from_main`
  runs a step on rank 0 and hands its result (or its error) to every rank.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from spurmem.config import ConfigError
from spurmem.errors import DistributedError

T = TypeVar("T")
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# How an algorithm's batch loss combines over ranks (``Algorithm.loss_over_ranks``):
# "mean": a mean over the rank's examples (weighted by the rank's share of the global batch);
# "share": already this rank's share of the global-batch loss (GroupDRO, which all-reduces its group sums).
LossOverRanks = Literal["mean", "share"]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel job; ``world_size == 1`` is a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that holds the run-folder lock and writes."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """For run.json."""
        return {"world_size": self.world_size, "backend": self.backend}

    # -- data -----------------------------------------------------------------------------------
    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of ``indices`` (all of them in one process)."""
        if not self.active:
            return indices
        return torch.tensor_split(indices, self.world_size)[self.rank]

    @property
    def shard_spec(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` for ``iterate_batches(shard=...)``; None in one process."""
        return (self.rank, self.world_size) if self.active else None

    def check(self, batch_size: int, sync_bn: bool, device: torch.device) -> None:
        """The config errors of a data-parallel run, found before the run folder is touched."""
        if not self.active:
            return
        if batch_size < 2 * self.world_size:
            raise ConfigError(f"batch_size={batch_size} is the global batch, split over {self.world_size} processes: "
                              f"it must be at least {2 * self.world_size} (2 examples a process, for BatchNorm)")
        if sync_bn and device.type != "cuda":
            raise ConfigError("sync_bn=true needs CUDA (torch's SyncBatchNorm does not run on the CPU); "
                              "leave it false with gloo")

    # -- the model and the step -----------------------------------------------------------------
    def prepare_model(self, model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
        """The model to train: BatchNorm made synchronous across ranks when ``sync_bn`` (CUDA only)."""
        if not (self.active and sync_bn):
            return model
        self.check(2 * self.world_size, sync_bn, device)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def step(self, model: nn.Module, algorithm: Any) -> Callable[[Any], tuple[torch.Tensor, dict[str, float]]]:
        """``step(batch) -> (loss, terms)``: the algorithm's batch loss, inside DDP when data-parallel."""
        if not self.active:
            return lambda batch: algorithm.loss(model, batch)
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers here, and its buffers before every forward.
        return DistributedDataParallel(_AlgorithmStep(model, algorithm))

    def rank_share(self, loss: torch.Tensor, n_local: int, n_global: int,
                   over_ranks: LossOverRanks) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to back-propagate, the global batch's loss value as a detached 0-dim tensor, the same on
        every rank; read on the host by the trainer's batched reads, not here).

        DDP averages gradients over ranks; the loss returned is ``world_size`` times this rank's share of the
        global loss, so the average is the gradient of the global loss. The value is all-reduced, so a
        non-finite loss on any rank stops every rank at the same step."""
        if not self.active:
            return loss, loss.detach()
        import torch.distributed as dist

        share = loss if over_ranks == "share" else loss * (n_local / n_global)
        total = share.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return share * self.world_size, total.reshape(())

    def sum_floats(self, values: list[float]) -> list[float]:
        """Element-wise sums over ranks (the values themselves in one process)."""
        if not self.active or not values:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor summed over ranks (not differentiable; ``t`` itself in one process)."""
        if not self.active:
            return t
        import torch.distributed as dist

        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    def broadcast_state(self, model: nn.Module) -> None:
        """Overwrite every rank's parameters and buffers with rank 0's (BatchNorm statistics included)."""
        if not self.active:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, src=0)

    # -- evaluation -----------------------------------------------------------------------------
    def predict(self, model: nn.Module, dataset, split: str, batch_size: int, device: torch.device):
        """Predictions of ``model`` on every example of ``split``, each exactly once: every rank predicts its
        share and the shares are gathered on every rank (in dataset order)."""
        from spurmem.metrics import predict, predictions_at

        if not self.active:
            return predict(model, dataset, split, batch_size, device)
        import torch.distributed as dist

        n = len(dataset[split])
        mine = self.shard(torch.arange(n))
        part = predict(model, dataset, split, batch_size, device, indices=mine) if len(mine) else None
        payload = (mine.numpy(), None if part is None else part.logits)
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, payload)
        idx = np.concatenate([i for i, _ in gathered])
        if len(idx) != n or not np.array_equal(np.sort(idx), np.arange(n)):
            raise DistributedError(f"split {split!r}: the gathered predictions cover {len(np.unique(idx))} of {n} "
                                   f"examples ({len(idx)} rows); every example must be predicted exactly once")
        logits = np.concatenate([lg for _, lg in gathered if lg is not None])
        return predictions_at(dataset[split], split, idx, logits)

    # -- coordination ---------------------------------------------------------------------------
    def from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank; an error on rank 0 is raised there and
        raised on the other ranks as :class:`~spurmem.errors.DistributedError` with the same message."""
        if not self.active:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except BaseException as exc:  # every rank must hear about it, or the others wait forever
                error = exc
                box[0] = ("error", f"{type(exc).__name__}: {exc}")
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        status, value = box[0]
        if status == "error":
            raise DistributedError(f"rank 0 failed: {value}")
        return value

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    @property
    def device(self) -> torch.device:
        """Where collectives of host values run: the rank's GPU under nccl, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


SINGLE = DataParallel()
_current: list[DataParallel] = [SINGLE]  # the innermost data_parallel() of this process


def current() -> DataParallel:
    """The :class:`DataParallel` of the training in progress (:data:`SINGLE` outside one), for an algorithm
    that reduces over ranks itself (GroupDRO)."""
    return _current[-1]


class _AlgorithmStep(nn.Module):
    """The algorithm's batch loss as a module, so that one DDP forward covers the whole step (the framework's
    two passes included). Its parameters are the model's (``model.`` prefixed); checkpoints save the model."""

    def __init__(self, model: nn.Module, algorithm: Any) -> None:
        super().__init__()
        self.model = model
        self.algorithm = algorithm  # not a module: not part of the state

    def forward(self, batch):
        return self.algorithm.loss(self.model, batch)


def launch_environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables, or None when they are absent."""
    present = [v for v in LAUNCH_VARIABLES if v in os.environ]
    if not present:
        return None
    if len(present) != len(LAUNCH_VARIABLES):
        missing = sorted(set(LAUNCH_VARIABLES) - set(present))
        raise DistributedError(f"environment: {', '.join(present)} set but {', '.join(missing)} not; launch with "
                               f"torchrun (it sets {', '.join(LAUNCH_VARIABLES)}) or unset them")
    try:
        rank, world, local = (int(os.environ[v]) for v in LAUNCH_VARIABLES)
    except ValueError:
        raise DistributedError("environment: " + ", ".join(f"{v}={os.environ[v]!r}" for v in LAUNCH_VARIABLES)
                               + " must be integers") from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise DistributedError(f"environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} are inconsistent")
    return rank, world, local


def training_device(device: torch.device) -> torch.device:
    """The device of this process: under torchrun, CUDA means the rank's own GPU ``cuda:LOCAL_RANK``."""
    env = launch_environment()
    if env is None or env[1] == 1 or device.type != "cuda":
        return device
    local = env[2]
    if local >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA device(s): "
                          f"start at most one process per GPU (--nproc_per_node)")
    return torch.device("cuda", local)


@contextlib.contextmanager
def data_parallel(device: torch.device) -> Iterator[DataParallel]:
    """This process's :class:`DataParallel` for training on ``device`` (see the module docstring).

    Joins the process group (``env://``, as torchrun sets it up) unless one is already initialised (a
    caller's own), and leaves it again at the end if it joined it."""
    env = launch_environment()
    if env is None or env[1] == 1:
        yield SINGLE
        return
    import torch.distributed as dist

    rank, world, local = env
    backend = "nccl" if device.type == "cuda" else "gloo"
    joined = not dist.is_initialized()
    if joined:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
    elif dist.get_world_size() != world or dist.get_rank() != rank:
        raise DistributedError(f"the initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                               f"does not match RANK={rank}, WORLD_SIZE={world}")
    else:
        backend = dist.get_backend()
    _current.append(DataParallel(rank, world, local, backend))
    try:
        yield _current[-1]
    finally:
        _current.pop()
        if joined:
            dist.destroy_process_group()


def is_main_process() -> bool:
    """False on every rank but 0 of a torchrun job (for what only one process should print)."""
    env = launch_environment()
    return env is None or env[0] == 0
