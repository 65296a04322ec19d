"""How a judge measures whether a set replaces the data, not how fast it trains: pure functions.

A judge trained for a short budget ranks the sets that train fastest: a tiny set peaks early
and then overfits, while the full data only wins once its judge converges. So every judge run
records a curve, ``[{step, val_psnr, test: {name: {psnr, ssim}}}]``, scored every few steps on
a validation split cut from the *training* photos, and the bench reports two checkpoints:

- the final budget (``eval.json``), and
- the best-validation checkpoint (``best.json``), chosen on validation PSNR alone
  (``best_point``), never on a test number;

and checks that the budget is long enough for the full-data judge (``convergence``: doubling
the steps gains less than ``threshold`` dB on validation).

Scores (``scores``), per (scale, judge) and paired by judge seed: the difference to the
equal-budget baselines (downscaled, random = IOR, coreset), the gap to the full data
(HLR = full - set), and the share of the full - downscaled gap a set closes
(``gap_closed_share``), each next to the seed spread, with a verdict at ``margin`` x spread.
Records are ``{set, judge, scale, seed, test_set, psnr, ...}``, one per run and test set; a
run's value is its mean over test sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["best_val_index", "best_point", "eval_steps", "value_at", "convergence", "mean_curve",
           "per_seed", "paired_deltas", "gap_closed_share", "scores", "val_crop_plan"]


# ---- one run's curve ---------------------------------------------------------------------

def eval_steps(iterations: int, every: int) -> list[int]:
    """The steps a curve holds: every ``every`` steps, and the last step (``train_sr``'s callback)."""
    if iterations < 1 or every < 1:
        raise ValueError(f"iterations and eval_every must be positive, got {iterations}, {every}")
    return sorted({*range(every, iterations + 1, every), iterations})


def best_val_index(val: Sequence[float]) -> int:
    """Index of the highest validation value (the earliest on ties; NaN never wins)."""
    vals = [float(v) for v in val]
    finite = [i for i, v in enumerate(vals) if not math.isnan(v)]
    if not finite:
        raise ValueError("no finite validation value to choose a checkpoint by")
    return max(finite, key=lambda i: (vals[i], -i))


def best_point(points: Sequence[dict], key: str = "val_psnr") -> dict:
    """The curve point with the best validation score: only ``key`` is read to choose it."""
    ordered = sorted(points, key=lambda p: p["step"])
    return ordered[best_val_index([p[key] for p in ordered])]


def value_at(steps: Sequence[int], values: Sequence[float], step: int) -> tuple[int, float] | None:
    """(recorded step, value) at the largest recorded step <= ``step``; None when there is none."""
    before = [(s, v) for s, v in zip(steps, values) if s <= step]
    return max(before, key=lambda sv: sv[0]) if before else None


def convergence(steps: Sequence[int], values: Sequence[float], budget: int, threshold: float = 0.05) -> dict:
    """Did doubling the steps still pay? ``gain = value(budget) - value(budget / 2) < threshold``.

    ``values`` is a validation curve (mean over seeds). When ``budget / 2`` is not a recorded
    step the largest recorded step below it is used, so the gain spans at least a doubling
    (never understated). ``converged`` is None when the curve cannot answer.
    """
    out = {"budget": budget, "half_step": None, "gain_db": None, "threshold": threshold, "converged": None}
    final = dict(zip(steps, values)).get(budget)
    half = value_at(steps, values, budget // 2)
    if final is None:
        return {**out, "note": f"no validation point at the budget (step {budget})"}
    if half is None:
        return {**out, "note": f"no validation point at or before step {budget // 2}; lower --eval-every"}
    gain = float(final - half[1])
    return {**out, "half_step": half[0], "gain_db": gain, "converged": bool(gain < threshold),
            "note": f"val PSNR-Y gained {gain:+.3f} dB from step {half[0]} to {budget}"}


def mean_curve(curves: Sequence[Sequence[dict]], key: str = "val_psnr",
               test_set: str | None = None) -> tuple[list[int], list[float]]:
    """Mean over runs (seeds) at the steps every run recorded; ``test_set`` reads the test PSNR."""
    def get(p: dict) -> float:
        return p[key] if test_set is None else p["test"][test_set]["psnr"]

    if not curves:
        return [], []
    common = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    by = [{p["step"]: get(p) for p in c} for c in curves]
    return common, [float(np.mean([b[s] for b in by])) for s in common]


# ---- scores over seeds -------------------------------------------------------------------

def per_seed(records: Sequence[dict], metric: str = "psnr") -> dict[tuple, dict[int, float]]:
    """{(scale, judge, set): {seed: mean of ``metric`` over the test sets}}."""
    raw: dict[tuple, dict[int, list[float]]] = {}
    for r in records:
        raw.setdefault((r["scale"], r["judge"], r["set"]), {}).setdefault(r["seed"], []).append(r[metric])
    return {k: {s: float(np.mean(v)) for s, v in by.items()} for k, by in raw.items()}


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _pair(a: dict[int, float], b: dict[int, float]) -> dict:
    """a - b paired by seed; spread = the larger of the two rows' seed std (NaN with one seed)."""
    seeds = sorted(set(a) & set(b))
    diff = [a[s] - b[s] for s in seeds]
    spread = max(_std([a[s] for s in seeds]), _std([b[s] for s in seeds])) if len(seeds) > 1 else math.nan
    return {"n": len(seeds), "delta_mean": float(np.mean(diff)) if diff else math.nan,
            "delta_std": None if len(diff) < 2 else _std(diff), "seed_spread": None if math.isnan(spread) else spread}


def verdict(delta: float, spread: float | None, ref: str, margin: float = 2.0) -> str:
    """'beats REF' / 'loses to REF' when |delta| > margin x spread, else 'within ...'; n/a with one seed."""
    if spread is None or math.isnan(delta):
        return "n/a (1 seed)"
    if delta > margin * spread:
        return f"beats {ref}"
    if delta < -margin * spread:
        return f"loses to {ref}"
    return f"within {margin:g}x spread of {ref}"


def paired_deltas(records: Sequence[dict], rows: Sequence[str], against: Sequence[str], metric: str = "psnr",
                  margin: float = 2.0) -> list[dict]:
    """Per (scale, judge): ``metric`` of row minus `against`, paired by seed, with the seed spread.

    ``above_spread``: yes when the mean difference exceeds the spread (1x); ``verdict``: the
    same at ``margin`` x spread, both ways.
    """
    by = per_seed(records, metric)
    out = []
    for scale, judge in sorted({(r["scale"], r["judge"]) for r in records if r["judge"] != "-"}):
        for row in rows:
            for ref in against:
                a, b = by.get((scale, judge, row)), by.get((scale, judge, ref))
                if not a or not b or row == ref or not set(a) & set(b):
                    continue
                p = _pair(a, b)
                above = ("n/a (1 seed)" if p["n"] < 2 else "yes" if p["delta_mean"] > p["seed_spread"] else "no")
                out.append({"scale": scale, "judge": judge, "set": row, "vs": ref, **p, "above_spread": above,
                            "verdict": verdict(p["delta_mean"], p["seed_spread"], ref, margin)})
    return out


def gap_closed_share(set_minus_down: float, full_minus_down: float, spread: float | None) -> tuple[float | None, str]:
    """(set - downscaled) / (full - downscaled), or None with the reason when it means nothing.

    Only defined when the full data beats the downscaled set by more than ``spread`` (the seed
    spread of that pair): otherwise there is no gap to close and the ratio is noise.
    """
    if spread is None:
        return None, "n/a (1 seed)"
    if not full_minus_down > spread:
        return None, f"n/a (full - downscaled {full_minus_down:+.3f} <= spread {spread:.3f})"
    share = set_minus_down / full_minus_down
    return float(share), f"{share:.0%}"


def scores(records: Sequence[dict], rows: Sequence[str], refs: Sequence[str] = ("downscaled", "random", "coreset"),
           full: str = "full", metric: str = "psnr", margin: float = 2.0) -> list[dict]:
    """One score row per (scale, judge, set): paired differences to ``refs`` and ``full``, the gap to
    full (HLR), the share of the full - downscaled gap closed, and a verdict list."""
    by = per_seed(records, metric)
    out = []
    for scale, judge in sorted({(r["scale"], r["judge"]) for r in records if r["judge"] != "-"}):
        f, d = by.get((scale, judge, full)), by.get((scale, judge, "downscaled"))
        fd = _pair(f, d) if f and d and set(f) & set(d) else None
        for row in rows:
            a = by.get((scale, judge, row))
            if not a:
                continue
            entry = {"scale": scale, "judge": judge, "set": row, "n": len(a), "vs": {}, "verdicts": []}
            for ref in [*refs, full]:
                b = by.get((scale, judge, ref))
                if ref == row or not b or not set(a) & set(b):
                    continue
                p = _pair(a, b)
                entry["vs"][ref] = p
                entry["verdicts"].append(verdict(p["delta_mean"], p["seed_spread"], ref, margin))
            if entry["verdicts"] and all(v.startswith("n/a") for v in entry["verdicts"]):
                entry["verdicts"] = ["n/a (1 seed)"]
            if full in entry["vs"]:
                g = entry["vs"][full]
                entry["gap_to_full"] = {**g, "delta_mean": -g["delta_mean"]}  # HLR = full - set
            if fd is not None and row not in (full, "downscaled") and "downscaled" in entry["vs"]:
                share, text = gap_closed_share(entry["vs"]["downscaled"]["delta_mean"], fd["delta_mean"],
                                               fd["seed_spread"])
                entry["gap_closed"], entry["gap_closed_text"] = share, text
            out.append(entry)
    return out


# ---- the validation split ----------------------------------------------------------------

def val_crop_plan(counts: Sequence[int], n: int, seed: int) -> list[tuple[int, float, float]]:
    """``n`` distinct (item index, top fraction, left fraction), drawn from ``seed`` alone.

    The validation crops of a bench: ``counts[c]`` items (training sub-images) belong to class
    (photo) ``c``, numbered class after class; the photos take turns in a seeded order, so
    ``n`` >= the number of photos covers every photo, and each turn picks an unused item of
    that photo; the fractions place the crop inside it. Independent of any judge seed, so
    every run is scored on the same pixels.
    """
    counts = [int(c) for c in counts]
    if n < 1 or sum(counts) < 1 or min(counts, default=0) < 0:
        raise ValueError(f"need at least one item and one crop, got counts {counts[:8]}, {n} crops")
    rng = np.random.default_rng([seed, 0x5EED])
    offsets = np.cumsum([0, *counts[:-1]])
    pools = [list(rng.permutation(c)) for c in counts]
    order = [int(c) for c in rng.permutation(len(counts)) if counts[c]]
    picks: list[int] = []
    while len(picks) < min(n, sum(counts)):
        for c in order:
            if pools[c] and len(picks) < n:
                picks.append(int(offsets[c] + pools[c].pop()))
    fracs = rng.random((len(picks), 2))
    return [(i, float(t), float(l)) for i, (t, l) in zip(picks, fracs)]
