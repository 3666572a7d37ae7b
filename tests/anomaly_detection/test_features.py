"""Scaling (scikit-learn's StandardScaler, fitted on the training rows) and the model's input windows."""

import json
import logging

import numpy as np
import pytest

from pipelines.anomaly_detection.features import (
    CLIP,
    fit_scaler,
    prediction_samples,
    reconstruction_samples,
    scale,
    scaler_from_state,
)


def reference_scale(train, values):
    """The hand-written scaler the StandardScaler replaced: mean and population standard deviation of
    the training rows (1 for a constant column), clipped to +-CLIP, float32."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return np.clip((values - mean) / std, -CLIP, CLIP).astype(np.float32), mean, std


def test_scaler_gives_the_numbers_of_the_hand_written_one():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(1e3, 5.0, 900), rng.gamma(2.0, 3.0, 900), np.full(900, 7.25)])
    values[700] = [5e4, -1e3, 7.25]  # far outside the training rows: clipped
    train = values[:500]
    expected, mean, std = reference_scale(train, values)
    scaler = fit_scaler(train, "s")
    np.testing.assert_allclose(scaler.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(scaler.scale_, std, rtol=1e-12)
    scaled = scale(scaler, values)
    assert scaled.dtype == np.float32 and scaled.shape == values.shape
    np.testing.assert_allclose(scaled, expected, rtol=1e-6, atol=1e-6)
    assert scaled[700, 0] == CLIP and scaled[700, 1] == -CLIP
    np.testing.assert_array_equal(scaled[:, 2], 0.0)


def test_scaler_sees_the_training_rows_only_and_leaves_them_unchanged():
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 1.0, (300, 2))
    copy = values.copy()
    scaler = fit_scaler(values[:100])
    changed = values.copy()
    changed[100:] *= 50.0
    np.testing.assert_array_equal(fit_scaler(changed[:100]).mean_, scaler.mean_)
    np.testing.assert_array_equal(values, copy)


def test_a_constant_column_is_centred_not_scaled_and_logged(caplog):
    values = np.column_stack([np.arange(50.0), np.full(50, 3.0)])
    with caplog.at_level(logging.WARNING, logger="pipelines.anomaly_detection.features"):
        scaler = fit_scaler(values, "plant.csv")
    assert scaler.scale_[1] == 1.0
    assert "series plant.csv: 1 value column(s) constant over the training rows" in caplog.text
    np.testing.assert_array_equal(scale(scaler, np.array([[0.0, 5.0]]))[:, 1], [2.0])


def test_scaler_round_trips_through_its_saved_mean_and_scale():
    rng = np.random.default_rng(2)
    values = rng.normal(10.0, 3.0, (200, 3))
    scaler = fit_scaler(values[:80])
    state = json.loads(json.dumps({"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}))
    again = scaler_from_state(state["mean"], state["scale"])
    np.testing.assert_array_equal(scale(again, values), scale(scaler, values))
    with pytest.raises(ValueError, match="features"):
        scale(again, values[:, :2])


def test_prediction_samples_forecast_changes_from_the_last_value_seen():
    scaled = np.arange(40, dtype=np.float32).reshape(20, 2)
    x, y = prediction_samples(scaled, window=4, steps=2, first=10, last=20)
    # targets in rows 10..19: origins 9..17
    assert x.shape == (9, 4, 2) and y.shape == (9, 4)
    np.testing.assert_array_equal(x[0], scaled[6:10] - scaled[9])
    np.testing.assert_array_equal(y[0], (scaled[10:12] - scaled[9]).reshape(-1))


def test_reconstruction_samples_lie_inside_their_split():
    scaled = np.arange(20, dtype=np.float32).reshape(20, 1)
    x, y = reconstruction_samples(scaled, window=5, first=10, last=20)
    assert x.shape == (6, 5, 1) and x is y
    assert x.min() == 10 and x.max() == 19
