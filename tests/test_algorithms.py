"""The baselines of docs/method.md §7 on crafted inputs: reweighting, GroupDRO, JTT and DFR."""

import numpy as np
import pytest
import torch
from torch import nn

from spurmem.config import ConfigError
from spurmem.data.batches import Batch, iterate_batches
from spurmem.train.algorithms.dfr import balanced_draw, fit_dfr
from spurmem.train.algorithms.groupdro import GroupDRO
from spurmem.train.algorithms.jtt import JTT, error_set, upweighted
from spurmem.train.algorithms.reweight import Reweight


class FirstTwo(nn.Module):
    """Logits = the first two input features times a learnable scale (a model we can steer)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1)[:, :2] * self.scale


def crafted_batch(wrong_group: int, n_per_group: int = 5) -> Batch:
    """Four groups (g = 2y + a); every group is classified confidently right except ``wrong_group``."""
    g = torch.arange(4).repeat_interleave(n_per_group)
    y = g // 2
    x = torch.zeros(len(g), 2)
    x[torch.arange(len(g)), y] = 3.0
    x[g == wrong_group] = x[g == wrong_group].flip(1)
    return Batch(x=x, y=y, a=g % 2, g=g, index=torch.arange(len(g)))


def test_groupdro_weights_move_toward_the_worst_group(shapes):
    algo = GroupDRO(shapes, eta=0.1)
    model = FirstTwo()
    algo.setup(model, torch.device("cpu"))
    assert torch.allclose(algo.q, torch.full((4,), 0.25))
    history = []
    for _ in range(5):
        loss, terms = algo.loss(model, crafted_batch(wrong_group=2))
        history.append(algo.q[2].item())
    assert history == sorted(history) and history[-1] > 0.3
    assert int(algo.q.argmax()) == 2 and abs(sum(algo.q.tolist()) - 1) < 1e-6
    assert terms["q_g2"] == pytest.approx(history[-1])
    # the robust loss is dominated by the wrong group: its gradient exceeds the plain mean's share
    model.zero_grad()
    loss.backward()
    assert model.scale.grad.item() > 0  # increasing the scale would raise the wrong group's loss


def test_groupdro_size_adjustment_and_resume(shapes):
    algo = GroupDRO(shapes, eta=0.5, size_adjustment=1.0)
    algo.setup(FirstTwo(), torch.device("cpu"))
    algo.loss(FirstTwo(), _all_right())
    # all groups equally right: only the C/sqrt(n_g) term differs, so the small groups (1, 2) gain
    assert algo.q[1] > algo.q[0] and algo.q[2] > algo.q[3]
    other = GroupDRO(shapes, eta=0.5, size_adjustment=1.0)
    other.load_state_dict(algo.state_dict())
    assert torch.equal(other.q, algo.q)


def _all_right() -> Batch:
    g = torch.arange(4).repeat_interleave(3)
    y = g // 2
    x = torch.zeros(len(g), 2)
    x[torch.arange(len(g)), y] = 3.0
    return Batch(x=x, y=y, a=g % 2, g=g, index=torch.arange(len(g)))


def test_reweight_balances_groups(shapes):
    w = Reweight(shapes).sample_weights()
    g = shapes["train"].group
    totals = torch.stack([w[g == k].sum() for k in range(4)])
    assert torch.allclose(totals, totals[0].expand(4))
    assert w[g == 1][0] / w[g == 0][0] == pytest.approx(9.0)  # 90 vs 10 training examples
    assert Reweight(shapes, mode="loss").sample_weights() is None
    with pytest.raises(ConfigError, match="mode"):
        Reweight(shapes, mode="both")


def test_reweight_loss_mode_weights_minority_losses(shapes):
    algo = Reweight(shapes, mode="loss")
    algo.setup(FirstTwo(), torch.device("cpu"))
    batch = crafted_batch(wrong_group=1)
    weighted = algo.loss(FirstTwo(), batch)[1]
    batch_major = crafted_batch(wrong_group=0)
    weighted_major = algo.loss(FirstTwo(), batch_major)[1]
    assert weighted["ce"] == pytest.approx(weighted_major["ce"])  # same plain loss
    assert weighted["weighted_ce"] > 5 * weighted_major["weighted_ce"]  # minority errors count more


class LookupModel(nn.Module):
    """Answers ``answer[i]`` for the training image i it is shown (found by exact image match)."""

    def __init__(self, images: torch.Tensor, answer: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images.flatten(1))
        self.register_buffer("answer", answer)

    def forward(self, x):
        nearest = torch.cdist(x.flatten(1), self.images).argmin(1)
        return nn.functional.one_hot(self.answer[nearest], 2).float() * 5


def test_jtt_error_set_and_upweighting_sign(shapes):
    train = shapes["train"]
    wrong = torch.zeros(len(train), dtype=torch.bool)
    wrong[train.group == 2] = True  # the model gets one minority group wrong
    wrong[:3] = True
    images = next(iterate_batches(train, len(train), shapes.mean, shapes.std)).x
    model = LookupModel(images, torch.where(wrong, 1 - train.y, train.y))
    errors = error_set(model, shapes, device="cpu")
    assert torch.equal(errors, wrong)

    algo = JTT(shapes, lambda_up=6.0)
    algo.errors = errors
    w = algo.sample_weights()
    assert torch.all(w[errors] == 6.0) and torch.all(w[~errors] == 1.0)  # errors get MORE weight
    gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([b.index for b in iterate_batches(train, 50, shapes.mean, shapes.std,
                                                        sample_weights=w, generator=gen)])
    share = errors[drawn].float().mean().item()
    expected = 6 * errors.sum().item() / (6 * errors.sum().item() + (~errors).sum().item())
    assert share == pytest.approx(expected, abs=0.12) and share > 3 * errors.float().mean().item()

    # loss mode: the same batch costs more when its wrong examples are in the error set
    loss_algo = JTT(shapes, lambda_up=6.0, mode="loss")
    loss_algo.errors = errors
    loss_algo.setup(model, torch.device("cpu"))
    batch = next(iterate_batches(train, len(train), shapes.mean, shapes.std))
    up = loss_algo.loss(model, batch)[0]
    loss_algo.errors = ~errors
    loss_algo.setup(model, torch.device("cpu"))
    down = loss_algo.loss(model, batch)[0]
    assert up > 2 * down
    assert torch.equal(upweighted(errors, 2.0)[errors], torch.full((int(errors.sum()),), 2.0, dtype=torch.double))


def test_jtt_needs_an_identification_run(shapes):
    with pytest.raises(ConfigError, match="identification_run"):
        JTT(shapes).setup(FirstTwo(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="lambda_up"):
        JTT(shapes, lambda_up=0.5)


def planted_features(n_per_group, seed):
    """Feature 0 = core (follows y), feature 1 = spurious (follows a, with less noise), 6 noise dims."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(4), n_per_group)
    y, a = groups // 2, groups % 2
    x = rng.normal(0, 1, (len(groups), 8))
    x[:, 0] += 2.0 * (2 * y - 1)
    x[:, 1] += 4.0 * (2 * a - 1)
    return x, y, groups


def test_dfr_recovers_the_planted_core_feature():
    x, y, g = planted_features([60, 15, 30, 45], seed=0)  # unbalanced "val"
    head = fit_dfr(x, y, g, n_classes=2, tune_draws=2, n_draws=5, seed=0)
    direction = head.weight[1] - head.weight[0]
    assert abs(direction[0]) > 5 * abs(direction[1])
    assert np.abs(direction[2:]).max() < abs(direction[0]) / 3
    x_test, y_test, g_test = planted_features([200] * 4, seed=1)
    correct = head.logits(x_test).argmax(1) == y_test
    assert min(correct[g_test == k].mean() for k in range(4)) > 0.85
    assert set(head.tuning) == {1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01}

    # a spurious-leaning fit (plain logistic regression on data where a predicts y) is worse
    from sklearn.linear_model import LogisticRegression

    xs, ys, gs = planted_features([300, 5, 5, 300], seed=2)
    plain = LogisticRegression().fit(xs, ys)
    plain_correct = plain.predict(x_test) == y_test
    assert min(plain_correct[g_test == k].mean() for k in range(4)) < 0.6


def test_dfr_refit_is_deterministic_for_a_seed():
    """Two fits of the same features and seed give the same head bit for bit (liblinear shuffled with an
    unset random_state, so refits differed by ~1e-5 in the weights and up to 0.013 in test WGA)."""
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 4, 400)
    y = groups // 2
    x = rng.normal(size=(400, 64)) + y[:, None] * 0.3 + (groups % 2)[:, None] * 0.5
    first, second = fit_dfr(x, y, groups, 2, seed=3), fit_dfr(x, y, groups, 2, seed=3)
    assert np.array_equal(first.weight, second.weight) and np.array_equal(first.bias, second.bias)
    three = rng.integers(0, 6, 300)
    x3 = rng.normal(size=(300, 16)) + (three // 2)[:, None]
    a, b = fit_dfr(x3, three // 2, three, 3, seed=0, n_draws=2), fit_dfr(x3, three // 2, three, 3, seed=0, n_draws=2)
    assert np.array_equal(a.weight, b.weight)


def test_balanced_draw_takes_the_smallest_group_count():
    g = np.array([0] * 10 + [1] * 3 + [2] * 7)
    idx = balanced_draw(g, np.random.default_rng(0))
    assert np.bincount(g[idx]).tolist() == [3, 3, 3] and len(set(idx)) == 9


def test_erm_rejects_unknown_algorithm_params():
    from spurmem.config import ConfigError
    from spurmem.data import load_dataset
    from spurmem.train.algorithms import ALGORITHMS

    ds = load_dataset("synthetic-shapes", n_train=40, n_val=8, n_test=8)
    with pytest.raises(ConfigError, match="unknown key 'eta'"):
        ALGORITHMS["erm"](ds, eta=0.1)
