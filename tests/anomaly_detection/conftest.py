"""Small series in the real formats (NAB layout, sensor CSV), written under tmp_path by the tests."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly_detection.synthetic import write_synthetic_nab

# Settings that fit the 400-row series below: a 120-row prefix, 84 of them for training.
# The prediction detector, unless a test says otherwise: some tests search features.window, which only it allows.
TINY_DATA = ["model.detector=prediction", "features.window=8", "data.train_fraction=0.3", "data.train_max_rows=null"]


@pytest.fixture(autouse=True)
def _synthetic_cache(tmp_path, monkeypatch):
    """The default synthetic data set is cached under tmp_path, never in the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def nab_root(tmp_path):
    """Five 400-row synthetic series with labelled windows, in the NAB layout."""
    return write_synthetic_nab(tmp_path / "nab", rows=400)


def write_nab_series(root, key, frame, windows=None):
    """Write one series (``timestamp,value`` frame) and, optionally, its windows into a NAB layout."""
    path = root / "data" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(labels.read_text()) if labels.is_file() else {}
    if windows is not None:
        table[key] = windows
    labels.write_text(json.dumps(table, indent=4))
    return path


def hourly_frame(rows=200, seed=0, start="2024-01-01"):
    """A noisy daily cycle, ``timestamp,value``."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    stamps = pd.date_range(start, periods=rows, freq="h")
    values = 5 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(rows)
    return pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values})


def sensor_frame(rows=200, seed=0):
    """Two sensors and a 0/1 label column with two anomalous runs."""
    frame = hourly_frame(rows, seed).rename(columns={"timestamp": "time", "value": "temp"})
    frame["pressure"] = 1000 + np.cos(np.arange(rows) / 5)
    frame["anomaly"] = 0
    frame.loc[120:124, "anomaly"] = 1
    frame.loc[160:161, "anomaly"] = 1
    return frame
