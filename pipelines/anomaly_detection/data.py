"""Load time series with labelled anomaly windows into validated `Series`, and split each in time.

Two layouts:

- **NAB** (Numenta Anomaly Benchmark): ``<root>/data/<category>/<name>.csv`` with ``timestamp,value``
  and ``<root>/labels/combined_windows.json`` mapping ``"<category>/<name>.csv"`` to a list of
  ``[start, end]`` anomaly windows. A series missing from the labels file is unlabelled.
- **Sensor CSV**: one file (or a folder of files, one series each) with a timestamp column, one or
  more value columns and an optional 0/1 label column, comma or semicolon separated; the columns are
  named in the config. Runs of label 1 become the anomaly windows.

Repairs (the only ones; each is counted in ``Series.repairs`` and logged as a warning):

- ``duplicate timestamps dropped``: a row whose timestamp repeats an earlier row's is dropped, the
  first kept. The real NAB corpus has such rows (a daylight-saving hour logged twice, bursts of one
  timestamp), so refusing them would refuse 7 of its 58 files.
- ``missing values forward-filled``: a run of at most ``MAX_FILLED_RUN`` missing values is filled
  with the last value before it (forward, so a score never looks ahead).

Everything else raises ``DataError`` naming the file, the line (header = line 1) and the column:
unparseable timestamps, timestamps out of order (after dropping duplicates), non-numeric values, a
longer run of missing values or one at the start, a label other than 0/1, a label window outside
the series or with its end before its start, an empty file or a folder without CSV files. A value
column that is constant over the training prefix is handled when scaling (see ``features.py``).

Splits (``split_rows``): rows ``[0, n_prefix)`` of a series are assumed normal: by default NAB's
probationary period (``train_fraction`` of the rows, at most ``train_max_rows``), cut before the
first labelled anomaly if one starts earlier. The prefix is split in time: rows ``[0, n_train)``
train the network, rows ``[n_train, n_prefix)`` (validation, the last ``val_fraction`` of the
prefix) stop training early and calibrate the scores (Gaussian, threshold). Every row from
``n_prefix`` on is test data.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.csv_table import read_csv_strings
from pipelines.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

LABELS_FILE = Path("labels") / "combined_windows.json"
MAX_FILLED_RUN = 3
_FIRST_DATA_LINE = 2  # line 1 is the header
SEPARATORS = (",", ";")


@dataclass(eq=False)
class Series:
    """One validated series.

    Attributes:
        name: ``"<category>/<file>.csv"`` for NAB, the file name for a sensor CSV.
        timestamps: strictly increasing ``DatetimeIndex``.
        values: float64 ``(rows, features)``, finite.
        value_columns: names of the value columns.
        windows: labelled anomaly windows as inclusive row ranges ``(first, last)``, in order.
        labelled: whether the source had labels for this series (an empty ``windows`` then means
            "no anomalies", not "unknown").
        source: the file read, for messages.
        repairs: ``{repair: count}`` of the repairs applied.
        file_timestamps: every data row's timestamp as the file has it, duplicates included
            (``None``: no row was dropped, so ``timestamps`` are the file's rows). NAB's scorer
            counts the file's rows, so the results files and the NAB score use them.
    """

    name: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    value_columns: tuple[str, ...]
    windows: list[tuple[int, int]]
    labelled: bool
    source: str
    repairs: dict[str, int] = field(default_factory=dict)
    file_timestamps: pd.DatetimeIndex | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def file_rows(self) -> np.ndarray:
        """The file's data row (0 = the first after the header) of each row kept."""
        if self.file_timestamps is None:
            return np.arange(len(self))
        return _first_rows(self.file_timestamps)

    @property
    def labels(self) -> np.ndarray:
        """0/1 int8 per row: 1 inside a labelled window."""
        labels = np.zeros(len(self), dtype=np.int8)
        for first, last in self.windows:
            labels[first : last + 1] = 1
        return labels


@dataclass(eq=False)
class AnomalySource:
    """What ``load_source`` returns: the series and where they came from."""

    series: list[Series]
    origin: str


def load_nab(root: str | Path, names: list[str] | None = None) -> list[Series]:
    """Load a folder in the NAB layout.

    Args:
        root: folder holding ``data/`` and (optionally) ``labels/combined_windows.json``.
        names: series to keep (``"category/name.csv"``, ``"name.csv"`` or ``"name"``). Default:
            ``None``, all series.

    Returns:
        The series, sorted by name.
    """
    root = Path(root)
    data_dir = root / "data"
    if not data_dir.is_dir():
        raise DataError(f"{root}: not a NAB-layout folder (no data/ folder inside)")
    files = sorted(p for p in data_dir.rglob("*.csv") if p.is_file())
    if not files:
        raise DataError(f"{data_dir}: no .csv files")
    every_key = {file.relative_to(data_dir).as_posix(): file for file in files}
    keys = {key: every_key[key] for key in select_names(list(every_key), names)}
    labels_path = root / LABELS_FILE
    labels, label_text = {}, ""
    if labels_path.is_file():
        try:
            label_text = labels_path.read_text(encoding="utf-8")
            labels = json.loads(label_text)
        except json.JSONDecodeError as error:
            raise DataError(f"{labels_path}, line {error.lineno}: not valid JSON: {error.msg}") from None
        except UnicodeDecodeError as error:
            raise DataError(f"{labels_path}: not UTF-8 text (JSON must be): {error}") from None
        if not isinstance(labels, dict):
            raise DataError(f"{labels_path}, line 1: expected a JSON object of series -> windows")
        orphans = [key for key in labels if key not in every_key]
        if orphans:
            logger.warning(
                "%s labels %d series with no CSV under %s (their windows are unused): %s",
                labels_path, len(orphans), data_dir, ", ".join(orphans[:5]) + (", ..." if len(orphans) > 5 else ""),
            )  # fmt: skip
    else:
        logger.warning("%s not found; the series are unlabelled", labels_path)
    series = []
    for key, file in keys.items():
        frame, lines = read_csv_strings(file, ",")
        item = build_series(frame, lines, str(file), key, "timestamp", ["value"])
        if key in labels:
            item.windows = _windows_from_json(labels[key], item, labels_path, _line_of(label_text, key))
            item.labelled = True
        series.append(item)
    return series


def load_sensor_csv(
    path: str | Path,
    timestamp_column: str = "timestamp",
    value_columns: list[str] | None = None,
    label_column: str | None = None,
    separator: str = ",",
    names: list[str] | None = None,
) -> list[Series]:
    """Load one sensor CSV, or every ``*.csv`` in a folder (one series per file, same columns).

    Args:
        path: a CSV file or a folder of CSV files.
        timestamp_column: name of the timestamp column. Default: ``"timestamp"``.
        value_columns: value columns. Default: ``None``, every column except the timestamp and
            label columns.
        label_column: optional 0/1 column; runs of 1 are anomaly windows. Default: ``None``.
        separator: ``","`` or ``";"``. Default: ``","``.
        names: file names to keep. Default: ``None``, all.

    Returns:
        The series, sorted by file name.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if not files:
            raise DataError(f"{path}: folder has no .csv files")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or folder")
    keys = {file.name: file for file in files}
    series = []
    for key in select_names(list(keys), names):
        file = keys[key]
        frame, lines = read_csv_strings(file, separator)
        columns = value_columns or [c for c in frame.columns if c not in (timestamp_column, label_column)]
        item = build_series(frame, lines, str(file), key, timestamp_column, columns, label_column)
        if series and item.value_columns != series[0].value_columns:
            raise DataError(
                f"{file}, line 1: value columns {list(item.value_columns)} differ from "
                f"{list(series[0].value_columns)} in {series[0].source}; every file needs the same columns"
            )
        series.append(item)
    return series


def select_names(available: list[str], names: list[str] | None) -> list[str]:
    """The keys matching ``names`` (a key, its file name or its stem), in ``available`` order.

    Args:
        available: the series keys found.
        names: the series asked for (``data.series``); ``None`` or empty: all.

    Returns:
        The chosen keys.
    """
    if not names:
        return available
    chosen = []
    for name in names:
        matches = [key for key in available if name in (key, Path(key).name, Path(key).stem)]
        if not matches:
            shown = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
            raise ConfigError(f"data.series: no series named {name!r}; available: {shown}")
        chosen += [key for key in matches if key not in chosen]
    return [key for key in available if key in chosen]


def build_series(
    raw: pd.DataFrame,
    lines: np.ndarray,
    source: str,
    name: str,
    timestamp_column: str,
    value_columns: list[str],
    label_column: str | None = None,
) -> Series:
    """Validate a table read as strings and return the clean series (the path every loader takes).

    Args:
        raw: the table, every cell a string (``read_csv_strings``).
        lines: the file line of each row, for messages.
        source: the file, for messages.
        name: the series' name.
        timestamp_column: the timestamp column.
        value_columns: the value columns.
        label_column: an optional 0/1 column. Default: ``None``.

    Returns:
        The ``Series``, repaired as the module docstring says.
    """
    wanted = [timestamp_column, *value_columns] + ([label_column] if label_column else [])
    missing = [column for column in wanted if column not in raw.columns]
    if missing:
        separator_hint = " (is data.separator right?)" if len(raw.columns) == 1 else ""
        raise DataError(f"{source}, line 1: missing column(s) {missing}; found {list(raw.columns)}{separator_hint}")
    if not value_columns:
        raise DataError(f"{source}, line 1: no value columns besides the timestamp and label columns")
    repairs: dict[str, int] = {}
    timestamps = _parse_timestamps(raw[timestamp_column], source, lines, timestamp_column)
    values = np.column_stack([_parse_numbers(raw[c], source, lines, c) for c in value_columns])
    labels = _parse_labels(raw[label_column], source, lines, label_column) if label_column else None

    duplicated = timestamps.duplicated(keep="first")
    file_timestamps = pd.DatetimeIndex(timestamps, name="timestamp") if duplicated.any() else None
    if duplicated.any():
        count = int(duplicated.sum())
        first = int(np.flatnonzero(duplicated)[0])
        repairs["duplicate timestamps dropped"] = count
        logger.warning(
            "%s: dropped %d row(s) whose timestamp repeats an earlier row's (first on line %d)",
            source, count, lines[first],
        )  # fmt: skip
        keep = ~duplicated
        timestamps, values, lines = timestamps[keep], values[keep], lines[keep]
        labels = labels[keep] if labels is not None else None
    steps = np.diff(timestamps.asi8)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise DataError(
            f"{source}, line {lines[i]}, column '{timestamp_column}': {timestamps[i]} comes before "
            f"{timestamps[i - 1]} on line {lines[i - 1]}; timestamps must be ascending"
        )
    values = _fill_short_gaps(values, source, lines, value_columns, repairs)
    windows = runs_of_ones(labels) if labels is not None else []
    return Series(
        name=name,
        timestamps=pd.DatetimeIndex(timestamps, name="timestamp"),
        values=values,
        value_columns=tuple(value_columns),
        windows=windows,
        labelled=labels is not None,
        source=source,
        repairs=repairs,
        file_timestamps=file_timestamps,
    )


def prefix_rows(n_rows: int, windows: list[tuple[int, int]], train_fraction: float, train_max_rows: int | None) -> int:
    """Rows of the assumed-normal prefix: ``min(floor(fraction * n), max_rows)``, before any window.

    Args:
        n_rows: rows of the series.
        windows: its labelled windows, in order.
        train_fraction: share of the rows in the prefix.
        train_max_rows: most rows in the prefix; ``None``: no limit.

    Returns:
        ``n_prefix``.
    """
    n_prefix = math.floor(train_fraction * n_rows + 1e-9)
    if train_max_rows is not None:
        n_prefix = min(n_prefix, train_max_rows)
    if windows and windows[0][0] < n_prefix:
        n_prefix = windows[0][0]
    return n_prefix


def split_rows(
    series: Series, train_fraction: float, train_max_rows: int | None, val_fraction: float
) -> tuple[int, int]:
    """Where a series' training and validation rows end (see the module docstring).

    Args:
        series: the series.
        train_fraction: share of the rows in the assumed-normal prefix.
        train_max_rows: most rows in the prefix; ``None``: no limit.
        val_fraction: share of the prefix, at its end, that is validation.

    Returns:
        ``(n_train, n_prefix)``.
    """
    n_prefix = prefix_rows(len(series), series.windows, train_fraction, train_max_rows)
    return math.floor((1.0 - val_fraction) * n_prefix + 1e-9), n_prefix


def runs_of_ones(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` row ranges of the runs of nonzero values.

    Args:
        flags: one value per row.

    Returns:
        The runs, in order.
    """
    flags = np.asarray(flags).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _first_rows(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Positions of the first occurrence of each timestamp: the rows ``build_series`` keeps."""
    return np.flatnonzero(~stamps.duplicated(keep="first"))


def _text(raw: pd.Series) -> pd.Series:
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def _parse_timestamps(raw: pd.Series, source: str, lines: np.ndarray, column: str) -> pd.DatetimeIndex:
    text = _text(raw)
    # utc=True: offsets may change within a file (daylight saving); naive stamps keep their wall-clock time.
    stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if stamps.isna().any() and text.notna().any():
        with warnings.catch_warnings():  # "could not infer format": falls back to per-row parsing
            warnings.simplefilter("ignore", UserWarning)
            stamps = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        i = bad[0]
        value = "" if pd.isna(text.iloc[i]) else text.iloc[i]
        raise DataError(f"{source}, line {lines[i]}, column '{column}': cannot parse timestamp '{value}'")
    return pd.DatetimeIndex(stamps.dt.tz_localize(None))


def _parse_numbers(raw: pd.Series, source: str, lines: np.ndarray, column: str) -> np.ndarray:
    """Float64 with NaN for blank cells; a non-blank value that is not a finite number raises."""
    text = _text(raw)
    values = pd.to_numeric(text, errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = text.isna().to_numpy() | text.str.lower().isin(["nan", "na", "null"]).fillna(False).to_numpy()
    bad = np.flatnonzero(~missing & ~np.isfinite(values))
    if bad.size:
        i = bad[0]
        raise DataError(f"{source}, line {lines[i]}, column '{column}': '{text.iloc[i]}' is not a number")
    values[missing] = np.nan
    return values


def _parse_labels(raw: pd.Series, source: str, lines: np.ndarray, column: str) -> np.ndarray:
    text = _text(raw)
    ok = text.isin(["0", "1", "0.0", "1.0"]).fillna(False).to_numpy()
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        value = "" if pd.isna(text.iloc[i]) else text.iloc[i]
        raise DataError(f"{source}, line {lines[i]}, column '{column}': label '{value}' is not 0 or 1")
    return text.astype(float).to_numpy().astype(np.int8)


def _fill_short_gaps(
    values: np.ndarray, source: str, lines: np.ndarray, columns: list[str], repairs: dict[str, int]
) -> np.ndarray:
    """Forward-fill runs of at most ``MAX_FILLED_RUN`` missing values; longer runs raise."""
    filled = 0
    for j, column in enumerate(columns):
        runs = runs_of_ones(np.isnan(values[:, j]))
        for first, last in runs:
            where = f"{source}, line {lines[first]}" + (f" to {lines[last]}" if last > first else "")
            if first == 0:
                raise DataError(f"{where}, column '{column}': missing value at the start (nothing to fill from)")
            if last - first + 1 > MAX_FILLED_RUN:
                raise DataError(
                    f"{where}, column '{column}': {last - first + 1} consecutive missing values "
                    f"(at most {MAX_FILLED_RUN} are forward-filled)"
                )
            values[first : last + 1, j] = values[first - 1, j]
            filled += last - first + 1
    if filled:
        repairs["missing values forward-filled"] = filled
        logger.warning("%s: forward-filled %d missing value(s) in short gaps", source, filled)
    return values


def _line_of(text: str, key: str) -> int:
    """Line of ``"key"`` in the labels JSON text (1 when not found), for messages."""
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _naive_utc(stamp: pd.Timestamp) -> pd.Timestamp:
    """A zone-aware timestamp in UTC without its zone, as the series' timestamps are kept."""
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _windows_from_json(limits, series: Series, labels_path: Path, line: int) -> list[tuple[int, int]]:
    """Row ranges of the ``[start, end]`` windows of one series; each must lie inside the series."""
    where = f"{labels_path}, line {line}, series '{series.name}'"
    if not isinstance(limits, list):
        raise DataError(f"{where}: expected a list of [start, end] windows, got {limits!r}")
    stamps = series.timestamps
    windows = []
    for pair in limits:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DataError(f"{where}: expected a [start, end] window, got {pair!r}")
        try:
            start, end = (_naive_utc(pd.Timestamp(value)) for value in pair)
        except (ValueError, TypeError):
            raise DataError(f"{where}: cannot parse window {pair!r}") from None
        if pd.isna(start) or pd.isna(end):
            raise DataError(f"{where}: cannot parse window {pair!r}")
        if end < start:
            raise DataError(f"{where}: window {pair!r} ends before it starts")
        if start < stamps[0] or end > stamps[-1]:
            raise DataError(
                f"{where}: window {pair!r} lies outside the series, which runs from {stamps[0]} to {stamps[-1]}"
            )
        first = int(stamps.searchsorted(start, side="left"))
        last = int(stamps.searchsorted(end, side="right")) - 1
        if last < first:
            raise DataError(f"{where}: window {pair!r} holds no row of the series")
        if windows and first <= windows[-1][1]:
            raise DataError(f"{where}: window {pair!r} overlaps or precedes the window before it")
        windows.append((first, last))
    return windows
