"""Graph surgery for the scan engine: split a traced model at a unit's site.

:class:`FxSite` holds, for one site (the module whose output a unit's edit changes), the *prefix*
(every node that does not depend on the site, run once per batch) and the *suffix* (run once on K
stacked variants), and, when the site reaches the next Conv2d/Linear through per-channel modules
only (BatchNorm, ReLU, pooling, a flatten after global pooling), the *channel chain* that lets a
variant be pushed through that layer as a one-input-channel correction. :class:`HookSite` is the
fallback for models ``torch.fx`` cannot trace. See :mod:`spurmem.probes.scan` for the engine.
"""

from __future__ import annotations

import copy
import math
import operator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn

from spurmem.probes.units import get_module

_INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                      operator.itruediv: operator.truediv}


def functional_copy(model: nn.Module) -> nn.Module:
    """A private eval-mode copy whose modules never write into their inputs (the engine reuses
    prefix values across chunks, so an in-place op in a suffix must not change them); the modules
    that did are listed in its ``inplace_modules`` (see :func:`inplace_again`)."""
    private = copy.deepcopy(model).eval()
    switched = []
    for module in private.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
            switched.append(module)
    private.inplace_modules = switched  # a plain attribute: not a submodule, not in the state dict
    return private


@contextmanager
def inplace_again(model: nn.Module) -> Iterator[nn.Module]:
    """The modules :func:`functional_copy` made out-of-place write into their inputs again, for
    passes of the whole model that share no values with other passes (the plain passes: faster,
    as the caller's model is, since no new tensor is allocated per activation)."""
    modules = getattr(model, "inplace_modules", [])
    for module in modules:
        module.inplace = True
    try:
        yield model
    finally:
        for module in modules:
            module.inplace = False


def trace(model: nn.Module) -> fx.GraphModule | None:
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: use the hook fallback
        return None
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
            node.target = _INPLACE_FUNCTIONS[node.target]
        elif node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
            node.target = node.target[:-1]
        if node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
    gm.recompile()
    return gm


@dataclass
class _Prefix:
    """What the prefix of one batch leaves for the variants: the clean site output, the layer's input
    (weight-space edits), the values the suffix needs, and the clean input of the chain's terminal."""

    site: torch.Tensor
    layer_input: torch.Tensor | None
    kept: list
    chain_input: torch.Tensor | None = None


class FxSite:
    """The traced graph split at one site.

    Without a chain, the suffix starts at the site: the K modified site outputs are stacked and run
    through it. With a *channel-local chain* (the site feeds, through per-channel modules only such as
    BatchNorm, ReLU and pooling, one Conv2d or Linear: the *terminal*), only the K modified channels
    go through the chain, and the terminal's output is its clean output plus a one-input-channel
    correction per variant (exact up to float rounding: the terminal is linear in its input); the
    suffix then starts after the terminal.
    """

    def __init__(self, gm: fx.GraphModule, site: str, layer: str | None, use_chain: bool = True,
                 before: bool = False) -> None:
        nodes = list(gm.graph.nodes)
        modules = dict(gm.named_modules())
        site_nodes = [n for n in nodes if n.op == "call_module" and n.target == site]
        if len(site_nodes) != 1:
            raise LookupError(f"site {site!r} is called {len(site_nodes)} times in the traced graph")
        site_node = site_nodes[0]
        if before:  # split at the site's input: the suffix runs the site module itself (edits of a set)
            if layer is not None or use_chain or len(site_node.all_input_nodes) != 1:
                raise LookupError(f"cannot split the graph before {site!r}")
            site_node = site_node.all_input_nodes[0]
        layer_input = None
        if layer is not None:
            if layer != site:
                raise ValueError("weight-space sites are the layer itself")
            layer_input = site_node.args[0]
        chain, terminal = _channel_chain(site_node, modules) if use_chain else ([], None)
        start = terminal if terminal is not None else site_node
        output = next(n for n in nodes if n.op == "output")
        dependent = {start}
        for n in nodes[nodes.index(start) + 1:]:
            if any(i in dependent for i in n.all_input_nodes):
                dependent.add(n)
        if output not in dependent:
            raise ValueError(f"the model's output does not depend on {site!r}")
        suffix_nodes = [n for n in nodes if n in dependent and n is not start and n is not output]
        kept: list[fx.Node] = [start]
        for n in suffix_nodes + [output]:
            for i in n.all_input_nodes:
                if (i not in dependent or i is start) and i not in kept:
                    kept.append(i)
        batched = set(n for n in nodes if n.op == "placeholder")
        for n in nodes:
            if any(i in batched for i in n.all_input_nodes):
                batched.add(n)
        self.batched = [n in batched for n in kept[1:]]
        extra = ([terminal.args[0]] if terminal is not None else []) + ([layer_input] if layer_input is not None else [])
        wanted = [site_node] + kept + extra
        self.prefix_nodes = wanted
        self.prefix = _subgraph(gm, nodes, inputs=[n for n in nodes if n.op == "placeholder"],
                                body=_ancestors(wanted), outputs=wanted)
        self.suffix = _subgraph(gm, nodes, inputs=kept, body=set(suffix_nodes), outputs=output.args[0])
        self.prefix_modules = {n.target for n in self.prefix.graph.nodes if n.op == "call_module"}
        self.n_kept = len(kept)
        self.has_layer_input = layer_input is not None
        self.chain = [_chain_step(n, modules) for n in chain]
        self.terminal = modules[terminal.target] if terminal is not None else None
        self.terminal_name = terminal.target if terminal is not None else None
        self.layer_name = layer
        self.layer_module = modules[layer] if layer is not None else None

    def saved_share(self, cost: dict[str, int]) -> float:
        """The share of one forward pass's multiply-adds (``cost``, from :func:`multiply_adds`) that a
        stacked variant does not repeat: the prefix (run once per batch for every variant; it holds the
        chain's terminal too), less what each variant still pays there (its one-row conv of a
        weight-space layer, its one-input-channel correction of the terminal). The rest is the
        suffix, which a plain pass of the edited model runs too: where this share is small, stacking
        cannot win."""
        total = sum(cost.values())
        if total <= 0:
            return 0.0
        shared = sum(cost.get(m, 0) for m in self.prefix_modules)
        for name, module, width in ((self.layer_name, self.layer_module, "out"), (self.terminal_name, self.terminal, "in")):
            if name is not None:
                shared -= cost.get(name, 0) / _width(module, width)
        return max(shared, 0.0) / total

    def run_prefix(self, x: torch.Tensor) -> _Prefix:
        return self._parse(list(self.prefix(x)))

    def prefix_from(self, env: dict) -> _Prefix:
        """The prefix values from a run of the whole traced graph that kept every node's value (the
        screened scan's forward pass), instead of running the prefix again."""
        return self._parse([env[n] for n in self.prefix_nodes])

    def _parse(self, values: list) -> _Prefix:
        site, kept, rest = values[0], values[1:1 + self.n_kept], values[1 + self.n_kept:]
        chain_input = rest.pop(0) if self.terminal is not None else None
        return _Prefix(site, rest[0] if self.has_layer_input else None, kept, chain_input)

    def run_variants(self, pre: _Prefix, channels: list[int], slab: torch.Tensor, axis: int) -> torch.Tensor:
        """Logits ``[K*B x C]`` of the K variants; ``slab`` holds the K modified site channels
        (channel j of ``slab`` along ``axis`` replaces channel ``channels[j]``)."""
        k = len(channels)
        if self.terminal is None:
            start = stack_from_slab(pre.site, axis, channels, slab)
        else:
            idx = torch.as_tensor(channels, device=slab.device)
            for step in self.chain:
                slab = step(slab, idx)
            delta = slab - pre.chain_input.index_select(axis, idx)
            start = (pre.kept[0].unsqueeze(0) + _terminal_change(self.terminal, delta, idx)).flatten(0, 1)
        args = [_repeat(v, k) if b else v for v, b in zip(pre.kept[1:], self.batched)]
        return self.suffix(start, *args)

    def run_pairs(self, pre: _Prefix, examples: torch.Tensor, channels: torch.Tensor, values: torch.Tensor,
                  axis: int) -> torch.Tensor:
        """Logits ``[R x C]`` of R single-unit variants, each on one example of the batch: row r is
        example ``examples[r]`` with site channel ``channels[r]`` replaced by ``values[r]`` (the
        channel's map, the site output without its batch and unit axes). The screened scan uses it
        to evaluate only the pairs its screen could not clear."""
        axis = axis % pre.site.dim()
        if self.terminal is None:
            start = pre.site.index_select(0, examples).clone()
            start.movedim(axis, 1)[torch.arange(len(examples), device=start.device), channels] = values
        else:
            slab = values.unsqueeze(0).movedim(1, axis)  # one "example" whose channels are the rows
            for step in self.chain:
                slab = step(slab, channels)
            clean = pre.chain_input.movedim(axis % pre.chain_input.dim(), 1)[examples, channels]
            delta = slab - clean.unsqueeze(0).movedim(1, axis % slab.dim())
            start = pre.kept[0].index_select(0, examples) + _terminal_change(self.terminal, delta, channels).squeeze(1)
        args = [v.index_select(0, examples) if b and isinstance(v, torch.Tensor) else v
                for v, b in zip(pre.kept[1:], self.batched)]
        return self.suffix(start, *args)

    def run_suffix_clean(self, pre: _Prefix) -> torch.Tensor:
        """One suffix pass on the clean values (for timing the floor)."""
        return self.suffix(*pre.kept)


_CHANNEL_LOCAL_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU,
                          nn.Hardswish, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                          nn.Identity, nn.Dropout)
_CHANNEL_LOCAL_FUNCTIONS = (torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _channel_chain(site: fx.Node, modules: dict[str, nn.Module]) -> tuple[list[fx.Node], fx.Node | None]:
    """The per-channel nodes from ``site`` to the one Conv2d/Linear it feeds, when every node on the
    way (the site included) has that single user; else ``([], None)``."""
    chain, node = [], site
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.all_input_nodes != [node] or not user.args or user.args[0] is not node:
            break
        if user.op == "call_module":
            m = modules[user.target]
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros":
                return chain, user
            if isinstance(m, nn.Linear):
                return chain, user
            if isinstance(m, _NORMS) and m.running_mean is not None and not m.training:
                chain.append(user)
            elif isinstance(m, _CHANNEL_LOCAL_MODULES):
                chain.append(user)
            else:
                break
        elif user.op == "call_function" and user.target in _CHANNEL_LOCAL_FUNCTIONS and len(user.args) == 1:
            chain.append(user)
        elif _is_flatten_after_global_pool(user, node, modules):
            chain.append(user)
        else:
            break
        node = user
    return [], None


def _is_flatten_after_global_pool(user: fx.Node, node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``torch.flatten(x, 1)`` of a ``N x C x 1 x 1`` global pool keeps channel c at position c."""
    if not (user.op == "call_function" and user.target is torch.flatten and user.args[1:] == (1,) and not user.kwargs):
        return False
    if node.op != "call_module":
        return False
    pool = modules[node.target]
    return isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and pool.output_size in (1, (1, 1))


def _chain_step(node: fx.Node, modules: dict[str, nn.Module]):
    if node.op == "call_function" and node.target is torch.flatten:
        return lambda t, idx: torch.flatten(t, 1)
    if node.op == "call_function":
        return lambda t, idx: node.target(t, **node.kwargs)
    m = modules[node.target]
    if isinstance(m, _NORMS):
        def norm(t, idx, m=m):
            w = m.weight.index_select(0, idx) if m.weight is not None else None
            b = m.bias.index_select(0, idx) if m.bias is not None else None
            return F.batch_norm(t, m.running_mean.index_select(0, idx), m.running_var.index_select(0, idx), w, b,
                                False, 0.0, m.eps)
        return norm
    return lambda t, idx: m(t)


def _terminal_change(module: nn.Module, delta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``[K x B x ...]``: the change of ``module``'s output when input channel ``idx[j]`` changes by
    channel j of ``delta`` (variant j), for a Conv2d (channel axis 1) or a Linear (last axis)."""
    k = len(idx)
    if isinstance(module, nn.Conv2d):
        w = module.weight.index_select(1, idx).transpose(0, 1).reshape(k * module.out_channels, 1,
                                                                        *module.kernel_size)
        out = F.conv2d(delta, w, None, module.stride, module.padding, module.dilation, groups=k)
        b = delta.shape[0]
        return out.view(b, k, module.out_channels, *out.shape[2:]).transpose(0, 1)
    w = module.weight.index_select(1, idx).t()  # K x out
    return (delta.unsqueeze(-1) * w).movedim(-2, 0)


@torch.no_grad()
def multiply_adds(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-adds per example of every Conv2d and Linear of ``model`` (by module name), counted on
    one forward pass of ``x`` (a batch of any size: the shapes are what is measured)."""
    names = {m: name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    cost: dict[str, int] = {}

    def count(module, inputs, output) -> None:
        fan_in = (module.in_channels // module.groups * math.prod(module.kernel_size) if isinstance(module, nn.Conv2d)
                  else module.in_features)
        cost[names[module]] = cost.get(names[module], 0) + output[0].numel() * fan_in

    handles = [m.register_forward_hook(count) for m in names]
    try:
        model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return cost


def _width(module: nn.Module, side: str) -> int:
    """Output (``side="out"``) or input channels of a Conv2d, features of a Linear."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels if side == "out" else module.in_channels
    return module.out_features if side == "out" else module.in_features


def _ancestors(targets: Iterable[fx.Node]) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(targets)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _subgraph(gm: fx.GraphModule, order: list[fx.Node], inputs: list[fx.Node], body: set[fx.Node],
              outputs) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: graph.placeholder(f"in_{n.name}") for n in inputs}
    for n in order:
        if n in body and n not in env and n.op != "output":
            env[n] = graph.node_copy(n, lambda a: env[a])
    out = fx.node.map_arg(outputs, lambda a: env[a])
    graph.output(tuple(out) if isinstance(out, list) else out)
    return fx.GraphModule(gm, graph)


def _repeat(value, k: int):
    if k == 1 or not isinstance(value, torch.Tensor):
        return value
    return value.repeat(k, *([1] * (value.dim() - 1)))


class HookSite:
    """Fallback for models fx cannot trace: the whole model runs on the stacked batch and a forward
    hook puts the modified site outputs in place (exact, but the prefix is recomputed per chunk)."""

    def __init__(self, model: nn.Module, site: str, layer: str | None) -> None:
        self.model = model
        self.site = get_module(model, site)
        self.layer = get_module(model, layer) if layer is not None else None

    def run_prefix(self, x: torch.Tensor) -> _Prefix:
        seen: dict[str, torch.Tensor] = {}
        handles = [self.site.register_forward_hook(lambda m, i, o: seen.__setitem__("site", o))]
        if self.layer is not None:
            handles.append(self.layer.register_forward_hook(lambda m, i, o: seen.__setitem__("input", i[0])))
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        return _Prefix(seen["site"], seen.get("input"), [x])

    def run_variants(self, pre: _Prefix, channels: list[int], slab: torch.Tensor, axis: int) -> torch.Tensor:
        stacked = stack_from_slab(pre.site, axis, channels, slab)
        handle = self.site.register_forward_hook(lambda m, i, o: stacked)
        try:
            return self.model(_repeat(pre.kept[0], len(channels)))
        finally:
            handle.remove()


    def run_pairs(self, pre: _Prefix, examples: torch.Tensor, channels: torch.Tensor, values: torch.Tensor,
                  axis: int) -> torch.Tensor:
        site = pre.site.index_select(0, examples).clone()
        site.movedim(axis % site.dim(), 1)[torch.arange(len(examples), device=site.device), channels] = values
        handle = self.site.register_forward_hook(lambda m, i, o: site)
        try:
            return self.model(pre.kept[0].index_select(0, examples))
        finally:
            handle.remove()


def stack_from_slab(site_out: torch.Tensor, axis: int, channels: list[int], slab: torch.Tensor) -> torch.Tensor:
    """``len(channels)`` copies of ``site_out`` stacked along the batch (``[K*B x ...]``), copy j with
    channel ``channels[j]`` replaced by channel j of ``slab``."""
    k = len(channels)
    stacked = site_out.unsqueeze(0).repeat(k, *([1] * site_out.dim()))
    for j, c in enumerate(channels):
        stacked[j].select(axis, c).copy_(slab.select(axis, j))
    return stacked.flatten(0, 1)
