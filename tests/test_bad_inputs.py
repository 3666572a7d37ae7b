"""The corpus of broken files in tests/data/broken: each gives its expected, clear error.

The error must be one of the project's own (`PipelineError`), name the file, and match the expected
message; never a traceback from deep inside pandas or TensorFlow.
"""

from pathlib import Path

import keras
import pytest
import yaml

from pipelines.anomaly_detection.data import load_nab, load_sensor_csv
from pipelines.config import load_config
from pipelines.errors import PipelineError
from pipelines.speech_commands.data import load_clip
from pipelines.stock_forecasting.data import load_prices
from pipelines.stock_forecasting.task import StockConfig

CORPUS = Path(__file__).parent / "data" / "broken"
CASES = yaml.safe_load((CORPUS / "expected.yaml").read_text())

LOADERS = {
    "stock": load_prices,
    "config": lambda path: load_config(StockConfig, path),
    "sensor": lambda path: load_sensor_csv(path, label_column="label" if "label" in path.name else None),
    "nab": load_nab,
    "wav": load_clip,
}


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_broken_file_gives_its_expected_error(case):
    path = CORPUS / case["file"]
    assert path.exists(), f"corpus file missing: {path}"
    with pytest.raises(PipelineError, match=case["error"]) as info:
        LOADERS[case["loader"]](path)
    assert path.name in str(info.value)


def test_every_corpus_file_is_listed():
    listed = {case["file"] for case in CASES}
    on_disk = set()
    for path in CORPUS.rglob("*"):
        relative = str(path.relative_to(CORPUS))
        if path.is_file() and path.name != "expected.yaml" and not any(relative.startswith(f"{d}/") for d in listed):
            on_disk.add(relative)
    assert on_disk == {f for f in listed if (CORPUS / f).is_file()}


def _save_model_with(layer, path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    model.save(path)
    return path


def test_keras_file_with_a_lambda_layer_is_refused(tmp_path):
    path = _save_model_with(keras.layers.Lambda(lambda x: x * 2), tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        keras.models.load_model(path)


def test_keras_file_with_an_unknown_class_is_refused(tmp_path):
    @keras.saving.register_keras_serializable(package="elsewhere")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    path = _save_model_with(Doubler(), tmp_path / "unknown.keras")
    keras.saving.get_custom_objects().pop("elsewhere>Doubler")
    with pytest.raises(TypeError, match="Doubler"):
        keras.models.load_model(path)
