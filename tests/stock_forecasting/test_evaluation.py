"""Metrics against small hand-computed examples, the Diebold-Mariano test's edge cases, and the report
that scores the model and the baselines on the same windows and says who wins."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from pipelines.stock_forecasting.evaluation import (
    METRIC_NAMES,
    diebold_mariano,
    directional_accuracy,
    evaluate_forecasts,
    forecast_metrics,
    mae,
    mape,
    mase,
    naive_scale,
    rmse,
    score_forecasts,
    theils_u2,
    window_scales,
)
from pipelines.stock_forecasting.features import prepare_dataset
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv

ACTUAL = np.array([[1.0, 2.0], [3.0, 4.0]])
FORECAST = np.array([[1.0, 3.0], [2.0, 4.0]])  # errors 0, 1, -1, 0


def test_point_metrics_by_hand():
    assert rmse(ACTUAL, FORECAST) == pytest.approx(np.sqrt(0.5))
    assert mae(ACTUAL, FORECAST) == pytest.approx(0.5)
    assert mape(ACTUAL, FORECAST) == pytest.approx(100 * (0 + 1 / 2 + 1 / 3 + 0) / 4)
    assert naive_scale([1.0, 2.0, 4.0, 3.0]) == pytest.approx(4 / 3)
    assert mase(ACTUAL, FORECAST, 0.25) == pytest.approx(2.0)
    assert mase(ACTUAL, FORECAST, np.array([0.5, 1.0])) == pytest.approx((0 + 2 + 1 + 0) / 4)  # per window
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(2,\)"):
        rmse(ACTUAL, FORECAST[:, 0])


def test_theils_u2():
    last = np.array([1.5, 2.5])
    naive = np.repeat(last[:, None], 2, axis=1)  # errors .5, -.5, .5, 1.5 -> rmse sqrt(3/4)
    assert theils_u2(ACTUAL, naive, naive) == 1.0
    assert theils_u2(ACTUAL, FORECAST, naive) == pytest.approx(np.sqrt(0.5) / np.sqrt(0.75))
    assert np.isnan(theils_u2(naive, FORECAST, naive))


def test_directional_accuracy_by_hand():
    last = np.array([2.0, 3.0])
    actual = np.array([[3.0, 1.0], [3.0, 4.0]])  # up, down | flat, up
    forecast = np.array([[2.5, 2.5], [2.0, 5.0]])  # up, up | down, up
    assert directional_accuracy(actual, forecast, last) == 0.5


def test_forecast_metrics_keys_and_values():
    last = np.array([1.5, 2.5])
    naive = np.repeat(last[:, None], 2, axis=1)
    result = forecast_metrics(ACTUAL, FORECAST, naive, last, 0.25)
    assert list(result) == ["rmse", "mae", "mape", "mase", "u2", "directional_accuracy"]
    assert result["mase"] == pytest.approx(2.0) and result["directional_accuracy"] == 0.75  # 3 of 4 signs
    assert forecast_metrics(ACTUAL, naive, naive, last, 0.25)["u2"] == 1.0


def test_dm_identical_errors_gives_zero_and_p_one():
    errors = np.random.default_rng(0).standard_normal((50, 3))
    assert diebold_mariano(errors, errors.copy(), 3) == (0.0, 1.0)


def test_dm_by_hand_for_horizon_one():
    # loss differential d = a^2 - b^2 = 1, 2, 3, 4: mean 2.5, gamma0 = 1.25, var = 1.25 / 4
    a, b = np.sqrt([1.0, 2.0, 3.0, 4.0]), np.zeros(4)
    dm = 2.5 / np.sqrt(1.25 / 4) * np.sqrt((4 + 1 - 2 + 0) / 4)
    statistic, p_value = diebold_mariano(a, b, 1)
    assert statistic == pytest.approx(dm)
    assert p_value == pytest.approx(2 * stats.t.sf(dm, df=3))


def test_dm_by_hand_for_horizon_two():
    d = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    a, b = np.sqrt(d), np.zeros(6)
    c = d - d.mean()
    gamma0, gamma1 = c @ c / 6, c[1:] @ c[:-1] / 6
    dm = d.mean() / np.sqrt((gamma0 + 2 * gamma1) / 6) * np.sqrt((6 + 1 - 4 + 2 / 6) / 6)
    statistic, p_value = diebold_mariano(a, b, 2)
    assert statistic == pytest.approx(dm)
    assert p_value == pytest.approx(2 * stats.t.sf(dm, df=5))


def test_dm_detects_clearly_better_errors():
    worse = np.random.default_rng(1).standard_normal((200, 5))
    statistic, p_value = diebold_mariano(0.5 * worse, worse, 5)
    assert statistic < 0 and p_value < 0.05
    statistic, p_value = diebold_mariano(worse, 0.5 * worse, 5)
    assert statistic > 0 and p_value < 0.05


def test_dm_over_several_series_tests_one_averaged_loss_per_date():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((40, 3)), 1.1 * rng.standard_normal((40, 3))
    dates = pd.bdate_range("2024-01-01", periods=40).to_numpy()
    one_series = diebold_mariano(a, b, 3)
    # The same errors for a second series on the same dates: no new information, so the same test.
    twice = diebold_mariano(np.vstack([a, a]), np.vstack([b, b]), 3, dates=np.concatenate([dates, dates]))
    assert twice == pytest.approx(one_series)
    assert diebold_mariano(np.vstack([a, a]), np.vstack([b, b]), 3)[1] < one_series[1]  # as if 80 windows
    # Each date's loss differential is the mean over the series forecast that day, in date order.
    c, e = rng.standard_normal((40, 3)), rng.standard_normal((40, 3))
    order = rng.permutation(80)
    shuffled = diebold_mariano(
        np.vstack([a, c])[order], np.vstack([b, e])[order], 3, dates=np.concatenate([dates, dates])[order]
    )
    d = ((a**2 - b**2).mean(axis=1) + (c**2 - e**2).mean(axis=1)) / 2
    by_hand = diebold_mariano(np.sqrt(d.clip(min=0)), np.sqrt((-d).clip(min=0)), 3)  # errors with that differential
    assert shuffled == pytest.approx(by_hand)


HORIZON = 3


@pytest.fixture(scope="module")
def dataset():
    prices = {"AAA": synthetic_ohlcv(400, seed=1), "BBB": synthetic_ohlcv(300, seed=2, start="2015-06-01")}
    return prepare_dataset(prices, 10, HORIZON, 0.2, 0.2)


def _actual(dataset):
    return dataset.test_index[[f"actual_{k}" for k in range(1, HORIZON + 1)]].to_numpy()


def test_perfect_model_beats_naive(dataset):
    report = evaluate_forecasts(dataset, dataset.test_index, _actual(dataset))
    assert report.metrics["rmse"] == 0.0 and report.metrics["mae"] == 0.0 and report.metrics["u2"] == 0.0
    assert report.metrics["directional_accuracy"] == 1.0
    assert report.beats_naive and report.dm_statistic < 0 and report.dm_p_value < 0.05
    assert report.summary.startswith("The model beats the naive forecast") and "U2 = 0.000" in report.summary
    flat = report.as_metrics("test")
    assert flat["test_rmse"] == 0.0 and flat["test_naive_u2"] == 1.0 and flat["test_beats_naive"] == 1.0
    assert flat["test_dm_p_value"] == report.dm_p_value and len(flat) == 4 * 6 + 3


def test_naive_as_model_does_not_beat_naive(dataset):
    naive = np.repeat(dataset.test_index["last_close"].to_numpy()[:, None], HORIZON, axis=1)
    report = evaluate_forecasts(dataset, dataset.test_index, naive)
    assert not report.beats_naive and (report.dm_statistic, report.dm_p_value) == (0.0, 1.0)
    assert report.metrics == report.baselines["naive"]
    assert "does not beat" in report.summary


def test_report_uses_the_same_windows_for_every_forecaster(dataset):
    rng = np.random.default_rng(0)
    noisy = _actual(dataset) * np.exp(0.01 * rng.standard_normal(_actual(dataset).shape))
    report = evaluate_forecasts(dataset, dataset.test_index, noisy, folds=3)
    assert set(report.baselines) == {"naive", "drift", "arima"}
    assert set(report.metrics) == set(METRIC_NAMES)
    assert all(set(scores) == set(METRIC_NAMES) for scores in report.baselines.values())
    assert report.baselines["naive"]["u2"] == 1.0
    table = report.walk_forward
    assert len(table) == 3 and table["windows"].sum() == len(dataset.test_index)
    assert (table["start"].iloc[1:].to_numpy() > table["end"].iloc[:-1].to_numpy()).all()  # consecutive periods
    assert (table["naive_u2"] == 1.0).all()
    for name in ("model", "naive", "drift", "arima"):
        assert {f"{name}_rmse", f"{name}_u2"} <= set(table.columns)
    assert set(report.figures) == {"forecast_vs_actual", "residuals"}
    for figure in report.figures.values():
        assert isinstance(figure, Figure)
        figure.canvas.draw()  # renders with Agg


def test_wrong_shape_is_rejected(dataset):
    with pytest.raises(ValueError, match=r"model_prices of shape \(\d+, 3\).*Received: \(\d+, 2\)"):
        evaluate_forecasts(dataset, dataset.test_index, _actual(dataset)[:, :2])


def test_window_scales_are_each_series_training_naive_scale(dataset):
    scales = window_scales(dataset, dataset.val_index)
    for name in ("AAA", "BBB"):
        rows = (dataset.val_index.series == name).to_numpy()
        assert (scales[rows] == naive_scale(dataset.train_closes[name])).all()


def test_score_forecasts_matches_the_report_on_the_same_windows(dataset):
    rng = np.random.default_rng(3)
    noisy = _actual(dataset) * np.exp(0.01 * rng.standard_normal(_actual(dataset).shape))
    scores = score_forecasts(dataset, dataset.test_index, noisy)
    assert list(scores) == list(METRIC_NAMES)
    assert scores == pytest.approx(evaluate_forecasts(dataset, dataset.test_index, noisy).metrics)
