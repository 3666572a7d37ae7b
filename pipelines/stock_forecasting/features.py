"""What the model sees: causal per-day features from OHLCV rows, scaled windows and scaled targets.

Feature row ``j`` describes day ``j + 1`` and uses only days ``j`` and ``j + 1``. A window for origin
day ``t`` (the last observed day) holds the feature rows of days ``t - window + 1 .. t``, so it needs
the OHLCV rows of days ``t - window .. t``: ``window + 1`` rows. The target is the cumulative log
return ``log close[t + k + 1] - log close[t]`` for ``k = 0 .. horizon - 1``, divided by
``target_scale[k]``. The scaler sees only the feature rows of days up to each series' last training
origin, and the target scale only the training targets (the split is ``data.split_series``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from pipelines.errors import ConfigError, DataError
from pipelines.stock_forecasting.data import COLUMNS as OHLCV
from pipelines.stock_forecasting.data import SPLITS, split_series

FEATURE_NAMES = ("log_return", "log_range", "body", "gap", "log_volume_change")
COVARIATE_KINDS = ("column", "series", "calendar")
CALENDAR_FIELDS = {"day_of_week": "dayofweek", "month": "month", "day_of_month": "day"}


def level_name(level: float) -> str:
    """A level as it appears in names: ``0.8`` -> ``"80"``, ``0.975`` -> ``"97.5"``.

    Args:
        level: in (0, 1).

    Returns:
        The percentage without trailing zeros.
    """
    return f"{100.0 * level:.10g}"


def covariate_column(spec: str) -> str | None:
    """The frame (and request) column a covariate reads: `column:X` -> `x`, `series:N` -> `n`, calendar: None.

    Args:
        spec: a `features.covariates` entry.

    Returns:
        The lower-case column name, or None for a calendar feature (it reads the dates).
    """
    kind, _, name = spec.partition(":")
    return None if kind == "calendar" else name.strip().lower()


def check_covariate(spec: str, key: str = "features.covariates") -> None:
    """Refuse a covariate entry that is not `column:<csv column>`, `series:<series>` or `calendar:<field>`.

    Args:
        spec: the entry.
        key: the dotted key for the message. Default: `features.covariates`.
    """
    kind, sep, name = str(spec).partition(":")
    if not sep or kind not in COVARIATE_KINDS or not name.strip():
        raise ConfigError(
            f"{key}: expected entries column:<CSV column>, series:<series name> or calendar:<field>, got {spec!r}"
        )
    if kind == "calendar" and name not in CALENDAR_FIELDS:
        raise ConfigError(f"{key}: calendar fields are {', '.join(CALENDAR_FIELDS)}, got {spec!r}")
    if kind == "column" and name.strip().lower() in ("date", "name"):
        raise ConfigError(f"{key}: {spec!r} is not a numeric column; calendar:<field> reads the dates")


def _dates(frame: pd.DataFrame) -> pd.DatetimeIndex:
    if "date" in frame.columns:
        dates = pd.to_datetime(frame["date"].astype(str), errors="coerce", format="ISO8601")
        if dates.isna().any():
            row = int(np.flatnonzero(dates.isna().to_numpy())[0])
            raise DataError(f"row {row}, column 'date': cannot parse {frame['date'].iloc[row]!r} as a date")
        return pd.DatetimeIndex(dates)
    if isinstance(frame.index, pd.DatetimeIndex):
        return frame.index
    raise DataError("calendar covariates need the rows' dates: send a 'date' column")


def covariate_features(frame: pd.DataFrame, covariates: tuple[str, ...]) -> np.ndarray:
    """One feature per covariate for every day but the first; row ``j`` describes day ``j + 1``.

    A column covariate is the day's change of ``sign(x) * log1p(|x|)``, a series covariate the other
    series' log return (its last close on or before each day, as ``prepare_dataset`` joins it), a
    calendar covariate the day's field. Both use only days ``j`` and ``j + 1``; a missing or
    non-positive value counts as no change.

    Args:
        frame: the rows with the covariates' columns (see ``covariate_column``) and dates.
        covariates: ``features.covariates`` entries.

    Returns:
        float64 ``(rows - 1, len(covariates))``.
    """
    columns = []
    for spec in covariates:
        kind, _, name = spec.partition(":")
        if kind == "calendar":
            columns.append(np.asarray(getattr(_dates(frame), CALENDAR_FIELDS[name]), dtype=np.float64)[1:])
            continue
        column = covariate_column(spec)
        if column not in frame.columns:
            raise DataError(f"covariate {spec!r} needs a column '{column}'; found {[str(c) for c in frame.columns]}")
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = np.log(values) if kind == "series" else np.sign(values) * np.log1p(np.abs(values))
            change = np.diff(level)
        columns.append(np.nan_to_num(change, nan=0.0, posinf=0.0, neginf=0.0))
    return np.column_stack(columns) if columns else np.empty((max(len(frame) - 1, 0), 0))


def join_covariates(prices: dict[str, pd.DataFrame], covariates: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Each series' frame with a column per `series:` covariate: that series' last close on or before each date.

    Args:
        prices: ``{series: frame}``; column covariates are already columns (``data.load_prices(extra=...)``).
        covariates: ``features.covariates`` entries.

    Returns:
        New frames; the given ones are not changed.
    """
    wanted = [spec.partition(":")[2] for spec in covariates if spec.startswith("series:")]
    missing = [name for name in wanted if name not in prices]
    if missing:
        raise ConfigError(
            f"features.covariates: series {', '.join(missing)} not in the data; loaded: {', '.join(prices)}"
        )
    joined = {}
    for name, frame in prices.items():
        frame = frame.copy()
        for other in wanted:
            # ffill on a sorted index takes the last close at or before each date: nothing from later days.
            frame[other.lower()] = prices[other]["close"].reindex(frame.index, method="ffill").to_numpy()
        joined[name] = frame
    return joined


def ohlcv_array(frame: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Return the open, high, low, close, volume values as a float64 ``(rows, 5)`` array.

    Args:
        frame: a DataFrame with those columns (case-insensitive, others ignored) or a
            ``(rows, 5)`` array in that order.

    Returns:
        The values; prices must be finite and positive, volume finite and >= 0.
    """
    if isinstance(frame, pd.DataFrame):
        lower = {str(col).strip().lower(): col for col in frame.columns}
        missing = [col for col in OHLCV if col not in lower]
        if missing:
            raise DataError(f"OHLCV frame is missing column(s) {missing}; found {list(frame.columns)}")
        values = frame[[lower[col] for col in OHLCV]].to_numpy(dtype=np.float64)
    else:
        values = np.asarray(frame, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(OHLCV):
            raise DataError(f"OHLCV array must have shape (rows, 5) in the order {OHLCV}; got shape {values.shape}")
    finite = np.isfinite(values)
    bad = ~finite | np.concatenate([values[:, :4] <= 0, values[:, 4:] < 0], axis=1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"OHLCV row {row}, column '{OHLCV[col]}': {values[row, col]} is not a valid "
            "value (prices must be > 0, volume >= 0, all finite)"
        )
    return values


def compute_features(frame: pd.DataFrame | np.ndarray, covariates: tuple[str, ...] = ()) -> np.ndarray:
    """Compute ``FEATURE_NAMES`` (then one column per covariate) for every day but the first.

    Args:
        frame: OHLCV rows, oldest first (see ``ohlcv_array``); a DataFrame with the covariates'
            columns when there are covariates.
        covariates: ``features.covariates`` entries (``covariate_features``). Default: none.

    Returns:
        float64 array ``(rows - 1, len(FEATURE_NAMES) + len(covariates))``; row ``j`` describes day ``j + 1``.
    """
    if covariates:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"covariates {list(covariates)} need a DataFrame of rows, got an array")
        return np.column_stack([compute_features(frame), covariate_features(frame, tuple(covariates))])
    values = ohlcv_array(frame)
    open_, high, low, close, volume = (values[:, i] for i in range(5))
    log_close = np.log(close)
    return np.column_stack(
        [
            np.diff(log_close),
            np.log(high[1:] / low[1:]),
            log_close[1:] - np.log(open_[1:]),
            np.log(open_[1:]) - log_close[:-1],
            np.diff(np.log1p(volume)),
        ]
    )


def log_return_targets(close: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Unscaled targets ``log close[t + k + 1] - log close[t]`` for each origin ``t``.

    Args:
        close: the series' closes, oldest first.
        origins: positions ``t`` with ``t + horizon < len(close)``.
        horizon: number of future steps.

    Returns:
        float64 array ``(len(origins), horizon)``.
    """
    log_close = np.log(np.asarray(close, dtype=np.float64))
    steps = np.asarray(origins)[:, None] + np.arange(1, horizon + 1)
    return log_close[steps] - log_close[np.asarray(origins)][:, None]


@dataclass(eq=False)
class StockPreprocessor:
    """Scaling fitted on training data only; plain numpy state, so it pickles and JSON round-trips.

    Args:
        window: feature rows per window (days looked back).
        horizon: number of future closes forecast.
        feature_mean: per-feature mean of the training feature rows.
        feature_scale: per-feature standard deviation of the training feature rows.
        target_scale: per-step standard deviation of the training targets, shape ``(horizon,)``.
        feature_names: names of the feature columns. Default: ``FEATURE_NAMES``.
        covariates: ``features.covariates`` entries, the last feature columns. Default: none.
        interval_levels: the levels of the forecast intervals. Default: none.
        interval_quantiles: ``(levels, 2, horizon)`` lower and upper quantiles of
            ``log(actual / forecast)`` on the validation windows (``evaluation.conformal_quantiles``),
            or None before calibration.
    """

    window: int
    horizon: int
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    target_scale: np.ndarray
    feature_names: tuple[str, ...] = FEATURE_NAMES
    covariates: tuple[str, ...] = ()
    interval_levels: tuple[float, ...] = ()
    interval_quantiles: np.ndarray | None = None

    @classmethod
    def fit(
        cls, train_features: np.ndarray, train_targets: np.ndarray, window: int, covariates: tuple[str, ...] = ()
    ) -> StockPreprocessor:
        """Fit on training rows only.

        Args:
            train_features: ``(rows, n_features)`` feature rows seen by training windows.
            train_targets: ``(n, horizon)`` unscaled training targets.
            window: the window length.
            covariates: the covariates of the last feature columns. Default: none.

        Returns:
            The fitted preprocessor.
        """
        scaler = StandardScaler().fit(train_features)
        target_scale = np.std(train_targets, axis=0)
        target_scale = np.where(target_scale > 0, target_scale, 1.0)  # flat training prices
        return cls(
            window=int(window),
            horizon=int(train_targets.shape[1]),
            feature_mean=scaler.mean_.copy(),
            feature_scale=scaler.scale_.copy(),
            target_scale=target_scale,
            feature_names=FEATURE_NAMES + tuple(covariates),
            covariates=tuple(covariates),
        )

    @property
    def n_features(self) -> int:
        """The number of feature columns."""
        return len(self.feature_mean)

    def transform_features(self, features: np.ndarray) -> np.ndarray:
        """Standardise feature rows with the training statistics.

        Args:
            features: ``(..., n_features)`` raw feature rows.

        Returns:
            float32 array of the same shape.
        """
        return ((np.asarray(features) - self.feature_mean) / self.feature_scale).astype(np.float32)

    def windows_from_ohlcv(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Scaled model inputs for every origin a block of OHLCV rows allows.

        Args:
            frame: at least ``window + 1`` consecutive OHLCV rows, oldest first (see ``ohlcv_array``),
                with the covariates' columns (and dates) when the preprocessor has covariates.

        Returns:
            float32 ``(rows - window, window, n_features)``; window ``i`` ends on row ``window + i``.
        """
        if len(frame) < self.window + 1:
            raise DataError(
                f"got {len(frame)} OHLCV rows, but window={self.window} needs at least {self.window + 1} (window + 1)"
            )
        scaled = self.transform_features(compute_features(frame, self.covariates))
        windows = np.lib.stride_tricks.sliding_window_view(scaled, self.window, axis=0)
        return np.ascontiguousarray(windows.transpose(0, 2, 1))

    def scale_targets(self, targets: np.ndarray) -> np.ndarray:
        """Divide raw cumulative log returns by ``target_scale``.

        Args:
            targets: ``(n, horizon)`` unscaled targets (``log_return_targets``).

        Returns:
            float32 ``(n, horizon)``.
        """
        return (np.asarray(targets) / self.target_scale).astype(np.float32)

    def to_prices(self, y_scaled: np.ndarray, last_close: np.ndarray | float) -> np.ndarray:
        """Turn scaled model outputs into price forecasts.

        Args:
            y_scaled: ``(n, horizon)`` (or ``(horizon,)``) scaled cumulative log returns.
            last_close: ``(n,)`` closes at each origin (or one float).

        Returns:
            float64 ``(n, horizon)``: ``last_close * exp(y_scaled * target_scale)``.
        """
        y = np.atleast_2d(np.asarray(y_scaled, dtype=np.float64))
        if y.shape[1] != self.horizon:
            raise ValueError(
                f"Expected y_scaled with {self.horizon} columns (horizon). Received: shape={np.shape(y_scaled)}"
            )
        last = np.asarray(last_close, dtype=np.float64).reshape(-1, 1)
        return last * np.exp(y * self.target_scale)

    def with_intervals(self, levels: tuple[float, ...], quantiles: np.ndarray) -> StockPreprocessor:
        """A copy that also gives forecast intervals.

        Args:
            levels: the interval levels, e.g. ``(0.8, 0.95)``.
            quantiles: ``(levels, 2, horizon)`` from ``evaluation.conformal_quantiles``.

        Returns:
            The new preprocessor.
        """
        return dataclasses.replace(self, interval_levels=tuple(levels), interval_quantiles=np.asarray(quantiles))

    def intervals(self, forecast: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """The bounds of every interval level around price forecasts.

        Args:
            forecast: ``(n, horizon)`` price forecasts.

        Returns:
            ``{level: (lower, upper)}``, each ``(n, horizon)`` prices; empty before calibration.
        """
        if self.interval_quantiles is None:
            return {}
        forecast = np.asarray(forecast, dtype=np.float64)
        return {
            level: (forecast * np.exp(q[0]), forecast * np.exp(q[1]))
            for level, q in zip(self.interval_levels, self.interval_quantiles, strict=True)
        }

    def to_dict(self) -> dict:
        """JSON-safe state, for the served model's ``preprocessor.json``.

        Returns:
            ``{"window", "horizon", "feature_mean", "feature_scale", "target_scale", "feature_names",
            "covariates", "interval_levels", "interval_quantiles"}`` as ints, lists and None.
        """
        return {
            "window": self.window,
            "horizon": self.horizon,
            "feature_mean": self.feature_mean.tolist(),
            "feature_scale": self.feature_scale.tolist(),
            "target_scale": self.target_scale.tolist(),
            "feature_names": list(self.feature_names),
            "covariates": list(self.covariates),
            "interval_levels": list(self.interval_levels),
            "interval_quantiles": None if self.interval_quantiles is None else self.interval_quantiles.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> StockPreprocessor:
        """Rebuild a preprocessor from its state.

        Args:
            state: ``to_dict()`` output.

        Returns:
            The preprocessor.
        """
        return cls(
            window=int(state["window"]),
            horizon=int(state["horizon"]),
            feature_names=tuple(state.get("feature_names", FEATURE_NAMES)),
            covariates=tuple(state.get("covariates", ())),
            interval_levels=tuple(state.get("interval_levels", ())),
            interval_quantiles=(
                None if state.get("interval_quantiles") is None else np.asarray(state["interval_quantiles"], np.float64)
            ),
            **{
                key: np.asarray(state[key], dtype=np.float64)
                for key in ("feature_mean", "feature_scale", "target_scale")
            },
        )


@dataclass(eq=False)
class StockDataset:
    """Model inputs, targets and the bookkeeping needed to evaluate price forecasts.

    ``x_*`` are float32 ``(n, window, n_features)``, ``y_*`` float32 ``(n, horizon)`` scaled
    cumulative log returns. Row ``i`` of ``x_test`` is row ``i`` of ``test_index``, whose columns
    are ``series, origin_date, last_close, actual_1 .. actual_<horizon>`` (prices).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: StockPreprocessor
    train_index: pd.DataFrame
    val_index: pd.DataFrame
    test_index: pd.DataFrame
    train_closes: dict[str, np.ndarray]
    history: dict[str, pd.DataFrame]
    feature_names: tuple[str, ...]
    n_features: int
    window: int
    horizon: int
    interval_levels: tuple[float, ...] = (0.8, 0.95)

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(window, n_features)``: the shape of one model input."""
        return (self.window, self.n_features)

    @property
    def output_dim(self) -> int:
        """Forecast steps per window: ``horizon``."""
        return self.horizon


def prepare_dataset(
    prices: dict[str, pd.DataFrame],
    window: int,
    horizon: int,
    val_fraction: float,
    test_fraction: float,
    covariates: tuple[str, ...] = (),
    interval_levels: tuple[float, ...] = (0.8, 0.95),
) -> StockDataset:
    """Build scaled windows and targets for every series, split at shared calendar dates.

    Args:
        prices: ``{series: frame}`` as ``data.load_prices`` returns it.
        window: days of features per input window.
        horizon: future daily closes per target.
        val_fraction: share of the union of all series' dates for validation, in (0, 1).
        test_fraction: share of the union of all series' dates for testing, in (0, 1).
        covariates: ``features.covariates`` entries. Default: none.
        interval_levels: ``forecast.interval_levels``. Default: ``(0.8, 0.95)``.

    Returns:
        A ``StockDataset``; arrays concatenate the series in the order of ``prices``; ``history``
        holds the frames with the joined covariate columns.
    """
    covariates = tuple(covariates)
    prices = join_covariates(prices, covariates) if covariates else prices
    origins = split_series(prices, window, horizon, val_fraction, test_fraction)
    features = {name: compute_features(frame, covariates) for name, frame in prices.items()}
    closes = {name: frame["close"].to_numpy(np.float64) for name, frame in prices.items()}
    targets = {
        name: {split: log_return_targets(closes[name], o, horizon) for split, o in origins[name].items()}
        for name in prices
    }
    # Feature row j describes day j + 1, so rows [:t] cover days 1 .. t of the training windows.
    train_rows = np.concatenate([features[name][: origins[name]["train"][-1]] for name in prices])
    train_targets = np.concatenate([targets[name]["train"] for name in prices])
    preprocessor = StockPreprocessor.fit(train_rows, train_targets, window, covariates)

    arrays: dict[str, list] = {split: [] for split in SPLITS}
    for name, frame in prices.items():
        windows = preprocessor.windows_from_ohlcv(frame)  # window i ends on day window + i
        for split in SPLITS:
            o = origins[name][split]
            arrays[split].append(
                (
                    windows[o - window],
                    preprocessor.scale_targets(targets[name][split]),
                    _index_frame(name, frame, o, horizon),
                )
            )

    def join(split: str, part: int):
        items = [item[part] for item in arrays[split]]
        return pd.concat(items, ignore_index=True) if part == 2 else np.concatenate(items)

    return StockDataset(
        x_train=join("train", 0),
        y_train=join("train", 1),
        x_val=join("val", 0),
        y_val=join("val", 1),
        x_test=join("test", 0),
        y_test=join("test", 1),
        preprocessor=preprocessor,
        train_index=join("train", 2),
        val_index=join("val", 2),
        test_index=join("test", 2),
        train_closes={name: closes[name][: origins[name]["train"][-1] + 1] for name in prices},
        history=dict(prices),
        feature_names=preprocessor.feature_names,
        n_features=preprocessor.n_features,
        window=int(window),
        horizon=int(horizon),
        interval_levels=tuple(interval_levels),
    )


def actual_columns(horizon: int) -> list[str]:
    """Names of the actual-price columns of an index frame.

    Args:
        horizon: forecast steps.

    Returns:
        ``["actual_1", ..., "actual_<horizon>"]``.
    """
    return [f"actual_{k}" for k in range(1, horizon + 1)]


def _index_frame(name: str, frame: pd.DataFrame, origins: np.ndarray, horizon: int) -> pd.DataFrame:
    close = frame["close"].to_numpy(np.float64)
    index = pd.DataFrame({"series": name, "origin_date": frame.index[origins], "last_close": close[origins]})
    actual = close[origins[:, None] + np.arange(1, horizon + 1)]
    return pd.concat([index, pd.DataFrame(actual, columns=actual_columns(horizon))], axis=1)
