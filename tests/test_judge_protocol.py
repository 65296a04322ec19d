"""The judge protocol's pure functions: checkpoint choice, convergence rule, paired scores."""

import math

import numpy as np
import pytest

from hf_srdistill.judge_protocol import (best_point, best_val_index, convergence, eval_steps, gap_closed_share,
                                         mean_curve, paired_deltas, per_seed, scores, val_crop_plan, verdict)


def rec(name, seed, psnr, test_set="a", scale=2, judge="srcnn"):
    return {"set": name, "judge": judge, "scale": scale, "seed": seed, "test_set": test_set, "psnr": psnr}


# ---- checkpoint choice ---------------------------------------------------------------------

class Poison:
    """A test number: any use of it (compare, convert, read) fails the test."""

    def __getattr__(self, name):
        raise AssertionError("best-val selection looked at a test number")

    def __lt__(self, other):
        raise AssertionError("best-val selection compared a test number")

    __gt__ = __le__ = __ge__ = __lt__

    def __float__(self):
        raise AssertionError("best-val selection read a test number")

    def __getitem__(self, key):
        raise AssertionError("best-val selection read a test number")


def test_best_point_chooses_on_validation_only():
    points = [{"step": s, "val_psnr": v, "test": Poison()} for s, v in [(30, 27.0), (10, 26.0), (20, 27.5)]]
    assert best_point(points)["step"] == 20


def test_best_point_ignores_a_better_test_score():
    # validation peaks at step 10 while the test keeps rising: the test must not move the choice
    points = [{"step": 10, "val_psnr": 28.0, "test": {"t": {"psnr": 25.0}}},
              {"step": 20, "val_psnr": 27.9, "test": {"t": {"psnr": 26.0}}}]
    assert best_point(points)["step"] == 10


def test_best_val_index_ties_and_nan():
    assert best_val_index([1.0, 3.0, 3.0, 2.0]) == 1  # the earliest of equal scores
    assert best_val_index([float("nan"), 1.0, float("nan")]) == 1
    with pytest.raises(ValueError):
        best_val_index([float("nan")])


def test_eval_steps_include_the_last_step():
    assert eval_steps(10, 4) == [4, 8, 10]
    assert eval_steps(10, 5) == [5, 10]
    assert eval_steps(3, 10) == [3]


# ---- convergence -----------------------------------------------------------------------------

def test_convergence_rule():
    steps = [250, 500, 750, 1000]
    ok = convergence(steps, [30.0, 30.50, 30.53, 30.54], budget=1000, threshold=0.05)
    assert ok["converged"] is True and ok["half_step"] == 500 and ok["gain_db"] == pytest.approx(0.04)
    short = convergence(steps, [30.0, 30.50, 30.53, 30.56], budget=1000, threshold=0.05)
    assert short["converged"] is False and short["gain_db"] == pytest.approx(0.06)
    # an overfitting curve (it falls) has converged: more steps do not help
    assert convergence(steps, [31.0, 30.8, 30.6, 30.4], 1000)["converged"] is True


def test_convergence_off_grid_and_missing_points():
    # T/2 = 500 is not recorded: the last point before it (400) is used, so the gain spans > 2x
    r = convergence([400, 800, 1000], [29.0, 29.5, 29.6], budget=1000)
    assert r["half_step"] == 400 and r["gain_db"] == pytest.approx(0.6) and r["converged"] is False
    assert convergence([600, 1000], [1.0, 1.0], budget=1000)["converged"] is None  # nothing at or before 500
    assert convergence([250, 500], [1.0, 1.0], budget=1000)["converged"] is None  # nothing at the budget


def test_mean_curve_over_common_steps():
    a = [{"step": 1, "val_psnr": 1.0, "test": {"t": {"psnr": 5.0}}},
         {"step": 2, "val_psnr": 2.0, "test": {"t": {"psnr": 6.0}}}]
    b = [{"step": 2, "val_psnr": 4.0, "test": {"t": {"psnr": 8.0}}}]
    assert mean_curve([a, b]) == ([2], [3.0])
    assert mean_curve([a, b], test_set="t") == ([2], [7.0])


# ---- paired scores ----------------------------------------------------------------------------

def three_seeds(name, values, **kw):
    return [rec(name, s, v, **kw) for s, v in enumerate(values)]


def test_paired_deltas_known_numbers():
    records = three_seeds("distilled", [29.8, 30.0, 30.2]) + three_seeds("downscaled", [29.0, 29.4, 29.8])
    (d,) = paired_deltas(records, ["distilled"], ["downscaled"])
    assert d["n"] == 3 and d["delta_mean"] == pytest.approx(0.6)  # diffs 0.8, 0.6, 0.4
    assert d["delta_std"] == pytest.approx(0.2)
    assert d["seed_spread"] == pytest.approx(0.4)  # max(std 0.2, std 0.4)
    # beyond 1x spread (the old "Δ > spread" column) but within 2x: no verdict
    assert d["above_spread"] == "yes" and d["verdict"] == "within 2x spread of downscaled"
    records = three_seeds("distilled", [31.0, 31.2, 31.4]) + three_seeds("downscaled", [29.0, 29.4, 29.8])
    assert paired_deltas(records, ["distilled"], ["downscaled"])[0]["verdict"] == "beats downscaled"
    assert paired_deltas(records, ["downscaled"], ["distilled"])[0]["verdict"] == "loses to distilled"


def test_paired_deltas_average_test_sets_and_pair_by_seed():
    records = [rec("x", 0, 30.0, "a"), rec("x", 0, 32.0, "b"), rec("x", 1, 20.0, "a"),
               rec("y", 0, 30.0, "a"), rec("y", 0, 30.0, "b")]
    assert per_seed(records)[(2, "srcnn", "x")] == {0: 31.0, 1: 20.0}
    (d,) = paired_deltas(records, ["x"], ["y"])  # seed 1 has no partner: left out
    assert d["n"] == 1 and d["delta_mean"] == pytest.approx(1.0) and d["seed_spread"] is None
    assert d["above_spread"] == "n/a (1 seed)" and d["verdict"] == "n/a (1 seed)"


def test_gap_closed_share_and_its_na_cases():
    share, text = gap_closed_share(0.25, 1.0, spread=0.1)
    assert share == pytest.approx(0.25) and text == "25%"
    share, text = gap_closed_share(0.25, 0.08, spread=0.1)  # full barely beats downscaled: no gap
    assert share is None and text.startswith("n/a")
    share, text = gap_closed_share(0.25, -0.5, spread=0.1)  # full is worse than downscaled
    assert share is None and text.startswith("n/a")
    assert gap_closed_share(0.25, 1.0, spread=None) == (None, "n/a (1 seed)")


def test_scores_known_numbers():
    records = (three_seeds("full", [32.0, 32.1, 32.2]) + three_seeds("downscaled", [30.0, 30.1, 30.2])
               + three_seeds("random", [29.0, 29.1, 29.2]) + three_seeds("distilled", [30.5, 30.6, 30.7]))
    order = ["distilled", "full", "downscaled", "random"]
    rows = {r["set"]: r for r in scores(records, order, refs=["downscaled", "random"])}
    s = rows["distilled"]
    assert s["vs"]["downscaled"]["delta_mean"] == pytest.approx(0.5)
    assert s["vs"]["random"]["delta_mean"] == pytest.approx(1.5)  # IOR
    assert s["gap_to_full"]["delta_mean"] == pytest.approx(1.5)  # HLR = full - set
    assert s["gap_closed"] == pytest.approx(0.25) and s["gap_closed_text"] == "25%"
    assert s["verdicts"] == ["beats downscaled", "beats random", "loses to full"]  # spread 0.1 each
    assert "gap_closed" not in rows["full"] and "gap_to_full" not in rows["full"]
    assert rows["random"]["gap_closed"] == pytest.approx(-0.5)


def test_scores_gap_closed_na_when_full_does_not_beat_downscaled():
    records = (three_seeds("full", [30.0, 30.5, 30.1]) + three_seeds("downscaled", [30.1, 30.3, 30.0])
               + three_seeds("distilled", [30.5, 30.6, 30.7]))
    (s,) = scores(records, ["distilled"], refs=["downscaled"])
    assert s["gap_closed"] is None and s["gap_closed_text"].startswith("n/a (full - downscaled")


def test_scores_one_seed_says_na_once():
    records = [rec("full", 0, 32.0), rec("downscaled", 0, 30.0), rec("distilled", 0, 31.0)]
    (s,) = scores(records, ["distilled"], refs=["downscaled"])
    assert s["verdicts"] == ["n/a (1 seed)"] and s["gap_closed_text"] == "n/a (1 seed)"


def test_verdict_margin():
    assert verdict(0.5, 0.2, "x", margin=2) == "beats x"
    assert verdict(0.3, 0.2, "x", margin=2).startswith("within")
    assert verdict(-0.5, 0.2, "x") == "loses to x"
    assert verdict(0.5, None, "x") == "n/a (1 seed)"


# ---- validation split ------------------------------------------------------------------------

def test_val_crop_plan_is_fixed_distinct_and_covers_every_photo():
    counts = [5, 40, 3, 12]
    plan = val_crop_plan(counts, 8, seed=0)
    assert plan == val_crop_plan(counts, 8, seed=0)
    assert plan != val_crop_plan(counts, 8, seed=1)
    items = [i for i, _, _ in plan]
    assert len(set(items)) == 8 and all(0 <= i < sum(counts) for i in items)
    classes = {int(np.searchsorted(np.cumsum(counts), i, side="right")) for i in items}
    assert classes == {0, 1, 2, 3}
    assert all(0 <= t < 1 and 0 <= l < 1 for _, t, l in plan)
    assert len(val_crop_plan([2, 1], 10, seed=0)) == 3  # never more crops than items
    assert not math.isnan(sum(t for _, t, _ in plan))
