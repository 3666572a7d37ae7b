"""Real services for the scale-out tests: a throwaway PostgreSQL server and worker processes."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchmarks.services import free_port, postgres, postgres_binary  # noqa: F401 (free_port: the tests import it from here)
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv

REPO = Path(__file__).resolve().parents[2]
TINY = ["train.verbose=0", "model.units=4", "features.window=10", "forecast.horizon=3", "data.eval_folds=2"]
SPACE = (
    "search.space={model.variant: {type: categorical, choices: [lstm, gru]}, "
    "train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}"
)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server in a temporary folder on a free port; yields its base URL.

    Skipped, with the reason, where PostgreSQL is not installed; `.ci/run` installs it so CI always
    runs these tests.
    """
    if not (postgres_binary("initdb") and postgres_binary("pg_ctl")):
        pytest.skip("PostgreSQL server binaries not installed (apt-get install -y postgresql)")
    base = Path(tempfile.mkdtemp(prefix="lstm-pg-"))
    try:
        with postgres(base) as url:
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def prices_csv(tmp_path):
    return write_csv(synthetic_ohlcv(260), tmp_path / "prices.csv")


def worker_command(study, storage, trials, prices_csv, extra=()):
    """`lstm-pipelines tune` for the stock task with tiny settings, as a worker would run it."""
    command = [
        sys.executable,
        "-m",
        "pipelines",
        "tune",
        "stock_forecasting",
        "--study",
        study,
        "--storage",
        storage,
        "--trials",
        str(trials),
        "--set",
        f"data.path={prices_csv}",
        "--set",
        SPACE,
    ]
    for override in [*TINY, *extra]:
        command += ["--set", override]
    return command


def _default_sigint():
    # A shell without job control starts background commands (`pytest &`) with SIGINT ignored, and
    # children inherit that: the worker would never see the test's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_worker(command, env, log_path):
    """Start a worker process with its output in `log_path`, and Ctrl-C (SIGINT) handled as in a terminal."""
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=env.get("WORKDIR"), preexec_fn=_default_sigint
    )


def worker_env(tracking_uri, workdir):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "WORKDIR": str(workdir), "PYTHONPATH": str(REPO)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def wait_for(predicate, timeout, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill(process, sig=signal.SIGKILL):
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=60)
