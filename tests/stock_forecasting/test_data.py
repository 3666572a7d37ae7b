"""Loading the three CSV layouts, the documented repairs, and one DataError per kind of bad data."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.serving import check_time_order
from pipelines.stock_forecasting.data import (
    DEFAULT_SOURCE,
    load_default_prices,
    load_prices,
    load_prices_or_default,
)
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv
from pipelines.stock_forecasting.task import TASK

COLUMNS = ["open", "high", "low", "close", "volume"]


def _check_frame(frame, expected, source):
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "date"
    assert frame.index.is_monotonic_increasing
    assert list(frame.columns) == COLUMNS
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.attrs["source"] == str(source)
    np.testing.assert_allclose(frame.to_numpy(), expected.to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(frame.index, expected.index)


@pytest.mark.parametrize(
    ("layout", "filename", "series"),
    [
        ("yahoo", "SPY.csv", "SPY"),
        ("sp500", "AAPL_data.csv", "AAPLNAME"),  # the Name column wins over the file name
        ("huge", "msft.us.csv", "msft.us"),
        ("huge", "IBM_data.csv", "IBM"),
    ],
)
def test_each_layout_loads(tmp_path, layout, filename, series):
    expected = synthetic_ohlcv(40)
    path = write_csv(expected, tmp_path / filename, layout, name="AAPLNAME")
    prices = load_prices(path)
    assert list(prices) == [series]
    _check_frame(prices[series], expected, path)  # Yahoo: close, not the (different) Adj Close
    assert prices[series].attrs["repairs"] == {}


def test_folder_loads_every_csv_sorted_and_ignores_other_files(tmp_path):
    write_csv(synthetic_ohlcv(30, seed=1), tmp_path / "b_data.csv", "huge")
    write_csv(synthetic_ohlcv(20, seed=2), tmp_path / "a.csv", "yahoo")
    (tmp_path / "notes.txt").write_text("not prices")
    prices = load_prices(tmp_path)
    assert list(prices) == ["a", "b"]
    assert [len(f) for f in prices.values()] == [20, 30]
    assert prices["b"].attrs["source"] == str(tmp_path / "b_data.csv")


def test_same_series_name_in_two_files_is_an_error(tmp_path):
    write_csv(synthetic_ohlcv(10), tmp_path / "x.csv", "sp500", name="AAPL")
    write_csv(synthetic_ohlcv(10), tmp_path / "y.csv", "sp500", name="AAPL")
    with pytest.raises(DataError, match=r"y\.csv.*'AAPL'.*x\.csv"):
        load_prices(tmp_path)


def test_blank_open_high_low_are_filled_with_close_and_counted(tmp_path, caplog):
    path = tmp_path / "BHF_data.csv"
    path.write_text(
        "date,open,high,low,close,volume,Name\n"
        "2017-07-24,70.0,71.0,69.0,70.5,100,BHF\n"
        "2017-07-25,,,,69.0842,3,BHF\n"
        "2017-07-26,,69.5,68.0,69.0,0,BHF\n"
        "2017-07-27,69.0,70.0,68.5,69.5,50,BHF\n"
    )
    with caplog.at_level(logging.WARNING):
        frame = load_prices(path)["BHF"]
    assert frame.attrs["repairs"] == {
        "blank open filled with close": 2,
        "blank high filled with close": 1,
        "blank low filled with close": 1,
    }
    assert frame.loc["2017-07-25", ["open", "high", "low"]].tolist() == [69.0842] * 3
    assert frame.loc["2017-07-26", "open"] == 69.0
    assert frame.loc["2017-07-26", "high"] == 69.5
    assert "2 blank open" in caplog.text and str(path) in caplog.text


def test_file_in_descending_order_is_reversed_and_counted(tmp_path, caplog):
    expected = synthetic_ohlcv(15)
    path = write_csv(expected.iloc[::-1], tmp_path / "desc.csv", "yahoo")
    with caplog.at_level(logging.WARNING):
        frame = load_prices(path)["desc"]
    _check_frame(frame, expected, path)
    assert frame.attrs["repairs"] == {"rows reversed from descending date order": 15}
    assert "descending" in caplog.text


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,1,1,1,1\n\n2020-01-03,1,1,1,x,1\n")
    with pytest.raises(DataError, match=r"gaps\.csv, line 4, column 'Close': 'x' is not a number"):
        load_prices(path)


def test_timestamps_with_utc_offsets_keep_the_local_date(tmp_path):
    path = tmp_path / "yf.csv"  # as yfinance writes them, offsets changing with daylight saving
    path.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2020-03-06 00:00:00-05:00,1,1,1,1,1,1\n"
        "2020-03-09 00:00:00-04:00,1,1,1,1,1,1\n"
    )
    frame = load_prices(path)["yf"]
    assert list(frame.index) == [pd.Timestamp("2020-03-06"), pd.Timestamp("2020-03-09")]


def test_intraday_prices_keep_their_time_in_a_served_request(tmp_path):
    path = tmp_path / "hourly.csv"
    rows = [f"2015-02-03 {hour:02d}:00,1,1,1,{hour},1" for hour in range(9, 17)]
    path.write_text("\n".join(["Date,Open,High,Low,Close,Volume", *rows]) + "\n")
    request = TASK.read_inputs(path, served=None)
    assert request["date"].tolist()[:2] == ["2015-02-03T09:00:00", "2015-02-03T10:00:00"]
    check_time_order(request, "date")  # the served model's check: strictly ascending, each time once
    (tmp_path / "daily.csv").write_text("\n".join([HEADER, *GOOD]) + "\n")
    daily = TASK.read_inputs(tmp_path / "daily.csv", served=None)
    assert daily["date"].tolist() == ["2020-01-02", "2020-01-03", "2020-01-06"]


@pytest.mark.parametrize(
    "stamps",
    [
        ("2020-03-06 00:00:00 -05:00", "2020-03-09 00:00:00 -04:00"),  # a space before the offset
        ("2020-03-06 00:00:00 UTC", "2020-03-09 00:00:00 UTC"),
        ("2020-03-06T00:00:00.000Z", "2020-03-09T00:00:00.000Z"),
    ],
)
def test_other_zone_spellings_keep_the_local_date_and_mix_with_plain_dates(tmp_path, stamps):
    rows = [f"{stamp},1,1,1,{i + 1},1" for i, stamp in enumerate(stamps)]
    (tmp_path / "zoned.csv").write_text("\n".join(["Date,Open,High,Low,Close,Volume", *rows]) + "\n")
    (tmp_path / "plain.csv").write_text("\n".join([HEADER, *GOOD]) + "\n")
    frames = load_prices(tmp_path)
    assert list(frames["zoned"].index) == [pd.Timestamp("2020-03-06"), pd.Timestamp("2020-03-09")]
    assert frames["zoned"].index.tz is None and frames["plain"].index.tz is None


HEADER = "Date,Open,High,Low,Close,Volume"
GOOD = ["2020-01-02,10,11,9,10.5,100", "2020-01-03,10.5,11,10,10.8,200", "2020-01-06,10.8,11.2,10.1,11,300"]


def _with_row(line_no, row):
    """The good rows with file line ``line_no`` (2 = first data row) replaced by ``row``."""
    rows = list(GOOD)
    rows[line_no - 2] = row
    return "\n".join([HEADER, *rows]) + "\n"


BAD_FILES = {
    "missing_column": (
        "Date,Open,High,Low,Close\n2020-01-02,1,1,1,1\n",
        r"line 1: missing required column\(s\) \['volume'\]; found \['Date', 'Open'",
    ),
    "non_numeric": (_with_row(3, "2020-01-03,10.5,abc,10,10.8,200"), r"line 3, column 'High': 'abc' is not a number"),
    "infinite": (_with_row(3, "2020-01-03,10.5,inf,10,10.8,200"), r"line 3, column 'High': 'inf' is not a number"),
    "bad_date": (
        _with_row(4, "2020-13-45,10.8,11.2,10.1,11,300"),
        r"line 4, column 'Date': cannot parse date '2020-13-45'",
    ),
    "blank_date": (_with_row(3, ",10.5,11,10,10.8,200"), r"line 3, column 'Date': cannot parse date ''"),
    "duplicate_date": (
        _with_row(4, "2020-01-02,10.8,11.2,10.1,11,300"),
        r"lines 2 and 4, column 'Date': duplicate date 2020-01-02",
    ),
    "out_of_order": (
        _with_row(4, "2020-01-01,10.8,11.2,10.1,11,300"),
        r"line 4, column 'Date': 2020-01-01 comes after 2020-01-03 on line 3",
    ),
    "blank_close": (_with_row(3, "2020-01-03,10.5,11,10,,200"), r"line 3, column 'Close': close is blank"),
    "nan_close": (_with_row(2, "2020-01-02,10,11,9,NaN,100"), r"line 2, column 'Close': close is blank or NaN"),
    "blank_volume": (_with_row(4, "2020-01-06,10.8,11.2,10.1,11,"), r"line 4, column 'Volume': volume is blank"),
    "zero_price": (
        _with_row(3, "2020-01-03,10.5,11,0,10.8,200"),
        r"line 3, column 'Low': prices must be positive \(got 0\)",
    ),
    "negative_close": (_with_row(2, "2020-01-02,10,11,9,-1,100"), r"line 2, column 'Close': prices must be positive"),
    "negative_volume": (
        _with_row(3, "2020-01-03,10.5,11,10,10.8,-5"),
        r"line 3, column 'Volume': volume must not be negative \(got -5\)",
    ),
    "blank_first_line": ("\n" + _with_row(3, "2020-01-03,10.5,11,0,10.8,200"), r"line 4, column 'Low'"),
    "quoted_line_break": (
        'Date,Open,High,Low,Close,Volume,Note\n2020-01-02,10,11,9,10.5,100,"a\nb"\n2020-01-03,1,1,1,-1,1,\n',
        r"line 4, column 'Close': prices must be positive",
    ),
    "extra_field": (_with_row(3, "2020-01-03,10.5,11,10,10.8,200,7"), r"line 3: 7 fields, but the header on line 1"),
    "empty_file": ("", r"file is empty"),
    "header_only": (HEADER + "\n", r"no data rows"),
    "two_names": (
        "date,open,high,low,close,volume,Name\n2020-01-02,1,1,1,1,1,AAPL\n2020-01-03,1,1,1,1,1,MSFT\n",
        r"line 3, column 'Name': series name 'MSFT' differs from 'AAPL' on line 2",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_data_names_file_line_and_column(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(str(path)) + r".*" + message):
        load_prices(path)


def test_folder_without_csv_and_missing_path(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=re.escape(str(tmp_path)) + ": folder has no .csv files"):
        load_prices(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        load_prices(tmp_path / "nope.csv")


def test_default_prices_are_pmdarima_msft_normalised():
    from pmdarima.datasets import load_msft

    raw = load_msft()
    prices = load_default_prices()
    frame = prices["MSFT"]
    assert list(prices) == ["MSFT"] and len(frame) == len(raw)
    assert list(frame.columns) == COLUMNS and frame.index.name == "date"
    assert frame.attrs == {"source": DEFAULT_SOURCE, "repairs": {}}
    np.testing.assert_array_equal(frame["close"].to_numpy(), raw["Close"].to_numpy())
    assert frame.index[0] == pd.Timestamp("1986-03-13") and frame.index[-1] == pd.Timestamp("2017-11-10")


@pytest.mark.parametrize("path", [None, ""])
def test_load_prices_or_default_falls_back(path):
    assert list(load_prices_or_default(path)) == ["MSFT"]


def test_load_prices_or_default_uses_the_path(tmp_path):
    path = write_csv(synthetic_ohlcv(12), tmp_path / "X.csv", "yahoo")
    assert list(load_prices_or_default(str(path))) == ["X"]
