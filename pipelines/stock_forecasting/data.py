"""Load daily OHLCV price files into validated frames, one per series, and split them in time.

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

The split is chronological and leak-free. All series are cut at the same two calendar dates, so no
series trains on days that another series validates or tests on. Over the sorted union of every
series' dates (``N`` days), validation starts on union day ``floor(N * (1 - val_fraction -
test_fraction))`` and testing on union day ``floor(N * (1 - test_fraction))``. A series' days before
the validation start (``[0, n_train)``) are its training days, those from there to the test start
(``[n_train, n_val_end)``) its validation days and the rest its test days; one series alone, or
series on the same dates, is cut by the fractions of its own days. An origin (last observed day of a
window) belongs to the split of its day. Origins whose targets would reach into the next split (the
last ``horizon`` train and val origins) are purged. A series needs ``rows_needed`` days, and windows
in every split at the shared dates.
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
SPLITS = ("train", "val", "test")
_FIRST_DATA_LINE = 2  # line 1 is the header
# Keeps the time, drops a UTC offset or zone (`Z`, `-05:00`, ` -0500`, ` UTC`) after it.
_TZ_OFFSET = r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d\d:?\d\d)$"


def load_prices(path: str | Path, extra: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Load one CSV file, or every ``*.csv`` in a folder (sorted by name).

    Args:
        path: a CSV file or a folder of CSV files.
        extra: other numeric columns to keep (case-insensitive; ``column:`` covariates), under
            their lower-case names. Default: none.

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
        name, frame = normalise_prices(raw, source=str(file), default_name=_stem_name(file), lines=lines, extra=extra)
        if name in prices:
            raise DataError(f"{file}: series '{name}' is also in {prices[name].attrs['source']}")
        prices[name] = frame
    return prices


def load_default_prices(extra: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Load the daily MSFT prices 1986-2017 shipped with pmdarima, normalised like ``load_prices``.

    Args:
        extra: other numeric columns to keep, as ``load_prices``. Default: none.

    Returns:
        ``{"MSFT": frame}`` with ``attrs["source"] == "pmdarima.datasets.load_msft"``.
    """
    from pmdarima.datasets import load_msft

    name, frame = normalise_prices(load_msft(), source=DEFAULT_SOURCE, default_name="MSFT", extra=extra)
    return {name: frame}


def load_prices_or_default(path: str | Path | None, extra: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Load ``path`` with ``load_prices``, or the default MSFT series when ``path`` is None or "".

    Args:
        path: a CSV file, a folder of CSV files, or None / "" for the default data.
        extra: other numeric columns to keep, as ``load_prices``. Default: none.

    Returns:
        ``{series_name: frame}`` as ``load_prices`` returns it.
    """
    if path is None or str(path) == "":
        return load_default_prices(extra)
    return load_prices(path, extra)


def normalise_prices(
    raw: pd.DataFrame, source: str, default_name: str, lines: np.ndarray | None = None, extra: tuple[str, ...] = ()
) -> tuple[str, pd.DataFrame]:
    """Validate a raw price table and return the clean frame; the one path every loader takes.

    Args:
        raw: the table as read (strings or numbers), one row per data line.
        source: the file name (or data set name) used in error messages and ``attrs["source"]``.
        default_name: the series name when ``raw`` has no ``Name`` column.
        lines: the file line of each row. Default: row ``i`` is line ``i + 2``.
        extra: other numeric columns to keep (case-insensitive), under their lower-case names;
            a blank cell is NaN. Default: none.

    Returns:
        ``(series_name, frame)`` with a DatetimeIndex ``date``, float64 OHLCV columns and the ``extra`` ones.
    """
    if lines is None:
        lines = np.arange(len(raw)) + _FIRST_DATA_LINE
    if raw.empty:
        raise DataError(f"{source}: no data rows (line {_FIRST_DATA_LINE} is empty)")
    columns = _find_columns(raw, source)
    dates = _parse_dates(raw[columns["date"]], source, lines, columns["date"])
    values = {col: _parse_numbers(raw[columns[col]], source, lines, columns[col]) for col in COLUMNS}
    name = _series_name(raw, columns.get("name"), source, lines, default_name)

    found = {str(column).strip().lower(): column for column in raw.columns}
    for column in (str(c).strip().lower() for c in extra):
        if column in values:
            continue
        if column not in found:
            raise DataError(
                f"{source}, line 1: no column '{column}' (named in features.covariates); "
                f"found {[str(c) for c in raw.columns]}"
            )
        text = _text(raw[found[column]])
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = np.flatnonzero(numbers.isna().to_numpy() & text.notna().to_numpy())
        if bad.size:
            raise DataError(
                f"{source}, line {lines[bad[0]]}, column '{found[column]}': "
                f"{raw[found[column]].iloc[bad[0]]!r} is not a number"
            )
        values[column] = numbers.to_numpy(np.float64)
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


def split_origins(
    n_rows: int, window: int, horizon: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Origin positions of each split for a series of ``n_rows`` days, purged at the boundaries.

    Args:
        n_rows: days in the series.
        window: feature rows per window; the first origin is day ``window``.
        horizon: future steps per target.
        val_fraction: share of the days for validation.
        test_fraction: share of the days for testing.

    Returns:
        ``{"train": positions, "val": positions, "test": positions}`` (int arrays, may be empty).
    """
    n_train, n_val_end = _cut_positions(n_rows, val_fraction, test_fraction)
    return origins_between_cuts(n_rows, n_train, n_val_end, window, horizon)


def origins_between_cuts(n_rows: int, n_train: int, n_val_end: int, window: int, horizon: int) -> dict[str, np.ndarray]:
    """Origin positions of each split of a series whose split boundaries are given, purged at the boundaries.

    Args:
        n_rows: days in the series.
        n_train: the series' days before the validation start.
        n_val_end: the series' days before the test start.
        window: feature rows per window; the first origin is day ``window``.
        horizon: future steps per target.

    Returns:
        ``{"train": positions, "val": positions, "test": positions}`` (int arrays, may be empty).
    """
    bounds = {"train": (0, n_train), "val": (n_train, n_val_end), "test": (n_val_end, n_rows)}
    # An origin t needs days t - window .. t + horizon, all before the end of its own split.
    return {name: np.arange(max(start, window), end - horizon) for name, (start, end) in bounds.items()}


def calendar_cuts(
    prices: dict[str, pd.DataFrame], val_fraction: float, test_fraction: float
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The validation and test start dates shared by all series.

    Args:
        prices: ``{series: frame}`` with sorted, unique dates as the index.
        val_fraction: share of the union of the series' dates for validation.
        test_fraction: share of the union of the series' dates for testing.

    Returns:
        ``(val_start, test_start)``: days of the union of all series' dates.
    """
    dates = pd.DatetimeIndex(np.unique(np.concatenate([frame.index.to_numpy() for frame in prices.values()])))
    n_train, n_val_end = _cut_positions(len(dates), val_fraction, test_fraction)
    return dates[n_train], dates[n_val_end]


def rows_needed(window: int, horizon: int, val_fraction: float, test_fraction: float) -> int:
    """Fewest days that give at least one origin in every split.

    Args:
        window: feature rows per window.
        horizon: future steps per target.
        val_fraction: share of the days for validation.
        test_fraction: share of the days for testing.

    Returns:
        The number of days.
    """
    n_rows = window + horizon + 1
    while min(len(o) for o in split_origins(n_rows, window, horizon, val_fraction, test_fraction).values()) < 1:
        n_rows += 1
    return n_rows


def split_series(
    prices: dict[str, pd.DataFrame], window: int, horizon: int, val_fraction: float, test_fraction: float
) -> dict[str, dict[str, np.ndarray]]:
    """Cut every series at the shared calendar dates into purged train, val and test origins.

    Args:
        prices: ``{series: frame}`` as ``load_prices`` returns it.
        window: days of features per input window.
        horizon: future daily closes per target.
        val_fraction: share of the union of all series' dates for validation, in (0, 1).
        test_fraction: share of the union of all series' dates for testing, in (0, 1).

    Returns:
        ``{series: {"train": positions, "val": positions, "test": positions}}``, every split non-empty.

    Raises:
        DataError: a series too short, or without windows in some split at the shared dates.
        ValueError: a window, horizon or fraction out of range.
    """
    _check_split_arguments(prices, window, horizon, val_fraction, test_fraction)
    needed = rows_needed(window, horizon, val_fraction, test_fraction)
    for name, frame in prices.items():
        if len(frame) < needed:
            raise DataError(
                f"{frame.attrs.get('source', name)}: series '{name}' has {len(frame)} rows, "
                f"needs at least {needed} for window={window}, horizon={horizon}, "
                f"val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
    cuts = calendar_cuts(prices, val_fraction, test_fraction)  # every series long enough: both cuts are dates
    origins: dict[str, dict[str, np.ndarray]] = {}
    for name, frame in prices.items():
        n_train, n_val_end = (int(frame.index.searchsorted(cut)) for cut in cuts)
        origins[name] = origins_between_cuts(len(frame), n_train, n_val_end, window, horizon)
        if min(len(o) for o in origins[name].values()) < 1:
            raise _calendar_error(name, frame, origins[name], (n_train, n_val_end), cuts, window, horizon)
    return origins


def _cut_positions(n_days: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_val_end)``: the days before the validation and before the test start."""
    # The epsilon keeps 0.7 * 100 from flooring to 69 through float round-off.
    n_train = int(np.floor(n_days * (1.0 - val_fraction - test_fraction) + 1e-9))
    n_val_end = int(np.floor(n_days * (1.0 - test_fraction) + 1e-9))
    return n_train, n_val_end


def _calendar_error(name, frame, origins, bounds, cuts, window, horizon) -> DataError:
    """A series long enough on its own that the shared cut dates leave without windows in some split."""
    n_train, n_val_end = bounds
    empty = ", ".join(split for split in SPLITS if len(origins[split]) == 0)
    return DataError(
        f"{frame.attrs.get('source', name)}: series '{name}' has no {empty} window at the calendar cut dates "
        f"shared by all series: {n_train} of its days fall before the validation start {cuts[0]:%Y-%m-%d}, "
        f"{n_val_end - n_train} between it and the test start {cuts[1]:%Y-%m-%d}, {len(frame) - n_val_end} on "
        f"or after it; with window={window}, horizon={horizon} it needs at least {window + horizon + 1} days "
        f"before the validation start, {horizon + 1} between the cuts and {horizon + 1} on or after the test start"
    )


def _check_split_arguments(prices, window, horizon, val_fraction, test_fraction) -> None:
    if not prices:
        raise DataError("no price series given (prices is empty)")
    for arg, value in (("window", window), ("horizon", horizon)):
        if int(value) != value or value < 1:
            raise ValueError(f"Expected a positive integer for {arg}. Received: {arg}={value}")
    for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"Expected {arg} in (0, 1). Received: {arg}={value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            "Expected val_fraction + test_fraction < 1. Received: "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
