"""The localisation search (docs/method.md §5, after Maini et al. 2023, adapted to groups).

Greedily ablate the candidate unit that most lowers the training accuracy of a *target* set of
examples (group g's training examples; ties broken by the larger summed loss), subject to two
constraints that each accuracy stays within ``epsilon`` of its value before the search:

* the same-class majority group's training accuracy (the class as a whole must survive), and
* group g's *validation* accuracy (the group's decision rule must survive: a unit whose removal
  also costs held-out accuracy carries a group feature, not memorised examples).

The search stops once the target accuracy has halved, after ``max_steps`` units, or when no
admissible unit is left. The control runs the same search with a random, same-size subset of the
same-class majority's training examples as the target (constraints: the rest of that majority's
training examples and its validation accuracy). ``constrained=False`` drops both constraints: that
variant finds group features and looks like localisation, so its result is labelled as such.

Every step evaluates every remaining candidate with :class:`~spurmem.probes.scan.ScanEngine`, on
the target examples only; the constraints are then checked lazily, best candidate first. A
constraint is checked batch by batch, its examples ordered by the unedited model's margin (the
likeliest to flip first), and a candidate is rejected as soon as it has lost more examples than the
constraint allows (the order changes when a candidate is rejected, never whether). The engine keeps
the prefix outputs of these fixed example sets across steps, so a step only recomputes the layers
at and after the units already ablated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from spurmem.data.schema import GroupDataset
from spurmem.probes.interventions import activation_means, get_intervention
from spurmem.probes.scan import PREFIX_CACHE_MB, ScanEngine
from spurmem.probes.units import Unit, enumerate_units
from spurmem.progress import Progress

UNCONSTRAINED_CAVEAT = (
    "unconstrained search: it cannot tell memorised examples from the group's decision rule "
    "(removing a group feature also lowers training accuracy); read it as an upper bound on localisation"
)


@dataclass
class SearchResult:
    """One greedy search. ``trajectory`` is tidy: one row per step x split x group (step 0 = no
    unit ablated); ``steps`` one row per step with the target and constraint accuracies."""

    target: str
    group: int
    constrained: bool
    epsilon: float
    max_steps: int
    intervention: str
    units: list[str]
    target_size: int
    target_acc_start: float
    target_acc_end: float
    halved: bool
    stop_reason: str
    steps: pd.DataFrame
    trajectory: pd.DataFrame
    step_seconds: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def units_needed(self) -> int | None:
        """Units ablated when the target accuracy first halved (None if it never did)."""
        return len(self.units) if self.halved else None


@dataclass
class LocalizeResult:
    """The search for group ``group``, its random-majority control and the verdict."""

    group: int
    group_name: str
    majority: int
    search: SearchResult
    control: SearchResult | None
    verdict: Any = None
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s, c = self.search, self.control
        out = {
            "group": self.group, "group_name": self.group_name, "same_class_majority": self.majority,
            "constrained": s.constrained, "epsilon": s.epsilon, "max_steps": s.max_steps,
            "intervention": s.intervention, "units": s.units, "units_needed": s.units_needed,
            "halved": s.halved, "stop_reason": s.stop_reason, "target_acc_start": s.target_acc_start,
            "target_acc_end": s.target_acc_end, "mean_step_seconds": float(np.mean(s.step_seconds)) if s.step_seconds else None,
            "note": s.note, "config": self.config,
        }
        if c is not None:
            out["control"] = {"units": c.units, "units_needed": c.units_needed, "halved": c.halved,
                              "stop_reason": c.stop_reason, "target_acc_start": c.target_acc_start,
                              "target_acc_end": c.target_acc_end}
        if self.verdict is not None:
            out["verdict"] = _as_dict(self.verdict)
        return out


def _as_dict(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def localize(
    model: nn.Module,
    dataset: GroupDataset,
    group: int,
    *,
    intervention: str = "mean-activation",
    epsilon: float = 0.05,
    max_steps: int = 25,
    constrained: bool = True,
    control: bool = True,
    candidates: Sequence[Unit | str] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    progress: bool = False,
    **params: Any,
) -> LocalizeResult:
    """Run the search for ``group`` (and its control) and classify the outcome.

    ``params`` go to the intervention (``sigma``/``seed``/``source``); ``mean-activation`` gets the
    training-set means of the candidate layers computed here unless ``means`` is passed.
    """
    if not 0 <= group < dataset.n_groups:
        raise ValueError(f"group {group} is not a group of {dataset.name!r} (0..{dataset.n_groups - 1})")
    get_intervention(intervention)
    units = [u if isinstance(u, Unit) else Unit.parse(u) for u in (candidates or enumerate_units(model))]
    if intervention == "mean-activation" and "means" not in params:
        params["means"] = activation_means(model, dataset, units, device=device)
    engine = ScanEngine(model, dataset, batch_size=batch_size, device=device, cache_mb=PREFIX_CACHE_MB)
    train_g = dataset["train"].group.numpy()
    val_g = dataset["val"].group.numpy()
    majority = dataset.same_class_majority(group)
    target = np.flatnonzero(train_g == group)
    if len(target) == 0:
        raise ValueError(f"group {group} has no training examples")
    major_train = np.flatnonzero(train_g == majority)
    ordered_major = _likeliest_to_flip(engine, "train", major_train) if constrained else major_train
    constraints = [("train", ordered_major, f"train acc of majority group {majority}"),
                   ("val", _likeliest_to_flip(engine, "val", np.flatnonzero(val_g == group)), f"val acc of group {group}")]
    start = _snapshot(engine, intervention, params, [], 0, None)  # step 0 of the search and of the control
    search = _greedy(engine, units, intervention, params, f"group {group}", group, target,
                     constraints if constrained else [], epsilon, max_steps, progress, start)
    if not constrained:
        search.note = UNCONSTRAINED_CAVEAT
    ctrl = None
    if control:
        rng = np.random.default_rng(seed)
        if len(major_train) <= len(target):
            raise ValueError("the same-class majority is not larger than the group: no random control possible")
        subset = np.sort(rng.choice(major_train, len(target), replace=False))
        rest = np.setdiff1d(major_train, subset)
        ctrl_constraints = [("train", ordered_major[np.isin(ordered_major, rest)],
                             f"train acc of the rest of majority group {majority}"),
                            ("val", _likeliest_to_flip(engine, "val", np.flatnonzero(val_g == majority))
                             if constrained else [], f"val acc of majority group {majority}")]
        ctrl = _greedy(engine, units, intervention, params, f"random {len(target)} of group {majority}", majority,
                       subset, ctrl_constraints if constrained else [], epsilon, max_steps, progress, start)
    result = LocalizeResult(group=group, group_name=dataset.group_names[group], majority=majority, search=search,
                            control=ctrl, config={"intervention": intervention, "epsilon": epsilon,
                                                  "max_steps": max_steps, "constrained": constrained,
                                                  "seed": seed, "candidates": len(units),
                                                  "control": "random same-size subset of the same-class majority"})
    result.verdict = classify_search(result, dataset)
    return result


def _greedy(engine: ScanEngine, units: list[Unit], intervention: str, params: dict, target_name: str, group: int,
            target: np.ndarray, constraints: list, epsilon: float, max_steps: int, progress: bool,
            start_snapshot: pd.DataFrame) -> SearchResult:
    chosen: list[Unit] = []
    remaining = list(units)

    def acc_of(split, idx, base, cand=()):
        res = engine.scan(list(cand), intervention, split, base_units=base, indices=idx, baseline=not cand, **params)
        total = res.count.sum()
        return res.base_correct.sum() / total, res.correct.sum(axis=1) / total, res.loss_sum.sum(axis=1)

    def counts(split, idx, base, cand):  # correct predictions per candidate
        res = engine.scan(list(cand), intervention, split, base_units=base, indices=idx, baseline=False, **params)
        return res.correct.sum(axis=1)


    start_acc = acc_of("train", target, [])[0]
    limits = [(split, idx, what, acc_of(split, idx, [])[0] - epsilon) for split, idx, what in constraints]
    trajectory = [start_snapshot.copy()]
    steps = [{"step": 0, "unit": None, "target_acc": start_acc,
              **{what: acc_of(split, idx, [])[0] for split, idx, what, _ in limits}, "seconds": 0.0}]
    seconds: list[float] = []
    current, reason = start_acc, "max_steps"
    bar = Progress(f"localize {target_name}", max_steps, unit="steps", enabled=progress,
                   cost=f"up to {max_steps} steps, each scanning up to {len(units):,} candidates x {len(target):,} "
                        f"examples, then checking {len(constraints)} constraints")
    for step in range(1, max_steps + 1):
        if start_acc == 0:
            reason = "target accuracy is already 0: nothing to remove"
            break
        if current <= start_acc / 2:
            break
        if not remaining:
            reason = "no candidates left"
            break
        t = time.perf_counter()
        _, accs, losses = acc_of("train", target, chosen, remaining)
        order = np.lexsort((-losses, accs))  # lowest accuracy first, then the largest loss
        pick, checks = _first_admissible(remaining, order, chosen, limits, counts, engine.batch_size)
        seconds.append(time.perf_counter() - t)
        if pick is None:
            reason = "no admissible unit (every remaining unit breaks a constraint)"
            break
        unit = remaining.pop(pick)
        chosen.append(unit)
        current = float(accs[pick])
        steps.append({"step": step, "unit": unit.id, "target_acc": current, **checks, "seconds": seconds[-1]})
        trajectory.append(_snapshot(engine, intervention, params, chosen, step, unit.id))
        bar.advance(1, info=f"step {step}: {unit.id} -> target acc {current:.3f}")
        bar.log(f"step {step}: {unit.id} -> target acc {current:.3f}")
    bar.close()
    halved = bool(start_acc > 0 and current <= start_acc / 2)
    if halved:
        reason = "target accuracy halved"
    return SearchResult(
        target=target_name, group=group, constrained=bool(constraints), epsilon=epsilon, max_steps=max_steps,
        intervention=intervention, units=[u.id for u in chosen], target_size=len(target),
        target_acc_start=float(start_acc), target_acc_end=float(current), halved=halved, stop_reason=reason,
        steps=pd.DataFrame(steps), trajectory=pd.concat(trajectory, ignore_index=True), step_seconds=seconds,
    )


def _first_admissible(remaining, order, chosen, limits, counts, slice_size: int, group: int = 8):
    """The best-ranked candidate that keeps every constrained accuracy above its limit.

    Candidates are checked in rank order, ``group`` at a time (the engine stacks about that many
    variants per pass anyway); within a group the constraint with the fewest examples is checked
    first and the others only on its survivors, the last (largest) one candidate by candidate, since
    the first survivor that passes it is the pick. A constraint's examples are scanned one slice at a
    time and a candidate is dropped once even a perfect rest could not lift it to the limit, so only
    the pick sees every example."""
    if not limits:
        return int(order[0]), {}
    limits = sorted(limits, key=lambda lim: len(lim[1]))
    for lo in range(0, len(order), group):
        alive = [int(i) for i in order[lo:lo + group]]
        values: dict[str, dict[int, float]] = {}
        for j, (split, idx, what, floor) in enumerate(limits):
            batches = [[i] for i in alive] if j == len(limits) - 1 else [alive]
            values[what], alive = {}, []
            for batch in batches:
                passed = _passing(counts, slice_size, split, idx, floor, chosen, remaining, batch)
                values[what].update(passed)
                alive += list(passed)
                if passed and j == len(limits) - 1:
                    break
            if not alive:
                break
        if alive:
            best = alive[0]
            return best, {what: v[best] for what, v in values.items()}
    return None, {}


def _passing(counts, slice_size, split, idx, floor, chosen, remaining, alive) -> dict[int, float]:
    """``{candidate: accuracy}`` of the candidates in ``alive`` whose accuracy on ``idx`` stays at or
    above ``floor``, scanned one slice at a time and dropped once they cannot make it."""
    n, seen, correct = len(idx), 0, dict.fromkeys(alive, 0)
    if n == 0:
        return {}  # an accuracy over no examples is undefined: nothing can be shown to pass
    for lo in range(0, n, slice_size):
        part = idx[lo:lo + slice_size]
        for i, c in zip(alive, counts(split, part, chosen, [remaining[i] for i in alive]).tolist()):
            correct[i] += c
        seen += len(part)
        alive = [i for i in alive if (correct[i] + n - seen) / n >= floor - 1e-12]
        if not alive:
            break
    return {i: correct[i] / n for i in alive}


def _likeliest_to_flip(engine: ScanEngine, split: str, idx: np.ndarray) -> np.ndarray:
    """``idx`` ordered by the unedited model's logit margin, smallest first (a constraint's
    examples in this order reject a harmful candidate after few slices)."""
    from spurmem.metrics import predict

    if len(idx) == 0:
        return idx
    with torch.no_grad():
        pred = predict(engine.model, engine.dataset, split, engine.batch_size, engine.device,
                       indices=torch.as_tensor(idx, dtype=torch.long))
    logits = pred.logits.astype(np.float64)
    rows = np.arange(len(idx))
    true = logits[rows, pred.y]
    logits[rows, pred.y] = -np.inf
    return idx[np.argsort(true - logits.max(axis=1), kind="stable")]


def _snapshot(engine: ScanEngine, intervention, params, chosen, step, unit) -> pd.DataFrame:
    """Accuracy and mean logit margin of every group on every split with ``chosen`` ablated."""
    rows = []
    for split in engine.dataset.splits:
        res = engine.scan([], intervention, split, base_units=chosen, **params)
        for g, name in enumerate(res.group_names):
            n = int(res.count[g])
            rows.append({"step": step, "unit": unit, "split": split, "group": g, "group_name": name,
                         "correct": int(res.base_correct[g]), "count": n,
                         "accuracy": res.base_correct[g] / n if n else float("nan"),
                         "mean_margin": res.base_margin_sum[g] / n if n else float("nan")})
    return pd.DataFrame(rows)


def classify_search(result: LocalizeResult, dataset: GroupDataset) -> dict[str, Any]:
    """The verdict of a search through the probes' pure classifier (:func:`~spurmem.probes.verdicts.classify`).

    Train and held-out accuracies are group g's on the training split and on the test split (val is
    held within epsilon by the search itself, so it cannot show a held-out drop; val when there is
    no test split); the majority is g's same-class majority on the training split; every other
    group enters with its train and held-out accuracies, as in the probes. The effect is
    beyond the control when g's relative training drop exceeds the control target's relative drop
    after the same number of units (the control may stop earlier: then its last step counts).
    """
    from spurmem.probes.verdicts import GroupChange, classify, relative_drop

    s = result.search
    traj = s.trajectory
    last = int(traj["step"].max())

    def value(split, g, step, column="accuracy"):
        row = traj[(traj.split == split) & (traj.group == g) & (traj.step == step)]
        return float(row[column].iloc[0]) if len(row) else float("nan")

    heldout = "test" if "test" in dataset.splits else "val"
    g, m = result.group, result.majority
    beyond = None
    if result.control is not None:
        c = result.control
        steps = c.steps["target_acc"].tolist()
        control_share = relative_drop(steps[0], steps[min(last, len(steps) - 1)])
        beyond = relative_drop(s.target_acc_start, s.target_acc_end) > control_share
    others = [GroupChange(dataset.group_names[h], value("train", h, 0), value("train", h, last),
                          value(heldout, h, 0), value(heldout, h, last)) for h in range(dataset.n_groups) if h != g]
    verdict = classify(
        value("train", g, 0), value("train", g, last), value(heldout, g, 0), value(heldout, g, last),
        value("train", m, 0), value("train", m, last), others=others, beyond_control=beyond,
        margin_change=value("train", g, last, "mean_margin") - value("train", g, 0, "mean_margin"),
        majority_margin_change=value("train", m, last, "mean_margin") - value("train", m, 0, "mean_margin"),
    ).to_dict()
    verdict["statistics"].update({"heldout_split": heldout, "units": len(s.units)})
    if not s.constrained:
        verdict["reason"] += f" [{UNCONSTRAINED_CAVEAT}]"
    return verdict
