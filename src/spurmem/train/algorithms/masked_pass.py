"""The framework's masked pass with a shared stem: ``f_{theta * M}(x)`` reusing the dense pass's
first-block output where the mask leaves it unchanged (docs/method.md §6).

The first block of a CNN (conv -> BatchNorm -> channel-wise activation / pooling) sees the same input
``x`` in both branches, and every op after its convolution acts on each channel separately (training
BatchNorm normalises each channel by its own batch statistics). So in the masked branch only the output
channels whose convolution weights hold a masked entry differ from the dense branch; the others *are* the
dense branch's values. ``MaskedPass`` reuses the dense stem output for them (the tensor itself, so the
masked branch's gradient flows into the dense graph there, which is the same sum of the two branches'
gradients) and recomputes only the affected channels with the masked weights. On the small CNN the first
block holds ~1 masked weight, i.e. 1 of 16 channels, and costs ~35% of a forward + backward pass.

The first block is either one module (a small-CNN ``Stage``, an ``nn.Sequential``) or a chain of the model's
first top-level children called in turn in its ``forward`` (torchvision / timm ResNet: ``conv1``, ``bn1``,
``relu``, ``maxpool``). A chain is checked harder, since registration order says nothing of how ``forward``
uses it: hooks on the dense pass check each module ran once, in order, on the previous one's unmodified
output; the masked pass stubs each module (passing x through, the last returning the prepared tensor) and
checks the same; and the first shared call is compared with the generic pass, so a model that also uses an
inner output of the chain (which the stubs would replace by x) gets the generic pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from spurmem.train.algorithms.masking import Mask, masked_forward

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


def _stem_chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model's first top-level children if they form a stem chain: a Conv2d, then a BatchNorm2d, then
    channel-wise ops, registered in that order (torchvision / timm ResNet: ``conv1``, ``bn1``, ``relu``,
    ``maxpool``). Registration order is only a guess at the call order: ``MaskedPass`` checks on every dense
    pass that the chain was called in sequence on the input, and once that its masked output is the
    generic one's."""
    children = list(model.named_children())
    if len(children) < 2:
        return None
    (_, conv), (_, bn) = children[0][:2], children[1][:2]
    if type(conv) is not nn.Conv2d or type(bn) is not nn.BatchNorm2d:
        return None
    if conv.groups != 1 or conv.padding_mode != "zeros" or bn.num_features != conv.out_channels:
        return None
    chain = children[:2]
    for name, module in children[2:]:
        if type(module) not in CHANNELWISE:
            break
        chain.append((name, module))
    if any(m._forward_hooks or m._forward_pre_hooks for _, m in chain):
        return None
    return chain


class MaskedPass:
    """``f_{theta * M}(x)`` for one mask, with what does not change between steps built once: the masked
    parameter names, and (where it applies) the shared-stem plan described above. Same values and gradients
    as :func:`masked_forward`; ``tests/test_framework.py`` checks both against it."""

    def __init__(self, model: nn.Module, mask: Mask, keep_buffer_updates: bool = False, share_stem: bool = True):
        self.model, self.mask, self.keep = model, mask, keep_buffer_updates
        self.stem: tuple[str, nn.Module] | None = None  # the block, or the last module of the chain
        self.chain: list[nn.Module] | None = None  # the stem's modules when it is a chain of top-level children
        self.channels: torch.Tensor | None = None
        self.verified = True  # False: the next shared call is checked against the generic pass
        if share_stem and not keep_buffer_updates:
            found = _first_block(model)
            if found is not None:
                parts, modules = _stem_parts(found[1]), [found]
            else:
                modules = _stem_chain(model)
                parts = None if modules is None else (modules[0][1], modules[1][1], [m for _, m in modules[2:]])
            if parts is not None:
                conv = parts[0]
                own = {f"{name}.{n}": p for name, module in modules for n, p in module.named_parameters()}
                if all(own[k] is conv.weight or own[k] is conv.bias for k in mask if k in own):
                    rows = torch.zeros(conv.out_channels, dtype=torch.bool, device=conv.weight.device)
                    for k in mask:
                        if k in own:
                            rows |= ~mask[k].reshape(conv.out_channels, -1).all(1)
                    self.parts = parts
                    self.stem = modules[-1] if found is None else found
                    if found is None:
                        self.chain = [m for _, m in modules]
                        self.verified = False
                    self.channels = rows.nonzero().flatten()
                    self.stem_keys = {k: own[k] is conv.weight for k in mask if k in own}
        self.failed = False
        self.last_shared = False  # whether the last call used the shared stem

    def __call__(self, x: torch.Tensor, stem_output: torch.Tensor | None = None) -> torch.Tensor:
        """The masked logits; ``stem_output``: the dense pass's stem output (``capture``), or None."""
        self.last_shared = False
        if self.stem is not None and stem_output is not None and not self.failed:
            try:
                out = self._shared(x, stem_output) if self.verified else self._shared_checked(x, stem_output)
                self.last_shared = True
                return out
            except _StemUnavailable:
                self.failed = True  # do not try again with this mask
        return masked_forward(self.model, self.mask, x, self.keep)

    def _shared_checked(self, x: torch.Tensor, stem_output: torch.Tensor) -> torch.Tensor:
        """The first shared call of a chain plan, checked against the generic pass (no gradient, the same
        random numbers): a model that uses a chain module's output elsewhere gets the generic pass."""
        devices = [] if x.device.type == "cpu" else [x.device.index or 0]
        with torch.random.fork_rng(devices=devices, device_type=x.device.type):
            try:
                out = self._shared(x, stem_output)
            except _StemUnavailable:
                raise
            except (RuntimeError, ValueError, TypeError):  # a stubbed module's output used elsewhere
                raise _StemUnavailable from None
        with torch.no_grad():
            ref = masked_forward(self.model, self.mask, x, self.keep)
        if not (isinstance(out, torch.Tensor) and isinstance(ref, torch.Tensor) and out.shape == ref.shape):
            raise _StemUnavailable
        exact = ref.dtype in (torch.float32, torch.float64)
        scale = float(ref.detach().abs().max()) if ref.numel() else 0.0
        if not torch.allclose(out.detach(), ref, rtol=1e-4 if exact else 1e-2,
                              atol=(1e-5 if exact else 1e-2) * max(1.0, scale)):
            raise _StemUnavailable
        self.verified = True
        return out

    def capture(self):
        """A context manager for the dense pass that records the stem's output (a list: [output, version])."""
        if self.stem is None or self.failed:
            return _nothing()
        return _capture_chain(self.chain) if self.chain is not None else _capture_stem(self, self.stem[1])

    def _stem_masked(self, x: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        conv, bn, rest = self.parts
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
        replaced = self._stem_masked(x, stem_output)
        # the block's forward (or, for a chain, each module's in turn) is stubbed: each must be called once,
        # in order, on x; the chain's first modules pass x through and the last returns the prepared tensor
        stubbed = self.chain if self.chain is not None else [self.stem[1]]
        calls: list[int] = []

        def stub(i: int):
            def forward(*args, **kwargs):
                if len(calls) != i or kwargs or len(args) != 1 or args[0] is not x:
                    raise _StemUnavailable
                calls.append(i)
                return replaced if i == len(stubbed) - 1 else x
            return forward

        params = dict(self.model.named_parameters())
        # the whole mask, the stem's entries too: a stem weight used elsewhere (tied, or its module called
        # again) must be masked there as well; the unused products cost one multiply of the stem's weight
        swapped = {k: params[k] * m for k, m in self.mask.items()}
        swapped.update({k: b.clone() for k, b in self.model.named_buffers()})
        for i, module in enumerate(stubbed):
            module.forward = stub(i)
        try:
            out = functional_call(self.model, swapped, (x,), strict=False)
        finally:
            for module in stubbed:
                del module.forward
        if len(calls) != len(stubbed):
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


class _capture_chain:
    """Records a stem chain's output in the dense pass, if its modules ran once each, in order, each on the
    previous one's output unmodified in between, the first on the model's input."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules, self.seen, self.handles = modules, [], []

    def __enter__(self):
        for i, module in enumerate(self.modules):
            def pre(_m, args, i=i):
                inp = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
                self.seen.append(("in", i, inp, None if inp is None else inp._version))

            def post(_m, _args, output, i=i):
                ok = isinstance(output, torch.Tensor)
                self.seen.append(("out", i, output if ok else None, output._version if ok else None))

            self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return False

    def output(self, x: torch.Tensor) -> torch.Tensor | None:
        """The chain's dense output if it was computed as described above, from ``x``, and not modified since."""
        n = len(self.modules)
        if [(kind, i) for kind, i, _, _ in self.seen] != [(k, i) for i in range(n) for k in ("in", "out")]:
            return None
        if self.seen[0][2] is not x or self.seen[0][3] != x._version:
            return None
        for i in range(1, n):
            _, _, prev, prev_version = self.seen[2 * i - 1]
            _, _, inp, version = self.seen[2 * i]
            if prev is None or inp is not prev or version != prev_version:
                return None
        _, _, out, version = self.seen[-1]
        if out is None or out._version != version:
            return None
        return out
