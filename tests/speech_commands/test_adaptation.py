"""Self-training a speech model on a new speaker's unlabelled clips: `adaptation` and the `adapt` command."""

import types

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import workflows
from pipelines.cli import build_parser
from pipelines.cli import main as cli_main
from pipelines.config import load_config
from pipelines.errors import ConfigError, DataError, PipelineError
from pipelines.speech_commands.adaptation import AdaptationSettings, self_train
from pipelines.speech_commands.model import build_speech_model
from pipelines.speech_commands.serving import SpeechServingModel
from pipelines.speech_commands.task import TASK, SpeechConfig
from pipelines.training import average_ensemble, ensemble_members
from tests.speech_commands.audio_trees import fsdd_tree, pitch, speech_commands_tree, tone, write_wav

SAMPLES = 16000


def _ensemble(classes=3):
    config = load_config(SpeechConfig, None, ["model.units=4", "model.variant=gru", "features.num_mel_bins=16"])
    members = [
        build_speech_model(config, SAMPLES, classes, np.zeros(16, "float32"), np.ones(16, "float32")) for _ in range(2)
    ]
    return average_ensemble(members)


def _clips(count, seed=0):
    return np.stack([tone(pitch(i % 3) * 1.1, seconds=1.0, seed=seed + i) for i in range(count)])


def _weights(model):
    return [np.array(weight) for weight in model.weights]


def test_self_training_sharpens_the_models_own_labels_and_keeps_the_ensemble_frozen():
    ensemble = _ensemble()
    new = _clips(24)
    replay_x, replay_y = _clips(30, seed=100), np.arange(30) % 3
    before = ensemble.predict(new, verbose=0)
    threshold = float(np.median(before.max(axis=1)))
    settings = AdaptationSettings(threshold=threshold, epochs=4, learning_rate=0.01, batch_size=8, replay_ratio=1.0)
    members_before = [_weights(member) for member in ensemble_members(ensemble)]

    pseudo, replayed = self_train(ensemble, new, before, replay_x, replay_y, settings, np.random.default_rng(0))

    count = int(pseudo.confident.sum())
    assert 0 < count < len(new) and replayed == count
    np.testing.assert_array_equal(pseudo.labels, before.argmax(axis=1))
    after = ensemble.predict(new, verbose=0)
    trained = pseudo.confident
    # The clips it trained on now get their own labels with more confidence than before.
    rows = np.flatnonzero(trained)
    assert after[rows, pseudo.labels[rows]].mean() > before[rows, pseudo.labels[rows]].mean()
    for member, old in zip(ensemble_members(ensemble), members_before, strict=True):
        assert any(not np.allclose(a, b) for a, b in zip(_weights(member), old, strict=True))
    assert not ensemble.trainable and not ensemble.trainable_weights


def test_replay_is_capped_by_the_training_clips_there_are():
    ensemble = _ensemble()
    new = _clips(12)
    probabilities = np.tile([[0.9, 0.05, 0.05]], (12, 1))
    settings = AdaptationSettings(epochs=1, replay_ratio=3.0)
    _, replayed = self_train(
        ensemble, new, probabilities, _clips(5), np.zeros(5, int), settings, np.random.default_rng(0)
    )
    assert replayed == 5


def test_no_confident_clip_is_an_error_and_leaves_the_model_as_it_was():
    ensemble = _ensemble()
    new = _clips(6)
    before = _weights(ensemble)
    probabilities = np.full((6, 3), 1 / 3)
    with pytest.raises(DataError, match=r"none of the 6 new clips .* >= 0.8 \(the most confident: 0.333\)"):
        self_train(ensemble, new, probabilities, _clips(6), np.zeros(6, int), AdaptationSettings(), None)
    for a, b in zip(_weights(ensemble), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_adapt_check_refuses_inputs_the_model_labels_with_no_confidence():
    ensemble = _ensemble()  # untrained: about a third for each of its 3 classes
    served = SpeechServingModel()  # as load_context leaves it
    served.keras_model, served.class_names, served.sample_rate, served.clip_samples = (
        ensemble,
        ["a", "b", "c"],
        16000,
        SAMPLES,
    )
    data = types.SimpleNamespace(class_names=["a", "b", "c"], input_shape=(SAMPLES,))
    config = load_config(SpeechConfig, None, [])
    inputs = pd.DataFrame({"file": [f"{i}.wav" for i in range(4)], "waveform": list(_clips(4))})
    most_confident = float(ensemble.predict(_clips(4), verbose=0).max())
    with pytest.raises(DataError, match=r"none of the 4 new clips is labelled with probability >= 0.8"):
        TASK.check_adaptable(served, inputs, data, config, AdaptationSettings())
    TASK.check_adaptable(served, inputs, data, config, AdaptationSettings(threshold=most_confident))


def test_only_a_task_that_adapts_is_adapted_and_it_is_refused_before_anything_loads():
    with pytest.raises(PipelineError, match="task 'stock_forecasting' has no adaptation; only speech_commands has"):
        workflows.adapt("stock_forecasting", "models:/not_a_model@anywhere", "no_such_folder", AdaptationSettings())


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threshold", 0.0, "threshold: expected a probability"),
        ("threshold", 1.5, "threshold: expected a probability"),
        ("epochs", 0, "epochs: expected a positive integer"),
        ("batch_size", 2.5, "batch-size: expected a positive integer"),
        ("learning_rate", float("inf"), "learning-rate: expected a positive number"),
        ("replay_ratio", -1.0, "replay-ratio: expected a number >= 0"),
    ],
)
def test_bad_settings_name_the_option(field, value, message):
    with pytest.raises(ConfigError, match=message):
        AdaptationSettings(**{field: value})


def test_the_commands_help_states_the_settings_defaults():
    adapt = build_parser()._subparsers._group_actions[0].choices["adapt"]
    helps = {action.dest: action.help for action in adapt._actions}
    for field, value in vars(AdaptationSettings()).items():
        assert helps[field].endswith(f"(default: {value})") or helps[field] == f"default: {value}", field


def test_a_bad_setting_is_refused_before_the_model_is_loaded(capsys):
    code = cli_main(["adapt", "speech_commands", "--model", "runs:/0123/model", "--input", ".", "--threshold", "2"])
    assert code == 2
    assert "threshold: expected a probability in (0, 1], got 2.0" in capsys.readouterr().err


@pytest.mark.slow
def test_adapt_logs_and_registers_a_model_self_trained_on_a_new_speakers_folder(tmp_path, capsys):
    root = fsdd_tree(tmp_path / "fsdd", speakers=("alice", "bob"), indices=range(12))
    data = [f"data.path={root}", "augment.noise_probability=0", "features.num_mel_bins=16", "augment.time_masks=0"]
    tiny = ["train.epochs=6", "train.verbose=0", "train.batch_size=16", "model.units=16", "model.architecture=zoo",
            "model.variant=gru", "train.learning_rate=0.01"]  # fmt: skip
    run = workflows.train("speech_commands", overrides=[*tiny, *data])
    new = tmp_path / "dave"  # a new speaker: every digit a little higher than alice and bob say it
    for digit in range(10):
        for index in range(4):
            write_wav(new / f"{digit}_{index}.wav", tone(pitch(digit) / 2 * 1.08, seconds=0.5, seed=50 + index))
    original = workflows.predict(run.model_uri, str(new), tmp_path / "original.csv")
    threshold = f"{np.floor(np.median(original['probability']) * 1000) / 1000:.3f}"  # about half the clips
    experiment = MlflowClient().get_experiment_by_name("speech_commands").experiment_id
    runs_before = len(MlflowClient().search_runs([experiment]))

    # A config whose data has other classes than the model is refused before a run starts.
    other = speech_commands_tree(tmp_path / "commands", speakers=3)
    args = ["adapt", "speech_commands", "--model", run.model_uri, "--input", str(new), "--threshold", threshold]
    assert cli_main([*args, "--set", f"data.path={other}", "--set", "features.num_mel_bins=16"]) == 2
    assert "the model's classes (0, 1, 2" in capsys.readouterr().err
    assert len(MlflowClient().search_runs([experiment])) == runs_before

    sets = [item for value in data for item in ("--set", value)]
    assert cli_main([*args, *sets, "--epochs", "2", "--register", "speech_dave"]) == 0
    printed = capsys.readouterr().out
    assert "new clips (their own labels)" in printed and "registered speech_dave version 1" in printed

    adapted = MlflowClient().search_runs([experiment], filter_string="tags.adapted_from != ''")
    assert len(adapted) == 1 and adapted[0].info.status == "FINISHED"
    adapted = adapted[0]
    assert adapted.data.tags["adapted_from"] == run.model_uri
    assert adapted.data.params["adapt.threshold"] == threshold and adapted.data.params["adapt.epochs"] == "2"
    metrics = adapted.data.metrics
    assert metrics["adapt_clips"] == 40 and 0 < metrics["adapt_pseudo_labels"] <= 40
    source = TASK.load_source(workflows.load_task_config(TASK, None, data))
    assert metrics["adapt_replayed_clips"] == min(2 * metrics["adapt_pseudo_labels"], len(source.splits["train"].y))
    assert "test_accuracy" in metrics and "source_test_accuracy" in metrics
    table = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{adapted.info.run_id}/tables/adaptation.csv"))
    assert len(table) == 40 and table["trained_on"].sum() == metrics["adapt_pseudo_labels"]
    assert (table.loc[~table["trained_on"], "probability_before"] < float(threshold)).all()

    # The registered model is the adapted one: it answers as the table says, and not as the original.
    served = workflows.predict("models:/speech_dave@champion", str(new), tmp_path / "dave.csv")
    by_file = table.set_index("file")
    np.testing.assert_allclose(served["probability"], by_file.loc[served["file"], "probability"], rtol=1e-4)
    assert served["label"].tolist() == by_file.loc[served["file"], "label"].astype(str).tolist()
    np.testing.assert_allclose(original["probability"], by_file.loc[original["file"], "probability_before"], rtol=1e-4)
    assert not np.allclose(original["probability"], served["probability"], rtol=1e-3)
