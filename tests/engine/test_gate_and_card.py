"""The promotion gate of `tune --register` and `register` (refusal, `--force`) and the model card of every version."""

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines import workflows
from pipelines.cli import main as cli_main
from pipelines.model_card import CardInputs, metrics_beside_baselines, render
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv
from pipelines.tasks import GateCheck, GateDecision

TINY = [
    "train.epochs=1",
    "train.verbose=0",
    "model.units=4",
    "features.window=10",
    "forecast.horizon=3",
    "data.eval_folds=1",
    "search.space={}",
]


def test_a_check_passes_like_mlflow_metric_threshold():
    assert GateCheck("val_u2", 0.9, 1.0, False, "naive").passed
    assert not GateCheck("val_u2", 1.0, 1.0, False, "naive").passed  # strictly below
    assert GateCheck("val_accuracy", 0.8, 0.8, True, "champion", or_equal=True).passed
    assert not GateCheck("val_accuracy", float("nan"), 0.5, True, "majority").passed
    assert GateCheck("val_accuracy", 0.1, None, True, "champion").passed  # no champion yet
    decision = GateDecision([GateCheck("a", 1.0, 2.0, False, "x"), GateCheck("b", 3.0, 2.0, False, "y")])
    assert not decision.promote and decision.reason.startswith("b = 3, needs < 2 (y): fails; a = 1")


def test_the_card_puts_each_baseline_beside_the_model_and_says_what_to_run():
    metrics = {
        "test_rmse": 1.0,
        "test_naive_rmse": 1.1,
        "test_coverage_80": 0.79,
        "test_naive_coverage_80": 0.83,
        "test_dm_p_value": 0.2,
        "val_u2": 0.97,
    }
    table, others = metrics_beside_baselines(metrics)
    assert table.set_index("measure").loc["coverage_80", "naive"] == 0.83
    assert table.set_index("measure").loc["rmse", "model"] == 1.0 and others == {"test_dm_p_value": 0.2}
    card = CardInputs(
        name="stocks",
        version="3",
        task="stock_forecasting",
        model_uri="models:/m-1",
        run_id="r1",
        tracking_uri="sqlite:///mlflow.db",
        gate="did not pass the gate: registered without @champion",
        metrics=metrics,
        config_yaml="seed: 42\n",
        dataset={"name": "prices (2 series)", "digest": "abc123", "rows": 500},
        tables={"data_summary": pd.DataFrame({"series": ["A"], "first_date": ["2015-01-02"]})},
        plots=["plots/forecast_vs_actual.png"],
    )
    text = render(card)
    for part in (
        "# stocks version 3",
        "## Promotion gate\n\ndid not pass the gate",
        "digest: `abc123`",
        "rows: `500`",
        "| A | 2015-01-02 |",
        "| coverage_80 | 0.79 | 0.83 |",
        "![forecast_vs_actual](plots/forecast_vs_actual.png)",
        "```yaml\nseed: 42\n```",
        "lstm-pipelines predict --model models:/stocks/3 --input prices.csv",
        "mlflow models serve -m models:/stocks/3",
        "lstm-pipelines export --model models:/stocks/3 --format onnx",
    ):
        assert part in text, part


@pytest.mark.slow
def test_a_refused_version_gets_no_alias_until_forced_and_every_version_a_card(tmp_path, capsys):
    prices = write_csv(synthetic_ohlcv(260), tmp_path / "prices.csv")
    storage = str(tmp_path / "j.log")
    # No model of one epoch has a Diebold-Mariano p below 1e-9 against naive: the gate refuses.
    overrides = [*TINY, f"data.path={prices}", "tracking.gate.alpha=1e-9"]
    result = workflows.tune("stock_forecasting", 1, overrides=overrides, study="g", storage=storage, register=True)
    refused = result.model_version
    assert not refused.promoted and refused.model_uri == "models:/stock_forecasting/1"
    assert "did not pass the gate" in refused.message() and "--force" in refused.message()
    client = MlflowClient()
    version = client.get_model_version("stock_forecasting", "1")
    assert version.tags["gate"] == "refused" and "val_dm_p_value" in version.tags["gate_reason"]
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("stock_forecasting", "champion")
    # The version URI the command printed serves.
    assert mlflow.pyfunc.load_model(refused.model_uri).metadata.metadata["task"] == "stock_forecasting"

    card = Path(refused.card).read_text(encoding="utf-8")
    assert card.startswith("# stock_forecasting version 1")
    assert "registered without @champion" in card and "val_dm_p_value" in card
    assert "| prices | 260 |" in card  # the data summary: the series and its rows
    assert "| coverage_80 |" in card and "| u2 |" in card and "drift" in card
    assert "![forecast_vs_actual](plots/forecast_vs_actual.png)" in card
    assert (Path(refused.card).parent / "plots" / "forecast_vs_actual.png").is_file()
    assert "models:/stock_forecasting/1" in card

    # The CLI says the same and exits 0; --force moves the alias and tags the version so.
    args = ["register", "stock_forecasting", "--study", "g", "--storage", storage]
    for pair in overrides:
        args += ["--set", pair]
    assert cli_main(args) == 0
    assert "did not pass the gate: registered without @champion" in capsys.readouterr().out
    assert cli_main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "promoted to stock_forecasting@champion by --force" in out
    forced = client.get_model_version_by_alias("stock_forecasting", "champion")
    assert str(forced.version) == "3" and forced.tags["gate"] == "forced"
    assert "Model card" in forced.description and "by --force" in forced.description


def test_the_demo_shows_the_gate_and_ends_with_uris_that_exist(monkeypatch, capsys):
    from types import SimpleNamespace

    from pipelines import demo, tracking

    def tune(name, trials, overrides, study, register):
        version = SimpleNamespace(name=name, version=2)
        promoted = name == "anomaly_detection"
        registration = tracking.Registration(version, "champion", promoted, False, "val_u2 = 1.02, needs < 1: fails")
        trial = SimpleNamespace(
            number=0, params={"model.variant": "lstm"}, user_attrs={"headline": {"metric": "m", "value": 1.0}}
        )
        return SimpleNamespace(best_trial=trial, model_version=registration)

    monkeypatch.setattr(demo, "available_tasks", lambda: ["stock_forecasting", "anomaly_detection"])
    monkeypatch.setattr(demo.workflows, "tune", tune)
    demo.main()
    out = capsys.readouterr().out
    assert "stock_forecasting: registered stock_forecasting version 2; did not pass the gate" in out
    assert "predict --model models:/stock_forecasting/2 --input prices.csv" in out
    assert "mlflow models serve -m models:/stock_forecasting/2" in out
    assert "predict --model models:/anomaly_detection@champion" in out
    assert "stock_forecasting@champion" not in out.split("Look further:")[1]


def test_the_demo_names_the_best_model_by_variant_or_task_architecture():
    from types import SimpleNamespace

    from pipelines import demo

    assert demo.best_model("stock_forecasting", [], SimpleNamespace(params={"model.variant": "gru"})) == "gru"
    assert demo.best_model("speech_commands", [], SimpleNamespace(params={"augment.time_masks": 1})) == "crnn"
    assert demo.best_model("speech_commands", ["model.architecture=zoo"], SimpleNamespace(params={})) == (
        "attention_lstm"
    )
    assert demo.best_model("stock_forecasting", [], None) == "-"
