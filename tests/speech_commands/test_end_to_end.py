"""End to end on tiny WAV trees: tune -> register -> load @champion -> predict, the CLI, TFLite export."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import workflows
from pipelines.cli import main as cli_main
from tests.helpers import serve_logged_example
from tests.speech_commands.audio_trees import fsdd_tree, pitch, speech_commands_tree, tone, write_wav

TINY = ["train.epochs=2", "train.verbose=0", "train.batch_size=16", "model.units=8", "features.num_mel_bins=16"]


@pytest.mark.slow
def test_tune_register_serve_and_predict(tmp_path):
    root = speech_commands_tree(tmp_path / "data", speakers=5)
    space = [
        "model.architecture=zoo",
        "search.space={model.variant: {type: categorical, choices: [gru, attention_lstm]}}",
    ]
    result = workflows.tune(
        "speech_commands", 2, overrides=[*TINY, *space, f"data.path={root}"], study="s",
        storage=str(tmp_path / "j.log"), register=True, force=True,  # two epochs need not pass the gate
    )  # fmt: skip
    assert result.counts["complete"] == 2

    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("speech_commands").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    metrics = runs[0].data.metrics
    assert {"val_error_rate", "test_accuracy", "test_macro_f1", "test_recall_yes", "test_recall__silence_",
            "test_majority_accuracy"} <= set(metrics)  # fmt: skip
    # `val_accuracy` is both a Keras epoch metric and an evaluation metric: the evaluation is logged
    # one step after the last epoch, so it is the value the run shows.
    history = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert max(m.step for m in history) == len(history) - 1 and len(history) >= 2
    assert metrics["val_accuracy"] == pytest.approx(1 - metrics["val_error_rate"])
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in artifacts
    if runs[0].data.params["model.variant"] == "attention_lstm":
        assert "plots/attention_over_time.png" in artifacts
    assert result.best_trial.user_attrs["headline"]["metric"] == "test_accuracy"

    model = mlflow.pyfunc.load_model("models:/speech_commands@champion")
    waves = np.stack([tone(pitch(i), seconds=0.5, seed=i) for i in range(3)])
    waves = np.pad(waves, ((0, 0), (4000, 4000)))
    answer = model.predict(waves)
    classes = ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    assert list(answer.columns) == ["label", "probability", *[f"prob_{name}" for name in classes]]
    assert answer["label"].isin(classes).all() and len(answer) == 3
    np.testing.assert_allclose(answer.filter(like="prob_").sum(axis=1), 1.0, atol=1e-4)
    # The model carries a real request: one test clip, rounded to 4 decimals.
    request, served = serve_logged_example("models:/speech_commands@champion")
    assert request.shape == (1, 16000) and 0 < np.abs(request).max() <= 1
    np.testing.assert_array_equal(request, np.round(request, 4))
    assert served["label"].isin(classes).all() and len(served) == 1

    inputs = tmp_path / "inputs"
    for index in range(3):
        write_wav(inputs / f"clip{index}.wav", waves[index])
    output = tmp_path / "labels.csv"
    assert cli_main(["predict", "--model", "models:/speech_commands@champion", "--input", str(inputs),
                     "--output", str(output)]) == 0  # fmt: skip
    written = pd.read_csv(output)
    assert written.columns[:3].tolist() == ["file", "label", "probability"]
    assert written["file"].str.endswith(("clip0.wav", "clip1.wav", "clip2.wav")).all()
    assert written["label"].tolist() == answer["label"].tolist()


@pytest.mark.slow
def test_fsdd_train_learns_and_exports_to_tflite(tmp_path):
    root = fsdd_tree(tmp_path / "fsdd", speakers=("alice", "bob"), indices=range(20))
    overrides = [*TINY, "train.epochs=10", "model.units=16", "model.architecture=zoo", "model.variant=gru",
                 "train.learning_rate=0.01",
                 "augment.noise_probability=0", "augment.time_masks=0", "augment.freq_masks=0",
                 f"data.path={root}"]  # fmt: skip
    run = workflows.train("speech_commands", overrides=overrides)
    assert run.evaluation.metrics["test_accuracy"] > 0.5 > run.evaluation.metrics["test_majority_accuracy"]
    for int8 in (False, True):
        exported = workflows.export(run.model_uri, "tflite", tmp_path / "exported", int8=int8)
        assert exported.max_abs_diff < (0.05 if int8 else 1e-4)
        assert exported.latency_ms_per_example > 0 and exported.size_bytes > 0


@pytest.mark.slow
def test_attention_ensemble_logs_the_first_members_attention(tmp_path):
    root = fsdd_tree(tmp_path / "fsdd", speakers=("alice", "bob"), indices=range(12))
    overrides = [*TINY, "train.epochs=1", "train.ensemble_size=2", "model.architecture=attention_rnn",
                 "model.variant=attention_lstm", f"data.path={root}"]  # fmt: skip
    run = workflows.train("speech_commands", overrides=overrides)
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/attention_over_time.png"} <= artifacts
    answer = mlflow.pyfunc.load_model(run.model_uri).predict(np.zeros((2, 16000), dtype="float32"))
    np.testing.assert_allclose(answer.filter(like="prob_").sum(axis=1), 1.0, atol=1e-4)
