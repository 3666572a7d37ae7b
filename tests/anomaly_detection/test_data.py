"""Loaders: NAB layout and sensor CSV, the synthetic default set, and every bad-data case."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly_detection.data import MAX_FILLED_RUN, load_nab, load_sensor_csv, runs_of_ones
from pipelines.anomaly_detection.synthetic import KINDS, ensure_synthetic_nab, write_synthetic_nab
from pipelines.errors import ConfigError, DataError
from tests.anomaly_detection.conftest import hourly_frame, sensor_frame, write_nab_series


def test_nab_layout_series_and_windows(tmp_path):
    frame = hourly_frame(200)
    write_nab_series(tmp_path, "realThing/b.csv", frame, [[frame.timestamp[50] + ".000000", frame.timestamp[59]]])
    write_nab_series(tmp_path, "realThing/a.csv", hourly_frame(150, seed=1), [])
    write_nab_series(tmp_path, "other/unlabelled.csv", hourly_frame(100, seed=2))
    series = load_nab(tmp_path)
    assert [s.name for s in series] == ["other/unlabelled.csv", "realThing/a.csv", "realThing/b.csv"]
    unlabelled, a, b = series
    assert b.windows == [(50, 59)] and b.labelled and b.labels.sum() == 10
    assert a.windows == [] and a.labelled
    assert not unlabelled.labelled
    assert b.values.shape == (200, 1) and b.value_columns == ("value",)
    np.testing.assert_allclose(b.values[:, 0], frame.value)
    assert [s.name for s in load_nab(tmp_path, ["b", "realThing/a.csv"])] == ["realThing/a.csv", "realThing/b.csv"]
    with pytest.raises(ConfigError, match="data.series: no series named 'zzz'"):
        load_nab(tmp_path, ["zzz"])


def test_local_times_across_a_clock_change_and_zoned_windows_are_read_in_utc(tmp_path, caplog):
    utc = pd.date_range("2020-03-08 00:00", periods=48, freq="h", tz="UTC")  # US clocks go forward at 07:00 UTC
    local = utc.tz_convert("America/New_York").strftime("%Y-%m-%dT%H:%M:%S%z")
    assert local[0].endswith("-0500") and local[-1].endswith("-0400")
    frame = pd.DataFrame({"timestamp": local, "value": np.arange(48.0)})
    window = [utc[10].tz_convert("Europe/Paris").isoformat(), utc[19].isoformat()]
    write_nab_series(tmp_path, "cat/local.csv", frame, [window])
    write_nab_series(tmp_path, "cat/typo.csv", hourly_frame(30), [])
    (tmp_path / "data" / "cat" / "typo.csv").unlink()  # labelled, but no such file
    with caplog.at_level(logging.WARNING, logger="pipelines.anomaly_detection.data"):
        (series,) = load_nab(tmp_path)
    assert list(series.timestamps) == list(utc.tz_localize(None))
    assert series.windows == [(10, 19)]
    assert "labels 1 series with no CSV" in caplog.text and "cat/typo.csv" in caplog.text


@pytest.mark.parametrize("separator", [",", ";"])
def test_sensor_csv_multivariate_with_labels(tmp_path, separator):
    frame = sensor_frame(200)
    path = tmp_path / "plant.csv"
    frame.to_csv(path, index=False, sep=separator)
    (series,) = load_sensor_csv(path, "time", None, "anomaly", separator)
    assert series.value_columns == ("temp", "pressure")
    assert series.values.shape == (200, 2)
    assert series.windows == [(120, 124), (160, 161)]
    (only_temp,) = load_sensor_csv(path, "time", ["temp"], None, separator)
    assert only_temp.value_columns == ("temp",) and not only_temp.labelled


def test_wrong_separator_is_named(tmp_path):
    path = tmp_path / "plant.csv"
    sensor_frame(50).to_csv(path, index=False, sep=";")
    with pytest.raises(DataError, match=r"plant.csv, line 1: missing column.*data.separator"):
        load_sensor_csv(path, "time", None, "anomaly", ",")


def _write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "2024-01-01 00:00:00,1.0\n2024-01-01 01:00:00,2.0\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GOOD + "2024-13-45 02:00:00,3.0\n", r"line 4, column 'timestamp': cannot parse timestamp '2024-13-45"),
        (GOOD + "2024-01-01 00:30:00,3.0\n", r"line 4, column 'timestamp': .* comes before .* on line 3"),
        (GOOD + "2024-01-01 02:00:00,abc\n", r"line 4, column 'value': 'abc' is not a number"),
        ("2024-01-01 00:00:00,\n" + "2024-01-01 01:00:00,2.0\n", r"line 2, column 'value': missing value at the start"),
        (
            GOOD
            + "".join(f"2024-01-01 {h:02d}:00:00,\n" for h in range(2, 2 + MAX_FILLED_RUN + 1))
            + "2024-01-02 00:00:00,1\n",
            rf"line 4 to {4 + MAX_FILLED_RUN}, column 'value': {MAX_FILLED_RUN + 1} consecutive missing values",
        ),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, body, message):
    path = _write(tmp_path, "timestamp,value\n" + body)
    with pytest.raises(DataError, match=message) as info:
        load_sensor_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\ntimestamp,value\n" + GOOD + "2024-01-01 02:00:00,abc\n", r"line 5, column 'value'"),
        ('timestamp,value,note\n2024-01-01 00:00:00,1.0,"two\nlines"\n2024-01-01 01:00:00,x,\n', r"line 4, column"),
        ("timestamp,value\n" + GOOD + "2024-01-01 02:00:00,3.0,4.0\n", r"line 4: 3 fields, but the header"),
    ],
    ids=["blank_first_line", "quoted_line_break", "extra_field"],
)
def test_lines_count_blank_lines_and_quoted_line_breaks(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load_sensor_csv(path)


def test_bad_label_value(tmp_path):
    path = _write(tmp_path, "timestamp,value,label\n2024-01-01 00:00:00,1.0,0\n2024-01-01 01:00:00,2.0,yes\n")
    with pytest.raises(DataError, match=r"s.csv, line 3, column 'label': label 'yes' is not 0 or 1"):
        load_sensor_csv(path, label_column="label")


def test_empty_file_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="file is empty"):
        load_sensor_csv(_write(tmp_path, ""))
    with pytest.raises(DataError, match="no such file or folder"):
        load_sensor_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a NAB-layout folder"):
        load_nab(tmp_path)


def test_duplicate_timestamps_are_dropped_and_counted(tmp_path, caplog):
    # A daylight-saving hour logged twice, as in NAB's machine_temperature_system_failure.csv.
    path = _write(tmp_path, "timestamp,value\n" + GOOD + "2024-01-01 01:00:00,9.0\n2024-01-01 02:00:00,3.0\n")
    with caplog.at_level(logging.WARNING):
        (series,) = load_sensor_csv(path)
    assert series.repairs == {"duplicate timestamps dropped": 1}
    np.testing.assert_array_equal(series.values[:, 0], [1.0, 2.0, 3.0])
    assert "dropped 1 row(s)" in caplog.text and "line 4" in caplog.text


def test_short_gap_is_forward_filled_and_counted(tmp_path, caplog):
    path = _write(tmp_path, "timestamp,value\n" + GOOD + "2024-01-01 02:00:00,\n2024-01-01 03:00:00,nan\n"
                  "2024-01-01 04:00:00,5\n")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        (series,) = load_sensor_csv(path)
    np.testing.assert_array_equal(series.values[:, 0], [1.0, 2.0, 2.0, 2.0, 5.0])
    assert series.repairs == {"missing values forward-filled": 2}
    assert "forward-filled 2" in caplog.text


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([["2023-12-01 00:00:00", "2023-12-02 00:00:00"]], r"lies outside the series, which runs from 2024-01-01"),
        ([["2024-01-01 05:00:00", "2024-01-01 03:00:00"]], r"ends before it starts"),
        ([["2024-01-01 05:00:00", "not a time"]], r"cannot parse window"),
        ([[None, "2024-01-01 05:00:00"]], r"cannot parse window"),
    ],
)
def test_bad_label_windows_name_labels_file_and_line(tmp_path, windows, message):
    write_nab_series(tmp_path, "cat/first.csv", hourly_frame(50, seed=3), [])
    write_nab_series(tmp_path, "cat/s.csv", hourly_frame(50), windows)
    labels = tmp_path / "labels" / "combined_windows.json"
    line = labels.read_text().splitlines().index('    "cat/s.csv": [') + 1
    with pytest.raises(DataError, match=message) as info:
        load_nab(tmp_path)
    assert f"{labels}, line {line}, series 'cat/s.csv'" in str(info.value)


def test_files_in_a_folder_need_the_same_columns(tmp_path):
    sensor_frame(30).to_csv(tmp_path / "a.csv", index=False)
    sensor_frame(30).drop(columns="pressure").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b.csv, line 1: value columns \['temp'\] differ"):
        load_sensor_csv(tmp_path, "time", None, "anomaly")


def test_runs_of_ones():
    assert runs_of_ones(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert runs_of_ones(np.zeros(3)) == []


def test_synthetic_set_is_seeded_labelled_and_cached(tmp_path):
    first = write_synthetic_nab(tmp_path / "a")
    second = write_synthetic_nab(tmp_path / "b")
    for kind in KINDS:
        key = f"data/synthetic/{kind}.csv"
        assert (first / key).read_text() == (second / key).read_text()
    assert "SYNTHETIC" in (first / "README.md").read_text()
    windows = json.loads((first / "labels" / "combined_windows.json").read_text())
    assert len(windows["synthetic/no_anomaly.csv"]) == 0 and len(windows["synthetic/spikes.csv"]) == 2
    series = load_nab(first)
    assert len(series) == len(KINDS)
    # No anomaly in the first 25%, so NAB's 15% probationary period is clean.
    assert all(s.windows[0][0] > 0.2 * len(s) for s in series if s.windows)
    root = ensure_synthetic_nab()
    assert root.is_relative_to(tmp_path / "cache")  # XDG_CACHE_HOME, set by the fixture
    assert ensure_synthetic_nab() == root
    assert pd.read_csv(root / "data/synthetic/spikes.csv").shape == (2016, 2)


def test_a_labels_file_that_is_not_utf8_names_the_file(tmp_path):
    write_nab_series(tmp_path, "cat/s.csv", hourly_frame(50), [])
    labels = tmp_path / "labels" / "combined_windows.json"
    labels.write_bytes(labels.read_bytes().replace(b"cat/s.csv", b"cat/\xe9.csv"))  # Latin-1, not UTF-8
    with pytest.raises(DataError, match=r"combined_windows.json: not UTF-8 text \(JSON must be\)"):
        load_nab(tmp_path)
