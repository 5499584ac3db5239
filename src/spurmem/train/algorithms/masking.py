"""The framework's pruning mask (docs/method.md §6): which weights the masked branch sees as zero.

The *maskable set* is every Conv2d weight; for a ViT, the ``qkv``, ``proj``, ``fc1`` and ``fc2``
weights of its blocks (not the patch embedding); for a model with neither (an MLP), every Linear weight except the head.
A mask is a dict ``{parameter name: bool tensor}`` where True means *kept*; parameters not in the dict
are kept whole. The masked forward pass runs the model's own weights times the mask through
``torch.func.functional_call``, so gradients reach the shared weights through both branches and the
caller's model is never edited. ``masked_pass.MaskedPass`` (the framework's) is the same pass with the
first block's unaffected channels taken from the dense pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import torch
from torch import nn
from torch.func import functional_call

from spurmem.config import ConfigError
from spurmem.errors import UnreadableFileError
from spurmem.probes.units import Unit, get_module, head_name
from spurmem.untrusted import read_json_file, read_text_file

Target = Literal["smallest", "largest", "critical"]
Granularity = Literal["weight", "unit"]
Mask = dict[str, torch.Tensor]

VIT_MASKABLE = ("qkv", "proj", "fc1", "fc2")


def maskable_layers(model: nn.Module) -> list[str]:
    """Module names of the maskable set, in module order (see the module docstring)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    vit = [
        n for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in VIT_MASKABLE and ".blocks." in f".{n}"
    ]
    if vit:
        return vit
    if convs:
        return convs
    head = head_name(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != head]
    if not linears:
        raise ConfigError("the model has no Conv2d, ViT block or hidden Linear layer to mask")
    return linears


def _ranked_count(total: int, fraction: float) -> int:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"mask fraction must be in (0, 1), got {fraction}")
    return max(1, int(round(fraction * total)))


@torch.no_grad()
def weight_mask(model: nn.Module, layers: Iterable[str], fraction: float, largest: bool) -> Mask:
    """Mask exactly ``round(fraction * N)`` individual weights with the smallest (or largest) |w|,
    ranked jointly over the weights of ``layers`` (ties broken by position, so the count is exact)."""
    weights = {f"{name}.weight": get_module(model, name).weight for name in layers}
    flat = torch.cat([w.detach().abs().flatten().float() for w in weights.values()])
    k = _ranked_count(flat.numel(), fraction)
    order = torch.argsort(flat, descending=largest, stable=True)[:k]
    dropped = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    dropped[order] = True
    mask, start = {}, 0
    for pname, w in weights.items():
        n = w.numel()
        part = dropped[start : start + n]
        if part.any():  # a parameter with nothing masked is left out: no multiply in the masked pass
            mask[pname] = ~part.view_as(w)
        start += n
    return mask


@torch.no_grad()
def unit_norms(model: nn.Module, layers: Iterable[str]) -> list[tuple[Unit, float]]:
    """L2 norm of every unit's incoming weight slice (the ``weight-norm`` score of docs/method.md §4)."""
    out = []
    for name in layers:
        w = get_module(model, name).weight.detach().float()
        norms = w.flatten(1).norm(dim=1)
        out += [(Unit(name, i), float(v)) for i, v in enumerate(norms)]
    return out


def unit_mask(model: nn.Module, units: Iterable[Unit]) -> Mask:
    """Mask the whole weight slice W[c] (and bias b[c]) of each unit."""
    mask: Mask = {}
    for unit in units:
        try:
            module = get_module(model, unit.layer)
        except KeyError as exc:
            raise ConfigError(f"critical unit {unit.id}: {exc.args[0]}") from None
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise ConfigError(f"unit {unit.id}: layer is a {type(module).__name__}, not Conv2d or Linear")
        if not 0 <= unit.index < module.weight.shape[0]:
            raise ConfigError(f"unit {unit.id}: index out of range, layer has {module.weight.shape[0]} units")
        for pname, param in (("weight", module.weight), ("bias", module.bias)):
            if param is None:
                continue
            key = f"{unit.layer}.{pname}"
            if key not in mask:
                mask[key] = torch.ones_like(param, dtype=torch.bool)
            mask[key][unit.index] = False
    return mask


def ranked_unit_mask(model: nn.Module, layers: Iterable[str], fraction: float, largest: bool) -> Mask:
    """Mask the fraction of units (of the maskable layers) with the smallest (or largest) weight norm."""
    scored = unit_norms(model, layers)
    k = _ranked_count(len(scored), fraction)
    scores = torch.tensor([s for _, s in scored])
    order = torch.argsort(scores, descending=largest, stable=True)[:k].tolist()
    return unit_mask(model, [scored[i][0] for i in order])


def compute_mask(
    model: nn.Module,
    target: Target = "smallest",
    granularity: Granularity = "weight",
    fraction: float = 0.01,
    critical_units: Iterable[str | Unit] | None = None,
) -> Mask:
    """The mask of docs/method.md §6 for the model's current weights."""
    if target == "critical":
        units = [u if isinstance(u, Unit) else Unit.parse(u) for u in (critical_units or [])]
        if not units:
            raise ConfigError("target=critical needs critical_units (unit ids or a probe result file)")
        return unit_mask(model, units)
    if target not in ("smallest", "largest"):
        raise ConfigError(f"mask target must be smallest, largest or critical, got {target!r}")
    layers = maskable_layers(model)
    largest = target == "largest"
    if granularity == "weight":
        return weight_mask(model, layers, fraction, largest)
    if granularity == "unit":
        return ranked_unit_mask(model, layers, fraction, largest)
    raise ConfigError(f"mask granularity must be weight or unit, got {granularity!r}")


def mask_summary(mask: Mask) -> dict[str, int]:
    """Number of masked entries, and the size of the parameters that hold them."""
    masked = sum(int((~m).sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return {"masked": masked, "in_masked_parameters": total}


def masked_forward(model: nn.Module, mask: Mask, x: torch.Tensor, keep_buffer_updates: bool = False) -> torch.Tensor:
    """``f_{theta * M}(x)``: the model's own parameters times the mask, gradients flowing to them.

    With ``keep_buffer_updates`` False (the default), BatchNorm running statistics updated by this
    pass go to throw-away copies, so the dense model's statistics only see dense activations.
    """
    params = dict(model.named_parameters())
    swapped = {name: params[name] * m for name, m in mask.items()}
    if not keep_buffer_updates:
        swapped.update({name: b.clone() for name, b in model.named_buffers()})
    return functional_call(model, swapped, (x,), strict=False)


def load_unit_ids(source: str | Path | Iterable[str]) -> list[str]:
    """Unit ids, in order, from a list; a comma-separated string; a text file (one id a line); a CSV
    with a ``unit`` column (a scorer's ranked table, best first); or a JSON file holding a list of ids
    or an object with a ``units`` / ``selected_units`` list (``spurmem probe localize``'s summary.json),
    of ids or of objects with ``unit`` or ``id``."""
    if not isinstance(source, (str, Path)):
        ids = [str(u) for u in source]
    else:
        path = Path(source)
        if not path.exists():
            if isinstance(source, str) and ":" in source and "/" not in source:
                ids = [s.strip() for s in source.split(",") if s.strip()]
                return _checked(ids, "critical_units")
            raise ConfigError(f"critical_units: no such file {path}")
        if path.suffix == ".json":
            ids = _ids_from_json(read_json_file(path, "a unit list (JSON)"), path)
        elif path.suffix == ".csv":
            ids = _ids_from_csv(path)
        else:
            text = read_text_file(path, "a unit list (text, one unit id a line)")
            ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return _checked(ids, str(path))
    return _checked(ids, "critical_units")


def _ids_from_json(data, path: Path) -> list[str]:
    if isinstance(data, dict):
        for key in ("units", "selected_units", "unit_ids"):
            if key in data:
                data = data[key]
                break
        else:
            raise ConfigError(f"{path}: expected a list of unit ids or a 'units' key, found keys {sorted(data)}")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of unit ids")
    out = []
    for item in data:
        if isinstance(item, dict):
            item = item.get("unit", item.get("id"))
        if not isinstance(item, str):
            raise ConfigError(f"{path}: entry {item!r} is not a unit id like 'stages.2.conv:17'")
        out.append(item)
    return out


def _ids_from_csv(path: Path) -> list[str]:
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise UnreadableFileError(path, "a unit list (CSV with a unit column)", str(exc).strip()) from None
    if "unit" in table.columns:
        return [str(u) for u in table["unit"]]
    if "units" in table.columns:  # a probe's rows: one ';'-joined unit list per setting
        distinct = table["units"].dropna().unique()
        if len(distinct) == 1:
            return [u for u in str(distinct[0]).split(";") if u]
        raise ConfigError(f"{path}: its 'units' column holds {len(distinct)} different unit sets (one per probe "
                          f"setting); write the chosen ids to a file or pass them as a list")
    raise ConfigError(f"{path}: expected a 'unit' column of unit ids, found columns {list(table.columns)}")


def _checked(ids: list[str], where: str) -> list[str]:
    for uid in ids:
        try:
            Unit.parse(uid)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return ids
