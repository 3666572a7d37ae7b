"""Training-only augmentation: noise in tf.data, speed, shift and SpecAugment in the model, never at inference."""

import keras
import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.speech_commands import augment
from pipelines.speech_commands.augment import RandomSpeedShift, SpecAugment, stretch_and_shift
from pipelines.speech_commands.model import build_speech_model
from pipelines.speech_commands.task import SpeechConfig
from tests.speech_commands.audio_trees import tone

SAMPLES = 4000


def _config(*overrides):
    return load_config(SpeechConfig, None, ["model.units=4", "features.num_mel_bins=16", *overrides])


def _model(*overrides):
    config = _config(*overrides)
    return build_speech_model(config, SAMPLES, 3, np.zeros(16, "float32"), np.ones(16, "float32"))


def _waves(n=4):
    return np.stack([tone(300.0 * (i + 1), seconds=SAMPLES / 16000, seed=i) for i in range(n)])


def test_spec_augment_masks_only_in_training():
    features = np.ones((8, 50, 20), "float32")
    layer = SpecAugment(freq_masks=1, freq_mask_width=5, time_masks=1, time_mask_width=10, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(features, training=False)), features)
    masked = np.asarray(layer(features, training=True))
    assert 0 < (masked == 0).mean() < 0.6
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugment(time_masks=-1)


def test_augmentation_changes_training_inputs_never_inference():
    model = _model(
        "augment.freq_masks=2", "augment.time_masks=2", "augment.speed_change=0.2", "augment.time_shift_seconds=0.05"
    )
    plain = _model(
        "augment.freq_masks=0", "augment.time_masks=0", "augment.speed_change=0", "augment.time_shift_seconds=0"
    )
    plain.set_weights(model.get_weights())
    x = _waves()
    served = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(served, np.asarray(plain(x, training=False)))
    np.testing.assert_array_equal(served, np.asarray(model(x, training=False)))
    for name in ("speed_shift", "spec_augment"):
        part = keras.Model(model.inputs, model.get_layer(name).output)
        assert not np.array_equal(np.asarray(part(x, training=True)), np.asarray(part(x, training=False)))
        np.testing.assert_array_equal(np.asarray(part(x, training=False)), np.asarray(part(x, training=False)))

    noise = np.random.default_rng(0).standard_normal(20000).astype("float32")
    mixer = augment.noise_mixer(noise, SAMPLES, 4, noise_probability=1.0, noise_max_gain=0.1)
    y = np.arange(4)
    train = next(iter(augment.training_dataset(x, y, batch_size=4, augment=mixer)))
    assert not np.allclose(np.sort(train[0].numpy(), axis=0), np.sort(x, axis=0))
    val_x, val_y = next(iter(augment.evaluation_dataset(x, y, batch_size=4)))
    np.testing.assert_array_equal(val_x.numpy(), x)
    np.testing.assert_array_equal(val_y.numpy(), y)


def test_bad_augmentation_settings_name_the_key():
    for overrides, message in (
        (["augment.noise_max_gain=-1"], r"augment.noise_max_gain: expected a finite number >= 0, got -1"),
        (["augment.noise_probability=1.5"], r"augment.noise_probability: expected a value in \[0, 1\]"),
        (["augment.speed_change=0.5"], r"augment.speed_change: expected a fraction in \[0, 0.5\)"),
        (["augment.time_masks=-1"], r"augment.time_masks: expected a non-negative integer"),
    ):
        with pytest.raises(ConfigError, match=message):
            _config(*overrides)


def test_time_shift_moves_the_waveform():
    x = np.zeros((2, 100), "float32")
    x[:, 50] = 1.0
    shifted = np.asarray(RandomSpeedShift(max_speed_change=0.0, max_shift=10, seed=3)(x, training=True))
    peaks = np.argmax(shifted, axis=1)
    assert np.all(np.abs(peaks - 50) <= 10) and np.allclose(shifted.sum(axis=1), 1.0)


def test_speed_change_scales_the_pitch():
    x = tone(1000.0, seconds=1.0, amplitude=0.5)[np.newaxis, :]
    rate, shift = np.array([[1.2]], "float32"), np.zeros((1, 1), "float32")
    faster = np.asarray(stretch_and_shift(x, 16000, rate, shift, 1700))[0]
    peak = np.argmax(np.abs(np.fft.rfft(faster))) * 16000 / len(faster)
    assert peak == pytest.approx(1200, abs=5)
    assert np.all(faster[:1300] == 0) and np.all(faster[-1300:] == 0)  # 1/1.2 of the clip is left, centred
    with pytest.raises(ValueError, match="max_speed_change"):
        RandomSpeedShift(max_speed_change=0.7)
