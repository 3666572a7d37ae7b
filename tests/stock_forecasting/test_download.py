"""The optional downloader's cache and its offline failure (nothing here touches the network)."""

import importlib.util
import sys
from types import SimpleNamespace

import pandas as pd
import pytest

from pipelines.errors import DataError, PipelineError
from pipelines.stock_forecasting import download
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv


def test_intact_cached_file_is_used_without_downloading(tmp_path):
    path = download.cached_path("TEST", "2015-01-01", "2016-01-01", tmp_path)
    write_csv(synthetic_ohlcv(50), path)
    path.with_suffix(".csv.sha256").write_text(f"{download.sha256(path)}  {path.name}\n")
    assert download.download_prices("test", "2015-01-01", "2016-01-01", tmp_path) == path


@pytest.mark.parametrize("recorded", ["0" * 64 + "\n", ""], ids=["wrong", "empty"])
def test_corrupted_cache_is_refused(tmp_path, recorded):
    path = download.cached_path("TEST", "2015-01-01", "2016-01-01", tmp_path)
    write_csv(synthetic_ohlcv(50), path)
    path.with_suffix(".csv.sha256").write_text(recorded)
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        download.download_prices("TEST", "2015-01-01", "2016-01-01", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("yfinance") is not None, reason="yfinance installed: would go online")
def test_without_yfinance_the_error_says_how_to_install(tmp_path):
    with pytest.raises(PipelineError, match=r"pip install -e '.\[download\]'"):
        download.download_prices("AAPL", "2015-01-01", "2016-01-01", tmp_path)


def _yahoo_frame(high):
    """Two days as recent yfinance returns them: a Date index and (field, ticker) columns."""
    fields = {"Open": 10.0, "High": high, "Low": 9.0, "Close": 10.5, "Adj Close": 10.5, "Volume": 100}
    index = pd.DatetimeIndex(["2015-01-02", "2015-01-05"], name="Date")
    columns = pd.MultiIndex.from_product([list(fields), ["TEST"]])
    return pd.DataFrame([list(fields.values())] * 2, index=index, columns=columns)


def test_a_download_that_fails_validation_is_not_cached_and_the_next_one_is(tmp_path, monkeypatch):
    highs = iter([-5.0, 11.0])
    fake = SimpleNamespace(download=lambda *args, **kwargs: _yahoo_frame(next(highs)))
    monkeypatch.setitem(sys.modules, "yfinance", fake)
    with pytest.raises(DataError, match=r"column 'High': prices must be positive"):
        download.download_prices("TEST", "2015-01-01", "2015-02-01", tmp_path)
    assert list(tmp_path.iterdir()) == []
    path = download.download_prices("TEST", "2015-01-01", "2015-02-01", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".sha256"]
    assert download.read_cached(path) == path and pd.read_csv(path)["High"].tolist() == [11.0, 11.0]
