"""Forecast intervals (split-conformal, coverage, Winkler), covariates without look-ahead, and the stock gate."""

import keras
import numpy as np
import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError, DataError
from pipelines.stock_forecasting.data import load_prices
from pipelines.stock_forecasting.evaluation import conformal_quantiles, coverage, interval_metrics, winkler_score
from pipelines.stock_forecasting.features import StockPreprocessor, prepare_dataset
from pipelines.stock_forecasting.serving import StockServingModel, bound_columns, request_frame
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv
from pipelines.stock_forecasting.task import TASK, StockConfig
from tests.stock_forecasting.conftest import HORIZON, TEST, VAL, WINDOW


def test_conformal_bounds_sit_at_the_split_conformal_ranks():
    # Nine residuals log(actual / forecast) = 1..9 (times 0.01): at 80% the ranks are floor(10 * 0.1) = 1
    # and ceil(10 * 0.9) = 9, so the bounds are the smallest and the largest.
    residuals = np.arange(1, 10, dtype=float) * 0.01
    forecast = np.full((9, 2), 100.0)
    actual = forecast * np.exp(np.column_stack([residuals, residuals[::-1]]))
    q = conformal_quantiles(actual, forecast, (0.8, 0.5))
    assert q.shape == (2, 2, 2)
    np.testing.assert_allclose(q[0, :, 0], [0.01, 0.09])
    np.testing.assert_allclose(q[0, :, 1], [0.01, 0.09])
    # 50%: floor(10 * 0.25) = 2 and ceil(10 * 0.75) = 8.
    np.testing.assert_allclose(q[1, :, 0], [0.02, 0.08])
    with pytest.raises(ValueError, match="at least 2 calibration windows"):
        conformal_quantiles(actual[:1], forecast[:1], (0.8,))


def test_conformal_intervals_cover_exchangeable_windows_at_their_level():
    rng = np.random.default_rng(0)
    forecast = np.full((4000, 3), 50.0)
    scale = np.array([0.01, 0.02, 0.03])
    calibration = forecast * np.exp(rng.standard_t(4, size=(4000, 3)) * scale)
    new = forecast * np.exp(rng.standard_t(4, size=(4000, 3)) * scale)
    for level in (0.8, 0.95):
        q = conformal_quantiles(calibration, forecast, (level,))[0]
        lower, upper = forecast * np.exp(q[0]), forecast * np.exp(q[1])
        for step in range(3):
            assert abs(coverage(new[:, step], lower[:, step], upper[:, step]) - level) < 0.02


def test_coverage_and_winkler_score_by_hand():
    actual = np.array([10.0, 12.0, 7.0])
    lower = np.array([9.0, 9.0, 9.0])
    upper = np.array([11.0, 11.0, 11.0])
    assert coverage(actual, lower, upper) == pytest.approx(1 / 3)
    # Width 2 each; misses of 1 (above) and 2 (below) cost 2 / 0.2 = 10 per unit.
    assert winkler_score(actual, lower, upper, 0.8) == pytest.approx((2 + (2 + 10) + (2 + 20)) / 3)
    flat, table = interval_metrics(
        actual[:, None], {"model": {0.8: (lower[:, None], upper[:, None])}, "naive": {0.8: (actual[:, None],) * 2}}
    )
    assert flat["coverage_80"] == pytest.approx(1 / 3) and flat["naive_coverage_80"] == 1.0
    assert flat["naive_winkler_80"] == 0.0
    assert list(table["forecaster"]) == ["model", "naive"] and set(table["step"]) == {1}


def test_the_config_checks_covariates_and_interval_levels():
    config = load_config(
        StockConfig, None, ["features.covariates=[column:adj_close, series:SPY, calendar:day_of_week]"]
    )
    assert config.features.covariates == ["column:adj_close", "series:SPY", "calendar:day_of_week"]
    assert config.forecast.interval_levels == [0.8, 0.95]
    for bad, message in [
        ("features.covariates=[volume]", r"features.covariates: expected entries column:<CSV column>"),
        ("features.covariates=[calendar:week]", r"features.covariates: calendar fields are day_of_week"),
        ("features.covariates=[series:A, series:A]", r"features.covariates: an entry is named twice"),
        ("forecast.interval_levels=[0.8, 1.0]", r"forecast.interval_levels: expected levels in \(0, 1\)"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(StockConfig, None, [bad])


def test_a_covariate_column_is_read_with_the_prices_and_a_missing_one_named(tmp_path):
    frame = synthetic_ohlcv(30)
    path = write_csv(frame, tmp_path / "A.csv")
    raw = pd.read_csv(path)
    raw["Sentiment"] = np.linspace(-1, 1, len(raw))
    raw.loc[3, "Sentiment"] = np.nan
    raw.to_csv(path, index=False)
    prices = load_prices(path, ("sentiment",))
    values = prices["A"]["sentiment"].to_numpy()
    assert np.isnan(values[3]) and values[-1] == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"A.csv, line 1: no column 'turnover' \(named in features.covariates\)"):
        load_prices(path, ("turnover",))
    raw["Sentiment"] = raw["Sentiment"].astype(object)
    raw.loc[5, "Sentiment"] = "high"
    raw.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"A.csv, line 7, column 'Sentiment': 'high' is not a number"):
        load_prices(path, ("sentiment",))


COVARIATES = ("column:sentiment", "series:IDX", "calendar:day_of_week", "calendar:month")


def _with_covariates():
    rng = np.random.default_rng(3)
    prices = {"AAA": synthetic_ohlcv(220, seed=1), "IDX": synthetic_ohlcv(200, seed=9, start="2015-02-02")}
    for frame in prices.values():
        frame["sentiment"] = rng.normal(size=len(frame))
    return prices


def _tiny_model(n_features):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((WINDOW, n_features))
    return keras.Model(inputs, keras.layers.Dense(HORIZON)(keras.layers.LSTM(4)(inputs)))


def test_shuffling_the_future_of_a_covariate_changes_no_forecast_made_before_it():
    prices = _with_covariates()
    data = prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST, COVARIATES)
    assert data.n_features == 5 + len(COVARIATES) and data.feature_names[-4:] == COVARIATES
    cut = data.test_index["origin_date"].iloc[len(data.test_index) // 2]

    shuffled = {name: frame.copy() for name, frame in prices.items()}
    rng = np.random.default_rng(7)
    for name, frame in shuffled.items():  # the covariates' values after the cut, in a new order
        later = frame.index > cut
        for column in ("sentiment", "close") if name == "IDX" else ("sentiment",):
            frame.loc[later, column] = rng.permutation(frame.loc[later, column].to_numpy())
    changed = prepare_dataset(shuffled, WINDOW, HORIZON, VAL, TEST, COVARIATES)

    model = _tiny_model(data.n_features)
    known = (data.test_index["series"] == "AAA").to_numpy() & (data.test_index["origin_date"] <= cut).to_numpy()
    before = data.preprocessor.to_prices(model.predict(data.x_test[known], verbose=0), 1.0)
    after = changed.preprocessor.to_prices(model.predict(changed.x_test[known], verbose=0), 1.0)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(data.x_train, changed.x_train)
    # ... while the windows after the cut did see the shuffled values: the test is not vacuous.
    later = (data.test_index["series"] == "AAA").to_numpy() & (data.test_index["origin_date"] > cut).to_numpy()
    assert not np.array_equal(data.x_test[later], changed.x_test[later])


def test_a_series_covariate_takes_the_last_close_known_on_each_day():
    prices = _with_covariates()
    data = prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST, ("series:IDX",))
    joined = data.history["AAA"]["idx"]
    idx = prices["IDX"]["close"]
    assert joined.loc[: idx.index[0] - pd.Timedelta(days=1)].isna().all()  # nothing before IDX starts
    day = idx.index[10]
    assert joined.loc[day] == idx.loc[day]
    with pytest.raises(ConfigError, match=r"features.covariates: series NOPE not in the data; loaded: AAA, IDX"):
        prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST, ("series:NOPE",))


def _served(preprocessor, model):
    served = StockServingModel()
    served.preprocessor, served.keras_model = preprocessor, model
    return served


def test_the_served_model_returns_bounds_in_price_units_around_its_forecast():
    prices = _with_covariates()
    data = prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST, COVARIATES, (0.8, 0.95))
    model = _tiny_model(data.n_features)
    from pipelines.stock_forecasting.task import calibrated_preprocessor

    preprocessor = calibrated_preprocessor(model, data)
    assert preprocessor.interval_quantiles.shape == (2, 2, HORIZON)
    again = StockPreprocessor.from_dict(preprocessor.to_dict())
    np.testing.assert_array_equal(again.interval_quantiles, preprocessor.interval_quantiles)
    assert again.covariates == COVARIATES and again.interval_levels == (0.8, 0.95)

    request = request_frame(data.history["AAA"].tail(WINDOW + 3), ("sentiment", "idx"))
    answer = _served(again, model).serve(request)
    assert list(answer.columns) == ["date", "step_1", "step_2", "step_3", *bound_columns(HORIZON, (0.8, 0.95))]
    assert "step_2_lower_80" in answer.columns and "step_3_upper_95" in answer.columns
    q = preprocessor.interval_quantiles
    for step in range(1, HORIZON + 1):
        point = answer[f"step_{step}"].to_numpy()
        np.testing.assert_allclose(answer[f"step_{step}_lower_80"], point * np.exp(q[0, 0, step - 1]))
        np.testing.assert_allclose(answer[f"step_{step}_upper_95"], point * np.exp(q[1, 1, step - 1]))
        assert (answer[f"step_{step}_lower_95"] <= answer[f"step_{step}_lower_80"]).all()
        assert (answer[f"step_{step}_upper_80"] <= answer[f"step_{step}_upper_95"]).all()
    with pytest.raises(DataError, match=r"covariate 'series:IDX' needs a column 'idx'"):
        _served(again, model).serve(request.drop(columns="idx"))


def test_the_stock_gate_wants_u2_below_one_and_with_alpha_a_significant_dm_test():
    config = load_config(StockConfig, None, [])
    assert TASK.gate({"val_u2": 0.99}, config, None).promote
    refused = TASK.gate({"val_u2": 1.01}, config, None)
    assert not refused.promote and "val_u2 = 1.01, needs < 1" in refused.reason
    strict = load_config(StockConfig, None, ["tracking.gate.alpha=0.05"])
    assert TASK.gate({"val_u2": 0.99, "val_dm_statistic": -2.5, "val_dm_p_value": 0.01}, strict, None).promote
    weak = TASK.gate({"val_u2": 0.99, "val_dm_statistic": -1.0, "val_dm_p_value": 0.3}, strict, None)
    assert not weak.promote and weak.reason.startswith("val_dm_p_value = 0.3, needs < 0.05 (tracking.gate.alpha)")
    assert not TASK.gate({}, config, None).promote, "a missing metric never passes"
    with pytest.raises(ConfigError, match=r"tracking.gate.alpha: expected a probability in \(0, 1\) or null"):
        load_config(StockConfig, None, ["tracking.gate.alpha=1.5"])


def test_predict_reads_the_covariate_columns_the_served_model_needs(tmp_path):
    from types import SimpleNamespace

    path = write_csv(synthetic_ohlcv(40), tmp_path / "A.csv")
    raw = pd.read_csv(path)
    raw["Sentiment"] = np.arange(len(raw), dtype=float)
    raw.to_csv(path, index=False)
    served = SimpleNamespace(preprocessor=SimpleNamespace(covariates=("column:sentiment", "calendar:month")))
    request = TASK.read_inputs(str(path), served)
    assert list(request.columns) == ["date", "open", "high", "low", "close", "volume", "sentiment"]
    assert request["sentiment"].iloc[-1] == len(raw) - 1
    plain = TASK.read_inputs(str(path), SimpleNamespace())
    assert "sentiment" not in plain.columns
