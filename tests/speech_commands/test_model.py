"""The model: every zoo variant and task architecture over the front end, and safe-mode reload."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from lstm_models import VARIANTS
from pipelines.errors import ConfigError
from pipelines.speech_commands.evaluation import attention_over_time
from pipelines.speech_commands.features import LogMelSpectrogram
from tests.helpers import assert_same_model
from tests.speech_commands.tiny_models import SAMPLES, tiny_config, tiny_model, tones

SAVED = Path(__file__).parent / "saved"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_zoo_variant_takes_waveforms(variant):
    layers = ["model.num_layers=2"] if variant == "stacked_lstm" else []
    model = tiny_model(f"model.variant={variant}", *layers)
    probabilities = model.predict(tones(), verbose=0)
    assert model.input_shape == (None, SAMPLES)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["attention_rnn", "crnn"])
def test_attention_architectures_and_their_attention_over_time(architecture):
    model = tiny_model(f"model.architecture={architecture}", "model.variant=attention_lstm", "model.num_layers=2")
    assert model.predict(tones(), verbose=0).shape == (4, 3)
    assert sum(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers) == 2
    weights = attention_over_time(model, tones())
    assert weights.shape == (4, LogMelSpectrogram().frames(SAMPLES))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    zoo_weights = attention_over_time(tiny_model("model.variant=attention_lstm"), tones())
    assert zoo_weights.shape == weights.shape
    assert attention_over_time(tiny_model("model.variant=gru"), tones()) is None
    message = rf"model.architecture={architecture} is an attention model; set model.variant=attention_lstm"
    with pytest.raises(ConfigError, match=message):
        tiny_model(f"model.architecture={architecture}", "model.variant=gru")
    space = "search.space={model.variant: {type: categorical, choices: [gru, attention_lstm]}}"
    assert tiny_config(f"model.architecture={architecture}", "model.variant=attention_lstm", space).search.space
    with pytest.raises(ConfigError, match="model.architecture: expected one of zoo, attention_rnn, crnn"):
        tiny_config("model.architecture=transformer")


def test_crnn_pools_frequency_not_time():
    model = tiny_model("model.architecture=crnn", "model.variant=attention_lstm")
    frames = LogMelSpectrogram().frames(SAMPLES)
    # 16 mel bins halved twice, times the last block's filters (default 16, 32); every frame kept for the LSTMs.
    assert model.get_layer("to_sequence").output.shape == (None, frames, 4 * 32)
    assert isinstance(model.get_layer("conv_0_norm"), keras.layers.LayerNormalization)
    assert [model.get_layer(f"dense_{i}").units for i in range(2)] == [64, 32]
    assert model.get_layer("dense_0").activation.__name__ == "relu"
    assert model.get_layer("dense_1").activation.__name__ == "linear"  # de Andrade et al.'s 64 relu -> 32 linear


def test_crnn_blocks_normalisation_and_head_come_from_the_config():
    model = tiny_model(
        "model.architecture=crnn", "model.variant=attention_lstm", "model.conv_filters=[8, 12, 6]",
        "model.conv_norm=batch", "model.dense_units=[20]", "model.head_dropout=0.3",
    )  # fmt: skip
    frames = LogMelSpectrogram().frames(SAMPLES)
    assert model.get_layer("to_sequence").output.shape == (None, frames, 2 * 6)  # 16 bins halved three times
    assert [model.get_layer(f"conv_{i}").filters for i in range(3)] == [8, 12, 6]
    assert all(isinstance(model.get_layer(f"conv_{i}_norm"), keras.layers.BatchNormalization) for i in range(3))
    assert model.get_layer("conv_0").activation.__name__ == "linear"  # ReLU after the batch norm
    assert isinstance(model.get_layer("conv_0_relu"), keras.layers.ReLU)
    assert model.get_layer("dense_0").units == 20 and model.get_layer("dense_0").activation.__name__ == "relu"
    assert model.get_layer("head_dropout").rate == 0.3


@pytest.mark.parametrize("head_dropout", [0.0, 0.5])
def test_head_dropout_acts_in_training_only(head_dropout):
    no_augmentation = ["augment.speed_change=0", "augment.time_shift_seconds=0", "augment.freq_masks=0",
                       "augment.time_masks=0"]  # fmt: skip
    model = tiny_model(
        "model.architecture=crnn", "model.variant=attention_lstm", f"model.head_dropout={head_dropout}",
        *no_augmentation,
    )  # fmt: skip
    clips = tones()
    np.testing.assert_array_equal(model(clips, training=False), model(clips, training=False))
    differs = not np.allclose(model(clips, training=True), model(clips, training=True))
    assert differs == (head_dropout > 0)
    assert ("head_dropout" in [layer.name for layer in model.layers]) == (head_dropout > 0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.conv_filters=[]", r"model.conv_filters: expected a non-empty list of positive integers, got \[\]"),
        ("model.conv_filters=[32, 0]", r"model.conv_filters: .* got \[32, 0\]"),
        ("model.conv_filters=32", r"model.conv_filters: expected a list, got 32"),
        ("model.dense_units=[64, true]", r"model.dense_units: expected a non-empty list of positive integers"),
        ("model.conv_norm=group", r"model.conv_norm: expected one of layer, batch, got 'group'"),
        ("model.head_dropout=1.0", r"model.head_dropout: expected a number in \[0, 1\), got 1.0"),
    ],
)
def test_bad_architecture_settings_name_their_key(setting, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(setting)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.variant=peephole_lstm"],
        ["model.architecture=attention_rnn", "model.variant=attention_lstm"],
        ["model.architecture=crnn", "model.variant=attention_lstm"],
        ["model.architecture=crnn", "model.variant=attention_lstm", "model.conv_norm=batch", "model.head_dropout=0.3"],
    ],
    ids=["peephole_lstm", "attention_rnn", "crnn", "crnn_batch_norm"],
)
def test_keras_file_reloads_in_safe_mode_with_identical_predictions(tmp_path, overrides):
    model = tiny_model(*overrides)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert_same_model(model, reloaded, tones())


def test_a_model_saved_before_the_layers_moved_still_loads(tmp_path):
    # Saved when the layers lived in `pipelines.speech_commands.layers` (the module named in the file):
    # RandomSpeedShift -> LogMelSpectrogram (16 bins, 100-4000 Hz) -> Normalization -> SpecAugment -> GRU.
    # Keras finds each class by its registered name (`pipelines>LogMelSpectrogram`, ...). A served model
    # is loaded in a fresh process that imports the task's serving module only, as here.
    np.save(tmp_path / "waves.npy", tones())
    script = (
        "import sys, keras, numpy as np\n"
        "import pipelines.speech_commands.serving\n"
        "model = keras.models.load_model(sys.argv[1], safe_mode=True)\n"
        "assert type(model.get_layer('log_mel')).__module__ == 'pipelines.speech_commands.features'\n"
        "assert model.get_layer('log_mel').max_freq == 4000.0\n"
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))\n"
    )
    command = [sys.executable, "-c", script, str(SAVED / "before_the_move.keras"), str(tmp_path / "waves.npy")]
    subprocess.run([*command, str(tmp_path / "out.npy")], check=True, capture_output=True, cwd=REPO)
    expected = np.load(SAVED / "before_the_move_probabilities.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-5)
