"""Point-wise metrics without point adjustment, event-wise metrics and the trivial baselines."""

import numpy as np
import pytest

from pipelines.anomaly_detection.baselines import always_alerts, random_alerts
from pipelines.anomaly_detection.evaluation import event_counts, eventwise, pointwise, range_counts, rangewise


def test_pointwise_has_no_point_adjustment():
    labels = np.array([0, 0, 1, 1, 1, 1, 0, 0])
    alerts = np.array([0, 1, 1, 0, 0, 0, 0, 0])
    scores = pointwise(labels, alerts)
    # TP 1, FP 1, FN 3. Point adjustment would count the whole window as found (recall 1).
    assert scores == pytest.approx({"precision": 0.5, "recall": 0.25, "f1": 2 * 0.5 * 0.25 / 0.75})
    assert pointwise(labels, np.zeros(8)) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_event_counts_and_ratios():
    windows = [(2, 5), (10, 12), (20, 22)]
    alerts = np.zeros(30, dtype=bool)
    alerts[[1, 2, 11, 15, 16, 25]] = True  # runs: 1-2 (touches window 1), 11, 15-16, 25
    counts = event_counts(alerts, windows)
    assert counts == {"windows": 3, "detected": 2, "runs": 4, "true_runs": 2}
    assert eventwise(counts) == {"event_recall": 2 / 3, "event_precision": 0.5}
    # Rows before `start` are ignored: the first window and the alerts on rows 1-2 drop out.
    assert event_counts(alerts, windows, start=8) == {"windows": 2, "detected": 1, "runs": 3, "true_runs": 1}
    assert eventwise({"windows": 0, "detected": 0, "runs": 0, "true_runs": 0}) == {
        "event_recall": 0.0, "event_precision": 0.0
    }  # fmt: skip


def test_always_anomalous_inflates_event_metrics_not_point_f1():
    labels = np.zeros(1000, dtype=int)
    labels[500:510] = 1
    alerts = always_alerts(1000)
    assert eventwise(event_counts(alerts, [(500, 509)])) == {"event_recall": 1.0, "event_precision": 1.0}
    assert pointwise(labels, alerts)["f1"] == pytest.approx(2 * 0.01 / 1.01)


def test_random_baseline_raises_the_given_number_of_alerts_after_the_first_row():
    alerts = random_alerts(20000, 5000, 37, np.random.default_rng(0))
    assert alerts.sum() == 37
    assert not alerts[:5000].any(), "no alert before the first scored row"
    assert np.flatnonzero(alerts).max() > 15000, "the alerts spread over the scored rows"
    assert random_alerts(10, 8, 5, np.random.default_rng(1)).sum() == 2, "at most one alert per scored row"
    np.testing.assert_array_equal(
        random_alerts(100, 50, 5, np.random.default_rng(3)), random_alerts(100, 50, 5, np.random.default_rng(3))
    )


@pytest.mark.parametrize(
    ("labels", "flags", "precision", "recall"),
    [
        # Reference values from prts 1.0.0.3 (ts_precision / ts_recall, alpha 0, cardinality "one", bias "flat").
        ([0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0], 0.5833333333333333, 0.625),
        (
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0],
            2 / 3,
            0.25,
        ),
    ],
)
def test_range_based_precision_and_recall_match_tatbul_et_al(labels, flags, precision, recall):
    scores = rangewise(range_counts(np.array(labels), np.array(flags)))
    assert scores["range_precision"] == pytest.approx(precision)
    assert scores["range_recall"] == pytest.approx(recall)
    assert scores["range_f1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_range_metrics_pool_series_by_their_ranges_and_reward_a_whole_segment():
    labels = np.zeros(100, dtype=int)
    labels[40:80] = 1
    first = range_counts(labels, labels)  # the segment flagged row for row
    half = labels.copy()
    half[60:80] = 0
    second = range_counts(labels, half)  # half of it, as one range
    pooled = rangewise({key: first[key] + second[key] for key in first})
    assert pooled == pytest.approx({"range_precision": 1.0, "range_recall": 0.75, "range_f1": 2 * 0.75 / 1.75})
    start_only = labels * 0
    start_only[40] = 1  # an alert where the incident starts: event recall 1, range recall 1/40
    assert rangewise(range_counts(labels, start_only))["range_recall"] == pytest.approx(1 / 40)
    assert rangewise(range_counts(labels, np.zeros(100))) == {
        "range_precision": 0.0,
        "range_recall": 0.0,
        "range_f1": 0.0,
    }
