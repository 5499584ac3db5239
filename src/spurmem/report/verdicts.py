"""The verdict on each claim of docs/method.md §5 and §6, read from what the stages wrote, whatever
the outcome.

Probes (§5.1, §5.2) and the memorisation scan (§5.3) judge their own claims and write the verdicts
next to their results; this module collects them. The framework claim (§6) is judged here from the
comparison: the framework's test worst-group accuracy against ERM and against the ``erm-continue``
control (same optimiser and budget), over seeds, with Welch's t-test; the best algorithm of the same
comparison is always named beside it. A comparison at the floor or ceiling of WGA, or without any
spread over seeds, is not testable: there is no difference a test could see.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from spurmem.memorization.examples import testability as examples_testability
from spurmem.probes.verdicts import fit_precondition
from spurmem.report import inputs
from spurmem.report.html import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTABLE, NOT_TESTED, STATUSES, SUPPORTED, Verdict
from spurmem.report.runs import Run

CLAIMS = {
    "sensitivity": "Sensitivity (docs/method.md §5.1): a few top-ranked units hurt minority groups far more than "
    "majority groups and than random units, and the edit reads as memorisation",
    "specificity": "Group specificity (docs/method.md §5.2): units from a group's hardest examples hurt that group most",
    "localisation": "Localisation (docs/method.md §5.3): a few units carry most of the memorisation",
    "framework": "Framework (docs/method.md §6): removing spurious memorisation raises test worst-group accuracy "
    "over ERM and the erm-continue control",
}
FRAMEWORK, CONTROL, ERM = "spurmem", "erm-continue", "erm"
WGA = "test/worst_group_accuracy"
ALPHA = 0.05
FLOOR, CEILING = 0.02, 0.98  # mean test WGA of the framework and the control both at or beyond: not testable


def _welch(a: np.ndarray, b: np.ndarray) -> float:
    """One-sided p-value of mean(a) > mean(b) (Welch); nan with fewer than two values on a side or
    without any spread (the t statistic is undefined)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.std(a, ddof=1) == 0 and np.std(b, ddof=1) == 0:
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)


def _pm(values: np.ndarray) -> str:
    sd = f" ± {100 * values.std(ddof=1):.1f}" if len(values) > 1 else ""
    return f"{100 * values.mean():.1f}{sd}"


def _untestable(wga: dict[str, np.ndarray]) -> str | None:
    """Why the framework's WGA cannot be compared with the control's, or None."""
    both = np.concatenate([wga[FRAMEWORK], wga[CONTROL]])
    if wga[FRAMEWORK].mean() <= FLOOR and wga[CONTROL].mean() <= FLOOR:
        return f"floor effect: mean test WGA of {FRAMEWORK} and {CONTROL} both <= {100 * FLOOR:g}%"
    if wga[FRAMEWORK].mean() >= CEILING and wga[CONTROL].mean() >= CEILING:
        return f"ceiling effect: mean test WGA of {FRAMEWORK} and {CONTROL} both >= {100 * CEILING:g}%"
    if len(both) > 1 and np.ptp(both) == 0:
        return f"every seed of {FRAMEWORK} and {CONTROL} has the same test WGA ({100 * both[0]:.1f}%): zero variance"
    return None


def framework_verdict(comparisons: list[inputs.Comparison]) -> Verdict:
    """§6 from the first comparison holding the framework: supported when its mean test WGA beats
    both ERM and erm-continue with one-sided Welch p < 0.05; inconclusive with fewer than two seeds
    or no spread on one side; not testable at the floor/ceiling or with zero variance overall. The
    outcome names the best algorithm of the comparison when it is not the framework."""
    cmp = next((c for c in comparisons if FRAMEWORK in set(c.per_run.get("algorithm", []))), None)
    if cmp is None:
        return Verdict(CLAIMS["framework"], NOT_TESTED, "", source="run `spurmem compare` with algorithms "
                       "spurmem, erm-continue and erm")
    per_run = cmp.per_run
    wga = {a: per_run.loc[per_run["algorithm"] == a, WGA].dropna().to_numpy(dtype=float)
           for a in dict.fromkeys([FRAMEWORK, CONTROL, ERM, *per_run["algorithm"]])}
    wga = {a: v for a, v in wga.items() if len(v) or a in (FRAMEWORK, CONTROL, ERM)}
    others = [a for a in (ERM, CONTROL) if len(wga[a])]
    parts = [f"test WGA (%, mean ± sd over seeds): {FRAMEWORK} {_pm(wga[FRAMEWORK])}"]
    pvalues = {}
    for a in others:
        diff = 100 * (wga[FRAMEWORK].mean() - wga[a].mean())
        pvalues[a] = _welch(wga[FRAMEWORK], wga[a])
        p = "" if math.isnan(pvalues[a]) else f", one-sided Welch p = {pvalues[a]:.3f}"
        parts.append(f"vs {a} {_pm(wga[a])}: {diff:+.1f} points{p}")
    means = {a: float(v.mean()) for a, v in wga.items() if len(v)}
    best = max(means, key=means.get)
    best_note = ""
    if best != FRAMEWORK:
        best_note = (f"best in this comparison: {best} {_pm(wga[best])}, "
                     f"{100 * (means[best] - means[FRAMEWORK]):.1f} points above {FRAMEWORK}")
        parts.append(best_note)
    statistic = "; ".join(parts) + f" (n = {len(wga[FRAMEWORK])} seed(s); selection: {cmp.selection_rule})"
    source = str(cmp.path / inputs.COMPARISON_FILE)

    def verdict(status: str, outcome: str) -> Verdict:
        return Verdict(CLAIMS["framework"], status, statistic, "; ".join(x for x in (outcome, best_note) if x), source)

    if CONTROL not in others:
        return verdict(INCONCLUSIVE, "no erm-continue control in the comparison")
    if (why := _untestable(wga)) is not None:
        return verdict(NOT_TESTABLE, why)
    if min(len(wga[FRAMEWORK]), *(len(wga[a]) for a in others)) < 2:
        return verdict(INCONCLUSIVE, "fewer than two seeds per algorithm: no test of the difference is possible")
    if any(math.isnan(p) for p in pvalues.values()):
        return verdict(INCONCLUSIVE, "no spread over seeds on either side: no test of the difference is possible")
    beats = all(wga[FRAMEWORK].mean() > wga[a].mean() and pvalues[a] < ALPHA for a in others)
    outcome = ("test WGA higher than ERM and the control" if beats else
               "not better than the plain fine-tuning control" if wga[FRAMEWORK].mean() <= wga[CONTROL].mean()
               else "difference within seed-to-seed variation")
    return verdict(SUPPORTED if beats else NOT_SUPPORTED, outcome)


PROBE_CLAIMS = {"sensitivity": "5.1 sensitivity", "specificity": "5.2 group specificity"}


def probe_verdicts(runs: list[Run]) -> list[Verdict]:
    """§5.1 and §5.2 as the probe of the first ERM run (else the first probed run) judged them (its
    status as written: supported, not supported, not testable; older probes wrote only supported or
    not); the outcome lists how many settings the probe classed as each kind of effect."""
    ordered = sorted(runs, key=lambda r: (r.algorithm != "erm", str(r.path)))
    probe = next((p for r in ordered for p in inputs.find_probes(r)), None)
    out = []
    for key, name in PROBE_CLAIMS.items():
        claim = next((c for c in probe.claims if c.get("claim") == name), None) if probe else None
        if claim is None:
            out.append(Verdict(CLAIMS[key], NOT_TESTED, "", source="run `spurmem probe RUN_DIR`"))
            continue
        counts = ", ".join(f"{k}: {v}" for k, v in probe.verdict_counts.items() if v)
        status = claim.get("verdict")
        if status not in STATUSES:
            status = SUPPORTED if claim.get("supported") else NOT_SUPPORTED
        out.append(Verdict(
            CLAIMS[key], status, str(claim.get("statistic", "")),
            outcome=f"settings x minority groups: {counts}" if counts else "",
            source=f"{probe.path / inputs.PROBE_VERDICTS} ({probe.run.name}, epoch {probe.epoch})",
        ))
    return out


def localisation_verdict(runs: list[Run]) -> Verdict:
    """§5.3 from the unit scan of the first ERM run (else the first scanned run): supported when the top 1%
    and the top 10% of units each hold more of the positive score than the sign-flip null's 95% bound and
    more than twice their uniform share (the scan's own rule, re-checked here from its numbers); not
    testable when the model did not fit its minority training examples well above held-out accuracy
    (:func:`~spurmem.probes.verdicts.fit_precondition` on the pooled minority accuracies)."""
    ordered = sorted(runs, key=lambda r: (r.algorithm != "erm", str(r.path)))
    mem = next((m for r in ordered if (m := inputs.find_memorization(r)) is not None and m.units_summary), None)
    if mem is None:
        return Verdict(CLAIMS["localisation"], NOT_TESTED, "", source="run `spurmem memorization units RUN_DIR`")
    s = mem.units_summary
    source = f"{mem.path / 'units_summary.json'} ({mem.run.name}, epoch {s.get('epoch', '?')})"
    fit = {"pooled minority": (s["base_minority_train_acc"], s["base_minority_heldout_acc"])} \
        if "base_minority_train_acc" in s and "base_minority_heldout_acc" in s else {}
    if fit and (why := fit_precondition(fit)) is not None:
        return Verdict(CLAIMS["localisation"], NOT_TESTABLE, s.get("statement", ""), why, source)
    if s.get("total_positive_score", 0) <= 0:
        return Verdict(CLAIMS["localisation"], NOT_SUPPORTED, s.get("statement", "no positive score"),
                       "no single unit holds memorisation", source)
    checks = []
    for key in ("top_1pct", "top_10pct"):
        obs, ref = s["top_shares"][key], s["null"][key]
        checks.append(obs > ref["null_hi"] and obs > 2 * ref["uniform"])
    ex = mem.examples_summary.get("flips") if mem.examples_summary else None
    outcome = "concentrated beyond the null" if all(checks) else "not concentrated beyond the null"
    flips = ex.get("all", {}) if isinstance(ex, dict) else {}
    models = mem.examples_summary.get("models") if mem.examples_summary else None
    example_note = examples_testability(int(models)) if isinstance(models, (int, float)) else None
    if example_note is not None:
        outcome += f"; example-level memorisation {example_note}"
    elif all(isinstance(flips.get(k), (int, float)) and math.isfinite(flips[k])
             for k in ("mem_flipped", "mem_not_flipped")):
        outcome += (f"; zeroing the top units flips {flips.get('flipped', '?')} training examples of mean "
                    f"example-level memorisation {flips['mem_flipped']:.2f}, vs {flips['mem_not_flipped']:.2f} for "
                    "the examples that do not flip")
    return Verdict(CLAIMS["localisation"], SUPPORTED if all(checks) else NOT_SUPPORTED, s.get("statement", ""),
                   outcome, source)


def claim_verdicts(paths: list[str | Path], runs: list[Run]) -> list[Verdict]:
    return [
        *probe_verdicts(runs),
        localisation_verdict(runs),
        framework_verdict(inputs.find_comparisons(paths)),
    ]
