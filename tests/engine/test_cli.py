"""The command line: help for every command, clear errors for bad input, MLproject translation."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipelines import tuning, workflows
from pipelines.cli import build_parser, main
from pipelines.errors import ConfigError
from pipelines.mlproject import to_cli_arguments
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv

COMMANDS = {
    "train": "--set KEY=VALUE",
    "tune": "--trials",
    "register": "--study",
    "predict": "--model",
    "export": "--format",
    "demo": "--trials",
}


@pytest.mark.parametrize(("command", "option"), COMMANDS.items())
def test_every_command_has_help(command, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out


def test_console_entry_point_runs_as_module():
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines", "--help"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0
    assert "train" in completed.stdout and "tune" in completed.stdout


def test_bad_override_is_a_clear_error(capsys):
    assert main(["train", "stock_forecasting", "--set", "model.unitz=3"]) == 2
    assert "model.unitz: unknown key" in capsys.readouterr().err


def test_missing_data_file_is_a_clear_error(capsys, tmp_path):
    missing = tmp_path / "nope.csv"
    assert main(["train", "stock_forecasting", "--set", f"data.path={missing}"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_unknown_task_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["train", "weather"])
    assert "invalid choice: 'weather'" in capsys.readouterr().err


@pytest.fixture
def tune_calls(monkeypatch):
    """`(trials, timeout)` of every `tuning.tune` call, which returns at once without training."""
    calls = []

    def record(task, config, source, trials, timeout=None, study_name=None, storage=None, on_parent=None):
        calls.append((trials, timeout))
        return tuning.TuneResult(study_name or task.name, "no-run", None, {"complete": 0})

    monkeypatch.setattr(tuning, "tune", record)
    return calls


@pytest.mark.parametrize(
    ("options", "expected"), [([], (4, 30.0)), (["--trials", "2", "--timeout", "5"], (2, 5.0))], ids=["config", "cli"]
)
def test_tune_takes_trials_and_timeout_from_the_config_unless_given(options, expected, tune_calls, tmp_path):
    prices = write_csv(synthetic_ohlcv(100), tmp_path / "prices.csv")
    config = ["--set", f"data.path={prices}", "--set", "search.trials=4", "--set", "search.timeout=30"]
    assert main(["tune", "stock_forecasting", *config, "--storage", str(tmp_path / "j.log"), *options]) == 0
    assert tune_calls == [expected]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--trials", "0"], "search.trials: expected a positive integer, got 0"),
        (["--timeout", "-1"], "search.timeout: expected a positive number of seconds or null, got -1.0"),
        (["--timeout", "inf"], "search.timeout: expected a positive number of seconds or null, got inf"),
    ],
)
def test_tune_refuses_trials_and_timeouts_that_cannot_run_before_storing_anything(options, message, capsys, tmp_path):
    assert main(["tune", "stock_forecasting", "--storage", str(tmp_path / "j.log"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "j.log").exists() and not (tmp_path / "mlflow.db").exists()


def test_tune_checks_the_search_settings_of_the_config_and_the_api_before_storing_anything(tune_calls, tmp_path):
    storage = str(tmp_path / "j.log")
    with pytest.raises(ConfigError, match=r"search.trials: expected a positive integer, got -3 \(given by --set"):
        workflows.tune("stock_forecasting", overrides=["search.trials=-3"], storage=storage)
    with pytest.raises(ConfigError, match=r"search.trials: expected a positive integer, got 0"):
        workflows.tune("stock_forecasting", 0, storage=storage)
    with pytest.raises(ConfigError, match=r"search.timeout: expected a positive number of seconds or null, got -5"):
        workflows.tune("stock_forecasting", timeout=-5, storage=storage)
    with pytest.raises(ConfigError, match=r"search.grace_period: expected more seconds than search.heartbeat_inter"):
        workflows.tune("stock_forecasting", overrides=["search.heartbeat_interval=30"], storage=storage)
    assert tune_calls == [] and not Path(storage).exists()


def test_mlproject_tune_defaults_leave_trials_and_timeout_to_the_config():
    assert to_cli_arguments(["tune", "--task", "stock_forecasting", "--trials", "0", "--timeout", "0"]) == [
        "tune",
        "stock_forecasting",
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [("trials", "abc"), ("trials", "2.5"), ("trials", "-1"), ("trials", "inf"), ("timeout", "soon")],
)
def test_mlproject_numbers_that_are_not_valid_are_usage_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        to_cli_arguments(["tune", "--task", "stock_forecasting", f"--{option}", value])
    assert exit_info.value.code == 2
    assert f"{option}: expected a" in capsys.readouterr().err


def test_mlproject_parameters_become_cli_arguments():
    assert to_cli_arguments(
        [
            "tune",
            "--task",
            "stock_forecasting",
            "--trials",
            "5.0",
            "--timeout",
            "0",
            "--study",
            "",
            "--storage",
            "",
            "--register",
            "true",
            "--config",
            "",
            "--overrides",
            "model.units=8 train.epochs=1",
        ]
    ) == [
        "tune",
        "stock_forecasting",
        "--set",
        "model.units=8",
        "--set",
        "train.epochs=1",
        "--trials",
        "5",
        "--register",
    ]


def test_journal_in_a_missing_folder_is_a_clear_error(capsys, tmp_path):
    journal = tmp_path / "missing" / "journal.log"
    assert main(["tune", "stock_forecasting", "--trials", "1", "--storage", str(journal)]) == 2
    assert f"cannot open Optuna journal file {journal}: No such file or directory" in capsys.readouterr().err
    assert not journal.parent.exists()


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "onnx"])
def test_int8_outside_tflite_is_a_usage_error(fmt, capsys, tmp_path):
    argv = ["export", "--model", "models:/stock_forecasting@champion", "--format", fmt, "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--int8"])
    assert exit_info.value.code == 2
    assert f"--int8 applies to --format tflite only, not --format {fmt}" in capsys.readouterr().err


def test_export_to_an_empty_folder_name_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "models:/stock_forecasting@champion", "--format", "keras", "--output", ""])
    assert exit_info.value.code == 2
    assert "--output: expected a folder, got an empty name" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written to the working directory


def test_predict_to_a_folder_fails_before_loading_the_model(capsys, tmp_path):
    prices = write_csv(synthetic_ohlcv(100), tmp_path / "prices.csv")
    argv = ["predict", "--model", "models:/stock_forecasting@champion", "--input", str(prices)]
    assert main([*argv, "--output", str(tmp_path)]) == 2
    assert f"error: cannot write predictions to {tmp_path}: it is a folder, not a file" in capsys.readouterr().err


def test_predict_where_there_is_no_store_says_so_and_creates_none(monkeypatch, capsys, tmp_path):
    prices = write_csv(synthetic_ohlcv(100), tmp_path / "prices.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = ["predict", "--model", "models:/stock_forecasting@champion", "--input", str(prices), "--output", "f.csv"]
    assert main(argv) == 2
    expected = "error: no MLflow store at mlflow.db (the default tracking URI, sqlite:///mlflow.db)"
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_predict_output_that_cannot_be_written_is_a_clear_error(monkeypatch, capsys, tmp_path):
    model = SimpleNamespace(
        metadata=SimpleNamespace(metadata={"task": "stock_forecasting"}),
        unwrap_python_model=lambda: None,
        predict=lambda inputs: pd.DataFrame({"step_1": [1.0]}),
    )
    monkeypatch.setattr(workflows, "_load_served_model", lambda uri: model)
    monkeypatch.setattr(workflows, "get_task", lambda name: SimpleNamespace(read_inputs=lambda path, served: None))
    blocker = write_csv(synthetic_ohlcv(100), tmp_path / "prices.csv")
    output = blocker / "forecast.csv"  # a folder that is a file
    argv = ["predict", "--model", "models:/stock_forecasting@champion", "--input", str(blocker), "--output"]
    assert main([*argv, str(output)]) == 2
    assert f"error: cannot write predictions to {output}: " in capsys.readouterr().err


def test_predict_warmup_goes_to_a_model_that_takes_one_and_is_refused_by_others(monkeypatch, capsys, tmp_path):
    seen = {}

    def model_with(params):
        signature = SimpleNamespace(params=SimpleNamespace(params=[SimpleNamespace(name=p) for p in params]))
        return SimpleNamespace(
            metadata=SimpleNamespace(metadata={"task": "anomaly_detection"}, signature=signature),
            unwrap_python_model=lambda: None,
            predict=lambda inputs, **kwargs: seen.update(kwargs) or pd.DataFrame({"score": [1.0]}),
        )

    monkeypatch.setattr(workflows, "get_task", lambda name: SimpleNamespace(read_inputs=lambda path, served: None))
    argv = ["predict", "--model", "models:/m@champion", "--input", str(tmp_path), "--output", str(tmp_path / "o.csv")]
    monkeypatch.setattr(workflows, "_load_served_model", lambda uri: model_with(["warmup"]))
    assert main([*argv, "--warmup", "500"]) == 0 and seen == {"params": {"warmup": 500}}
    monkeypatch.setattr(workflows, "_load_served_model", lambda uri: model_with([]))
    assert main([*argv, "--warmup", "500"]) == 2
    assert "error: --warmup: model models:/m@champion (anomaly_detection) takes no warm-up" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--warmup", "0"])
    assert "--warmup: expected a positive number of rows, got 0" in capsys.readouterr().err


def test_make_clean_removes_the_studies_with_the_runs_they_point_to():
    # A study left in optuna.db would resume with finished trials whose models were in the deleted mlflow.db.
    root = Path(__file__).resolve().parents[2]
    recipe = subprocess.run(["make", "-n", "-C", str(root), "clean"], capture_output=True, text=True, check=True).stdout
    assert "mlflow.db" in recipe.split() and "optuna.db" in recipe.split()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "stock_forecasting"],
            "interrupted; the MLflow run is marked FAILED; rerun the command to train again",
        ),
        (["tune", "stock_forecasting"], "interrupted; finished trials are kept, rerun the same command to resume"),
        (["predict", "--model", "m", "--input", "i", "--output", "o"], "interrupted"),
        (
            ["adapt", "speech_commands", "--model", "m", "--input", "i"],
            "interrupted; an adaptation run already started is marked FAILED; the model it came from is unchanged",
        ),
    ],
)
def test_an_interrupt_says_what_the_command_leaves_behind(argv, message, monkeypatch, capsys):
    import pipelines.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipelines.cli, "run", interrupted)
    assert main(argv) == 130
    assert capsys.readouterr().err == message + "\n"


def test_mlproject_config_entry_points_pass_every_parameter_and_take_config_and_overrides():
    import re

    import yaml

    entry_points = yaml.safe_load((Path(__file__).resolve().parents[2] / "MLproject").read_text())["entry_points"]
    for name in ("train", "tune", "register", "adapt"):
        entry = entry_points[name]
        assert {"config", "overrides"} <= set(entry["parameters"]), name
        assert set(re.findall(r"\{(\w+)\}", entry["command"])) == set(entry["parameters"]), name
    register = ["register", "--task", "stock_forecasting", "--study", "", "--storage", "", "--config", ""]
    assert to_cli_arguments([*register, "--overrides", "tracking.alias=prod"]) == [
        "register",
        "stock_forecasting",
        "--set",
        "tracking.alias=prod",
    ]


def test_mlproject_adapt_passes_the_model_input_and_registered_name(capsys):
    adapt = ["adapt", "--task", "speech_commands", "--model", "models:/speech_commands@champion", "--input", "dave"]
    assert to_cli_arguments([*adapt, "--register", "", "--config", "", "--overrides", "seed=1"]) == [
        "adapt", "speech_commands", "--set", "seed=1", "--model", "models:/speech_commands@champion", "--input", "dave",
    ]  # fmt: skip
    assert to_cli_arguments([*adapt, "--register", "speech_dave"])[-2:] == ["--register", "speech_dave"]
    with pytest.raises(SystemExit):
        to_cli_arguments(["adapt", "--task", "speech_commands", "--model", "m", "--input", ""])
    assert "adapt needs --model and --input" in capsys.readouterr().err


def test_a_missing_shipped_config_is_a_warning_not_silent(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(workflows, "CONF_DIR", tmp_path / "conf")  # as a non-editable install leaves it
    task = workflows.get_task("stock_forecasting")
    with caplog.at_level("WARNING", logger="pipelines.workflows"):
        config = workflows.load_task_config(task)
    assert f"no {tmp_path / 'conf' / 'stock_forecasting.yaml'}: using the built-in defaults" in caplog.text
    assert config == workflows.load_config(task.config_class)


def test_adapt_is_offered_only_for_tasks_that_adapt(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["adapt", "stock_forecasting", "--model", "m", "--input", "i"])
    assert info.value.code == 2
    assert "invalid choice: 'stock_forecasting' (choose from 'speech_commands')" in capsys.readouterr().err
    args = build_parser().parse_args(["adapt", "speech_commands", "--model", "m", "--input", "i", "--threshold", "0.9"])
    assert (args.task, args.threshold) == ("speech_commands", 0.9)


def test_mlproject_passes_force_to_tune_and_register():
    register = ["register", "--task", "stock_forecasting", "--force", "true"]
    assert to_cli_arguments(register) == ["register", "stock_forecasting", "--force"]
    tune = ["tune", "--task", "stock_forecasting", "--register", "true", "--force", "false"]
    assert to_cli_arguments(tune) == ["tune", "stock_forecasting", "--register"]
    args = build_parser().parse_args(to_cli_arguments([*tune[:-1], "yes"]))
    assert (args.register, args.force) == (True, True)
