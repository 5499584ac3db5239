"""Checkpoints without pickle: weights and training state as safetensors, everything else as JSON.

Per epoch E a run directory holds

* ``checkpoints/epoch_EEEE.safetensors`` (model weights incl. BatchNorm buffers) and
  ``checkpoints/epoch_EEEE.json`` (epoch, config_hash, seed, metrics): read by every later stage;
* ``resume/epoch_EEEE.safetensors`` + ``.json``: optimiser, schedule, RNG and algorithm state,
  kept for the latest complete epoch only.

Every file is written atomically, and ``checkpoints/epoch_EEEE.json`` is written last: an epoch
is *complete* (resumable) only when it and its resume state exist, so a run killed at any point
resumes from its last complete epoch. Each JSON sidecar records the sha256 of its safetensors file;
loading checks it (and the safetensors header) and a mismatch is an
:class:`~spurmem.errors.UnreadableFileError`. Resume state is kept for the two latest epochs, so
``--resume`` can fall back to the older one when the newest is unreadable.
"""

from __future__ import annotations

import math
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as st_save

from spurmem.errors import MissingCheckpointError, UnreadableFileError
from spurmem.record import write_bytes_atomic, write_json_atomic
from spurmem.untrusted import read_file_bytes, read_json_file, read_safetensors, sha256_hex

CHECKPOINTS = "checkpoints"
RESUME = "resume"
_EPOCH_RE = re.compile(r"^epoch_(\d{4,})\.json$")


def epoch_stem(epoch: int) -> str:
    return f"epoch_{epoch:04d}"


def weights_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{epoch_stem(epoch)}.safetensors"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically write a flat dict of tensors as safetensors (copied to the CPU, made contiguous);
    returns the sha256 of the bytes written."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = st_save(flat)
    write_bytes_atomic(path, data)
    return sha256_hex(data)


def load_tensors(
    path: str | Path, device: str | torch.device = "cpu", sha256: str | None = None,
    expected: str = "a spurmem checkpoint (safetensors)",
) -> dict[str, torch.Tensor]:
    """A checked safetensors file (header, offsets, and ``sha256`` when given) as tensors on ``device``."""
    tensors = read_safetensors(path, expected, sha256=sha256)
    return {k: v.to(device) for k, v in tensors.items()}


def list_epochs(run_dir: str | Path) -> list[int]:
    """Epochs whose weights checkpoint is complete (weights file and JSON both present), ascending."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _EPOCH_RE.match(p.name)
        if m and p.with_suffix(".safetensors").is_file():
            out.append(int(m.group(1)))
    return sorted(out)


def load_epoch_weights(run_dir: str | Path, epoch: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The model state dict saved at ``epoch`` (e.g. for a ``rewind`` intervention)."""
    if epoch not in list_epochs(run_dir):
        raise missing_checkpoint(run_dir, epoch)
    info = read_checkpoint_info(run_dir, epoch)
    return load_tensors(weights_path(run_dir, epoch), device, sha256=info.get("sha256"),
                        expected=f"the model weights of epoch {epoch} (safetensors)")


def missing_checkpoint(run_dir: str | Path, epoch: int) -> MissingCheckpointError:
    """The error for an epoch without a complete checkpoint: one line naming the kept epochs and, for
    an epoch the run trained, the retention policy that deleted it (run.json's ``retention``)."""
    kept = list_epochs(run_dir)
    try:
        info = read_json_file(Path(run_dir) / "run.json", "a run record (JSON)")
    except (UnreadableFileError, OSError):
        info = {}
    info = info if isinstance(info, dict) else {}
    done, policy = info.get("epochs_completed"), info.get("retention")
    why = ""
    if isinstance(done, int) and 0 <= epoch <= done and isinstance(policy, dict) and policy.get("checkpoints") == "retain":
        why = (f" (pruned: the run keeps checkpoints=retain, keep_every={policy.get('keep_every')}, "
               f"keep_epochs={policy.get('keep_epochs')}; train with checkpoints=all or keep_epochs=[{epoch}] to keep it)")
    elif isinstance(done, int) and epoch > done:
        why = f" (the run has completed {done} epochs)"
    return MissingCheckpointError(f"{run_dir}: no checkpoint for epoch {epoch}{why}; kept epochs available: {kept}")


def read_checkpoint_info(run_dir: str | Path, epoch: int) -> dict[str, Any]:
    """``checkpoints/epoch_EEEE.json``: epoch, config_hash, seed, metrics and the weights' sha256."""
    return _sidecar(Path(run_dir) / CHECKPOINTS / f"{epoch_stem(epoch)}.json", f"the checkpoint record of epoch {epoch}")


def _sidecar(path: Path, what: str) -> dict[str, Any]:
    info = read_json_file(path, f"{what} (JSON)")
    if not isinstance(info, dict) or not isinstance(info.get("sha256", ""), str):
        raise UnreadableFileError(path, f"{what} (JSON)", "expected an object with a sha256 string")
    return info


def save_epoch_weights(run_dir: Path, epoch: int, model: torch.nn.Module) -> None:
    """The weights file; the epoch is not listed until :func:`mark_epoch_complete` writes its JSON."""
    save_tensors(weights_path(run_dir, epoch), model.state_dict())


def mark_epoch_complete(run_dir: Path, epoch: int, info: dict[str, Any]) -> None:
    """Write ``epoch_EEEE.json`` (epoch, config_hash, seed, metrics, the weights file's sha256 as it
    is on disk now): the epoch's commit marker."""
    digest = sha256_hex(read_file_bytes(weights_path(run_dir, epoch), "the weights file just written"))
    write_json_atomic(run_dir / CHECKPOINTS / f"{epoch_stem(epoch)}.json", {"epoch": epoch, **info, "sha256": digest})


def delete_epoch_weights(run_dir: Path, epoch: int) -> None:
    for suffix in (".json", ".safetensors"):  # marker first: a half-deleted checkpoint is never listed
        (run_dir / CHECKPOINTS / f"{epoch_stem(epoch)}{suffix}").unlink(missing_ok=True)


# -- training state for resume ------------------------------------------------------------------
def pack_training_state(
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    algorithm_state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split optimiser, schedule, RNG and algorithm state into (tensors, JSON-ready metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"optimizer": {"state": {}, "param_groups": []}}
    opt = optimizer.state_dict()
    for pid, entries in opt["state"].items():
        scalars = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{pid}/{name}"] = value
            else:
                scalars[name] = value
        meta["optimizer"]["state"][str(pid)] = scalars
    meta["optimizer"]["param_groups"] = opt["param_groups"]
    meta["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/batches"] = generator.get_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    np_state = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    meta["rng"] = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                   "python": _python_rng_to_json(random.getstate())}
    for name, value in algorithm_state.items():
        tensors[f"algorithm/{name}"] = value
    return tensors, meta


def unpack_training_state(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Restore what :func:`pack_training_state` saved; returns the algorithm's state tensors."""
    state: dict[int, dict[str, Any]] = {}
    for pid, scalars in meta["optimizer"]["state"].items():
        state[int(pid)] = dict(scalars)
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["optimizer"]["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    generator.set_state(tensors["rng/batches"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    kind, pos, has_gauss, cached = meta["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_python_rng_from_json(meta["rng"]["python"]))
    return {k[len("algorithm/"):]: v for k, v in tensors.items() if k.startswith("algorithm/")}


def save_training_state(run_dir: Path, epoch: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    digest = save_tensors(run_dir / RESUME / f"{epoch_stem(epoch)}.safetensors", tensors)
    write_json_atomic(run_dir / RESUME / f"{epoch_stem(epoch)}.json",
                      {"epoch": epoch, **_tag_nonfinite(meta), "sha256": digest})


def load_training_state(run_dir: Path, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checked resume state of ``epoch`` (tensors, JSON metadata)."""
    meta = _sidecar(run_dir / RESUME / f"{epoch_stem(epoch)}.json", f"the resume state of epoch {epoch}")
    tensors = load_tensors(run_dir / RESUME / f"{epoch_stem(epoch)}.safetensors", sha256=meta.get("sha256"),
                           expected=f"the resume state of epoch {epoch} (safetensors)")
    return tensors, _untag_nonfinite(meta)


_NONFINITE = "__nonfinite__"


def _tag_nonfinite(obj: Any) -> Any:
    """Resume state must survive strict JSON (which writes NaN/inf as null): a plateau schedule's
    ``best`` starts at inf, so non-finite floats are written as ``{"__nonfinite__": "inf"}``."""
    if isinstance(obj, dict):
        return {k: _tag_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tag_nonfinite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_NONFINITE: str(obj)}
    return obj


def _untag_nonfinite(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_NONFINITE}:
            return float(obj[_NONFINITE])
        return {k: _untag_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag_nonfinite(v) for v in obj]
    return obj


def newest_good_epoch(run_dir: Path) -> int | None:
    """The newest resumable epoch whose weights and resume state both read back intact; every newer
    one that does not is skipped with a warning naming the bad file. None when no epoch is resumable;
    an UnreadableFileError (the newest problem) when some are but none is intact."""
    skipped: list[tuple[int, UnreadableFileError]] = []
    for epoch in reversed(resumable_epochs(run_dir)):
        try:
            load_epoch_weights(run_dir, epoch)
            load_training_state(run_dir, epoch)
        except UnreadableFileError as exc:
            skipped.append((epoch, exc))
            continue
        for bad, exc in skipped:
            warnings.warn(f"resume: epoch {bad} is unreadable, resuming from epoch {epoch} instead: {exc}",
                          stacklevel=2)
        return epoch
    if skipped:
        raise skipped[0][1]
    return None


def resumable_epochs(run_dir: Path) -> list[int]:
    """Complete epochs that also have resume state, ascending."""
    folder = run_dir / RESUME
    return [e for e in list_epochs(run_dir)
            if (folder / f"{epoch_stem(e)}.json").is_file() and (folder / f"{epoch_stem(e)}.safetensors").is_file()]


def prune_training_state(run_dir: Path, keep: int) -> None:
    """Delete resume state of every epoch but ``keep`` and the newest resumable one before it (the
    fallback when ``keep``'s files turn out unreadable); optimiser state is large."""
    folder = run_dir / RESUME
    if not folder.is_dir():
        return
    older = [e for e in resumable_epochs(run_dir) if e < keep]
    kept = {keep, *older[-1:]}
    for p in folder.iterdir():
        m = re.match(r"^epoch_(\d{4,})\.(json|safetensors)$", p.name)
        if m and int(m.group(1)) not in kept:
            p.unlink(missing_ok=True)


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
