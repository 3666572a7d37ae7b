"""Quality run: tune the stock pipeline on 20 S&P 500 tickers and write the per-ticker U2 table.

Usage:
    python benchmarks/stock_quality.py --data-dir ../shared/data/stocks/sp500_5yr --trials 8
    python benchmarks/stock_quality.py --heldout 15 --trials 2   # tickers never used to choose settings

One model is tuned on the 20 tickers together (a folder of CSVs is one dataset); the best trial's test
forecasts are scored per ticker against the naive, drift and ARIMA baselines on the same windows.
With `--heldout N` the run takes N other tickers of the folder instead (evenly spaced in name order,
none of the 20 the settings were chosen on), registers the best model through the promotion gate,
and reports the forecast intervals' coverage and Winkler score beside the naive forecast's.
The tables go into `docs/results.md` between markers this script owns.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

TICKERS = (
    "AAPL", "MSFT", "AMZN", "GOOGL", "JPM", "XOM", "JNJ", "PG", "KO", "PFE",
    "WMT", "INTC", "CSCO", "BA", "CAT", "GE", "IBM", "MRK", "CVX", "DIS",
)  # fmt: skip
START, END = "<!-- stock_quality:start -->", "<!-- stock_quality:end -->"
HELDOUT_START, HELDOUT_END = "<!-- stock_heldout:start -->", "<!-- stock_heldout:end -->"


def heldout_tickers(data_dir: str, count: int) -> tuple[str, ...]:
    """`count` tickers of the folder outside `TICKERS`, evenly spaced in name order, among those with the
    whole five years (1,259 rows; a later listing has no training days before the shared cut dates).

    Args:
        data_dir: The sp500_5yr folder.
        count: How many.

    Returns:
        The tickers.
    """
    files = sorted(Path(data_dir).glob("*_data.csv"))
    names = [p.name.removesuffix("_data.csv") for p in files if sum(1 for _ in p.open()) - 1 >= 1259]
    others = [name for name in names if name not in TICKERS]
    if len(others) < count:
        sys.exit(f"error: {data_dir} has {len(others)} tickers outside the 20, fewer than --heldout {count}")
    step = len(others) / count
    return tuple(others[int(i * step)] for i in range(count))


def render_heldout(table: pd.DataFrame, result, command: str, seconds: float, tickers: tuple[str, ...]) -> str:
    """Markdown section of a held-out run: per-ticker U2, the medians, the intervals and the gate.

    Args:
        table: The best trial's per-series table.
        result: What `workflows.tune(register=True)` returns.
        command: The command line.
        seconds: Wall time of the whole run.
        tickers: The held-out tickers.

    Returns:
        The section, markers included.
    """
    metrics = result.best_trial.user_attrs["metrics"]
    median = {name: table[f"{name}_u2"].median() for name in ("model", "drift", "arima")}
    interval_rows = []
    for level in ("80", "95"):
        model, naive = metrics[f"test_coverage_{level}"], metrics[f"test_naive_coverage_{level}"]
        interval_rows.append(
            {
                "level": f"{level}%",
                "model coverage": f"{model:.3f}",
                "within 3 points": "yes" if abs(model - int(level) / 100) <= 0.03 else "no",
                "naive coverage": f"{naive:.3f}",
                "model Winkler": f"{metrics[f'test_winkler_{level}']:.3f}",
                "naive Winkler": f"{metrics[f'test_naive_winkler_{level}']:.3f}",
            }
        )
    registration = result.model_version
    lines = [
        HELDOUT_START,
        f"### {len(tickers)} held-out S&P 500 tickers (never used to choose settings)",
        "",
        f"Command: `{command}`  ",
        f"Measured {datetime.date.today()} on {cpu_model()}, {os.cpu_count()} cores; "
        f"{result.counts.get('complete', 0)} complete / {result.counts.get('pruned', 0)} pruned trials "
        f"in {seconds / 60:.0f} min. Tickers: {', '.join(tickers)}.",
        "",
        ticker_table(table),
        "",
        f"Median U2: model {median['model']:.3f}, drift {median['drift']:.3f}, ARIMA {median['arima']:.3f}; "
        f"goal (model no worse than drift): {'met' if median['model'] <= median['drift'] else 'not met'}. "
        f"Pooled: model U2 {metrics['test_u2']:.3f}, Diebold-Mariano vs naive p = {metrics['test_dm_p_value']:.3g} "
        f"(statistic {metrics['test_dm_statistic']:.2f}).",
        "",
        "Forecast intervals on the test windows (split-conformal on the validation windows; the naive "
        "forecast's intervals are its own validation errors' quantiles), pooled over tickers and steps:",
        "",
        markdown_table(interval_rows, "lrlrrr"),
        "",
        "Promotion gate (validation): "
        + (registration.message().split("\n")[0].split("; ", 1)[-1] if registration else "not registered")
        + (f"; {registration.reason}." if registration else "."),
        HELDOUT_END,
    ]
    return "\n".join(lines)


def link_tickers(data_dir: str, tickers: tuple[str, ...], folder: str) -> None:
    """Symlink `<TICKER>_data.csv` of each ticker into `folder` (the pipeline reads a folder).

    Args:
        data_dir: The sp500_5yr folder.
        tickers: Tickers to link.
        folder: Where the links go.
    """
    for ticker in tickers:
        source = Path(data_dir) / f"{ticker}_data.csv"
        if not source.is_file():
            sys.exit(f"error: {source} not found (is --data-dir the sp500_5yr folder?)")
        os.symlink(source.resolve(), Path(folder) / source.name)


def best_per_series_table(result) -> tuple[pd.DataFrame, str]:
    """The best trial's per-series table, read back from its MLflow run.

    Args:
        result: What `workflows.tune` returns.

    Returns:
        `(table, run_id)`.
    """
    import mlflow

    run_id = result.best_trial.user_attrs["mlflow_run_id"]
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/per_series.csv")
    return pd.read_csv(path), run_id


def ticker_table(table: pd.DataFrame) -> str:
    """Per ticker: test windows, model, ARIMA and drift U2, model and naive RMSE; then the medians."""
    rows = [
        {
            "ticker": row.series,
            "test windows": str(row.windows),
            "model U2": f"{row.model_u2:.3f}",
            "ARIMA U2": f"{row.arima_u2:.3f}",
            "drift U2": f"{row.drift_u2:.3f}",
            "model RMSE": f"{row.model_rmse:.3f}",
            "naive RMSE": f"{row.naive_rmse:.3f}",
        }
        for row in table.itertuples()
    ]
    medians = {name: f"**{table[f'{name}_u2'].median():.3f}**" for name in ("model", "arima", "drift")}
    rows.append(
        {
            "ticker": "**median**",
            "test windows": "",
            "model U2": medians["model"],
            "ARIMA U2": medians["arima"],
            "drift U2": medians["drift"],
            "model RMSE": "",
            "naive RMSE": "",
        }
    )
    return markdown_table(rows, "lrrrrrr")


def render(table: pd.DataFrame, result, command: str, seconds: float) -> str:
    """Markdown section: settings, per-ticker U2 and the medians.

    Args:
        table: The best trial's per-series table.
        result: What `workflows.tune` returns.
        command: The command line, as written into the section.
        seconds: Wall time of the whole run.

    Returns:
        The section, markers included.
    """
    import keras
    import tensorflow as tf

    metrics = result.best_trial.user_attrs["metrics"]
    median_model = table["model_u2"].median()
    lines = [
        START,
        "### 20 S&P 500 tickers (sp500_5yr, 2013-02-08 to 2018-02-07)",
        "",
        f"Command: `{command}`  ",
        f"Measured {datetime.date.today()} on {cpu_model()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}; "
        f"{result.counts.get('complete', 0)} complete / {result.counts.get('pruned', 0)} pruned / "
        f"{result.counts.get('fail', 0)} failed trials in {seconds / 60:.0f} min.",
        "",
        f"Best trial {result.best_trial.number}: `{result.best_trial.params}`.",
        "One model for all 20 tickers; chronological 70/15/15 split per ticker; horizon 5 trading days. U2 is "
        "Theil's U2 against the naive random walk on the same test windows (< 1 beats naive).",
        "",
        ticker_table(table),
        "",
        f"Pooled over all test windows: model U2 {metrics['test_u2']:.3f}, ARIMA U2 {metrics['test_arima_u2']:.3f}, "
        f"Diebold-Mariano vs naive p = {metrics['test_dm_p_value']:.3g} "
        f"(statistic {metrics['test_dm_statistic']:.2f}; negative means the model's errors are smaller).",
        f"Goal median U2 <= 1.00: {'met' if median_model <= 1.0 else 'not met'} "
        f"(median model U2 {median_model:.3f}). "
        + (
            "The model beats the naive forecast significantly."
            if metrics["test_beats_naive"]
            else "The model does not beat the naive forecast significantly: daily closes are close to a random walk."
        ),
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/stocks/sp500_5yr")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--study", default="sp500-20")
    parser.add_argument("--storage", default="benchmarks/stock_quality_journal.log")
    parser.add_argument("--output", default="docs/results.md")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--heldout", type=int, default=0, help="take this many tickers outside the 20 instead")
    args = parser.parse_args()
    tickers = heldout_tickers(args.data_dir, args.heldout) if args.heldout else TICKERS

    from pipelines import workflows

    command = "python benchmarks/stock_quality.py " + " ".join(sys.argv[1:])
    start = datetime.datetime.now()
    with tempfile.TemporaryDirectory() as folder:
        link_tickers(args.data_dir, tickers, folder)
        overrides = [f"data.path={folder}", "train.verbose=0", *args.overrides]
        result = workflows.tune(
            "stock_forecasting",
            args.trials,
            overrides=overrides,
            study=args.study,
            storage=args.storage,
            register=bool(args.heldout),
        )
    table, run_id = best_per_series_table(result)
    seconds = (datetime.datetime.now() - start).total_seconds()
    if args.heldout:
        section = render_heldout(table, result, command, seconds, tickers)
        write_section(args.output, section, HELDOUT_START, HELDOUT_END)
        print(section)
    else:
        write_section(args.output, render(table, result, command, seconds), START, END)
    print(table.to_string(index=False))
    print(f"median model U2 {table['model_u2'].median():.3f}; best run {run_id}; wrote {args.output}")


if __name__ == "__main__":
    main()
