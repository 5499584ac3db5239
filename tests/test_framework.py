"""The framework of docs/method.md §6: NT-Xent, the pruning mask, and the two-pass gradient."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spurmem.config import ConfigError
from spurmem.data.batches import Batch
from spurmem.train.algorithms.contrastive import nt_xent
from spurmem.train.algorithms.framework import SpurMemFramework
from spurmem.train.algorithms.masking import compute_mask, load_unit_ids, maskable_layers, masked_forward


class TinyCNN(nn.Module):
    def __init__(self, n_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


def make_batch(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 6, 6, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    return Batch(x=x, y=y, a=torch.zeros(n, dtype=torch.long), g=y * 2, index=torch.arange(n))


def test_nt_xent_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    tau = 0.5
    rows = [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8), (1 / math.sqrt(2), 1 / math.sqrt(2))]
    positive = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        sims = {j: (rows[i][0] * rows[j][0] + rows[i][1] * rows[j][1]) / tau for j in range(4) if j != i}
        total += -math.log(math.exp(sims[positive[i]]) / sum(math.exp(s) for s in sims.values()))
    assert float(nt_xent(a, b, tau)) == pytest.approx(total / 4, rel=1e-6)


def test_nt_xent_is_low_for_matching_views_and_rejects_bad_shapes():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    assert nt_xent(z, z + 0.01, 0.1) < nt_xent(z, torch.randn(8, 5), 0.1)
    with pytest.raises(ValueError):
        nt_xent(z, z[:4])


def published_three_pass_loss(model, mask, x, y, tau, lam):
    """The literal docs/method.md §6 loss, one forward pass per operand, stop-gradients explicit."""
    z_d = model(x)
    z_p = masked_forward(model, mask, x)
    with torch.no_grad():
        z_d_target = model(x)  # third pass: the dense output as a constant
    term_masked = nt_xent(torch.softmax(z_d_target, 1), torch.softmax(z_p, 1), tau)
    term_dense = nt_xent(torch.softmax(z_d, 1), torch.softmax(z_p, 1).detach(), tau)
    return term_masked + term_dense + lam * F.cross_entropy(z_d, y)


@pytest.mark.parametrize("contrast_on", ["probabilities", "logits", "features"])
def test_two_pass_gradients_equal_three_pass(shapes, contrast_on):
    torch.manual_seed(0)
    model = TinyCNN()
    batch = make_batch()
    algo = SpurMemFramework(shapes, fraction=0.2, contrast_on=contrast_on, tau=0.5, **{"lambda": 0.3})
    algo.setup(model, torch.device("cpu"))
    loss, terms = algo.loss(model, batch)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    if contrast_on == "probabilities":
        ref = published_three_pass_loss(model, algo.mask, batch.x, batch.y, 0.5, 0.3)
    else:  # same formula on the other representation
        feats = {}
        hook = model.head.register_forward_pre_hook(lambda m, a: feats.setdefault(len(feats), a[0]))
        z_d = model(batch.x)
        z_p = masked_forward(model, algo.mask, batch.x)
        with torch.no_grad():
            z_t = model(batch.x)
        hook.remove()
        rep = (lambda i, z: feats[i]) if contrast_on == "features" else (lambda i, z: z)
        ref = (
            nt_xent(rep(2, z_t).detach(), rep(1, z_p), 0.5)
            + nt_xent(rep(0, z_d), rep(1, z_p).detach(), 0.5)
            + 0.3 * F.cross_entropy(z_d, batch.y)
        )
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert terms["ce"] > 0 and 0.0 <= terms["disagreement"] <= 1.0
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in ours.values())


def test_double_softmax_option_changes_the_ce_term(shapes):
    torch.manual_seed(0)
    model, batch = TinyCNN(), make_batch()
    plain = SpurMemFramework(shapes, fraction=0.1).loss(model, batch)[1]["ce"]
    double = SpurMemFramework(shapes, fraction=0.1, ce="double-softmax").loss(model, batch)[1]["ce"]
    with torch.no_grad():
        logits = model(batch.x)
    assert plain == pytest.approx(float(F.cross_entropy(logits, batch.y)), rel=1e-5)
    assert double == pytest.approx(float(F.cross_entropy(torch.softmax(logits, 1), batch.y)), rel=1e-5)


def test_masked_pass_leaves_weights_and_running_stats_alone():
    torch.manual_seed(0)
    model = TinyCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = compute_mask(model, "largest", "weight", 0.3)
    out = masked_forward(model, mask, make_batch().x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        assert not torch.allclose(out, model(make_batch().x))


@pytest.mark.parametrize("target", ["smallest", "largest"])
def test_weight_mask_has_exact_fraction_and_target(target):
    torch.manual_seed(0)
    model = TinyCNN()
    assert maskable_layers(model) == ["conv1", "conv2"]
    mask = compute_mask(model, target, "weight", 0.05)
    assert set(mask) <= {"conv1.weight", "conv2.weight"}  # layers with nothing masked are left out
    w = torch.cat([model.conv1.weight.detach().flatten(), model.conv2.weight.detach().flatten()]).abs()
    m = torch.cat([mask.get(f"{n}.weight", torch.ones_like(getattr(model, n).weight, dtype=torch.bool)).flatten()
                   for n in ("conv1", "conv2")])
    assert int((~m).sum()) == round(0.05 * w.numel())
    if target == "smallest":
        assert w[~m].max() <= w[m].min()
    else:
        assert w[~m].min() >= w[m].max()


def test_unit_and_critical_masks_drop_whole_slices(tmp_path):
    torch.manual_seed(0)
    model = TinyCNN()
    mask = compute_mask(model, "smallest", "unit", 3 / 14)
    dropped = [(n, c) for n, m in mask.items() for c in range(m.shape[0]) if not m[c].any()]
    assert len(dropped) == 3
    assert all(mask[n][c].all() or not mask[n][c].any() for n in mask for c in range(mask[n].shape[0]))
    norms = {(f"{n}.weight", c): float(getattr(model, n).weight[c].detach().norm()) for n in ("conv1", "conv2")
             for c in range(getattr(model, n).weight.shape[0])}
    assert max(norms[d] for d in dropped) <= min(v for k, v in norms.items() if k not in dropped)

    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"units": [{"unit": "conv2:3"}, {"unit": "head:1"}]}))
    mask = compute_mask(model, "critical", critical_units=load_unit_ids(path))
    assert not mask["conv2.weight"][3].any() and int((~mask["conv2.weight"]).sum()) == 6 * 9
    assert not mask["head.bias"][1] and mask["head.bias"][0]
    with pytest.raises(ConfigError):
        compute_mask(model, "critical", critical_units=["conv9:0"])
    ranked = tmp_path / "ranking.csv"
    ranked.write_text("rank,unit,score\n1,conv1:4,3.0\n2,conv2:0,2.0\n3,conv2:7,1.0\n")
    assert load_unit_ids(ranked) == ["conv1:4", "conv2:0", "conv2:7"]
    assert load_unit_ids("conv1:1, conv2:2") == ["conv1:1", "conv2:2"]
    from spurmem.data import load_dataset

    algo = SpurMemFramework(load_dataset("synthetic-shapes", n_train=40, n_val=8, n_test=8, size=8),
                            target="critical", critical_units=str(ranked), critical_k=2)
    algo.setup(model, torch.device("cpu"))
    assert int((~algo.mask["conv1.weight"]).sum()) == 27 and int((~algo.mask["conv2.weight"]).sum()) == 54


def test_mask_is_recomputed_each_epoch(shapes):
    torch.manual_seed(0)
    model = TinyCNN()
    algo = SpurMemFramework(shapes, fraction=0.05)
    algo.setup(model, torch.device("cpu"))
    first = algo.mask["conv1.weight"].clone()
    with torch.no_grad():
        model.conv1.weight[~first] = 10.0  # the masked (smallest) weights become the largest
    algo.on_epoch_start(2, model)
    assert not (algo.mask["conv1.weight"] | first).logical_not().any()
    assert algo.mask["conv1.weight"][~first].all()


def test_bad_params_name_the_key(shapes):
    with pytest.raises(ConfigError, match="did you mean 'fraction'"):
        SpurMemFramework(shapes, fractoin=0.1)
    with pytest.raises(ConfigError, match="tau"):
        SpurMemFramework(shapes, tau=-1)
    with pytest.raises(ConfigError, match="critical"):
        SpurMemFramework(shapes, target="critical")


def test_vit_maskable_set_is_attention_and_mlp_weights():
    from spurmem.models import build_model

    model = build_model("vit_tiny", 2, img_size=32)
    layers = maskable_layers(model)
    assert layers and all(name.rsplit(".", 1)[-1] in ("qkv", "proj", "fc1", "fc2") for name in layers)
    assert all(name.startswith("blocks.") for name in layers)  # not the patch embedding, not the head
    mask = compute_mask(model, fraction=0.01)
    total = sum(model.get_submodule(n).weight.numel() for n in layers)
    assert sum(int((~m).sum()) for m in mask.values()) == round(0.01 * total)


def test_logged_terms_are_the_branches_values(shapes):
    torch.manual_seed(3)
    model = TinyCNN().eval()  # eval: both branches are deterministic functions of the weights
    algo = SpurMemFramework(shapes, fraction=0.2)
    algo.setup(model, torch.device("cpu"))
    batch = make_batch()
    _, terms = algo.loss(model, batch)
    with torch.no_grad():
        z_d, z_p = model(batch.x), masked_forward(model, algo.mask, batch.x)
    assert terms["ntxent"] == pytest.approx(float(nt_xent(torch.softmax(z_d, 1), torch.softmax(z_p, 1))), rel=1e-6)
    assert terms["ce"] == pytest.approx(float(F.cross_entropy(z_d, batch.y)), rel=1e-6)
    assert terms["masked_ce"] == pytest.approx(float(F.cross_entropy(z_p, batch.y)), rel=1e-6)
    assert terms["disagreement"] == pytest.approx(float((z_d.argmax(1) != z_p.argmax(1)).float().mean()))
    assert terms["masked_ce"] != terms["ce"]


class SeqStemCNN(nn.Module):
    """A first block as an nn.Sequential (conv, BN, ReLU6, max-pool), as in MobileNet's Conv2dNormActivation."""

    def __init__(self, reuse_stem: bool = False, tied: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6), nn.ReLU6(inplace=True),
                                  nn.MaxPool2d(2))
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)
        self.reuse_stem, self.tied = reuse_stem, tied

    def forward(self, x):
        h = self.stem(x * 2.0 if self.reuse_stem else x)  # reuse_stem: the stem's input is not x
        out = self.head(F.relu(self.bn2(self.conv2(h))).mean((2, 3)))
        if self.tied:  # the stem's conv called again outside the stem: it must see the masked weight there too
            out = out + self.stem[0](x).mean((1, 2, 3))[:, None]
        return out


def _small_cnn():
    from spurmem.models import build_model

    return build_model("small-cnn", 2, width=0.5)


class ChainCNN(nn.Module):
    """A stem as top-level children called in ``forward`` (as torchvision's ResNet): conv1, bn1, relu, pool.
    ``order``: "chain" calls them in sequence; "swapped" runs the ReLU before the BatchNorm; "side" also uses
    bn1's output outside the chain (a skip from inside the stem)."""

    def __init__(self, order: str = "chain") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=order != "side")
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 2)
        self.order = order

    def forward(self, x):
        h = self.conv1(x)
        if self.order == "swapped":
            h = self.bn1(self.relu(h))
        else:
            h = self.relu(self.bn1(h))
        out = self.pool(h)
        if self.order == "side":
            out = out + F.max_pool2d(self.bn1.weight[None, :, None, None] * h, 2).flip(1)
        return self.head(F.relu(self.conv2(out)).mean((2, 3)))


def _check_masked_pass(model: nn.Module, x: torch.Tensor, mask, shared: bool, calls: int = 1,
                       grad_atol: float = 1e-6) -> None:
    """``MaskedPass`` (``calls`` times) against ``functional_call`` with ``param * mask``: same output, same
    gradients (summed with the dense branch's, to ``grad_atol`` times the largest |grad|: float32 sums in
    another order), no running statistics touched; ``last_shared`` as expected."""
    from spurmem.train.algorithms.masked_pass import MaskedPass

    plan = MaskedPass(model, mask)
    for _ in range(calls):
        model.zero_grad()
        with plan.capture() as stem:
            z_d = model(x)
        stats = {k: v.clone() for k, v in model.state_dict().items()}
        z_p = plan(x, stem.output(x) if stem is not None else None)
        assert plan.last_shared == shared
        for k, v in model.state_dict().items():
            assert torch.equal(v, stats[k]), k  # the masked pass updates no running statistics
        n = z_p.shape[1]
        (z_d.square().sum() + (z_p * torch.arange(float(n))).sum()).backward()
        ours = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        ref_d, ref_p = model(x), masked_forward(model, mask, x)
        torch.testing.assert_close(z_p, ref_p, rtol=1e-5, atol=1e-6)
        (ref_d.square().sum() + (ref_p * torch.arange(float(n))).sum()).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, msg=name,
                                       atol=grad_atol * max(1.0, float(p.grad.abs().max())))


@pytest.mark.parametrize("make,granularity,fraction,shared", [
    (_small_cnn, "weight", 0.01, True), (_small_cnn, "weight", 0.3, True), (_small_cnn, "unit", 0.2, True),
    (SeqStemCNN, "unit", 0.3, True), (lambda: SeqStemCNN(tied=True), "weight", 0.3, True),
    (lambda: SeqStemCNN(reuse_stem=True), "weight", 0.1, False),
    (TinyCNN, "weight", 0.1, True),  # conv1 -> bn1 as top-level children: a chain stem
    (ChainCNN, "weight", 0.03, True), (ChainCNN, "unit", 0.3, True),
    (lambda: ChainCNN("swapped"), "weight", 0.03, False),  # not the registered order: the dense capture refuses
    (lambda: ChainCNN("side"), "weight", 0.03, False),  # bn1's output used elsewhere: the first-call check refuses
])
def test_masked_pass_with_shared_stem_matches_functional_call(make, granularity, fraction, shared):
    """The shared-stem masked pass: same output, same gradients and the same untouched running statistics as
    ``functional_call`` with ``param * mask``; where it does not apply it falls back to that."""
    torch.manual_seed(0)
    model = make().train()
    x = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    _check_masked_pass(model, x, compute_mask(model, "smallest", granularity, fraction), shared, calls=2)


@pytest.mark.parametrize("order,captured,failed", [("chain", True, False), ("swapped", False, False),
                                                   ("side", True, True)])
def test_chain_stem_is_checked_before_it_is_used(order, captured, failed):
    """A chain of top-level children is only a guess at the stem: the dense capture checks the call order, and
    the first masked call is compared with the generic pass (a model using bn1's output elsewhere fails it)."""
    from spurmem.train.algorithms.masked_pass import MaskedPass

    torch.manual_seed(0)
    model = ChainCNN(order).train()
    x = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plan = MaskedPass(model, compute_mask(model, "smallest", "weight", 0.03))
    assert plan.chain == [model.conv1, model.bn1, model.relu, model.pool]
    assert 0 < plan.channels.numel() < 6  # some channels are shared
    with plan.capture() as stem:
        model(x)
    assert (stem.output(x) is not None) == captured
    plan(x, stem.output(x))
    assert plan.failed == failed and plan.last_shared == (captured and not failed)
    assert plan.capture().__class__.__name__ == ("_nothing" if failed else "_capture_chain")


@pytest.mark.parametrize("stem", ["small", "standard"])
def test_masked_pass_shares_the_resnet18_stem_chain(stem):
    """torchvision ResNet-18's stem is conv1 -> bn1 -> relu -> maxpool called in ``ResNet.forward`` (maxpool an
    Identity with the small stem): the masked pass reuses it, with the generic pass's values and gradients."""
    from spurmem.models import build_model
    from spurmem.train.algorithms.masked_pass import MaskedPass

    torch.manual_seed(0)
    model = build_model("resnet18", 2, img_size=32, stem=stem).train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = compute_mask(model, "smallest", "weight", 0.01)
    plan = MaskedPass(model, mask)
    assert plan.chain == [model.conv1, model.bn1, model.relu, model.maxpool]
    assert 0 < plan.channels.numel() < 64 if stem == "small" else plan.channels.numel() > 0
    _check_masked_pass(model, x, mask, shared=True, calls=2, grad_atol=1e-5)


@pytest.mark.parametrize("contrast_on", ["probabilities", "features"])
def test_two_pass_gradients_equal_three_pass_on_the_small_cnn(shapes, contrast_on):
    torch.manual_seed(0)
    model = _small_cnn().train()
    batch = make_batch(n=12)
    batch.x = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    algo = SpurMemFramework(shapes, fraction=0.05, contrast_on=contrast_on, **{"lambda": 0.3})
    algo.setup(model, torch.device("cpu"))
    loss, _ = algo.loss(model, batch)
    assert algo._pass.last_shared
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    if contrast_on == "probabilities":
        ref = published_three_pass_loss(model, algo.mask, batch.x, batch.y, 0.5, 0.3)
    else:
        feats = {}
        hook = model.fc.register_forward_pre_hook(lambda m, a: feats.setdefault(len(feats), a[0]))
        z_d = model(batch.x)
        masked_forward(model, algo.mask, batch.x)
        hook.remove()
        ref = (nt_xent(feats[0].detach(), feats[1], 0.5) + nt_xent(feats[0], feats[1].detach(), 0.5)
               + 0.3 * F.cross_entropy(z_d, batch.y))
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    update = SpurMemFramework(shapes, fraction=0.05, masked_bn_stats="update")
    update.setup(model, torch.device("cpu"))
    update.loss(model, batch)
    assert update._pass.stem is None and not update._pass.last_shared  # BN updates from the masked pass: the generic path
