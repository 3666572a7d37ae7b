"""The optional downloader's cache and its offline failure (nothing here touches the network)."""

import importlib.util

import pytest

from pipelines.errors import DataError, PipelineError
from pipelines.stock_forecasting import download
from tests.synthetic import write_ohlcv_csv


def test_intact_cached_file_is_used_without_downloading(tmp_path):
    path = download.cached_path("TEST", "2015-01-01", "2016-01-01", tmp_path)
    write_ohlcv_csv(path, days=50)
    path.with_suffix(".csv.sha256").write_text(f"{download.sha256(path)}  {path.name}\n")
    assert download.download_prices("test", "2015-01-01", "2016-01-01", tmp_path) == path


@pytest.mark.parametrize("recorded", ["0" * 64 + "\n", ""], ids=["wrong", "empty"])
def test_corrupted_cache_is_refused(tmp_path, recorded):
    path = download.cached_path("TEST", "2015-01-01", "2016-01-01", tmp_path)
    write_ohlcv_csv(path, days=50)
    path.with_suffix(".csv.sha256").write_text(recorded)
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        download.download_prices("TEST", "2015-01-01", "2016-01-01", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("yfinance") is not None, reason="yfinance installed: would go online")
def test_without_yfinance_the_error_says_how_to_install(tmp_path):
    with pytest.raises(PipelineError, match=r"pip install -e '.\[download\]'"):
        download.download_prices("AAPL", "2015-01-01", "2016-01-01", tmp_path)
