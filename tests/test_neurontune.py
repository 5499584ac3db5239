"""NeuronTune's identification on features where one unit carries the spurious cue (no model needed)."""

import numpy as np
import pytest

from spurmem.config import ConfigError
from spurmem.train.algorithms.neurontune import NeuronTuneParams, biased_units, fit_neurontune, unit_scores
from spurmem.train.algorithms.params import parse_params


def spurious_features(n, rho, rng):
    """Unit 0 = the core feature (class + noise), unit 1 = the attribute (the spurious cue), units 2-7 noise;
    the attribute agrees with the class on a share ``rho`` of examples."""
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < rho, y, 1 - y)
    f = rng.normal(0, 0.3, (n, 8))
    f[:, 0] += y
    f[:, 1] = a + rng.normal(0, 0.1, n)
    return f, y, 2 * y + a


def worst_group(logits, y, g):
    ok = logits.argmax(1) == y
    return min(ok[g == k].mean() for k in np.unique(g))


def test_the_spurious_unit_is_found_and_suppressed():
    rng = np.random.default_rng(0)
    val, val_y, _ = spurious_features(2000, 0.8, rng)
    test, test_y, test_g = spurious_features(4000, 0.5, rng)
    # an ERM-like head that leans on the spurious unit (class 1 logit 3*u1 + u0, centred)
    weight = np.array([[-0.5, -1.5, 0, 0, 0, 0, 0, 0], [0.5, 1.5, 0, 0, 0, 0, 0, 0]])
    bias = np.array([1.0, -1.0])
    pred = (val @ weight.T + bias).argmax(1)
    scores = unit_scores(val, val_y, pred)
    assert int(np.argmax(scores)) == 1 and scores[1] > 2 and scores[0] < 1 and scores[2:].max() < 1
    assert list(biased_units(scores, threshold=1.0, max_fraction=0.5)) == [1]
    assert len(biased_units(scores, threshold=-np.inf, max_fraction=0.25)) == 2  # the cap holds

    p = NeuronTuneParams(threshold=1.0, n_draws=3)
    result = fit_neurontune(val, val_y, weight, bias, val, val_y, 2, p)
    assert result.suppressed == [1]
    assert np.all(result.head.weight[:, 1] == 0) and np.any(result.head.weight[:, 0] != 0)
    before = worst_group(test @ weight.T + bias, test_y, test_g)
    after = worst_group(result.head.logits(test), test_y, test_g)
    assert before < 0.5 and after > before + 0.3


def test_no_errors_means_nothing_is_suppressed():
    rng = np.random.default_rng(1)
    f, y, _ = spurious_features(400, 0.8, rng)
    f[:, 0] = y  # a noiseless core unit: the head below makes no error
    weight, bias = np.array([[-20.0, 0, 0, 0, 0, 0, 0, 0], [20.0, 0, 0, 0, 0, 0, 0, 0]]), np.array([10.0, -10.0])
    assert np.all(np.isneginf(unit_scores(f, y, (f @ weight.T + bias).argmax(1))))
    result = fit_neurontune(f, y, weight, bias, f, y, 2, NeuronTuneParams(n_draws=2, rounds=3))
    assert result.suppressed == [] and len(result.rounds) == 1


def test_params_are_typed():
    with pytest.raises(ConfigError, match="did you mean 'threshold'"):
        parse_params(NeuronTuneParams, {"treshold": 1.0}, "neurontune")
    with pytest.raises(ConfigError, match="max_fraction"):
        parse_params(NeuronTuneParams, {"max_fraction": 0.0}, "neurontune")
