"""The report scores the model and the baselines on the same windows and says who wins."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from pipelines.stock_forecasting.dataset import prepare_dataset
from pipelines.stock_forecasting.evaluation import evaluate_forecasts
from pipelines.stock_forecasting.metrics import METRIC_NAMES
from tests.stock_forecasting.synthetic import synthetic_ohlcv

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
