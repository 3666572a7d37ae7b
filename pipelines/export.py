"""Export a Keras model to a deployment format, reload it from disk and check it against Keras.

Formats:
    keras: `model.keras`, reloaded with `keras.models.load_model` (safe mode on).
    savedmodel: `saved_model/` from `model.export`, reloaded with `tf.saved_model.load`.
    tflite: `model.tflite` (or `model_int8.tflite`, dynamic-range quantized weights), traced for
        batch 1 because the converter cannot lower a recurrent loop over an unknown batch size.
    onnx: `model.onnx` through tf2onnx, checked with onnxruntime. Needs the `export` extra
        (`pip install -e '.[export]'`); tested with tf2onnx 1.17.0, onnx 1.23.2 and onnxruntime
        1.31.1 next to tensorflow 2.21, numpy 2.4 and protobuf 7.

Example:
    >>> result = export_model(model, "tflite", "exports/", x_test[:32], int8=True)
    >>> result.max_abs_diff, result.latency_ms_per_example
"""

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# tf.lite does not export the error its converter raises.
from tensorflow.lite.python.convert_phase import ConverterError

from lstm_models.fused import plain_loops
from pipelines.errors import PipelineError

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")
INT8_MIN_WEIGHTS = 1024  # the TFLite converter leaves smaller weight tensors in float32
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote and how closely the reloaded export matches Keras.

    Attributes:
        format: One of `EXPORT_FORMATS`.
        path: The file or directory written.
        max_abs_diff: Largest `|export(sample) - keras(sample)|` over the sample inputs.
        size_bytes: Size of `path` on disk (all files, for a directory).
        latency_ms_per_example: Mean interpreter time per example at batch 1 (tflite only).
            Default: `None`.
    """

    format: str
    path: Path
    max_abs_diff: float
    size_bytes: int
    latency_ms_per_example: float | None = None


def export_model(
    model: keras.Model, fmt: str, output_dir: str | os.PathLike, sample_inputs: np.ndarray, int8: bool = False
) -> ExportResult:
    """Export `model` to `output_dir` in format `fmt`, reload it and compare it with Keras.

    Args:
        model: A built `keras.Model` with one input and one output.
        fmt: One of `EXPORT_FORMATS`.
        output_dir: Directory to write into; created if missing.
        sample_inputs: `(batch, timesteps, features)` inputs to compare the export on; they also
            fix the timesteps of a tflite export when the model takes any length.
        int8: Quantize weights to int8 (dynamic range, no calibration data); tflite only.
            Default: `False`.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: For an unknown format, int8 outside tflite, or no sample inputs.
        PipelineError: When `output_dir` is a file or cannot be created, or the export cannot be
            written.
        RuntimeError: The reloaded export returns another shape than Keras, or the ONNX export
            misses its extra.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format. Received: fmt={fmt!r}. Allowed: {', '.join(EXPORT_FORMATS)}")
    if int8 and fmt != "tflite":
        raise ValueError(f"int8 quantization is only available for tflite. Received: fmt={fmt!r}, int8=True")
    x = np.asarray(sample_inputs, dtype="float32")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"Expected at least one example in sample_inputs. Received: shape {x.shape}")
    output_dir = _make_output_dir(output_dir)
    expected = np.asarray(model.predict(x, verbose=0))

    latency = None
    try:
        if fmt == "keras":
            path, actual = _export_keras(model, output_dir, x)
        elif fmt == "savedmodel":
            path, actual = _export_savedmodel(model, output_dir, x)
        elif fmt == "tflite":
            path, actual, latency = _export_tflite(model, output_dir, x, int8)
        else:
            path, actual = _export_onnx(model, output_dir, x)
    except OSError as error:  # a full disk, a folder where the file goes, no permission
        raise PipelineError(f"cannot write the {fmt} export into {output_dir}: {error}") from None

    if actual.shape != expected.shape:
        raise RuntimeError(
            f"The {fmt} export returned shape {actual.shape}, Keras returned {expected.shape} (path={path})"
        )
    return ExportResult(
        format=fmt,
        path=path,
        max_abs_diff=float(np.max(np.abs(actual - expected))),
        size_bytes=_size_bytes(path),
        latency_ms_per_example=latency,
    )


def _make_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create `output_dir`; a PipelineError (the CLI prints it) when it is a file or not writable."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PipelineError(f"cannot export to {output_dir}: it is a file, not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create the export folder {output_dir}: {error.strerror or error}") from None
    return output_dir


def _size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _export_keras(model: keras.Model, output_dir: Path, x: np.ndarray) -> tuple[Path, np.ndarray]:
    """Native `.keras` archive. Returns `(path, outputs of the reloaded model on x)`."""
    path = output_dir / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    return path, np.asarray(reloaded.predict(x, verbose=0))


def _export_savedmodel(model: keras.Model, output_dir: Path, x: np.ndarray) -> tuple[Path, np.ndarray]:
    """TensorFlow SavedModel with a `serve` endpoint. Returns `(path, outputs on x)`."""
    path = output_dir / "saved_model"
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(path))
    return path, reloaded.serve(tf.constant(x)).numpy()


def _export_tflite(model: keras.Model, output_dir: Path, x: np.ndarray, int8: bool) -> tuple[Path, np.ndarray, float]:
    """TFLite flatbuffer for batch 1. Returns `(path, outputs on x, ms per example)`."""
    path = output_dir / ("model_int8.tflite" if int8 else "model.tflite")
    path.write_bytes(_convert_tflite(model, (1, *x.shape[1:]), int8))

    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    if int8 and not any(np.prod(weight.shape) >= INT8_MIN_WEIGHTS for weight in model.weights):
        logger.warning(
            "%s holds no int8 weights: the converter quantizes only weight tensors of at least %d values, "
            "and this model has none that large; it is the float model under another name",
            path,
            INT8_MIN_WEIGHTS,
        )
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    start = time.perf_counter()
    for example in x:
        interpreter.set_tensor(input_index, example[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index)[0])
    latency_ms = 1000 * (time.perf_counter() - start) / len(x)
    return path, np.stack(outputs), latency_ms


def _convert_tflite(model: keras.Model, input_shape: tuple[int, ...], int8: bool) -> bytes:
    """Flatbuffer bytes: builtin ops only, falling back to Select TF ops if those are not enough.

    The converter needs a fixed batch size to lower the recurrent loop (`TensorListReserve`), so
    the model is traced for `input_shape` into a temporary SavedModel first. Converting the
    concrete function directly (`from_concrete_functions([fn], model)`) gives a flatbuffer whose
    `READ_VARIABLE` inside the loop fails at invoke time (TF 2.21).
    """
    with tempfile.TemporaryDirectory() as saved_model_dir:
        spec = tf.TensorSpec(input_shape, tf.float32, name="inputs")
        with plain_loops():  # TFLite has no BlockLSTM op; it converts the plain loop
            model.export(saved_model_dir, format="tf_saved_model", input_signature=[spec], verbose=False)

        def convert(supported_ops: list[tf.lite.OpsSet]) -> bytes:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
            converter.target_spec.supported_ops = supported_ops
            if int8:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            return converter.convert()

        try:
            return convert([tf.lite.OpsSet.TFLITE_BUILTINS])
        except ConverterError:
            return convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])


def _export_onnx(model: keras.Model, output_dir: Path, x: np.ndarray) -> tuple[Path, np.ndarray]:
    """ONNX graph through tf2onnx, run with onnxruntime. Returns `(path, outputs on x)`."""
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401  (model.export imports it lazily; fail here with the fix)
    except ImportError as err:
        raise RuntimeError(
            f"ONNX export needs {err.name!r}, which is missing or broken ({err}). "
            "Install the export extra: pip install -e '.[export]'"
        ) from err
    path = output_dir / "model.onnx"
    # Keras converts through tf2onnx.convert.from_function and patches it for numpy 2 first.
    with plain_loops():  # ONNX has no BlockLSTM op; tf2onnx converts the plain loop
        model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path, session.run(None, {session.get_inputs()[0].name: x})[0]
