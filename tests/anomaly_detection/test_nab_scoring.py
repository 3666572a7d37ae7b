"""The NAB score against small cases computed by hand from NAB's definition."""

import math

import numpy as np
import pytest

from pipelines.anomaly_detection.nab_scoring import (
    PROFILES,
    Profile,
    ResultsFile,
    normalized_score,
    optimised_score,
    probationary_length,
    row_weights,
    scaled_sigmoid,
    score_series,
    threshold_sweep,
)

ROWS, WINDOW = 100, (50, 59)  # probation: floor(0.15 * 100) = 15 rows; window width 10
STANDARD = PROFILES["standard"]
MAX_TP = math.tanh(2.5)  # scaledSigmoid(-1) = 2 * sigmoid(5) - 1 = tanh(2.5) = 0.98661


def alerts_at(*rows):
    alerts = np.zeros(ROWS, dtype=bool)
    alerts[list(rows)] = True
    return alerts


def nab(alerts, profile=STANDARD, windows=(WINDOW,)):
    scores = [score_series(alerts, list(windows), profile, probationary_length(ROWS))]
    return scores[0], normalized_score(scores, len(windows), profile)


def test_profiles_and_probation_are_nabs():
    assert PROFILES["standard"].fp == 0.11 and PROFILES["reward_low_fp_rate"].fp == 0.22
    assert PROFILES["reward_low_fn_rate"].fn == 2.0
    assert probationary_length(100) == 15 and probationary_length(22695) == 750
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(3.0 + 1e-9) == -1.0
    # NAB's scaledSigmoid is -1 only beyond 3; at 3 it is still the sigmoid's 2 * sigmoid(-15) - 1.
    assert scaled_sigmoid(3.0) == pytest.approx(-math.tanh(7.5), abs=1e-15) and scaled_sigmoid(3.0) > -1.0


def test_detection_on_the_first_row_of_the_window_earns_a_tp_and_scores_100():
    raw, normalized = nab(alerts_at(50))
    assert raw.raw == pytest.approx(STANDARD.tp)
    assert normalized == pytest.approx(100.0)


def test_null_detector_scores_zero_and_costs_a_fn_per_window():
    raw, normalized = nab(alerts_at())
    assert raw.raw == raw.null == -STANDARD.fn
    assert normalized == 0.0
    raw, _ = nab(alerts_at(), PROFILES["reward_low_fn_rate"])
    assert raw.raw == -2.0


def test_late_detection_earns_less():
    # Last row of the window: position -(59 - 59 + 1) / 10 = -0.1 -> tanh(0.25) / tanh(2.5).
    raw, normalized = nab(alerts_at(59))
    assert raw.raw == pytest.approx(math.tanh(0.25) / MAX_TP)
    assert normalized == pytest.approx(100 * (raw.raw + 1) / 2)


def test_only_the_earliest_detection_in_a_window_counts():
    assert nab(alerts_at(52, 55, 58))[0].raw == pytest.approx(nab(alerts_at(52))[0].raw)
    assert nab(alerts_at(52))[0].raw == pytest.approx(math.tanh(2.5 * 8 / 10) / MAX_TP)


def test_false_positive_before_any_window_costs_a_fp():
    raw, normalized = nab(alerts_at(20))
    assert raw.raw == pytest.approx(-STANDARD.fp - STANDARD.fn)  # and the window is missed
    assert normalized == pytest.approx(100 * (-1.11 + 1) / 2)  # -5.5
    assert nab(alerts_at(20), PROFILES["reward_low_fp_rate"])[0].raw == pytest.approx(-0.22 - 1.0)


def test_false_positive_after_a_window_costs_less_the_closer_it_is():
    # Row 60: position |59 - 60| / (10 - 1) -> 2 * sigmoid(-5 / 9) - 1 = -tanh(5 / 18).
    raw, _ = nab(alerts_at(50, 60))
    assert raw.raw == pytest.approx(1.0 - 0.11 * math.tanh(5 / 18))
    assert raw.false_positives == 1
    # Row 90 is 31 / 9 >= 3 window widths past: a full false positive.
    assert nab(alerts_at(50, 90))[0].raw == pytest.approx(1.0 - 0.11)


def test_probationary_period_is_not_scored():
    assert nab(alerts_at(3, 14))[0].raw == -1.0
    assert nab(alerts_at(15))[0].raw == pytest.approx(-1.11)


def test_window_weights_follow_the_scaled_sigmoid():
    weights, window_of_row = row_weights(ROWS, [WINDOW], STANDARD)
    assert (window_of_row[50:60] == 0).all() and (window_of_row[:50] == -1).all()
    assert np.all(np.diff(weights[50:60]) < 0), "earlier detections earn more"
    assert np.all(np.diff(weights[60:90]) <= 0), "later false positives cost more"
    assert weights[:50] == pytest.approx(np.full(50, -0.11))


def test_corpus_normalisation_pools_series():
    perfect = score_series(alerts_at(50), [WINDOW], STANDARD, 15)
    missed = score_series(alerts_at(), [WINDOW], STANDARD, 15)
    no_windows = score_series(alerts_at(30), [], STANDARD, 15)
    assert normalized_score([perfect, missed], 2, STANDARD) == pytest.approx(50.0)
    assert normalized_score([perfect, no_windows], 1, STANDARD) == pytest.approx(100 * (1 - 0.11 + 1) / 2)
    assert math.isnan(normalized_score([no_windows], 0, STANDARD))


def test_threshold_sweep_scores_every_threshold_and_the_optimum_is_the_best_of_them():
    rng = np.random.default_rng(0)
    files = [
        ResultsFile("a.csv", rng.choice([0.1, 0.4, 0.7, 0.9], size=ROWS), [WINDOW]),
        ResultsFile("b.csv", rng.choice([0.2, 0.7, 1.0], size=ROWS), [(30, 34), (70, 79)]),
    ]
    sweep = threshold_sweep(files, STANDARD)
    assert sweep[0] == (float("inf"), -3.0)  # no detection: a false negative per window
    for threshold, raw in sweep[1:]:
        by_hand = sum(
            score_series(f.anomaly_score >= threshold, f.windows, STANDARD, probationary_length(ROWS)).raw
            for f in files
        )
        assert raw == pytest.approx(by_hand), threshold
    score, threshold = optimised_score(files, STANDARD)
    best = max(raw for _, raw in sweep)
    assert score == pytest.approx(100 * (best + 3) / (3 + 3))
    assert dict(sweep)[threshold] == best
    # Decisions written as 1.0 / 0.0: every threshold in (0, 1] gives exactly the decisions.
    alerts = alerts_at(50, 20)
    decided = [ResultsFile("c.csv", alerts.astype(float), [WINDOW])]
    assert optimised_score(decided, STANDARD)[0] == pytest.approx(nab(alerts)[1])


def test_nabs_own_sweeper_cases_with_unit_weights():
    """The cases of NAB's tests/unit (true_positive_test.py, false_negative_test.py): tp, fp, fn weights 1,
    no probationary period."""
    unit = Profile(tp=1.0, fp=1.0, fn=1.0)
    first = np.zeros(10, dtype=bool)
    first[4] = True  # a 2-row window (rows 4, 5) in 10 rows: its first row earns exactly tpWeight
    assert score_series(first, [(4, 5)], unit, 0).raw == pytest.approx(1.0, abs=1e-12)
    assert score_series(np.zeros(1000, dtype=bool), [(450, 549)], unit, 0).raw == -1.0
    # A detection on a window's last row and one just after it: TP + FP + 1 (the FN of the second) is about 0.
    at_edge, after = np.zeros(1000, dtype=bool), np.zeros(1000, dtype=bool)
    at_edge[549], after[550] = True, True
    total = score_series(at_edge, [(450, 549)], unit, 0).raw + score_series(after, [(450, 549)], unit, 0).raw
    assert total + 1 == pytest.approx(0.0, abs=1e-3)


def test_nab_scores_rows_before_any_window_as_full_false_positives_and_one_exactly_three_widths_past_not():
    weights, _ = row_weights(ROWS, [WINDOW], STANDARD)
    assert (weights[:50] == -STANDARD.fp).all()
    # Row 86 is (86 - 59) / 9 = 3 widths past the window: NAB's sigmoid there, -1 only from beyond 3.
    assert weights[86] == pytest.approx(-STANDARD.fp * math.tanh(7.5), abs=1e-15) and weights[86] > -STANDARD.fp
    assert weights[87] == -STANDARD.fp
