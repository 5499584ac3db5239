import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probe_models import MLP, TinyCNN, train_briefly
from spurmem.data import iterate_batches
from spurmem.probes.scorers import SCORERS, ScoreContext, hardest_examples, score_units, select_weights, top_units
from spurmem.probes.units import Unit, candidate_layers


@pytest.fixture(scope="module")
def mlp(shapes):
    torch.manual_seed(0)
    return train_briefly(MLP(d_in=3 * 12 * 12, hidden=(6,)), shapes, epochs=3)


def test_registry():
    assert set(SCORERS) == {"weight-norm", "group-gradient", "group-contrast", "weight-threshold", "random", "activation"}


def test_weight_norm_finds_a_planted_channel(shapes):
    m = TinyCNN(widths=(4, 8))
    with torch.no_grad():
        m.stages[1].conv.weight[5] *= 100
    t = score_units(m, shapes, "weight-norm")
    assert t["unit"].iloc[0] == "stages.1.conv:5" and list(t["rank"][:3]) == [1, 2, 3]
    assert t["score"].iloc[0] == pytest.approx(float(m.stages[1].conv.weight[5].detach().norm()), rel=1e-5)
    assert len(t) == 12 and t["score"].is_monotonic_decreasing
    assert top_units(t, 1) == [Unit("stages.1.conv", 5)]
    per_layer = top_units(t, 2, per_layer=True)
    assert len(per_layer) == 4 and sum(u.layer == "stages.0.conv" for u in per_layer) == 2


def test_per_layer_median_normalisation(shapes):
    m = TinyCNN(widths=(4, 8))
    t = score_units(m, shapes, "weight-norm", normalise=True)
    for layer, rows in t.groupby("layer"):
        assert rows["score"].median() == pytest.approx(1.0)
        assert np.allclose(rows["score"], rows["raw_score"] / rows["raw_score"].median())


def _closed_form_grad_norms(model, dataset, idx):
    """d mean-CE / d W1[j] for h = relu(W1 x + b1), z = W2 h + b2, written out by hand."""
    batch = next(iterate_batches(dataset["train"], 10_000, dataset.mean, dataset.std, indices=idx))
    x = batch.x.flatten(1).double()
    W1, b1 = model.body[0].weight.detach().double(), model.body[0].bias.detach().double()
    W2, b2 = model.head.weight.detach().double(), model.head.bias.detach().double()
    pre = x @ W1.T + b1
    z = pre.clamp(min=0) @ W2.T + b2
    delta = torch.softmax(z, 1) - F.one_hot(batch.y, 2).double()
    dh = (delta @ W2) * (pre > 0)
    gW, gb = dh.T @ x / len(x), dh.mean(0)
    return (gW.pow(2).sum(1) + gb.pow(2)).sqrt()


def test_group_gradient_matches_the_closed_form(shapes, mlp):
    ctx = ScoreContext(mlp, shapes, candidate_layers(mlp))
    t = score_units(mlp, shapes, "group-gradient", group=1, n_hardest=10, context=ctx)
    idx = hardest_examples(ctx, 1)
    p_true = ctx.predictions_on("train").p_true
    members = np.flatnonzero(shapes["train"].group.numpy() == 1)
    assert len(idx) == 10 and set(idx.tolist()) <= set(members.tolist())
    assert p_true[idx.numpy()].max() <= np.sort(p_true[members])[9] + 1e-9  # the 10 lowest p(true)
    expected = _closed_form_grad_norms(mlp, shapes, idx)
    got = t.sort_values("index")["score"].to_numpy()
    assert np.allclose(got, expected.numpy(), rtol=1e-4, atol=1e-8)
    assert all(p.grad is None for p in mlp.parameters())  # the caller's .grad fields untouched


def test_group_gradient_ranks_a_disconnected_unit_last(shapes, mlp):
    best = score_units(mlp, shapes, "group-gradient", group=2).iloc[0]
    assert best["score"] > 0
    m = MLP(d_in=3 * 12 * 12, hidden=(6,))
    m.load_state_dict(mlp.state_dict())
    with torch.no_grad():
        m.head.weight[:, best["index"]] = 0  # the unit no longer reaches the output: its gradient is 0
    t = score_units(m, shapes, "group-gradient", group=2).set_index("unit")
    assert t.loc[best["unit"], "score"] == 0 and t.loc[best["unit"], "rank"] > 1


def test_group_contrast_is_minority_minus_same_class_majority(shapes, mlp):
    assert shapes.minority_groups == [1, 2] and shapes.same_class_majority(1) == 0
    gg1 = score_units(mlp, shapes, "group-gradient", group=1).set_index("unit")["score"]
    gg0 = score_units(mlp, shapes, "group-gradient", group=0).set_index("unit")["score"]
    diff = score_units(mlp, shapes, "group-contrast", group=1).set_index("unit")["score"]
    assert np.allclose(diff.sort_index(), (gg1 - gg0).sort_index(), atol=1e-6)
    ratio = score_units(mlp, shapes, "group-contrast", group=1, contrast="ratio").set_index("unit")["score"]
    alive = gg0 > 0  # dead-ReLU units have 0 majority gradient; their ratio is huge by design
    assert alive.sum() >= 2
    assert np.allclose(ratio[alive.index[alive]].sort_index(), (gg1 / gg0)[alive].sort_index(), rtol=1e-4)
    with pytest.raises(ValueError, match="not a minority group"):
        score_units(mlp, shapes, "group-contrast", group=0)
    with pytest.raises(ValueError, match="per group"):
        score_units(mlp, shapes, "group-gradient")


def test_weight_threshold_selects_by_magnitude(shapes):
    m = TinyCNN(widths=(4, 8))
    with torch.no_grad():
        m.stages[0].conv.weight.fill_(0.01)
        m.stages[1].conv.weight.fill_(0.02)
        m.stages[1].conv.weight[6, :, 1, 1] = 5.0  # 4 planted large weights in unit 6
    layers = candidate_layers(m)
    top = select_weights(m, layers, fraction=4 / (108 + 288))
    assert top.count == 4 and top.units() == [Unit("stages.1.conv", 6)]
    bottom = select_weights(m, layers, fraction=108 / (108 + 288), largest=False)
    assert bottom.masks["stages.0.conv"].all() and not bottom.masks["stages.1.conv"].any()
    thinned = select_weights(m, layers, fraction=0.5, thinning=0.5, seed=1)
    assert 0.3 * 198 < thinned.count < 0.7 * 198
    t = score_units(m, shapes, "weight-threshold", fraction=4 / 396)
    assert t["unit"].iloc[0] == "stages.1.conv:6" and t["score"].iloc[0] == 4 and t["score"].iloc[1] == 0


def test_random_is_uniform_and_seeded(shapes):
    m = TinyCNN(widths=(4, 8))
    a = top_units(score_units(m, shapes, "random", seed=1), 3)
    assert a == top_units(score_units(m, shapes, "random", seed=1), 3)
    draws = {tuple(top_units(score_units(m, shapes, "random", seed=s), 3)) for s in range(20)}
    assert len(draws) > 15
    firsts = [top_units(score_units(m, shapes, "random", seed=s), 1)[0] for s in range(300)]
    share_first_layer = np.mean([u.layer == "stages.0.conv" for u in firsts])
    assert 0.2 < share_first_layer < 0.47  # 4 of 12 units


def test_activation_scores_mean_abs_on_the_group(shapes):
    m = TinyCNN(widths=(4, 8)).eval()
    with torch.no_grad():
        m.stages[1].bn.bias[2] = 25.0  # planted: channel 2 is large after BN
    t = score_units(m, shapes, "activation", group=3)
    assert t["unit"].iloc[0] == "stages.1.conv:2"
    idx = torch.nonzero(shapes["train"].group == 3).flatten()
    x = next(iterate_batches(shapes["train"], 10_000, shapes.mean, shapes.std, indices=idx)).x
    with torch.no_grad():
        out = m.stages[0](x)
        expected = m.stages[1].bn(m.stages[1].conv(out)).abs().mean(dim=(0, 2, 3))
    got = t[t["layer"] == "stages.1.conv"].sort_values("index")["score"].to_numpy()
    assert np.allclose(got, expected.numpy(), rtol=1e-4)
