"""The framework's pruning mask (docs/method.md §6): which weights the masked branch sees as zero.

The *maskable set* is every Conv2d weight; for a ViT, the ``qkv``, ``proj``, ``fc1`` and ``fc2``
weights of its blocks (not the patch embedding); for a model with neither (an MLP), every Linear weight except the head.
A mask is a dict ``{parameter name: bool tensor}`` where True means *kept*; parameters not in the dict
are kept whole. The masked forward pass runs the model's own weights times the mask through
``torch.func.functional_call``, so gradients reach the shared weights through both branches and the
caller's model is never edited. ``MaskedPass`` (the framework's) is the same pass with the first
block's unaffected channels taken from the dense pass (see its comment below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import torch
import torch.nn.functional as F
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


# --- the masked pass with a shared stem -------------------------------------------------------------
#
# The first block of a CNN (conv -> BatchNorm -> channel-wise activation / pooling) sees the same input
# ``x`` in both branches, and every op after its convolution acts on each channel separately (training
# BatchNorm normalises each channel by its own batch statistics). So in the masked branch only the output
# channels whose convolution weights hold a masked entry differ from the dense branch; the others *are* the
# dense branch's values. ``MaskedPass`` reuses the dense stem output for them (the tensor itself, so the
# masked branch's gradient flows into the dense graph there, which is the same sum of the two branches'
# gradients) and recomputes only the affected channels with the masked weights. On the small CNN the first
# block holds ~1 masked weight, i.e. 1 of 16 channels, and costs ~35% of a forward + backward pass.

CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.Hardswish, nn.SiLU, nn.GELU,
               nn.LeakyReLU)


class _StemUnavailable(Exception):
    """The shared-stem shortcut does not apply to this pass; run the generic masked pass."""


def _stem_parts(module: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d, list[nn.Module]] | None:
    """(conv, bn, channel-wise rest) if ``module`` runs exactly conv -> bn -> rest, in that order."""
    from spurmem.models.small import Stage

    if type(module) is Stage:
        parts = [module.conv, module.bn, module.relu, module.pool]
    elif type(module).forward is nn.Sequential.forward:  # nn.Sequential or a subclass that keeps its forward
        parts = list(module)
    else:
        return None
    if len(parts) < 2 or not isinstance(parts[0], nn.Conv2d) or not isinstance(parts[1], nn.BatchNorm2d):
        return None
    conv, bn, rest = parts[0], parts[1], parts[2:]
    if conv.groups != 1 or conv.padding_mode != "zeros" or bn.num_features != conv.out_channels:
        return None
    if type(bn) is not nn.BatchNorm2d or any(type(m) not in CHANNELWISE for m in rest):
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in [module, conv, bn, *rest]):
        return None
    return conv, bn, rest


def _first_block(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first stem-shaped module in registration order (its use on the input is checked at run time)."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return None  # a bare layer comes first: no block to share
        if name and _stem_parts(module) is not None:
            return name, module
    return None


class MaskedPass:
    """``f_{theta * M}(x)`` for one mask, with what does not change between steps built once: the masked
    parameter names, and (where it applies) the shared-stem plan described above. Same values and gradients
    as :func:`masked_forward`; ``tests/test_framework.py`` checks both against it."""

    def __init__(self, model: nn.Module, mask: Mask, keep_buffer_updates: bool = False, share_stem: bool = True):
        self.model, self.mask, self.keep = model, mask, keep_buffer_updates
        self.stem: tuple[str, nn.Module] | None = None
        self.channels: torch.Tensor | None = None
        if share_stem and not keep_buffer_updates:
            found = _first_block(model)
            if found is not None:
                name, module = found
                conv, _, _ = _stem_parts(module)
                prefix = f"{name}." if name else ""
                own = {f"{prefix}{n}" for n, _ in module.named_parameters()}
                conv_names = {f"{prefix}{n}": p for n, p in module.named_parameters() if p is conv.weight
                              or p is conv.bias}
                if all(k in conv_names for k in mask if k in own):
                    rows = torch.zeros(conv.out_channels, dtype=torch.bool, device=conv.weight.device)
                    for k in mask:
                        if k in own:
                            rows |= ~mask[k].reshape(conv.out_channels, -1).all(1)
                    self.stem = found
                    self.channels = rows.nonzero().flatten()
                    self.stem_keys = {k: conv_names[k] is conv.weight for k in mask if k in own}
        self.failed = False
        self.last_shared = False  # whether the last call used the shared stem

    def __call__(self, x: torch.Tensor, stem_output: torch.Tensor | None = None) -> torch.Tensor:
        """The masked logits; ``stem_output``: the dense pass's stem output (``capture``), or None."""
        self.last_shared = False
        if self.stem is not None and stem_output is not None and not self.failed:
            try:
                out = self._shared(x, stem_output)
                self.last_shared = True
                return out
            except _StemUnavailable:
                self.failed = True  # do not try again with this mask
        return masked_forward(self.model, self.mask, x, self.keep)

    def capture(self):
        """A context manager for the dense pass that records the stem's output (a list: [output, version])."""
        return _capture_stem(self, self.stem[1]) if self.stem is not None and not self.failed else _nothing()

    def _stem_masked(self, x: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        conv, bn, rest = _stem_parts(self.stem[1])
        c = self.channels
        if c.numel() == 0:
            return dense
        weight = conv.weight[c]
        bias = None if conv.bias is None else conv.bias[c]
        for k, is_weight in self.stem_keys.items():
            if is_weight:
                weight = weight * self.mask[k][c]
            else:
                bias = bias * self.mask[k][c]
        h = conv._conv_forward(x, weight, bias)
        training = bn.training or bn.running_mean is None
        h = F.batch_norm(h, None if training else bn.running_mean[c], None if training else bn.running_var[c],
                         None if bn.weight is None else bn.weight[c], None if bn.bias is None else bn.bias[c],
                         training, 0.0, bn.eps)
        for m in rest:
            h = m(h)
        if h.shape[0] != dense.shape[0] or h.shape[2:] != dense.shape[2:] or h.dtype != dense.dtype:
            raise _StemUnavailable
        return dense.index_copy(1, c, h)

    def _shared(self, x: torch.Tensor, stem_output: torch.Tensor) -> torch.Tensor:
        module = self.stem[1]
        replaced = self._stem_masked(x, stem_output)
        calls = []

        def forward(*args, **kwargs):
            if calls or kwargs or len(args) != 1 or args[0] is not x:
                raise _StemUnavailable
            calls.append(1)
            return replaced

        params = dict(self.model.named_parameters())
        # the whole mask, the stem's entries too: a stem weight used elsewhere (tied, or its module called
        # again) must be masked there as well; the unused products cost one multiply of the stem's weight
        swapped = {k: params[k] * m for k, m in self.mask.items()}
        swapped.update({k: b.clone() for k, b in self.model.named_buffers()})
        module.forward = forward
        try:
            out = functional_call(self.model, swapped, (x,), strict=False)
        finally:
            del module.forward
        if not calls:
            raise _StemUnavailable
        return out


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _capture_stem:
    def __init__(self, plan: MaskedPass, module: nn.Module) -> None:
        self.plan, self.module, self.seen = plan, module, []

    def __enter__(self):
        def hook(_m, args, output):
            self.seen.append((args[0] if args else None, output, output._version))

        self.handle = self.module.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False

    def output(self, x: torch.Tensor) -> torch.Tensor | None:
        """The stem's dense output if it was computed once, from ``x``, and not modified in place since."""
        if len(self.seen) != 1:
            return None
        inp, out, version = self.seen[0]
        if inp is not x or out._version != version:
            return None
        return out
