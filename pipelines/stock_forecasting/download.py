"""Optional: download daily prices with yfinance (`pip install -e '.[download]'`), for users online.

Downloads are cached as Yahoo-layout CSVs with a SHA-256 sidecar; a cached file whose checksum no
longer matches is refused rather than silently used. Nothing in the pipelines or the tests calls
this module: the default data ships with pmdarima.

Usage:
    python -m pipelines.stock_forecasting.download AAPL --start 2015-01-01 --end 2020-01-01
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipelines.downloads import cache_dir, make_folder, sha256
from pipelines.errors import DataError, PipelineError
from pipelines.stock_forecasting.data import load_prices

COLUMNS = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]


def cached_path(ticker: str, start: str, end: str, folder: str | Path | None = None) -> Path:
    """Where the CSV of `ticker` between `start` and `end` is cached.

    Args:
        ticker: Yahoo Finance symbol, e.g. `AAPL`.
        start: First date, `YYYY-MM-DD`.
        end: Day after the last date, `YYYY-MM-DD`.
        folder: Cache folder. Default: `cache_dir("stocks")`.

    Returns:
        `<folder>/<TICKER>_<start>_<end>.csv`.
    """
    return Path(folder or cache_dir("stocks")) / f"{ticker.upper()}_{start}_{end}.csv"


def read_cached(path: str | Path) -> Path | None:
    """The cached CSV if present and intact.

    Args:
        path: the cached CSV (`cached_path`).

    Returns:
        `path`, or `None` if it is absent or has no checksum file (never finished: downloaded again).

    Raises:
        DataError: the file fails its SHA-256 check.
    """
    path = Path(path)
    checksum = path.with_suffix(".csv.sha256")
    if not path.exists() or not checksum.exists():
        return None
    recorded = checksum.read_text().split()
    if not recorded or recorded[0] != sha256(path):
        raise DataError(f"{path}: cached download fails its SHA-256 check; delete it to download again")
    return path


def download_prices(ticker: str, start: str, end: str, folder: str | Path | None = None) -> Path:
    """Download daily OHLCV of `ticker` (cached) and return the CSV path, validated by `load_prices`.

    Args:
        ticker: Yahoo Finance symbol, e.g. `AAPL`.
        start: First date, `YYYY-MM-DD`.
        end: Day after the last date, `YYYY-MM-DD`.
        folder: Cache folder. Default: `cache_dir("stocks")`.

    Returns:
        Path of a `Date,Open,High,Low,Close,Adj Close,Volume` CSV.
    """
    path = cached_path(ticker, start, end, folder)
    if read_cached(path) is not None:
        return path
    try:
        import yfinance
    except ImportError:
        raise PipelineError("the downloader needs yfinance: pip install -e '.[download]'") from None
    try:
        frame = yfinance.download(ticker, start=start, end=end, auto_adjust=False, progress=False)
    except Exception as error:
        raise PipelineError(f"download of {ticker} failed (offline?): {error}") from None
    if frame is None or frame.empty:
        raise PipelineError(f"no prices for {ticker} from {start} to {end}: offline, or an unknown ticker")
    if getattr(frame.columns, "nlevels", 1) > 1:  # recent yfinance: (field, ticker) columns
        frame.columns = frame.columns.get_level_values(0)
    frame = frame.reset_index()
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    make_folder(path.parent)
    # Validated under a temporary name, so neither a failed check nor an interrupted write leaves
    # a CSV in the cache (a folder of prices the pipeline may read).
    partial = path.with_suffix(".csv.part")
    try:
        frame[COLUMNS].to_csv(partial, index=False)
        load_prices(partial)
        path.with_suffix(".csv.sha256").write_text(f"{sha256(partial)}  {path.name}\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.stock_forecasting.download TICKER`: download (or reuse) and print the CSV path.

    Args:
        argv: command-line arguments. Default: `sys.argv[1:]`.

    Returns:
        The exit status: 0, or 2 after an error.
    """
    parser = argparse.ArgumentParser(description="Download daily prices with yfinance (cached).")
    parser.add_argument("ticker")
    parser.add_argument("--start", default="2015-01-01")
    parser.add_argument("--end", default="2020-01-01")
    parser.add_argument("--folder", help="cache folder")
    args = parser.parse_args(argv)
    try:
        print(download_prices(args.ticker, args.start, args.end, args.folder))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
