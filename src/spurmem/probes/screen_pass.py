"""The first-order estimate behind the screened scan (:mod:`spurmem.probes.scan_screen`).

:func:`elementwise_chain` follows a unit's site through the element-wise operations after it
(BatchNorm, activations, residual additions, pooling) up to the first operation that mixes
channels; :class:`ScreenPass` runs one forward and ``C - 1`` backward passes per batch and gives,
for every unit of the planned layers at once, the estimated change of every logit difference of
every example, and which pairs a margin test clears.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn


_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU,
                        nn.Hardswish, nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_UNARY_FUNCTIONS = (torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu)
_BINARY_FUNCTIONS = (operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul)



# -- the element-wise chain after a site ---------------------------------------------------------


@dataclass
class _Step:
    """One element-wise operation of a chain, applied to a slab whose unit axis holds the units."""

    kind: str                      # "norm", "module", "unary", "binary"
    target: Any
    kwargs: dict = field(default_factory=dict)
    position: int = 0              # binary: which argument is the chain's value
    other: Any = None              # binary: the other argument (an fx node or a constant)

    def apply(self, slab: torch.Tensor, channels: torch.Tensor, axis: int, env: dict) -> torch.Tensor:
        if self.kind == "norm":
            m = self.target
            if slab.dim() > 2 and axis % slab.dim() != 1:
                raise Unsupported("BatchNorm off the channel axis")
            w = m.weight.index_select(0, channels) if m.weight is not None else None
            b = m.bias.index_select(0, channels) if m.bias is not None else None
            return F.batch_norm(slab, m.running_mean.index_select(0, channels),
                                m.running_var.index_select(0, channels), w, b, False, 0.0, m.eps)
        if self.kind == "module":
            return self.target(slab)
        if self.kind == "unary":
            return self.target(slab, **self.kwargs)
        other = env[self.other] if isinstance(self.other, fx.Node) else self.other
        if isinstance(other, torch.Tensor) and other.numel() > 1:
            if other.dim() != slab.dim():
                raise Unsupported("an operand broadcast over the batch")
            if other.shape[axis] != 1:
                other = other.index_select(axis, channels)
        args = (slab, other) if self.position == 0 else (other, slab)
        return self.target(*args, **self.kwargs)


class Unsupported(Exception):  # noqa: N818 - internal signal, caught by the engine
    """The chain meets an operation the screen cannot carry a slab through."""


def elementwise_chain(gm: fx.GraphModule, site: fx.Node) -> tuple[list[_Step], fx.Node]:
    """The element-wise steps from ``site`` on, and the node where the chain ends (its value's
    gradient is where the first-order estimate is taken)."""
    modules = dict(gm.named_modules())
    downstream = _descendants(site)
    steps, node = [], site
    while len(node.users) == 1:
        user = next(iter(node.users))
        step = _as_step(user, node, modules, downstream)
        if step is None:
            break
        steps.append(step)
        node = user
    return steps, node


def _as_step(user: fx.Node, node: fx.Node, modules: dict, downstream: set) -> _Step | None:
    if user.op == "call_module":
        if user.all_input_nodes != [node] or user.args[0] is not node or user.kwargs:
            return None
        m = modules[user.target]
        if isinstance(m, _NORMS) and m.running_mean is not None and not m.training:
            return _Step("norm", m)
        if isinstance(m, _ELEMENTWISE_MODULES):
            return _Step("module", m)
        return None
    if user.op != "call_function":
        return None
    if user.target in _UNARY_FUNCTIONS and len(user.args) == 1 and user.args[0] is node:
        return _Step("unary", user.target, dict(user.kwargs))
    if user.target in _BINARY_FUNCTIONS and len(user.args) == 2 and not (set(user.kwargs) - {"alpha"}):
        a, b = user.args
        if a is node and b is not node:
            position, other = 0, b
        elif b is node and a is not node:
            position, other = 1, a
        else:
            return None
        if isinstance(other, fx.Node) and other in downstream:
            return None
        if not isinstance(other, (fx.Node, int, float)):
            return None
        return _Step("binary", user.target, dict(user.kwargs), position, other)
    return None


def _descendants(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        for u in n.users:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return seen


@dataclass
class _LayerPlan:
    site: fx.Node
    layer_input: fx.Node | None
    steps: list[_Step]
    end: fx.Node


class ScreenPass:
    """One traced forward and ``C - 1`` backward passes per batch that leave, for every layer of
    the scan, what :meth:`estimate` needs: the site's (and layer input's) values, the operands of
    the chain and the gradient of each logit difference at the chain's end."""

    def __init__(self, gm: fx.GraphModule, sites: dict[str, tuple[str, bool]]) -> None:
        """``sites``: ``{layer: (site module, weight_space)}``."""
        self.gm = gm
        self.plans: dict[str, _LayerPlan | None] = {}
        nodes = list(gm.graph.nodes)
        for layer, (site, weight_space) in sites.items():
            found = [n for n in nodes if n.op == "call_module" and n.target == site]
            if len(found) != 1:
                self.plans[layer] = None
                continue
            node = found[0]
            steps, end = elementwise_chain(gm, node)
            self.plans[layer] = _LayerPlan(node, node.args[0] if weight_space else None, steps, end)

    def run(self, x: torch.Tensor) -> "_ScreenBatch":
        interp = fx.Interpreter(self.gm, garbage_collect_values=False)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = interp.run(x)
            ends = list(dict.fromkeys(p.end for p in self.plans.values() if p is not None))
            values = [interp.env[n] for n in ends]
            grads: dict[fx.Node, list[torch.Tensor]] = {n: [] for n in ends}
            n_classes = logits.shape[1]
            for j in range(1, n_classes if ends else 1):
                g = torch.autograd.grad((logits[:, j] - logits[:, 0]).sum(), values,
                                        retain_graph=j < n_classes - 1, allow_unused=True)
                for n, v, gj in zip(ends, values, g):
                    grads[n].append(torch.zeros_like(v) if gj is None else gj)
        env = {n: v.detach() if isinstance(v, torch.Tensor) else v for n, v in interp.env.items()}
        return _ScreenBatch(logits.detach(), env, grads)


@dataclass
class _ScreenBatch:
    logits: torch.Tensor
    env: dict
    grads: dict
    unchanged: torch.Tensor | None = None

    def estimate(self, plan: _LayerPlan, slab: torch.Tensor, channels: torch.Tensor, axis: int) -> torch.Tensor:
        """``[B x K x C]``: the first-order change of each logit difference (to class 0) when unit
        ``channels[k]``'s site channel is ``slab[:, k]`` (along ``axis``); exactly 0 where the edit
        changes nothing at the chain's end (those pairs are then in ``self.unchanged``, ``[B x K]``)."""
        for step in plan.steps:
            slab = step.apply(slab, channels, axis, self.env)
        delta = slab - self.env[plan.end].index_select(axis, channels)
        b, k = delta.shape[0], len(channels)
        self.unchanged = (delta == 0).movedim(axis, 1).reshape(b, k, -1).all(-1)
        out = torch.zeros(b, k, self.logits.shape[1], dtype=self.logits.dtype, device=self.logits.device)
        for j, g in enumerate(self.grads[plan.end], start=1):
            prod = g.index_select(axis, channels) * delta
            out[:, :, j] = prod.movedim(axis, 1).reshape(b, k, -1).sum(-1)
        return out

    def clear(self, estimate: torch.Tensor, factor: float, slack: torch.Tensor | None = None) -> torch.Tensor:
        """``[B x K]`` bool: the pairs whose prediction the screen keeps (see the module docstring);
        ``slack`` (``[K]``) is each unit's allowance for the estimate's error, added to it."""
        logits = self.logits
        pred = logits.argmax(1)
        gap = logits.gather(1, pred[:, None]) - logits                      # B x C, >= 0
        change = estimate.gather(2, pred[:, None, None].expand(-1, estimate.shape[1], 1)) - estimate
        tol = 1e-4 * (1 + logits.abs().amax(1))
        change = change.abs() if slack is None else change.abs() + slack[None, :, None]
        ok = gap[:, None, :] - factor * change > tol[:, None, None]
        ok.scatter_(2, pred[:, None, None].expand(-1, estimate.shape[1], 1), True)
        return ok.all(2)
