"""Export to every format, reload from disk, and match Keras: tiny models, one sample batch."""

import logging
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_models import build_model
from pipelines.cli import main
from pipelines.errors import PipelineError
from pipelines.export import EXPORT_FORMATS, export_model

TIMESTEPS, FEATURES, OUTPUT_DIM = 6, 3, 2
EXPORTED_VARIANTS = ("lstm", "peephole_lstm", "attention_lstm", "bilstm")
FLOAT_TOLERANCE = 1e-5


def _regressor(variant, units=4):
    return build_model(variant, (TIMESTEPS, FEATURES), head="regression", output_dim=OUTPUT_DIM, units=units)


def _samples(n=8, timesteps=TIMESTEPS):
    return np.random.default_rng(0).normal(size=(n, timesteps, FEATURES)).astype("float32")


def _skip_without_onnx(fmt):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")


def _declared_shapes(path):
    """`(input shape, output shape)` as the artifact itself declares them; unknown sizes are None."""
    if path.suffix == ".keras":
        reloaded = keras.models.load_model(path)
        shapes = reloaded.input_shape, reloaded.output_shape
    elif path.suffix == ".tflite":
        interpreter = tf.lite.Interpreter(model_path=str(path))
        shapes = interpreter.get_input_details()[0]["shape"], interpreter.get_output_details()[0]["shape"]
    elif path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shapes = session.get_inputs()[0].shape, session.get_outputs()[0].shape
    else:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        (input_spec,) = signature.structured_input_signature[1].values()
        (output_spec,) = signature.structured_outputs.values()
        shapes = input_spec.shape.as_list(), output_spec.shape.as_list()
    return tuple(tuple(int(d) if isinstance(d, int | np.integer) else None for d in s) for s in shapes)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("variant", EXPORTED_VARIANTS)
def test_float_export_matches_keras(variant, fmt, tmp_path):
    _skip_without_onnx(fmt)
    model = _regressor(variant)
    result = export_model(model, fmt, tmp_path / "exports", _samples())

    assert result.format == fmt
    assert result.path.exists() and result.path.parent == tmp_path / "exports"
    assert result.size_bytes > 0
    assert result.max_abs_diff < FLOAT_TOLERANCE
    batch = 1 if fmt == "tflite" else None  # tflite is traced for one example at a time
    assert _declared_shapes(result.path) == ((batch, TIMESTEPS, FEATURES), (batch, OUTPUT_DIM))
    if fmt == "tflite":
        assert result.latency_ms_per_example > 0
        assert b"Flex" not in result.path.read_bytes()  # builtin ops sufficed: no Select TF ops
    else:
        assert result.latency_ms_per_example is None


# Dynamic-range int8 stores weights as int8 with one scale per output channel (step max|w|/127, so
# each weight is off by at most 0.4% of its channel's largest) and quantizes activations on the
# fly. Measured on these models: 4e-4 to 8e-4 absolute, 0.1-0.4% of the largest output. 2% of the
# output scale leaves 5x headroom and still fails for a wrong weight or gate.
INT8_RELATIVE_TOLERANCE = 0.02


@pytest.mark.parametrize("variant", EXPORTED_VARIANTS)
def test_int8_tflite_is_smaller_and_close(variant, tmp_path):
    # The converter leaves weights under 1024 elements in float; with 16 units the recurrent
    # kernel (16 x 64) is the first to qualify.
    model = _regressor(variant, units=16)
    x = _samples()
    float_result = export_model(model, "tflite", tmp_path, x)
    int8_result = export_model(model, "tflite", tmp_path, x, int8=True)

    assert int8_result.path.name == "model_int8.tflite" and float_result.path.name == "model.tflite"
    assert int8_result.size_bytes < float_result.size_bytes
    output_scale = float(np.abs(model.predict(x, verbose=0)).max())
    assert FLOAT_TOLERANCE < int8_result.max_abs_diff < INT8_RELATIVE_TOLERANCE * output_scale
    assert _declared_shapes(int8_result.path) == ((1, TIMESTEPS, FEATURES), (1, OUTPUT_DIM))


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_classifier_with_any_length_exports(fmt, tmp_path):
    _skip_without_onnx(fmt)
    model = build_model("peephole_lstm", (None, FEATURES), head="classification", output_dim=3, units=4)
    timesteps = 9
    result = export_model(model, fmt, tmp_path, _samples(timesteps=timesteps))

    assert result.max_abs_diff < FLOAT_TOLERANCE
    input_shape, output_shape = _declared_shapes(result.path)
    # tflite fixes batch and timesteps from the samples; the other formats keep both open.
    assert input_shape == ((1, timesteps, FEATURES) if fmt == "tflite" else (None, None, FEATURES))
    assert output_shape[-1] == 3


def test_unknown_format_names_the_value_and_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"fmt='pickle'.*keras, savedmodel, tflite, onnx"):
        export_model(_regressor("lstm"), "pickle", tmp_path, _samples())
    assert not any(tmp_path.iterdir())


def test_int8_outside_tflite_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"fmt='keras', int8=True"):
        export_model(_regressor("lstm"), "keras", tmp_path, _samples(), int8=True)


def test_onnx_without_tf2onnx_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # makes `import tf2onnx` fail
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[export\]'"):
        export_model(_regressor("lstm"), "onnx", tmp_path, _samples())


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    with pytest.raises(PipelineError, match=r"cannot export to .*taken: it is a file, not a folder"):
        export_model(_regressor("lstm"), "keras", taken, _samples())
    with pytest.raises(PipelineError, match=r"cannot create the export folder .*taken/sub: Not a directory"):
        export_model(_regressor("lstm"), "keras", taken / "sub", _samples())


@pytest.mark.parametrize("fmt", ["keras", "tflite"])
def test_a_folder_where_the_export_file_goes_is_a_clear_error(fmt, tmp_path):
    (tmp_path / ("model.keras" if fmt == "keras" else "model.tflite")).mkdir()
    with pytest.raises(PipelineError, match=rf"cannot write the {fmt} export into {tmp_path}: .*Is a directory"):
        export_model(_regressor("lstm"), fmt, tmp_path, _samples())


def test_int8_of_a_model_too_small_to_quantize_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.export"):
        export_model(_regressor("lstm", units=16), "tflite", tmp_path / "big", _samples(), int8=True)
    assert "no int8 weights" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="pipelines.export"):
        export_model(_regressor("lstm", units=4), "tflite", tmp_path / "small", _samples(), int8=True)
    assert "model_int8.tflite holds no int8 weights" in caplog.text


def test_no_sample_inputs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"at least one example in sample_inputs. Received: shape \(0, 6, 3\)"):
        export_model(_regressor("lstm"), "keras", tmp_path / "exports", _samples(n=0))
    assert not (tmp_path / "exports").exists()


@pytest.mark.filterwarnings("ignore:.*type hints")
def test_cli_export_of_a_model_not_logged_by_lstm_pipelines_is_a_clear_error(tmp_path, capsys):
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.set_experiment("other")  # this test's own store; an earlier test's experiment id is not in it
    with mlflow.start_run():
        model_uri = mlflow.pyfunc.log_model(name="echo", python_model=Echo()).model_uri
    assert main(["export", "--model", model_uri, "--format", "keras", "--output", str(tmp_path / "out")]) == 2
    assert f"model {model_uri} was not logged by lstm-pipelines" in capsys.readouterr().err
