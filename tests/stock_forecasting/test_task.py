"""The task's config shape (old keys fail naming their new place) and the synthetic price writer."""

import pytest

from pipelines.config import CONF_DIR, load_config
from pipelines.errors import ConfigError
from pipelines.stock_forecasting.data import load_prices
from pipelines.stock_forecasting.features import prepare_dataset
from pipelines.stock_forecasting.synthetic import main, write_synthetic_prices
from pipelines.stock_forecasting.task import TASK, StockConfig

CONF = CONF_DIR / "stock_forecasting.yaml"


def test_the_shipped_config_builds_in_the_new_shape():
    config = load_config(StockConfig, CONF, ["features.window=20", "forecast.horizon=3"])
    assert (config.features.window, config.forecast.horizon) == (20, 3)
    assert (config.data.val_fraction, config.data.test_fraction, config.data.eval_folds) == (0.15, 0.15, 4)
    assert "features.window" in config.search.space and not any(key.startswith("data.") for key in config.search.space)
    assert TASK.config_class is StockConfig and StockConfig.OUTPUT_GROUP == "forecast"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.window=20"], r"data.window: moved to features.window \(given by --set 'data.window=20'\)"),
        (["data.horizon=3"], r"data.horizon: moved to forecast.horizon"),
        (["search.space.data.window={type: int, low: 5, high: 9}"], r"search.space.data.window: moved to features"),
        (["features.window=0"], r"features.window: expected a positive integer, got 0"),
        (["forecast.horizon=0"], r"forecast.horizon: expected a positive integer, got 0"),
        (["data.eval_folds=0"], r"data.eval_folds: expected a positive integer, got 0"),
        (["data.test_fraction=0.5"], r"data.test_fraction: expected a fraction in \(0, 0.5\), got 0.5"),
        (["augment.noise=1"], r"augment.noise: unknown key; this group has no keys for this task"),
    ],
)
def test_bad_and_old_keys_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(StockConfig, CONF, overrides)


def test_an_old_key_in_a_yaml_file_fails_naming_its_new_place(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  horizon: 3\n")
    with pytest.raises(ConfigError, match=r"old.yaml: data.horizon: moved to forecast.horizon"):
        load_config(StockConfig, path)


def test_prepare_reads_the_window_and_horizon_of_their_groups(prices):
    config = load_config(StockConfig, None, ["features.window=10", "forecast.horizon=3", "data.val_fraction=0.2"])
    dataset = TASK.prepare(config, prices)
    assert dataset.input_shape == (10, dataset.n_features) == dataset.x_train.shape[1:]
    assert dataset.output_dim == 3 == dataset.y_train.shape[1]


def test_synthetic_folder_loads_and_splits(tmp_path, capsys):
    main([str(tmp_path / "prices"), "--series", "2", "--days", "120", "--seed", "5"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "prices")
    prices = load_prices(tmp_path / "prices")
    assert list(prices) == ["SYN1", "SYN2"] and all(len(frame) == 120 for frame in prices.values())
    assert prices["SYN2"].index[0] > prices["SYN1"].index[0]  # a later start: cut at shared dates
    dataset = prepare_dataset(prices, 10, 3, 0.2, 0.2)
    assert set(dataset.test_index.series) == {"SYN1", "SYN2"}


@pytest.mark.parametrize("layout", ["sp500", "huge"])
def test_synthetic_layouts_load_the_same_prices(tmp_path, layout):
    yahoo = load_prices(write_synthetic_prices(tmp_path / "yahoo", series=1, days=30)[0])
    other = load_prices(write_synthetic_prices(tmp_path / layout, series=1, days=30, layout=layout)[0])
    assert list(other) == ["SYN1"] and other["SYN1"].equals(yahoo["SYN1"])


def test_synthetic_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="series=0"):
        write_synthetic_prices(tmp_path, series=0)
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--days", "0"])
