"""The log-mel front end inside the model, its mel filters, and the training-split statistics."""

import keras
import numpy as np
import pytest

from pipelines.errors import ConfigError
from pipelines.speech_commands.features import LogMelSpectrogram, feature_statistics, mel_filterbank
from pipelines.speech_commands.task import SpeechConfig
from tests.speech_commands.audio_trees import tone
from tests.speech_commands.tiny_models import SAMPLES, tiny_config, tiny_model, tones


def _htk_filterbank(num_mel_bins, fft_length, sample_rate, min_freq, max_freq):
    """HTK triangular mel filters written out in NumPy: the reference for `mel_filterbank`."""

    def to_mel(hertz):
        return 1127.0 * np.log1p(np.asarray(hertz) / 700.0)

    bin_mels = to_mel(np.linspace(0.0, sample_rate / 2, fft_length // 2 + 1))
    edges = np.linspace(to_mel(min_freq), to_mel(max_freq), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling))


@pytest.mark.parametrize(
    ("bins", "fft", "rate", "low", "high"),
    [(40, 512, 16000, 20.0, 8000.0), (16, 512, 16000, 100.0, 4000.0), (40, 256, 8000, 0.0, 4000.0)],
)
def test_mel_filters_match_the_htk_formula(bins, fft, rate, low, high):
    filters = mel_filterbank(bins, fft, rate, low, high)
    assert filters.shape == (fft // 2 + 1, bins) and filters.dtype == np.float32
    np.testing.assert_allclose(filters, _htk_filterbank(bins, fft, rate, low, high), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mel_filterbank(bins, fft, rate, low), mel_filterbank(bins, fft, rate, low, rate / 2))


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
    x = tones()
    x[:, : SAMPLES // 2] *= 0.003  # a lead-in 50 dB below the tone
    floor = {}
    for top_db in (40, 80):
        log_mel = tiny_model(f"features.top_db={top_db}").get_layer("log_mel")
        features = np.asarray(log_mel(x))
        assert features.min() == pytest.approx(-top_db * np.log(10) / 10, abs=1e-4)
        floor[top_db] = np.mean(features <= features.min() + 1e-4)
    assert floor[40] > 0.5 > floor[80]  # the quiet half is flat at 40 dB, and shows at 80 dB
    with pytest.raises(ConfigError, match="features.top_db: expected a positive number"):
        tiny_config("features.top_db=0")


def test_the_mel_band_follows_the_config_and_survives_saving(tmp_path):
    time = np.arange(SAMPLES) / 16000

    def sine(hertz, amplitude=0.5):
        return amplitude * np.sin(2 * np.pi * hertz * time)

    x = np.stack([sine(3000), sine(6000) + sine(300, 0.05)]).astype("float32")  # 300 Hz 20 dB down
    full = np.asarray(tiny_model().get_layer("log_mel")(x))
    model = tiny_model("features.mel_min_hz=100", "features.mel_max_hz=4000")
    model.save(tmp_path / "band.keras")
    band = np.asarray(keras.models.load_model(tmp_path / "band.keras").get_layer("log_mel")(x))
    # 16 bins centred at 134, 265, ..., 2911 (bin 10), ..., 5789 (bin 14), 6814 Hz over 20-8000 Hz, and at
    # 188, 285 (bin 1), ..., 3116 (bin 14), 3535 Hz over 100-4000 Hz.
    assert full[0].mean(axis=0).argmax() == 10 and band[0].mean(axis=0).argmax() == 14
    assert full[1].mean(axis=0).argmax() == 14  # 6 kHz; outside the 4 kHz band only the quiet 300 Hz tone shows
    assert band[1].mean(axis=0).argmax() == 1
    below = r"features.mel_min_hz: expected a frequency >= 0 and below features.mel_max_hz"
    for overrides, message in (
        (["features.mel_max_hz=9000"], r"features.mel_max_hz: .* half of data.sample_rate \(8000 Hz\), got 9000"),
        (["data.sample_rate=8000", "features.mel_max_hz=6000"], r"half of data.sample_rate \(4000 Hz\), got 6000"),
        (["features.mel_min_hz=4000", "features.mel_max_hz=4000"], below + r" \(4000 Hz\), got 4000"),
        (["features.mel_min_hz=-1"], below + r" \(8000 Hz\), got -1"),
        (["data.sample_rate=8000", "features.mel_min_hz=5000"], below + r" \(4000 Hz\), got 5000"),
    ):
        with pytest.raises(ConfigError, match=message):
            tiny_config(*overrides)


def test_feature_statistics_draw_clips_from_the_whole_training_set():
    low = np.stack([tone(300.0, seconds=1.0, seed=i) for i in range(30)])
    high = np.stack([tone(3000.0, seconds=1.0, seed=i) for i in range(30)])
    waveforms = np.concatenate([low, high])  # listed word by word, as the datasets are
    features = SpeechConfig().features
    full_mean, _ = feature_statistics(features, 16000, waveforms, limit=60)
    low_mean, _ = feature_statistics(features, 16000, low, limit=30)
    drawn_mean, drawn_variance = feature_statistics(features, 16000, waveforms, limit=20, batch_size=7)
    gap = np.abs(full_mean - low_mean).max()
    assert gap > 1.0
    assert np.abs(drawn_mean - full_mean).max() < 0.35 * gap  # the first 20 clips alone would be `gap` away
    assert drawn_mean.shape == drawn_variance.shape == (features.num_mel_bins,)
