"""The served model's request forms (as `mlflow models serve` parses them), its answers and errors."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server

from pipelines.config import load_config
from pipelines.errors import DataError
from pipelines.speech_commands.data import AudioError
from pipelines.speech_commands.model import build_speech_model
from pipelines.speech_commands.serving import SpeechServingModel, serving_signature
from pipelines.speech_commands.task import TASK, SpeechConfig
from pipelines.training import average_ensemble
from tests.speech_commands.audio_trees import tone, write_wav

CLASSES = ["low", "high"]
SAMPLES = 16000


@pytest.fixture(scope="module")
def served():
    config = load_config(SpeechConfig, None, ["model.units=4", "model.variant=gru"])
    served = SpeechServingModel()
    served.keras_model = build_speech_model(config, SAMPLES, 2, np.zeros(40, "float32"), np.ones(40, "float32"))
    served.class_names, served.clip_samples, served.sample_rate = CLASSES, SAMPLES, 16000
    return served


def _waves():
    return [tone(300.0, seconds=1.0, seed=0), tone(900.0, seconds=1.0, seed=1)]


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [wave.tolist() for wave in _waves()]},
        {"instances": [wave.tolist() for wave in _waves()]},
        {"inputs": {"waveform": [wave.tolist() for wave in _waves()]}},
        {"dataframe_records": [{"file": f"{n}.wav", "waveform": wave.tolist()} for n, wave in enumerate(_waves())]},
        {"dataframe_split": {"columns": ["waveform"], "data": [[wave.tolist()] for wave in _waves()]}},
    ],
    ids=["inputs", "instances", "inputs-dict", "dataframe_records", "dataframe_split"],
)
def test_every_request_form_gets_labels_and_probabilities(served, body):
    parsed = scoring_server.infer_and_parse_data(json.loads(json.dumps(body)), None)
    answer = served.predict(None, parsed)
    expected = served.keras_model.predict(np.stack(_waves()), verbose=0)
    assert answer["label"].tolist() == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(answer[["prob_low", "prob_high"]].to_numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(answer["probability"], expected.max(axis=1), rtol=1e-5)
    if "dataframe_records" in body:
        assert answer["file"].tolist() == ["0.wav", "1.wav"]
    assert set(answer.columns) <= set(serving_signature(CLASSES).outputs.input_names())


@pytest.mark.parametrize(
    ("request_input", "message"),
    [
        (np.zeros((2, 100), "float32"), r"expected waveforms of 16000 samples.*got \(2, 100\)"),
        ([[0.0] * 16000, [0.0] * 10], "expected waveforms of 16000 numbers"),
        (pd.DataFrame({"audio": [[0.0] * 16000]}), "expected a 'waveform' column.*got columns audio"),
        ({"file": ["a.wav"]}, "expected a 'waveform' field"),
        (np.full((1, 16000), np.nan), "NaN or infinite"),
        ({"file": ["a.wav"], "waveform": np.zeros((2, 16000))}, r"1 file name\(s\) for 2 waveform\(s\)"),
    ],
)
def test_bad_requests_get_a_clear_message(served, request_input, message):
    with pytest.raises(DataError, match=message):
        served.predict(None, request_input)


def test_one_file_name_names_one_waveform(served):
    answer = served.predict(None, {"file": "a.wav", "waveform": np.zeros(16000, "float32")})
    assert answer["file"].tolist() == ["a.wav"]


def test_read_inputs_takes_a_file_or_a_folder(tmp_path, served):
    write_wav(tmp_path / "in" / "b.wav", tone(300, rate=8000, seconds=0.5), rate=8000)
    write_wav(tmp_path / "in" / "sub" / "a.wav", tone(600, seconds=1.5))
    write_wav(tmp_path / "in" / "quiet.wav", np.zeros(16000, "float32"))
    (tmp_path / "in" / "broken.wav").write_bytes(b"nope")
    frame = TASK.read_inputs(tmp_path / "in", served)
    assert [name.rsplit("/", 1)[1] for name in frame["file"]] == ["b.wav", "quiet.wav", "a.wav"]
    assert all(len(wave) == 16000 for wave in frame["waveform"])
    single = TASK.read_inputs(tmp_path / "in" / "b.wav", served)
    assert single.shape == (1, 2)
    with pytest.raises(AudioError, match="broken.wav: not a readable WAV file"):
        TASK.read_inputs(tmp_path / "in" / "broken.wav", served)
    with pytest.raises(DataError, match="no such file or folder"):
        TASK.read_inputs(tmp_path / "missing", served)


def test_read_inputs_follow_the_rate_and_length_the_model_was_trained_on(tmp_path):
    config = load_config(SpeechConfig, None, ["model.units=4", "model.variant=gru", "data.sample_rate=8000"])
    members = [build_speech_model(config, 4000, 2, np.zeros(40, "float32"), np.ones(40, "float32")) for _ in range(2)]
    (tmp_path / "class_names.json").write_text(json.dumps(CLASSES))
    served = SpeechServingModel()
    served.keras_model = average_ensemble(members)  # the front end sits inside each member
    served.load_preprocessing(SimpleNamespace(artifacts={"class_names": str(tmp_path / "class_names.json")}))
    assert (served.sample_rate, served.clip_samples) == (8000, 4000)
    write_wav(tmp_path / "in" / "wide.wav", tone(600.0, rate=16000, seconds=1.5))
    write_wav(tmp_path / "in" / "narrow.wav", tone(600.0, rate=8000, seconds=0.25), rate=8000)
    frame = TASK.read_inputs(tmp_path / "in", served)
    assert [len(wave) for wave in frame["waveform"]] == [4000, 4000]
    wide = frame["waveform"][frame["file"].str.endswith("wide.wav")].iloc[0]
    assert np.argmax(np.abs(np.fft.rfft(wide))) * 8000 / 4000 == pytest.approx(600.0, abs=4)  # resampled to 8 kHz
    answer = served.predict(None, frame)
    assert len(answer) == 2 and answer["label"].isin(CLASSES).all()
