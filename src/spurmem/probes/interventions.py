"""Reversible edits of selected units or weights (docs/method.md §4), behind one context manager.

Weight space (the unit's slice ``W[c]`` and ``b[c]``, or individual weights of a
:class:`~spurmem.probes.units.WeightSelection`; BatchNorm is never touched):

* ``zero``     set to 0 (pruning; a conv channel followed by BatchNorm then outputs BN's constant)
* ``reinit``   replace by ``sigma * N(0, 1)``
* ``noise``    add ``sigma * N(0, 1)``
* ``rewind``   copy the values of an earlier checkpoint (a state dict or a ``.safetensors`` file)

Activation space (a forward hook on the unit's output site, after BatchNorm when there is one):

* ``zero-activation``  the unit's output set to 0
* ``mean-activation``  the unit's output set to its mean over the training set
  (:func:`activation_means`), which removes its information without zeroing's bias shift

::

    with intervene(model, units, "reinit", sigma=0.1, seed=3) as edited:
        metrics = evaluate(edited, dataset)

By default the edit is made on a copy, so the caller's model is never touched; ``inplace=True``
edits ``model`` itself and restores the exact original values (and removes the hooks) on exit.
Random draws come from a CPU generator seeded with ``seed``, so a repeat is reproduced by its seed
on any device.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

from spurmem.registry import lookup
from spurmem.data.schema import GroupDataset
from spurmem.probes.activations import layer_activation_stats
from spurmem.probes.units import (
    Unit, WeightSelection, get_module, output_site, selection_masks, unit_axis, units_by_layer,
)


@dataclass(frozen=True)
class Intervention:
    """How an intervention edits the model: ``space`` is ``weight`` or ``activation``; ``random``
    interventions are repeated with recorded seeds; ``needs`` names the required argument."""

    name: str
    space: str
    random: bool
    needs: str | None
    description: str


INTERVENTIONS: dict[str, Intervention] = {
    "zero": Intervention("zero", "weight", False, None, "selected weights set to 0 (BatchNorm untouched)"),
    "reinit": Intervention("reinit", "weight", True, "sigma", "selected weights replaced by sigma * N(0, 1)"),
    "noise": Intervention("noise", "weight", True, "sigma", "sigma * N(0, 1) added to the selected weights"),
    "rewind": Intervention("rewind", "weight", False, "source", "selected weights copied from an earlier checkpoint"),
    "zero-activation": Intervention("zero-activation", "activation", False, None,
                                    "unit output after normalisation set to 0"),
    "mean-activation": Intervention("mean-activation", "activation", False, "means",
                                    "unit output after normalisation set to its training-set mean"),
}


def get_intervention(name: str) -> Intervention:
    return lookup(INTERVENTIONS, name, "intervention")


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file (no pickle; header checked, UnreadableFileError if bad)."""
    from spurmem.untrusted import read_safetensors

    return read_safetensors(path, "a rewind source checkpoint (safetensors)")


def activation_means(
    model: nn.Module,
    dataset: GroupDataset,
    units: Iterable[Unit] | Iterable[str],
    split: str = "train",
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> dict[str, torch.Tensor]:
    """``{layer: mean output of every unit of that layer}`` over ``split`` (default: the training
    set), measured after normalisation; pass units or layer names. Feeds ``mean-activation``."""
    layers = [u.layer if isinstance(u, Unit) else str(u) for u in units]
    return layer_activation_stats(model, dataset, layers, split=split, stat="mean",
                                  batch_size=batch_size, device=device)


@contextmanager
def intervene(
    model: nn.Module,
    target: Iterable[Unit] | WeightSelection,
    intervention: str,
    *,
    sigma: float | None = None,
    seed: int = 0,
    source: Mapping[str, torch.Tensor] | str | Path | None = None,
    means: Mapping[str, torch.Tensor] | None = None,
    inplace: bool = False,
) -> Iterator[nn.Module]:
    """Apply ``intervention`` to ``target`` and yield the edited model (a copy unless ``inplace``).

    ``sigma`` is required by ``reinit``/``noise``, ``source`` (state dict or ``.safetensors`` path
    of the earlier epoch) by ``rewind``, ``means`` (from :func:`activation_means`) by
    ``mean-activation``. On exit an in-place edit is undone exactly.
    """
    spec = get_intervention(intervention)
    if not isinstance(target, WeightSelection):
        target = list(target)
    if spec.needs == "sigma" and (sigma is None or sigma < 0):
        raise ValueError(f"intervention {intervention!r} needs sigma >= 0, got {sigma!r}")
    if spec.needs == "source" and source is None:
        raise ValueError("intervention 'rewind' needs source= (the earlier epoch's state dict or checkpoint file)")
    if spec.needs == "means" and means is None:
        raise ValueError("intervention 'mean-activation' needs means= (see activation_means)")
    edited = model if inplace else copy.deepcopy(model)
    if spec.space == "weight":
        undo = _edit_weights(edited, target, spec.name, sigma, seed, source)
        try:
            yield edited
        finally:
            if inplace:
                undo()
    else:
        if isinstance(target, WeightSelection):
            raise ValueError(f"{intervention!r} acts on unit outputs; it cannot take an unstructured weight selection")
        handles = _hook_outputs(edited, target, spec.name, means)
        try:
            yield edited
        finally:
            for h in handles:
                h.remove()


@torch.no_grad()
def _edit_weights(model, target, name, sigma, seed, source):
    masks = selection_masks(model, target)
    if name == "rewind" and not isinstance(source, Mapping):
        source = load_state_file(source)
    generator = torch.Generator().manual_seed(int(seed))
    saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    order = [n for n, _ in model.named_modules() if n in masks]  # module order: draws do not depend on dict order
    for layer in order:
        module = get_module(model, layer)
        wmask, bmask = masks[layer]
        for pname, param, mask in (("weight", module.weight, wmask), ("bias", module.bias, bmask)):
            if mask is None or param is None or not mask.any():
                continue
            data = param.data
            old = data[mask].clone()
            saved.append((data, mask, old))
            if name == "zero":
                new = torch.zeros_like(old)
            elif name in ("reinit", "noise"):
                draw = torch.randn(old.shape, generator=generator, dtype=torch.float32).to(old)
                new = sigma * draw if name == "reinit" else old + sigma * draw
            else:  # rewind
                key = f"{layer}.{pname}"
                if key not in source:
                    raise KeyError(f"rewind source has no tensor {key!r}")
                ref = source[key]
                if tuple(ref.shape) != tuple(data.shape):
                    raise ValueError(f"rewind source {key!r} has shape {tuple(ref.shape)}, model has {tuple(data.shape)}")
                new = ref.to(data)[mask]
            data[mask] = new

    def undo():
        with torch.no_grad():
            for data, mask, old in reversed(saved):
                data[mask] = old

    return undo


def _hook_outputs(model, units, name, means):
    selection_masks(model, units)  # validates layer names and indices
    handles = []
    for layer, indices in units_by_layer(units).items():
        site = get_module(model, output_site(model, layer))
        axis = unit_axis(site)
        idx = torch.tensor(indices, dtype=torch.long)
        if name == "mean-activation":
            if layer not in means:
                raise KeyError(f"means has no entry for layer {layer!r}; compute them with activation_means")
            values = torch.as_tensor(means[layer], dtype=torch.float32)[idx]
        else:
            values = torch.zeros(len(indices))

        def hook(_module, _inputs, out, idx=idx, values=values, axis=axis):
            out = out.clone()
            moved = out.movedim(axis, -1)  # a view: writing into it writes into ``out``
            moved[..., idx.to(out.device)] = values.to(out)
            return out

        handles.append(site.register_forward_hook(hook))
    return handles
