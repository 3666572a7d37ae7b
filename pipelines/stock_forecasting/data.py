"""Load daily OHLCV price files into validated frames, one per series.

Recognised layouts (column names case-insensitive, extra columns ignored):

- Yahoo: ``Date,Open,High,Low,Close,Adj Close,Volume`` (``Close`` is used, not ``Adj Close``).
- Kaggle S&P 500: ``date,open,high,low,close,volume,Name``.
- Kaggle "Huge stock market dataset": ``Date,Open,High,Low,Close,Volume,OpenInt``.

Every frame has a ``DatetimeIndex`` named ``date`` (ascending) and float64 columns
``open, high, low, close, volume``; ``attrs["source"]`` is the file and ``attrs["repairs"]`` counts
the repairs below. A trailing UTC offset after a time (``2020-01-02 00:00:00-05:00``) is dropped so
the date stays the exchange's local date.

Repairs (the only ones; each is counted in ``attrs["repairs"]`` and logged as a warning):

- ``blank <col> filled with close``: a blank open, high or low is set to that row's close.
- ``rows reversed from descending date order``: a file sorted entirely newest-first is reversed.

Everything else that is wrong raises ``DataError`` naming the file, the line (header = line 1) and
the column: missing columns, non-numeric values, unparseable, duplicate or out-of-order dates, a
blank close or volume, a price <= 0, a negative volume, an empty file or a folder without CSVs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.csv_table import read_csv_strings
from pipelines.errors import DataError

logger = logging.getLogger(__name__)

COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
REPAIRABLE = ("open", "high", "low")
DEFAULT_SOURCE = "pmdarima.datasets.load_msft"
_FIRST_DATA_LINE = 2  # line 1 is the header
# Keeps the time, drops a UTC offset or zone (`Z`, `-05:00`, ` -0500`, ` UTC`) after it.
_TZ_OFFSET = r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d\d:?\d\d)$"


def load_prices(path: str | Path) -> dict[str, pd.DataFrame]:
    """Load one CSV file, or every ``*.csv`` in a folder (sorted by name).

    Args:
        path: a CSV file or a folder of CSV files.

    Returns:
        ``{series_name: frame}``; the name is the file's ``Name`` column, else its stem without a
        trailing ``_data`` (``AAPL_data.csv`` -> ``AAPL``).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv"), key=lambda p: p.name)
        if not files:
            raise DataError(f"{path}: folder has no .csv files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    prices: dict[str, pd.DataFrame] = {}
    for file in files:
        raw, lines = read_csv_strings(file)
        name, frame = normalise_prices(raw, source=str(file), default_name=_stem_name(file), lines=lines)
        if name in prices:
            raise DataError(f"{file}: series '{name}' is also in {prices[name].attrs['source']}")
        prices[name] = frame
    return prices


def load_default_prices() -> dict[str, pd.DataFrame]:
    """Load the daily MSFT prices 1986-2017 shipped with pmdarima, normalised like ``load_prices``.

    Returns:
        ``{"MSFT": frame}`` with ``attrs["source"] == "pmdarima.datasets.load_msft"``.
    """
    from pmdarima.datasets import load_msft

    name, frame = normalise_prices(load_msft(), source=DEFAULT_SOURCE, default_name="MSFT")
    return {name: frame}


def load_prices_or_default(path: str | Path | None) -> dict[str, pd.DataFrame]:
    """Load ``path`` with ``load_prices``, or the default MSFT series when ``path`` is None or "".

    Args:
        path: a CSV file, a folder of CSV files, or None / "" for the default data.

    Returns:
        ``{series_name: frame}`` as ``load_prices`` returns it.
    """
    if path is None or str(path) == "":
        return load_default_prices()
    return load_prices(path)


def normalise_prices(
    raw: pd.DataFrame, source: str, default_name: str, lines: np.ndarray | None = None
) -> tuple[str, pd.DataFrame]:
    """Validate a raw price table and return the clean frame; the one path every loader takes.

    Args:
        raw: the table as read (strings or numbers), one row per data line.
        source: the file name (or data set name) used in error messages and ``attrs["source"]``.
        default_name: the series name when ``raw`` has no ``Name`` column.
        lines: the file line of each row. Default: row ``i`` is line ``i + 2``.

    Returns:
        ``(series_name, frame)`` with a DatetimeIndex ``date`` and float64 OHLCV columns.
    """
    if lines is None:
        lines = np.arange(len(raw)) + _FIRST_DATA_LINE
    if raw.empty:
        raise DataError(f"{source}: no data rows (line {_FIRST_DATA_LINE} is empty)")
    columns = _find_columns(raw, source)
    dates = _parse_dates(raw[columns["date"]], source, lines, columns["date"])
    values = {col: _parse_numbers(raw[columns[col]], source, lines, columns[col]) for col in COLUMNS}
    name = _series_name(raw, columns.get("name"), source, lines, default_name)

    frame = pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="date"))
    repairs: dict[str, int] = {}
    frame, lines = _ascending(frame, lines, source, columns["date"], repairs)
    _check_values(frame, lines, source, columns, repairs)
    frame.attrs["source"] = source
    frame.attrs["repairs"] = repairs
    return name, frame


def _stem_name(file: Path) -> str:
    stem = file.stem
    return stem[: -len("_data")] if stem.lower().endswith("_data") and len(stem) > 5 else stem


def _find_columns(raw: pd.DataFrame, source: str) -> dict[str, str]:
    """Map lower-case required names (and optional ``name``) to the file's own column names."""
    found: dict[str, str] = {}
    for column in raw.columns:
        key = str(column).strip().lower()
        if key in found and key in (*COLUMNS, "date", "name"):
            raise DataError(
                f"{source}, line 1: columns '{found[key]}' and '{column}' are the same "
                "column (names are case-insensitive)"
            )
        found.setdefault(key, column)
    missing = [col for col in ("date", *COLUMNS) if col not in found]
    if missing:
        raise DataError(
            f"{source}, line 1: missing required column(s) {missing}; found "
            f"{[str(c) for c in raw.columns]} (need date, open, high, low, close, volume, "
            "case-insensitive)"
        )
    return {key: found[key] for key in ("date", *COLUMNS, "name") if key in found}


def _text(raw: pd.Series) -> pd.Series:
    """Stripped strings with <NA> for blank cells, whatever the input dtype."""
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def _parse_dates(raw: pd.Series, source: str, lines: np.ndarray, column: str) -> pd.Series:
    original = _text(raw)
    text = original.str.replace(_TZ_OFFSET, r"\1", regex=True)
    try:
        dates = pd.to_datetime(text, format="ISO8601", errors="coerce")
        if dates.isna().all() and text.notna().any():
            with warnings.catch_warnings():  # "could not infer format": falls back to per-row parsing
                warnings.simplefilter("ignore", UserWarning)
                dates = pd.to_datetime(text, errors="coerce")
    except ValueError as error:  # e.g. zones pandas parses but cannot mix ("Mixed timezones detected")
        raise DataError(f"{source}, column '{column}': cannot parse the dates ({error})") from None
    if isinstance(dates.dtype, pd.DatetimeTZDtype):  # a zone the pattern above does not know: keep local time
        dates = dates.dt.tz_localize(None)
    bad = np.flatnonzero(dates.isna().to_numpy())
    if bad.size:
        i = bad[0]
        value = "" if pd.isna(original.iloc[i]) else original.iloc[i]
        raise DataError(f"{source}, line {lines[i]}, column '{column}': cannot parse date '{value}'")
    return dates


def _parse_numbers(raw: pd.Series, source: str, lines: np.ndarray, column: str) -> np.ndarray:
    """Float64 values with NaN for blank cells; a non-blank value that is not a finite number raises."""
    text = _text(raw)
    numbers = pd.to_numeric(text, errors="coerce").astype("Float64")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(text.notna().to_numpy() & ~np.isfinite(values))
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}, line {lines[i]}, column '{column}': '{text.iloc[i]}' is not a number")
    return values


def _series_name(raw: pd.DataFrame, column: str | None, source: str, lines: np.ndarray, default_name: str) -> str:
    if column is None:
        return default_name
    names = _text(raw[column])
    present = np.flatnonzero(names.notna().to_numpy())
    if not present.size:
        return default_name
    first = names.iloc[present[0]]
    other = np.flatnonzero(names.notna().to_numpy() & (names != first).fillna(False).to_numpy())
    if other.size:
        i = other[0]
        raise DataError(
            f"{source}, line {lines[i]}, column '{column}': series name '{names.iloc[i]}' "
            f"differs from '{first}' on line {lines[present[0]]}; one series per file"
        )
    return str(first)


def _ascending(
    frame: pd.DataFrame, lines: np.ndarray, source: str, column: str, repairs: dict[str, int]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Reject duplicate or shuffled dates; reverse a file that is entirely newest-first."""
    dates = frame.index
    duplicated = np.flatnonzero(dates.duplicated())
    if duplicated.size:
        i = duplicated[0]
        j = np.flatnonzero(dates == dates[i])[0]
        raise DataError(
            f"{source}, lines {lines[j]} and {lines[i]}, column '{column}': duplicate date {dates[i].date()}"
        )
    steps = np.diff(dates.asi8)
    if (steps > 0).all():
        return frame, lines
    if (steps < 0).all():
        repairs["rows reversed from descending date order"] = len(frame)
        logger.warning("%s: %d rows were in descending date order; reversed them", source, len(frame))
        return frame.iloc[::-1], lines[::-1]
    i = np.flatnonzero(steps < 0)[0] + 1
    raise DataError(
        f"{source}, line {lines[i]}, column '{column}': {dates[i].date()} comes after "
        f"{dates[i - 1].date()} on line {lines[i - 1]}; dates must be ascending "
        "(or the whole file descending)"
    )


def _check_values(
    frame: pd.DataFrame, lines: np.ndarray, source: str, columns: dict[str, str], repairs: dict[str, int]
) -> None:
    """Fill repairable blanks in place, then reject blank, non-positive or negative values."""

    def fail(col: str, mask: np.ndarray, problem: str) -> None:
        i = np.flatnonzero(mask)[0]
        value = frame[col].iloc[i]
        raise DataError(
            f"{source}, line {lines[i]}, column '{columns[col]}': {problem}"
            + ("" if np.isnan(value) else f" (got {value:g})")
        )

    for col in ("close", "volume"):
        blank = frame[col].isna().to_numpy()
        if blank.any():
            fail(col, blank, f"{col} is blank or NaN")
    for col in REPAIRABLE:
        blank = frame[col].isna().to_numpy()
        if blank.any():
            frame.loc[blank, col] = frame.loc[blank, "close"]
            key = f"blank {col} filled with close"
            repairs[key] = int(blank.sum())
            logger.warning("%s: filled %d blank %s value(s) with the row's close", source, blank.sum(), col)
    for col in PRICE_COLUMNS:
        bad = (frame[col] <= 0).to_numpy()
        if bad.any():
            fail(col, bad, "prices must be positive")
    negative = (frame["volume"] < 0).to_numpy()
    if negative.any():
        fail("volume", negative, "volume must not be negative")
