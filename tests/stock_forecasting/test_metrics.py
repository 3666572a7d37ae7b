"""Metrics against small hand-computed examples, and the Diebold-Mariano test's edge cases."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.stock_forecasting.metrics import (
    diebold_mariano,
    directional_accuracy,
    forecast_metrics,
    mae,
    mape,
    mase,
    naive_scale,
    rmse,
    theils_u2,
)

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
