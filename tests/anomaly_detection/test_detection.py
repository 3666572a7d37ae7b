"""Detection: error features, Gaussian scoring, calibration, cooldown and the online property of the scores."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from lstm_models import build_model
from pipelines.anomaly_detection.detection import (
    Gaussian,
    Likelihood,
    SeriesDetector,
    alerts_with_cooldown,
    calibrate,
    error_features,
    seasonal_distances,
    spatial_anomalies,
    value_distances,
)
from pipelines.anomaly_detection.features import fit_scaler, scale, scaler_from_state
from pipelines.anomaly_detection.task import DetectionConfig
from pipelines.errors import ConfigError


def persistence(steps):
    """A fake network for the prediction detector: "no change" from the window's last value."""
    return lambda x: np.zeros((len(x), steps * x.shape[2]))


def test_forecast_errors_line_up_with_the_rows_they_forecast():
    rng = np.random.default_rng(0)
    scaled = rng.standard_normal((30, 2)).astype(np.float32)
    window, steps = 4, 3
    errors = error_features(persistence(steps), scaled, "prediction", window, steps)
    first = window + steps - 1
    assert errors.shape == (30, steps * 2)
    assert np.isnan(errors[:first]).all() and not np.isnan(errors[first:]).any()
    for t in (first, 17, 29):
        for j in range(1, steps + 1):  # forecast made j rows earlier = the value at t - j
            np.testing.assert_allclose(errors[t, (j - 1) * 2 : j * 2], scaled[t] - scaled[t - j], rtol=1e-6)


def test_reconstruction_error_of_a_perfect_autoencoder_is_zero():
    scaled = np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32)
    errors = error_features(lambda x: x, scaled, "reconstruction", 5, 1)
    assert np.isnan(errors[:4]).all()
    np.testing.assert_array_equal(errors[4:, 0], 0.0)
    doubled = error_features(lambda x: 2 * x, scaled, "reconstruction", 5, 1)
    np.testing.assert_allclose(doubled[4, 0], np.mean(scaled[:5] ** 2), rtol=1e-6)


def test_gaussian_score_is_the_negative_log_likelihood():
    errors = np.random.default_rng(2).multivariate_normal([0, 1], [[1, 0.5], [0.5, 2]], size=500)
    gaussian = Gaussian.fit(errors)
    expected = -multivariate_normal(errors.mean(0), np.cov(errors, rowvar=False)).logpdf(errors[:5])
    np.testing.assert_allclose(gaussian.nll(errors[:5]), expected, rtol=1e-4)
    assert gaussian.nll(np.array([[10.0, 10.0]]))[0] > gaussian.nll(errors.mean(0, keepdims=True))[0]


def test_cooldown_keeps_the_first_alert_of_a_burst():
    candidates = np.array([1, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    np.testing.assert_array_equal(np.flatnonzero(alerts_with_cooldown(candidates, 2)), [0, 4, 7])
    np.testing.assert_array_equal(alerts_with_cooldown(candidates, 0), candidates)


def test_spatial_check_flags_values_beyond_the_range_seen_before_them():
    values = np.array([[0.0], [1.0], [0.5], [1.04], [1.2], [-0.2], [0.5]])
    # row 1: the range seen is one point (no width); row 3: within 1 + 0.05; row 4: above 1.04 + 0.052
    expected = [False, False, False, False, True, True, False]
    np.testing.assert_array_equal(spatial_anomalies(values, 0.05), expected)
    np.testing.assert_array_equal(spatial_anomalies(values, 0.5), [False] * 7)
    changed = values.copy()
    changed[5:] = 100.0
    np.testing.assert_array_equal(spatial_anomalies(changed, 0.05)[:5], expected[:5])  # online
    seen = spatial_anomalies(np.array([[1.01, 0.0], [1.2, 0.0], [0.5, -3.0]]), 0.05, low=[0.0, -1.0], high=[1.0, 1.0])
    np.testing.assert_array_equal(seen, [False, True, True])  # starts from the prefix's range; any column


def test_spatial_check_alerts_where_the_likelihood_stays_quiet():
    rng = np.random.default_rng(8)
    scaler = scaler_from_state(np.zeros(1), np.ones(1))
    prefix = rng.uniform(10.0, 20.0, (200, 1))
    val = rng.standard_normal((100, 1))
    spatial = calibrate(
        "s", "prediction", 4, 1, 10, scaler, val, 1.0, scoring="likelihood", spatial_tolerance=0.05,
        prefix_values=prefix,
    )  # fmt: skip
    plain = calibrate("s", "prediction", 4, 1, 10, scaler, val, 1.0, scoring="likelihood")
    values = np.concatenate([prefix, rng.uniform(10.0, 20.0, (100, 1))])
    values[250] = 25.0  # a new maximum, by half the range
    scores = np.concatenate([np.full(200, np.nan), spatial.scores(rng.standard_normal((100, 1)))])
    found = spatial.detect_scores(scores, first_row=200, values=values)
    assert np.flatnonzero(found.alert).tolist() == [250] and found.spatial[250]
    # The spatial check raises an alert (an incident starts); the row decision is the score's alone.
    np.testing.assert_array_equal(found.anomaly_score >= 0.5, found.is_anomaly)
    assert not plain.detect_scores(scores, first_row=200, values=values).alert.any()
    assert not spatial.detect_scores(scores, first_row=251, values=values).alert[:251].any()
    for share in (-0.1, math.inf):
        with pytest.raises(ConfigError, match="detection.spatial_tolerance: expected a share >= 0 or null"):
            DetectionConfig(spatial_tolerance=share)
    with pytest.raises(ConfigError, match="detection.likelihood_threshold: expected a z-score > 0, got inf"):
        DetectionConfig(likelihood_threshold=math.inf)  # would never alert
    with pytest.raises(ConfigError, match="detection.likelihood_history: expected an integer >= 10, got 9"):
        DetectionConfig(likelihood_history=9)  # the rolling statistics need 10 scores: it failed after training


def test_threshold_is_the_validation_quantile_and_maps_to_one_half():
    val = np.random.default_rng(3).standard_normal((1000, 1))
    detector = calibrate("s", "prediction", 4, 1, 0, scaler_from_state(np.zeros(1), np.ones(1)), val, 0.95)
    val_scores = detector.scores(val)
    assert detector.threshold == pytest.approx(np.quantile(val_scores, 0.95))
    detection = detector.detect_scores(val_scores)
    assert detection.alert.mean() == pytest.approx(0.05, abs=0.002)
    # The row decision: the mean of the last 5 scores against the same quantile of the validation means.
    means = pd.Series(val_scores).rolling(5, min_periods=1).mean().to_numpy()
    assert detector.state_threshold == pytest.approx(np.quantile(means, 0.95))
    np.testing.assert_allclose(detection.state[4:], means[4:])
    assert detection.is_anomaly.mean() == pytest.approx(0.05, abs=0.005)
    np.testing.assert_array_equal(detection.anomaly_score >= 0.5, detection.is_anomaly)
    assert not np.array_equal(detection.is_anomaly, detection.alert), "two decisions, two rules"
    constant = calibrate(
        "c", "reconstruction", 4, 1, 3, scaler_from_state(np.zeros(1), np.ones(1)), np.ones((50, 1)), 0.99
    )
    assert not constant.detect_scores(np.ones(50)).alert.any(), "a score equal to the threshold is not an alert"


@pytest.mark.parametrize("scoring", ["raw", "likelihood"])
def test_detector_round_trips_through_json_state(scoring):
    val = np.random.default_rng(4).standard_normal((200, 2))
    detector = calibrate(
        "s", "prediction", 4, 2, 5, scaler_from_state(np.ones(1), 2 * np.ones(1)), val, 0.99, scoring=scoring,
        record_history=7, value_gaussian=True, seasonal_periods=(5,), spatial_tolerance=0.05,
        prefix_values=np.random.default_rng(6).standard_normal((40, 1)),
    )  # fmt: skip
    again = SeriesDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert again.spatial_tolerance == 0.05
    np.testing.assert_array_equal(again.seen_low, detector.seen_low)
    np.testing.assert_array_equal(again.seen_high, detector.seen_high)
    np.testing.assert_array_equal(again.scores(val), detector.scores(val))
    assert (again.window, again.steps, again.cooldown, again.threshold) == (4, 2, 5, detector.threshold)
    assert (again.state_average, again.state_threshold) == (5, detector.state_threshold)
    np.testing.assert_array_equal(again.state_seed, detector.state_seed)
    later = np.random.default_rng(5).standard_normal((300, 2)) * np.linspace(1, 3, 300)[:, None]
    np.testing.assert_array_equal(again.levels(again.scores(later)), detector.levels(detector.scores(later)))
    values = np.random.default_rng(7).standard_normal((300, 1)) * np.linspace(1, 5, 300)[:, None]
    found, expected = again.detect(persistence(2), values), detector.detect(persistence(2), values)
    np.testing.assert_array_equal(found.value_level, expected.value_level)
    np.testing.assert_array_equal(found.alert, expected.alert)
    assert (scoring == "likelihood") == (not np.isnan(found.value_level).all()), "the value check needs the likelihood"
    if scoring == "likelihood":
        assert again.likelihood.record == 7 and again.value_likelihood.record == 7
        assert [season.period for season in again.seasons] == [5]
        np.testing.assert_array_equal(found.seasonal_level, expected.seasonal_level)
        assert not np.isnan(found.seasonal_level).all()
        state = detector.to_dict()
        del state["likelihood"]["record"], state["value_likelihood"], state["past_values"], state["seasons"]
        old = SeriesDetector.from_dict(state)  # a model logged before the record rule and the value check
        assert old.likelihood.record == 0 and old.value_likelihood is None and old.seasons == ()
        assert np.isnan(old.detect(persistence(2), values).value_level).all()


def test_likelihood_is_the_recent_mean_against_the_history_before_it():
    rng = np.random.default_rng(6)
    seed, scores = rng.gamma(2.0, size=40), rng.gamma(2.0, size=60)
    likelihood = Likelihood(history=30, average=4, seed=seed)
    levels = likelihood.levels(scores)
    stream = np.concatenate([seed, scores])
    for t in (0, 3, 25, 59):
        now = len(seed) + t
        past = stream[now - 30 : now]
        expected = (stream[now - 3 : now + 1].mean() - past.mean()) / past.std(ddof=1)
        assert levels[t] == pytest.approx(expected)
    with_gap = scores.copy()
    with_gap[10] = np.nan
    assert np.isnan(likelihood.levels(with_gap)[10]), "no level where the score is undefined"


def test_likelihood_follows_drifting_errors_where_a_fixed_threshold_floods():
    rng = np.random.default_rng(7)
    val = rng.standard_normal((200, 1))
    # Errors whose scale drifts up fivefold (a series that slowly changes), then one sudden burst.
    drift = rng.standard_normal((3000, 1)) * np.linspace(1.0, 5.0, 3000)[:, None]
    drift[2500:2505] += 60.0
    scaler = scaler_from_state(np.zeros(1), np.ones(1))
    raw = calibrate("s", "prediction", 4, 1, 50, scaler, val, 1.0, scoring="raw")
    likely = calibrate("s", "prediction", 4, 1, 50, scaler, val, 1.0, scoring="likelihood", likelihood_threshold=4)
    raw_alerts = raw.detect_scores(raw.scores(drift)).alert
    likely_alerts = likely.detect_scores(likely.scores(drift)).alert
    assert raw_alerts[:2500].sum() > 30, "the fixed threshold alarms again and again on the drift"
    assert likely_alerts[:2500].sum() <= raw_alerts[:2500].sum() / 5
    assert likely_alerts[2500:2510].any(), "the burst still raises an alert"
    first_row = likely.detect_scores(likely.scores(drift), first_row=1000)
    assert not first_row.alert[:1000].any() and np.isnan(first_row.level[:1000]).all()


@pytest.mark.parametrize("scoring", ["raw", "likelihood"])
@pytest.mark.parametrize(("detector", "steps"), [("prediction", 2), ("reconstruction", 1)])
def test_scores_are_online_later_values_never_change_earlier_scores(detector, steps, scoring):
    rng = np.random.default_rng(5)
    values = 10 + np.sin(np.arange(120) / 4)[:, None] + 0.1 * rng.standard_normal((120, 2))
    window, cut = 8, 70
    head = "regression" if detector == "prediction" else "reconstruction"
    model = build_model("lstm", (window, 2), head=head, output_dim=2 * steps if head == "regression" else 2, units=4)
    predict = lambda x: model.predict(x, verbose=0)  # noqa: E731
    scaler = fit_scaler(values[:60])
    features = error_features(predict, scaler.transform(values), detector, window, steps)
    scorer = calibrate(
        "s", detector, window, steps, 5, scaler, features[30:60], 0.8, scoring=scoring, likelihood_threshold=1.0,
        record_history=20,
    )  # fmt: skip
    before = scorer.detect(predict, values)
    changed = values.copy()
    changed[cut + 1 :] = rng.uniform(-100, 100, changed[cut + 1 :].shape)  # the future is rewritten
    after = scorer.detect(predict, changed)
    np.testing.assert_allclose(after.score[: cut + 1], before.score[: cut + 1], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(after.level[: cut + 1], before.level[: cut + 1], rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(after.alert[: cut + 1], before.alert[: cut + 1])
    np.testing.assert_array_equal(after.record[: cut + 1], before.record[: cut + 1])
    assert before.alert[: cut + 1].any(), "the test needs alerts (and so the cooldown) before the cut"
    assert not np.allclose(after.score[cut + 1 :], before.score[cut + 1 :])
    # The prefix alone gives the same scores too: nothing looks ahead.
    prefix_only = scorer.detect(predict, values[: cut + 1])
    np.testing.assert_allclose(prefix_only.score, before.score[: cut + 1], rtol=1e-5, equal_nan=True)


def test_record_rule_passes_only_a_mean_score_above_every_one_in_the_rows_before():
    seed = np.array([1.0, 2.0, 1.0])
    scores = np.array([1.5, 3.0, 2.5, 3.0, 1.0, 1.0, 3.0])
    # recent means of two rows, seed included: 1.5 1.5 | 1.25 2.25 2.75 2.75 2.0 1.0 2.0
    records = Likelihood(history=10, average=2, seed=seed, record=3).records(scores)
    np.testing.assert_array_equal(records, [False, True, True, False, False, False, False])
    assert Likelihood(10, 2, seed, record=1).records(scores)[-1], "2.0 against the 1.0 just before: 2.75 is gone"
    assert Likelihood(10, 2, seed).records(scores).all(), "record 0 is off"
    assert Likelihood(10, 1, np.empty(0), record=5).records(np.array([0.0]))[0], "nothing before: a record"


def test_record_rule_silences_a_burst_no_larger_than_a_recent_one():
    rng = np.random.default_rng(9)
    val = rng.standard_normal((200, 1))
    errors = rng.standard_normal((2000, 1))
    errors[[500, 900, 1700]] = 12.0  # three equal bursts; the third comes 800 rows after the second
    scaler = scaler_from_state(np.zeros(1), np.ones(1))
    settings = dict(scoring="likelihood", likelihood_average=1, likelihood_threshold=4.0)
    plain = calibrate("s", "prediction", 4, 1, 10, scaler, val, 1.0, **settings)
    recorded = calibrate("s", "prediction", 4, 1, 10, scaler, val, 1.0, record_history=500, **settings)
    found, kept = plain.detect_scores(plain.scores(errors)), recorded.detect_scores(recorded.scores(errors))
    assert found.alert[[500, 900, 1700]].all(), "each burst is far above the likelihood's threshold"
    assert kept.alert[500] and kept.alert[1700], "the first, and one the 500 rows before have not seen"
    assert not kept.alert[900] and found.level[900] > 4.0, "as unlikely, but no larger than the one at 500"
    assert not kept.alert[~found.alert].any()
    with pytest.raises(ConfigError, match="detection.record_history: expected an integer >= 0"):
        DetectionConfig(record_history=-1)


def test_value_distances_are_the_windowed_gaussian_of_the_values_before():
    rng = np.random.default_rng(10)
    past, values = rng.normal(5.0, 2.0, (30, 2)), rng.normal(5.0, 2.0, (20, 2))
    distances = value_distances(values, history=25, past=past)
    stream = np.vstack([past, values])
    for t in (0, 7, 19):
        before = stream[30 + t - 25 : 30 + t]
        expected = np.abs(stream[30 + t] - before.mean(axis=0)) / before.std(axis=0, ddof=1)
        assert distances[t] == pytest.approx(expected.max())
    assert np.isnan(value_distances(values, history=25)[:10]).all(), "fewer than 10 values before"
    changed = values.copy()
    changed[8:] = 1e6
    np.testing.assert_array_equal(value_distances(changed, 25, past)[:8], distances[:8])  # online


def test_value_check_finds_a_level_shift_the_network_reconstructs_well():
    rng = np.random.default_rng(11)
    values = rng.normal(10.0, 1.0, (1300, 1))
    values[1000:] += 8.0  # a level shift, still inside the range the prefix has seen ...
    values[100] = 40.0  # ... which includes one spike
    scaler = scaler_from_state(np.zeros(1), np.ones(1))
    val = rng.standard_normal((100, 1))
    settings = dict(scoring="likelihood", likelihood_threshold=4.0, spatial_tolerance=0.05, prefix_values=values[:300])
    checked = calibrate("s", "reconstruction", 4, 1, 100, scaler, val, 1.0, value_gaussian=True, **settings)
    plain = calibrate("s", "reconstruction", 4, 1, 100, scaler, val, 1.0, **settings)
    scores = np.concatenate([np.full(300, np.nan), rng.gamma(2.0, size=1000)])  # the network sees nothing
    found = checked.detect_scores(scores, first_row=300, values=values)
    assert not plain.detect_scores(scores, first_row=300, values=values).alert[1000:1010].any()
    assert not found.spatial.any(), "the shift stays inside the range seen before it"
    assert found.alert[1000:1010].any() and np.nanmax(found.value_level[1000:1010]) > 4.0
    assert not found.alert[300:1000].any(), "normal values raise no alert"


def test_seasonal_distances_are_the_windowed_gaussian_of_the_change_over_a_period():
    rng = np.random.default_rng(12)
    past, values = rng.normal(0.0, 1.0, (40, 1)), rng.normal(0.0, 1.0, (30, 1))
    stream = np.vstack([past, values])
    change = np.full_like(stream, np.nan)
    change[6:] = stream[6:] - stream[:-6]
    np.testing.assert_allclose(seasonal_distances(values, 20, 6, past), value_distances(change, 20)[40:])
    alone = seasonal_distances(values, 20, 6)
    assert np.isnan(alone[:16]).all() and not np.isnan(alone[16:]).any(), "6 rows back, then 10 changes before"
    changed = values.copy()
    changed[12:] = 50.0
    later_changed = seasonal_distances(changed, 20, 6, past)
    np.testing.assert_array_equal(later_changed[:12], seasonal_distances(values, 20, 6, past)[:12])  # online


def test_seasonal_check_finds_a_day_that_departs_from_the_days_before():
    rng = np.random.default_rng(13)
    hours = np.arange(24 * 60)
    values = (10 + 5 * np.sin(2 * np.pi * hours / 24) + 0.2 * rng.standard_normal(len(hours)))[:, None]
    values[24 * 50 + 4 : 24 * 50 + 9] = 10.0  # one morning's peak is missing: a value seen every day
    scaler = scaler_from_state(np.zeros(1), np.ones(1))
    val = rng.standard_normal((100, 1))
    settings = dict(scoring="likelihood", value_gaussian=True, spatial_tolerance=0.05, prefix_values=values[:300])
    plain = calibrate("s", "reconstruction", 4, 1, 24, scaler, val, 1.0, **settings)
    daily = calibrate("s", "reconstruction", 4, 1, 24, scaler, val, 1.0, seasonal_periods=(24,), **settings)
    scores = np.concatenate([np.full(300, np.nan), rng.gamma(2.0, size=len(hours) - 300)])  # the network sees nothing
    missed = plain.detect_scores(scores, first_row=300, values=values)
    found = daily.detect_scores(scores, first_row=300, values=values)
    assert not missed.alert[24 * 50 : 24 * 51].any(), "the plain value check and the spatial check see nothing"
    assert found.alert[24 * 50 + 4 : 24 * 50 + 10].any() and not found.alert[300 : 24 * 50].any()
    too_long = calibrate("s", "reconstruction", 4, 1, 24, scaler, val, 1.0, seasonal_periods=(295,), **settings)
    assert too_long.seasons == (), "a period the prefix cannot hold with 10 validation rows to spare is skipped"


def test_seasonal_periods_come_from_the_median_time_step():
    from pipelines.anomaly_detection.data import Series
    from pipelines.anomaly_detection.detection import seasonal_periods

    def series(freq):
        stamps = pd.date_range("2024-01-01", periods=50, freq=freq)
        return Series("s", stamps, np.zeros((50, 1)), ["value"], [], False, "s.csv", {})

    assert seasonal_periods(series("5min"), [1, 7]) == (288, 2016)
    assert seasonal_periods(series("1h"), [7, 1, 1]) == (24, 168)
    assert seasonal_periods(series("1D"), [1, 7]) == (7,), "a one-row period is no season"
    for bad in ([0], ["1"], 7, [True]):
        with pytest.raises(ConfigError, match="detection.seasonal_days: expected a list of positive numbers of days"):
            DetectionConfig(seasonal_days=bad)


def test_a_detector_saved_before_the_standard_scaler_loads_and_scales_as_before():
    """`detectors.json` keeps its format: the scaler as its mean and scale lists."""
    state = {
        "name": "s", "detector": "reconstruction", "window": 4, "steps": 1, "cooldown": 5,
        "scaler": {"mean": [10.0, -2.0], "scale": [2.0, 0.5]}, "threshold": 1.5, "spread": 0.5,
        "gaussian": None, "likelihood": None,
    }  # fmt: skip
    detector = SeriesDetector.from_dict(state)
    values = np.array([[12.0, -2.5], [10.0, -2.0], [100.0, -2.0]])
    expected = np.array([[1.0, -1.0], [0.0, 0.0], [10.0, 0.0]], dtype=np.float32)  # the last one clipped
    np.testing.assert_array_equal(detector.features(lambda x: x, np.vstack([values] * 2))[3:, 0], 0.0)
    np.testing.assert_array_equal(scale(detector.scaler, values), expected)
    assert detector.to_dict()["scaler"] == state["scaler"]
