"""The model: log-mel front end inside, every zoo variant, training-only augmentation, safe-mode reload."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_models import VARIANTS
from pipelines.config import load_config
from pipelines.errors import ConfigError
from pipelines.speech_commands import augment
from pipelines.speech_commands.evaluation import attention_over_time
from pipelines.speech_commands.layers import (
    LogMelSpectrogram,
    RandomEqualizer,
    RandomSpeedShift,
    RandomTrim,
    SpecAugment,
    resample,
)
from pipelines.speech_commands.model import CRNN_FILTERS, build_speech_model, feature_model
from pipelines.speech_commands.task import SpeechConfig, feature_statistics
from tests.helpers import assert_same_model
from tests.speech_commands.audio_trees import tone

SAMPLES = 4000  # 0.25 s clips keep these tests fast; the model takes any fixed length


def _config(*overrides):
    return load_config(SpeechConfig, None, ["model.units=4", "data.num_mel_bins=16", *overrides])


def _model(*overrides, classes=3):
    config = _config(*overrides)
    bins = config.data.num_mel_bins
    return build_speech_model(config, SAMPLES, classes, np.zeros(bins, "float32"), np.ones(bins, "float32"))


def _waves(n=4):
    return np.stack([tone(300.0 * (i + 1), seconds=SAMPLES / 16000, seed=i) for i in range(n)])


def test_log_mel_shape_and_clips_do_not_depend_on_the_batch():
    layer = LogMelSpectrogram()
    x = np.random.default_rng(0).standard_normal((3, 16000)).astype("float32") * 0.1
    features = np.asarray(layer(x))
    assert features.shape == (3, 97, 40) == (3, *layer.compute_output_shape((3, 16000))[1:])
    np.testing.assert_allclose(np.asarray(layer(x[:1]))[0], features[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(10 * x[1:2]))[0], features[1], atol=1e-3)  # level-independent
    assert features.max() == 0.0 and features.min() >= -80 * np.log(10) / 10 - 1e-5
    absolute = np.asarray(LogMelSpectrogram(top_db=None)(x))
    np.testing.assert_allclose(absolute - absolute.max(axis=(1, 2), keepdims=True), features, atol=1e-4)
    with pytest.raises(ValueError, match="num_mel_bins"):
        LogMelSpectrogram(num_mel_bins=0)


def test_top_db_sets_the_floor_of_the_model_features():
    x = _waves()
    x[:, : SAMPLES // 2] *= 0.003  # a lead-in 50 dB below the tone
    floor = {}
    for top_db in (40, 80):
        log_mel = _model(f"data.top_db={top_db}").get_layer("log_mel")
        features = np.asarray(log_mel(x))
        assert features.min() == pytest.approx(-top_db * np.log(10) / 10, abs=1e-4)
        floor[top_db] = np.mean(features <= features.min() + 1e-4)
    assert floor[40] > 0.5 > floor[80]  # the quiet half is flat at 40 dB, and shows at 80 dB
    with pytest.raises(ConfigError, match="data.top_db: expected a positive number"):
        _config("data.top_db=0")


def test_the_mel_band_follows_the_config_and_survives_saving(tmp_path):
    time = np.arange(SAMPLES) / 16000

    def sine(hertz, amplitude=0.5):
        return amplitude * np.sin(2 * np.pi * hertz * time)

    x = np.stack([sine(3000), sine(6000) + sine(300, 0.05)]).astype("float32")  # 300 Hz 20 dB down
    full = np.asarray(_model().get_layer("log_mel")(x))
    model = _model("data.mel_min_hz=100", "data.mel_max_hz=4000")
    model.save(tmp_path / "band.keras")
    band = np.asarray(keras.models.load_model(tmp_path / "band.keras").get_layer("log_mel")(x))
    # 16 bins centred at 134, 265, ..., 2911 (bin 10), ..., 5789 (bin 14), 6814 Hz over 20-8000 Hz, and at
    # 188, 285 (bin 1), ..., 3116 (bin 14), 3535 Hz over 100-4000 Hz.
    assert full[0].mean(axis=0).argmax() == 10 and band[0].mean(axis=0).argmax() == 14
    assert full[1].mean(axis=0).argmax() == 14  # 6 kHz; outside the 4 kHz band only the quiet 300 Hz tone shows
    assert band[1].mean(axis=0).argmax() == 1
    below = r"data.mel_min_hz: expected a frequency >= 0 and below data.mel_max_hz"
    for overrides, message in (
        (["data.mel_max_hz=9000"], r"data.mel_max_hz: .* at most half the sample rate \(8000 Hz\), got 9000"),
        (["data.mel_min_hz=4000", "data.mel_max_hz=4000"], below + r" \(4000 Hz\), got 4000"),
        (["data.mel_min_hz=-1"], below + r" \(8000 Hz\), got -1"),
    ):
        with pytest.raises(ConfigError, match=message):
            _config(*overrides)


def test_clip_normalization_takes_a_fixed_colouring_out():
    rng = np.random.default_rng(0)
    envelope = 0.05 + np.abs(np.sin(np.linspace(0, 3 * np.pi, SAMPLES)))  # loud and quiet parts, 26 dB apart
    x = (rng.standard_normal((2, SAMPLES)) * envelope).astype("float32")
    coloured = x.copy()
    coloured[:, 1:] -= 0.9 * x[:, :-1]  # a pre-emphasis "microphone": -20 dB at 0 Hz, +5.6 dB at 8 kHz
    difference = {}
    for on in (False, True):
        features = feature_model(_model(f"data.clip_normalization={str(on).lower()}"))
        plain, shifted = np.asarray(features(x)), np.asarray(features(coloured))
        difference[on] = np.abs(plain - shifted).mean()
        if on:  # every clip's mel bins have mean 0 and variance 1 over time
            np.testing.assert_allclose(plain.mean(axis=1), 0.0, atol=1e-4)
            np.testing.assert_allclose(plain.std(axis=1), 1.0, atol=0.05)
    assert difference[True] < 0.1 * difference[False]


def test_spec_augment_masks_only_in_training():
    features = np.ones((8, 50, 20), "float32")
    layer = SpecAugment(freq_masks=1, freq_mask_width=5, time_masks=1, time_mask_width=10, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(features, training=False)), features)
    masked = np.asarray(layer(features, training=True))
    assert 0 < (masked == 0).mean() < 0.6
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugment(time_masks=-1)


def test_equalizer_adds_one_smooth_gain_per_clip_in_training_only():
    floor = -80 * np.log(10) / 10
    features = np.random.default_rng(0).uniform(-6.0, 0.0, (8, 30, 20)).astype("float32")
    features[:, 0, 0] = 0.0
    layer = RandomEqualizer(max_gain_db=6.0, components=3, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(features, training=False)), features)
    out = np.asarray(layer(features, training=True))
    assert out.shape == features.shape
    np.testing.assert_allclose(out.max(axis=(1, 2)), 0.0, atol=1e-6)  # relative to the clip's maximum again
    change = out - features  # a filter: the same gain in every frame of a bin (nothing reaches the floor here)
    assert out.min() > floor
    np.testing.assert_allclose(change, np.broadcast_to(change[:, :1], change.shape), atol=1e-5)
    gains = change[:, 0]
    assert np.ptp(gains, axis=1).min() > 0.01  # every clip is coloured ...
    assert np.ptp(gains, axis=1).max() <= 2 * 3 * 6.0 * np.log(10) / 10 + 1e-5  # ... by at most 3 cosines of 6 dB
    assert not np.allclose(gains[0], gains[1])  # ... each its own way
    smooth = np.abs(np.diff(gains, n=2, axis=1)).max()
    assert smooth < 0.2 * np.ptp(gains, axis=1).max()  # a slow curve across the bins, not noise
    quiet = np.full((2, 5, 20), floor, "float32")
    quiet[:, 0, 0] = 0.0
    assert np.asarray(layer(quiet, training=True)).min() >= floor - 1e-5  # floored as LogMelSpectrogram leaves it
    with pytest.raises(ValueError, match="components"):
        RandomEqualizer(components=0)
    with pytest.raises(ValueError, match="max_gain_db"):
        RandomEqualizer(max_gain_db=-1.0)
    for value in ("-3", ".inf"):
        with pytest.raises(ConfigError, match=f"data.equalizer_db: expected a finite number >= 0, got {value[-3:]}"):
            _config(f"data.equalizer_db={value}")
    with pytest.raises(ConfigError, match=r"data.noise_snr_db: expected \[low, high\] in dB with low <= high"):
        _config("data.noise_snr_db=[5, .inf]")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_zoo_variant_takes_waveforms(variant):
    layers = ["model.num_layers=2"] if variant == "stacked_lstm" else []
    model = _model(f"model.variant={variant}", *layers)
    probabilities = model.predict(_waves(), verbose=0)
    assert model.input_shape == (None, SAMPLES)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["attention_rnn", "crnn"])
def test_attention_architectures_and_their_attention_over_time(architecture):
    model = _model(f"data.architecture={architecture}", "model.variant=attention_lstm", "model.num_layers=2")
    assert model.predict(_waves(), verbose=0).shape == (4, 3)
    assert sum(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers) == 2
    weights = attention_over_time(model, _waves())
    assert weights.shape == (4, LogMelSpectrogram().frames(SAMPLES))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    zoo_weights = attention_over_time(_model("model.variant=attention_lstm"), _waves())
    assert zoo_weights.shape == weights.shape
    assert attention_over_time(_model("model.variant=gru"), _waves()) is None
    with pytest.raises(Exception, match="set model.variant=attention_lstm"):
        _model(f"data.architecture={architecture}", "model.variant=gru")


def test_crnn_pools_frequency_not_time():
    model = _model("data.architecture=crnn", "model.variant=attention_lstm")
    frames = LogMelSpectrogram().frames(SAMPLES)
    # 16 mel bins halved twice, times the last block's filters; every frame kept for the LSTMs.
    assert model.get_layer("to_sequence").output.shape == (None, frames, 4 * CRNN_FILTERS[-1])


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.variant=peephole_lstm", "data.equalizer_db=6"],
        ["data.architecture=attention_rnn", "model.variant=attention_lstm"],
        ["data.architecture=crnn", "model.variant=attention_lstm"],
    ],
    ids=["peephole_lstm", "attention_rnn", "crnn"],
)
def test_keras_file_reloads_in_safe_mode_with_identical_predictions(tmp_path, overrides):
    model = _model(*overrides)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert_same_model(model, reloaded, _waves())


def test_augmentation_changes_training_inputs_never_inference():
    model = _model(
        "data.freq_masks=2", "data.time_masks=2", "data.speed_change=0.2", "data.time_shift_seconds=0.05",
        "data.equalizer_db=6", "data.trim_probability=1",
    )  # fmt: skip
    plain = _model("data.freq_masks=0", "data.time_masks=0", "data.speed_change=0", "data.time_shift_seconds=0")
    plain.set_weights(model.get_weights())
    x = _waves()
    served = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(served, np.asarray(plain(x, training=False)))
    np.testing.assert_array_equal(served, np.asarray(model(x, training=False)))
    for name in ("speed_shift", "equalizer", "spec_augment"):
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


def test_noise_at_a_signal_to_noise_ratio_follows_each_clip_level():
    x = _waves() * np.array([[0.01], [0.1], [1.0], [0.0]], "float32")  # quiet, louder, loud, silent
    noise = np.random.default_rng(1).standard_normal(20000).astype("float32")
    mixer = augment.noise_mixer(noise, SAMPLES, 4, noise_probability=1.0, noise_max_gain=0.1, snr_db=(10, 10))
    noisy, _ = mixer(tf.constant(x), tf.constant(np.arange(4)))
    added = noisy.numpy() - x
    rms = lambda a: np.sqrt(np.mean(np.square(a), axis=1))  # noqa: E731
    np.testing.assert_allclose(rms(x[:3]) / rms(added[:3]), 10 ** (10 / 20), rtol=1e-3)  # 10 dB for every level
    assert np.all(added[3] == 0)  # a silent clip stays silent
    spread = augment.noise_mixer(noise, SAMPLES, 4, 1.0, 0.1, snr_db=(0, 30))
    ratios = [20 * np.log10(rms(x[:3]) / rms(spread(tf.constant(x), None)[0].numpy()[:3] - x[:3])) for _ in range(20)]
    assert -0.01 <= np.min(ratios) < 10 and 20 < np.max(ratios) <= 30.01  # drawn across [0, 30] dB
    with pytest.raises(ConfigError, match=r"data.noise_snr_db: expected \[low, high\]"):
        _config("data.noise_snr_db=[20, 5]")
    assert _config("data.noise_snr_db=[5, 20]").data.noise_snr_db == [5, 20]


def test_trim_cuts_a_clip_tightly_around_its_loud_part_in_training_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16000)).astype("float32") * 0.001  # background 51 dB below the word
    x[:, 5000:6000] += rng.standard_normal(1000).astype("float32") * 0.02  # a breath 25 dB below it
    x[:, 6000:9000] += 0.5 * np.sin(0.3 * np.arange(3000, dtype="float32"))  # the word: 10 ms frames 37 to 56
    tight = np.asarray(RandomTrim(1.0, 15.0, 15.0, seed=1)(x, training=True))
    assert np.all(tight[:, : 37 * 160] == 0) and np.all(tight[:, 57 * 160 :] == 0)
    np.testing.assert_array_equal(tight[:, 37 * 160 : 57 * 160], x[:, 37 * 160 : 57 * 160])
    loose = np.asarray(RandomTrim(1.0, 30.0, 30.0, seed=1)(x, training=True))
    np.testing.assert_array_equal(loose[:, 5000:9000], x[:, 5000:9000])  # the breath is within 30 dB: kept
    assert np.all(loose[:, :4960] == 0) and np.all(loose[:, 57 * 160 :] == 0)
    np.testing.assert_array_equal(np.asarray(RandomTrim(1.0, 15.0, 15.0)(x, training=False)), x)
    many = np.repeat(x, 100, axis=0)
    share = (np.asarray(RandomTrim(0.3, 15.0, 30.0, seed=2)(many, training=True)) == 0).any(axis=1).mean()
    assert 0.15 < share < 0.45  # about 30 % of the clips are cut
    with pytest.raises(ValueError, match="min_db"):
        RandomTrim(0.5, 30.0, 15.0)
    with pytest.raises(ConfigError, match=r"data.trim_db: expected \[low, high\]"):
        _config("data.trim_db=[0, 20]")
    with pytest.raises(ConfigError, match=r"data.trim_probability: expected a value in \[0, 1\]"):
        _config("data.trim_probability=1.5")


def test_time_shift_moves_the_waveform():
    x = np.zeros((2, 100), "float32")
    x[:, 50] = 1.0
    shifted = np.asarray(RandomSpeedShift(max_speed_change=0.0, max_shift=10, seed=3)(x, training=True))
    peaks = np.argmax(shifted, axis=1)
    assert np.all(np.abs(peaks - 50) <= 10) and np.allclose(shifted.sum(axis=1), 1.0)


def test_speed_change_scales_the_pitch():
    x = tone(1000.0, seconds=1.0, amplitude=0.5)[np.newaxis, :]
    faster = np.asarray(resample(x, 16000, np.array([[1.2]], "float32"), np.zeros((1, 1), "float32"), 1700))[0]
    peak = np.argmax(np.abs(np.fft.rfft(faster))) * 16000 / len(faster)
    assert peak == pytest.approx(1200, abs=5)
    assert np.all(faster[:1300] == 0) and np.all(faster[-1300:] == 0)  # 1/1.2 of the clip is left, centred
    with pytest.raises(ValueError, match="max_speed_change"):
        RandomSpeedShift(max_speed_change=0.7)


def test_feature_statistics_draw_clips_from_the_whole_training_set():
    low = np.stack([tone(300.0, seconds=1.0, seed=i) for i in range(30)])
    high = np.stack([tone(3000.0, seconds=1.0, seed=i) for i in range(30)])
    waveforms = np.concatenate([low, high])  # listed word by word, as the datasets are
    data_config = SpeechConfig().data
    full_mean, _ = feature_statistics(data_config, waveforms, limit=60)
    low_mean, _ = feature_statistics(data_config, low, limit=30)
    drawn_mean, drawn_variance = feature_statistics(data_config, waveforms, limit=20, batch_size=7)
    gap = np.abs(full_mean - low_mean).max()
    assert gap > 1.0
    assert np.abs(drawn_mean - full_mean).max() < 0.35 * gap  # the first 20 clips alone would be `gap` away
    assert drawn_mean.shape == drawn_variance.shape == (data_config.num_mel_bins,)
