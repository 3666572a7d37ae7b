"""Keyword spotting: the streaming form equals the full model, its exports follow it, the detection rule, `stream`."""

import numpy as np
import pandas as pd
import pytest

from pipelines import workflows
from pipelines.cli import main as cli_main
from pipelines.config import load_config
from pipelines.errors import ConfigError, PipelineError
from pipelines.speech_commands.model import build_speech_model
from pipelines.speech_commands.spotting import Spotter, detect, sliding_probabilities
from pipelines.speech_commands.streaming_model import (
    STREAMABLE_VARIANTS,
    build_streaming_model,
    can_stream,
    compiled_step,
    export_streaming,
    stream_probabilities,
)
from pipelines.speech_commands.task import SpeechConfig, SpeechSpottingConfig
from tests.speech_commands.audio_trees import pitch, speech_commands_tree, tone, write_wav

SAMPLES = 3200  # 0.2 s clips: ten 20 ms hops
STREAMABLE = [(variant, ["model.num_layers=2"] if variant == "stacked_lstm" else []) for variant in STREAMABLE_VARIANTS]


def _model(variant, *overrides, samples=SAMPLES, classes=3):
    """A tiny untrained zoo model with non-trivial feature statistics (so normalisation is checked too)."""
    config = load_config(
        SpeechConfig,
        None,
        ["model.units=6", "features.num_mel_bins=16", "model.architecture=zoo", f"model.variant={variant}", *overrides],
    )
    rng = np.random.default_rng(1)
    mean, variance = rng.normal(-8, 1, 16).astype("float32"), rng.uniform(0.5, 2.0, 16).astype("float32")
    return build_speech_model(config, samples, classes, mean, variance)


def _loud_onset_clip(samples=SAMPLES, seed=0):
    """A fading tone in noise whose loudest log-mel value is in the first frame (a loud burst there)."""
    rng = np.random.default_rng(seed)
    time = np.arange(samples) / 16000
    clip = 0.3 * np.sin(2 * np.pi * 440 * time) * np.exp(-3 * time) + 0.01 * rng.standard_normal(samples)
    clip[:300] += 0.9 * np.sign(np.sin(2 * np.pi * 1000 * time[:300]))
    return clip.astype("float32")


def _stream(model, clip, hop_seconds=0.02):
    streaming = build_streaming_model(model, hop_seconds)
    layout = streaming.layout
    return stream_probabilities(compiled_step(streaming), clip, layout.hop_samples, layout.state_size)


@pytest.mark.parametrize(("variant", "overrides"), STREAMABLE, ids=[v for v, _ in STREAMABLE])
def test_the_streaming_model_ends_where_the_full_model_does(variant, overrides):
    model = _model(variant, *overrides)
    clip = _loud_onset_clip()
    full = model.predict(clip[None], verbose=0)[0]
    streamed = _stream(model, clip)
    assert streamed.shape == (SAMPLES // 320, 3)
    assert np.max(np.abs(streamed[-1] - full)) <= 1e-4
    # Not a constant model: the hops before the last differ from the whole clip's answer.
    assert np.max(np.abs(streamed[len(streamed) // 2] - full)) > 1e-4


def test_three_frames_per_hop_and_a_clip_of_whole_hops_end_at_the_full_model_too():
    model = _model("gru", samples=2880)
    clip = _loud_onset_clip(2880, seed=3)
    assert np.max(np.abs(_stream(model, clip, hop_seconds=0.03)[-1] - model.predict(clip[None], verbose=0)[0])) <= 1e-4


def test_a_clip_whose_loudest_frame_comes_late_differs_as_documented():
    # The front end cannot know a later, louder frame (module docstring of streaming_model).
    model = _model("lstm")
    clip = _loud_onset_clip()[::-1].copy()
    full = model.predict(clip[None], verbose=0)[0]
    assert np.max(np.abs(_stream(model, clip)[-1] - full)) > 1e-4


@pytest.mark.parametrize(
    ("overrides", "layer"),
    [
        (["model.variant=bilstm"], r"its layer encoder_0 \(Bidirectional\) looks at the whole clip"),
        (["model.variant=attention_lstm"], r"its layer attention \(TemporalAttention\) looks at the whole clip"),
        (
            ["model.architecture=crnn", "model.variant=attention_lstm"],
            r"its layer encoder_0 \(Bidirectional\) looks at",
        ),
    ],
)
def test_a_model_that_looks_at_the_whole_clip_is_refused_with_the_variants_that_stream(overrides, layer):
    variant = next(o.split("=")[1] for o in overrides if o.startswith("model.variant"))
    model = _model(variant, *[o for o in overrides if not o.startswith("model.variant")])
    assert not can_stream(model)
    with pytest.raises(ConfigError, match=rf"cannot stream state by state \({layer}.*variant lstm, gru, peephole_lstm"):
        build_streaming_model(model)


def test_a_hop_off_the_frame_grid_is_refused():
    with pytest.raises(ConfigError, match=r"^spotting.hop_seconds: expected a whole number .* got 0.025"):
        build_streaming_model(_model("gru"), 0.025)
    with pytest.raises(ConfigError, match=r"^spotting.hop_seconds: expected a multiple of 0.01 s"):
        load_config(SpeechConfig, None, ["spotting.hop_seconds=0.015"])
    with pytest.raises(ConfigError, match=r"^spotting.threshold: expected a probability in \(0, 1\]"):
        load_config(SpeechConfig, None, ["spotting.threshold=0"])


def test_the_exports_follow_the_keras_streaming_model(tmp_path):
    streaming = build_streaming_model(_model("lstm"))
    result = export_streaming(streaming, tmp_path / "out", _loud_onset_clip(), ["a", "b", "c"])
    assert result.hops_checked == SAMPLES // 320
    assert set(result.max_abs_diff) == {"savedmodel", "tflite"}
    assert max(result.max_abs_diff.values()) <= 1e-4
    assert result.tflite.stat().st_size > 0 and (result.saved_model / "saved_model.pb").is_file()
    assert '"state_size"' in result.metadata.read_text() and result.tflite_ms_per_hop > 0


def _settings(**values):
    return SpeechSpottingConfig(**{"hop_seconds": 0.1, "smoothing_seconds": 0.0, "threshold": 0.5,
                                   "refractory_seconds": 0.5, **values})  # fmt: skip


CLASSES = ["_silence_", "_unknown_", "yes", "no"]


def _track(hops, peaks):
    """Probabilities that are all `_silence_` but for `{hop: (class index, probability)}`."""
    track = np.tile(np.array([1.0, 0, 0, 0]), (hops, 1))
    for hop, (index, probability) in peaks.items():
        track[hop] = 0.0
        track[hop, index] = probability
        track[hop, 0] = 1 - probability
    return track


def test_detect_reports_a_word_once_per_refractory_period_and_never_silence_or_unknown():
    track = _track(30, {3: (2, 0.9), 4: (2, 0.95), 6: (3, 0.8), 12: (3, 0.7), 20: (1, 1.0), 25: (2, 0.49)})
    found = detect(track, CLASSES, _settings(), clip_seconds=1.0)
    assert found.columns.tolist() == ["word", "start", "end", "confidence"]
    # hop 3 (yes) opens a 5-hop refractory period: hops 4 and 6 are inside it; hop 12 is not.
    assert found["word"].tolist() == ["yes", "no"]
    np.testing.assert_allclose(found["end"], [0.4, 1.3])
    np.testing.assert_allclose(found["start"], [0.0, 0.3])
    np.testing.assert_allclose(found["confidence"], [0.9, 0.7])
    assert detect(_track(10, {}), CLASSES, _settings(), 1.0).empty
    # A word held above the threshold for longer than the refractory period is reported once.
    held = detect(_track(20, {hop: (2, 0.9) for hop in range(2, 15)}), CLASSES, _settings(), 1.0)
    assert held["end"].tolist() == [pytest.approx(0.3)]


def test_smoothing_averages_the_last_hops_before_the_threshold():
    track = _track(10, {2: (2, 0.9), 3: (2, 0.9), 6: (3, 0.9)})
    found = detect(track, CLASSES, _settings(smoothing_seconds=0.2), clip_seconds=1.0)
    # Over two hops: yes reaches 0.9 at hop 3 (0.45 at hop 2); a single-hop "no" peak averages to 0.45.
    assert found["word"].tolist() == ["yes"] and found["end"].tolist() == [pytest.approx(0.4)]
    assert found["confidence"].tolist() == [pytest.approx(0.9)]


def test_the_sliding_window_is_the_full_model_on_the_last_clip_at_each_hop():
    model = _model("bilstm")
    spotter = Spotter(model, 0.02, 16000)
    assert spotter.mode == "sliding window"
    audio = np.concatenate([np.zeros(1000, "float32"), _loud_onset_clip(), _loud_onset_clip(seed=2)])
    track = sliding_probabilities(model, audio, 320, batch_size=7)
    assert track.shape == (int(np.ceil(len(audio) / 320)), 3)
    padded = np.concatenate([np.zeros(SAMPLES, "float32"), audio, np.zeros(320, "float32")])
    for hop in (0, 11, len(track) - 1):
        end = SAMPLES + (hop + 1) * 320
        expected = model.predict(padded[end - SAMPLES : end][None], verbose=0)[0]
        np.testing.assert_allclose(track[hop], expected, atol=1e-5)
    assert Spotter(_model("gru"), 0.02, 16000).mode == "streaming"


@pytest.mark.slow
def test_stream_finds_the_placed_word_and_exports(tmp_path, capsys):
    # Tones, one pitch per word (`yes` is 300 Hz, `no` 600 Hz, ...); `_silence_` is cut from white noise.
    root = speech_commands_tree(tmp_path / "tones", speakers=10)
    overrides = [f"data.path={root}", "model.architecture=zoo", "model.variant=gru", "model.units=32",
                 "train.epochs=60", "train.early_stopping_patience=60", "train.learning_rate=0.01",
                 "train.batch_size=16", "train.verbose=0", "augment.freq_masks=0", "augment.time_masks=0",
                 "augment.speed_change=0"]  # fmt: skip
    run = workflows.train("speech_commands", overrides=overrides)
    rng = np.random.default_rng(5)
    recording = 0.01 * rng.standard_normal(16000 * 5).astype("float32")
    recording[32000:40000] += tone(pitch(0), seconds=0.5, seed=99)  # "yes" from 2.0 to 2.5 s
    write_wav(tmp_path / "long" / "a.wav", recording)
    write_wav(tmp_path / "long" / "quiet.wav", 0.01 * rng.standard_normal(16000 * 2))
    (tmp_path / "long" / "broken.wav").write_bytes(b"RIFF0000WAVEnot really")
    output = tmp_path / "out" / "detections.csv"
    argv = ["stream", "--model", run.model_uri, "--input", str(tmp_path / "long"), "--output", str(output),
            "--export", str(tmp_path / "export"), "--set", "spotting.threshold=0.7"]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(output)
    assert "max abs difference vs Keras over 100 hops" in printed and "1 detection(s)" in printed, table.to_string()
    assert "(streaming)" in printed
    assert table.columns.tolist() == ["file", "word", "start", "end", "confidence"]
    assert table["file"].str.endswith("a.wav").all(), "nothing in the quiet file; the broken one is skipped"
    assert table["word"].tolist() == ["yes"]
    assert 2.0 < table["end"][0] < 3.5 and table["start"][0] == pytest.approx(table["end"][0] - 1.0)
    assert 0.7 <= table["confidence"][0] <= 1.0, table.to_string()
    assert (tmp_path / "export" / "streaming.tflite").is_file()

    # The same through the Python entry point the command calls: one file, a DataFrame back, the same detection.
    result = workflows.stream(run.model_uri, tmp_path / "long" / "a.wav", tmp_path / "a.csv",
                              overrides=["spotting.threshold=0.7"])  # fmt: skip
    assert result.mode == "streaming" and result.export is None
    pd.testing.assert_frame_equal(result.detections, pd.read_csv(tmp_path / "a.csv"))
    assert result.detections[["word", "start", "end"]].equals(table[["word", "start", "end"]])
    with pytest.raises(PipelineError, match="an input needs an output CSV"):
        workflows.stream(run.model_uri, tmp_path / "long" / "a.wav")

    bad = tmp_path / "long" / "broken.wav"
    assert cli_main(["stream", "--model", run.model_uri, "--input", str(bad), "--output", str(output)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_stream_arguments_go_together(capsys):
    with pytest.raises(SystemExit):
        cli_main(["stream", "--model", "runs:/x/model", "--input", "a.wav"])
    assert "--input and --output go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["stream", "--model", "runs:/x/model"])
    assert "give --input and --output, --export, or both" in capsys.readouterr().err
