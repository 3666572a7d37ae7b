"""The streaming form of a trained speech model: one hop of audio and a state in, probabilities and a state out.

    samples (batch, hop_samples), state (batch, state_size)
    -> [audio tail + hop] -> absolute log-mel of the frames the hop completes
    -> relative to the loudest frame of the last clip length, floored `top_db` below it
    -> the trained `Normalization` -> the trained recurrent layers, one frame at a time from their carried states
    -> the trained `Dense` softmax -> probabilities (batch, classes), new state (batch, state_size)

The state is one float32 vector, so a caller (or a TFLite app) carries a single buffer between calls,
and a stream starts from a state of zeros. It holds, in order: the last samples the next frames
overlap (`tail`), the loudest log-mel value of each of the last clip-length of frames (above the
lowest value the log can take, so zero is "nothing heard yet"), a frame counter that masks the first
frames (they reach back before the stream began), then each recurrent layer's states.

Which models stream: `model.architecture: zoo` with the unidirectional variants of
`STREAMABLE_VARIANTS`. A bidirectional layer or attention over time needs the whole clip before its
first output, so those models (and the CRNN and attention RNN architectures, which hold both) get
a `ConfigError` naming the variants that stream; `spotting` runs them on a sliding window instead.

The loudness reference (`features.top_db`): the full model makes every clip's log-mel relative to
that clip's loudest value, which a stream does not know until the clip ends. The streaming front
end uses the loudest value of the frames heard so far within the last clip length (the model's
`clip_samples`) instead. Over one clip fed from the start of a stream, that reference equals the
full model's from the clip's loudest frame on, and the frames before it get the same feature
wherever both floors bind; so the last hop's output equals the full model's exactly when the
clip's loudest frame is its first (tested), and differs otherwise. A model whose front end has no
floor (`top_db=None`) streams exactly on any clip. On a long recording the reference forgets a loud
sound a clip length after it, as a new clip would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_models import PeepholeLSTM, TemporalAttention
from pipelines.errors import ConfigError, PipelineError
from pipelines.speech_commands.features import LogMelSpectrogram

STREAMABLE_VARIANTS = ("lstm", "gru", "peephole_lstm", "stacked_lstm", "rnn")
RECURRENT_CLASSES = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN, PeepholeLSTM)
LOG_FLOOR = math.log(1e-6)  # the lowest value LogMelSpectrogram's log(mel + 1e-6) takes
EXPORT_TOLERANCE = 1e-4  # largest |export - Keras| over the checked hops, probabilities and state
logger = logging.getLogger(__name__)


def _not_streamable(model: keras.Model, why: str) -> ConfigError:
    return ConfigError(
        f"model {model.name} cannot stream state by state ({why}); the ones that can: model.architecture=zoo "
        f"with model.variant {', '.join(STREAMABLE_VARIANTS)} (`lstm-pipelines stream` runs any other model "
        "on a sliding window)"
    )


def _recurrent_parts(model: keras.Model) -> tuple[LogMelSpectrogram, keras.layers.Layer, list, keras.layers.Dense]:
    """The front end, normalisation, recurrent layers and softmax of a streamable speech model, else a ConfigError."""
    try:
        log_mel, normalize = model.get_layer("log_mel"), model.get_layer("normalize")
    except ValueError:
        raise _not_streamable(model, "it is not a speech model with a log_mel front end") from None
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Bidirectional | TemporalAttention) or getattr(layer, "go_backwards", False):
            raise _not_streamable(model, f"its layer {layer.name} ({type(layer).__name__}) looks at the whole clip")
    classifier = model.layers[-1]
    layers = [layer for layer in getattr(classifier, "layers", []) if not isinstance(layer, keras.layers.InputLayer)]
    recurrent, head = layers[:-1], layers[-1:]
    if not recurrent or not head or not isinstance(head[0], keras.layers.Dense):
        raise _not_streamable(model, "its classifier is not recurrent layers under a softmax")
    for layer in recurrent:
        if not isinstance(layer, RECURRENT_CLASSES):
            raise _not_streamable(model, f"its layer {layer.name} ({type(layer).__name__}) is not a recurrent layer")
    head = head[0]
    return log_mel, normalize, recurrent, head


def _all_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers of a model, nested models' included."""
    found = []
    for inner in getattr(layer, "layers", []):
        found += [inner, *_all_layers(inner)]
    return found


def _state_sizes(layer: keras.layers.Layer) -> list[int]:
    size = layer.cell.state_size
    return [int(s) for s in size] if isinstance(size, list | tuple) else [int(size)]


@dataclasses.dataclass(frozen=True)
class StreamLayout:
    """How a streaming model cuts audio and lays out its state vector.

    Attributes:
        sample_rate: Hz.
        hop_samples: Samples per call.
        frames_per_hop: Log-mel frames each call completes.
        tail_samples: Samples carried to the next call (a whole number of frame hops).
        warmup_frames: The first frames of a stream, which reach back before it began (masked).
        window_frames: Frames of one clip: the span of the loudness reference.
        recurrent_sizes: The size of each recurrent state, in layer order.
    """

    sample_rate: int
    hop_samples: int
    frames_per_hop: int
    tail_samples: int
    warmup_frames: int
    window_frames: int
    recurrent_sizes: tuple[int, ...]

    @property
    def state_size(self) -> int:
        """Length of the state vector."""
        return self.tail_samples + self.window_frames + 1 + sum(self.recurrent_sizes)

    @property
    def hop_seconds(self) -> float:
        """Seconds of audio per call."""
        return self.hop_samples / self.sample_rate


class StreamingSpeechModel(keras.Model):
    """`(samples, state) -> (probabilities, new state)`, one hop at a time, with a trained model's weights.

    Built by `build_streaming_model`; it shares the trained model's `Normalization` and softmax
    layers and copies its recurrent layers' weights into unrolled copies that return their state.
    It is exported (`export_streaming`), not saved as `.keras`.

    Call arguments:
        samples: `(batch, hop_samples)` float waveform in [-1, 1].
        state: `(batch, state_size)` float32; zeros start a stream.

    Returns:
        `(probabilities (batch, classes), state (batch, state_size))`.
    """

    def __init__(self, log_mel, normalize, recurrent, head, layout: StreamLayout, **kwargs):
        super().__init__(**kwargs)
        self.layout = layout
        self.top_db = log_mel.top_db
        config = {**log_mel.get_config(), "top_db": None, "name": "absolute_log_mel"}
        self.absolute_log_mel = LogMelSpectrogram.from_config(config)
        self.normalize = normalize
        self.recurrent = recurrent
        self.head = head

    def call(self, samples, state):
        lay = self.layout
        k, tail_end, window_end = lay.frames_per_hop, lay.tail_samples, lay.tail_samples + lay.window_frames
        tail, peaks, position = (
            state[:, :tail_end],
            state[:, tail_end:window_end],
            state[:, window_end : window_end + 1],
        )
        audio = ops.concatenate([tail, ops.cast(samples, "float32")], axis=-1)
        log_mel = self.absolute_log_mel(audio)  # (batch, frames_per_hop, bins)
        valid = (position + ops.arange(k, dtype="float32")[None, :]) >= lay.warmup_frames
        features = log_mel
        if self.top_db is not None:
            new_peaks = ops.where(valid, ops.max(log_mel, axis=-1) - LOG_FLOOR, 0.0)
            history = ops.concatenate([peaks, new_peaks], axis=-1)
            reference = ops.stack(
                [ops.max(history[:, i + 1 : i + 1 + lay.window_frames], axis=-1) for i in range(k)], axis=-1
            )
            relative = log_mel - (reference + LOG_FLOOR)[..., None]
            features = ops.maximum(relative, -self.top_db * math.log(10.0) / 10.0)
            peaks = history[:, k:]
        x = self.normalize(features)
        carried, offset, new_states = state[:, window_end + 1 :], 0, []
        for layer in self.recurrent:
            sizes = _state_sizes(layer)
            initial = []
            for size in sizes:
                initial.append(carried[:, offset : offset + size])
                offset += size
            x, *states = layer(x, initial_state=initial, mask=valid)
            new_states += states
        probabilities = self.head(x)
        position = ops.minimum(position + k, float(lay.warmup_frames))
        new_state = ops.concatenate([audio[:, -tail_end:], peaks, position, *new_states], axis=-1)
        return probabilities, new_state


def streaming_layout(model: keras.Model, hop_seconds: float) -> StreamLayout:
    """The layout a streamable speech model streams with at `hop_seconds`.

    Args:
        model: A model from `build_speech_model` (`model.architecture: zoo`, a streamable variant).
        hop_seconds: Audio per call; a whole number of the front end's 10 ms frame hops.

    Returns:
        A `StreamLayout`.

    Raises:
        ConfigError: The model cannot stream, or `hop_seconds` is not a whole number of frame hops.
    """
    log_mel, _, recurrent, _ = _recurrent_parts(model)
    rate, frame_hop = log_mel.sample_rate, log_mel.hop_length
    hop_samples = int(round(hop_seconds * rate))
    if hop_samples < frame_hop or hop_samples % frame_hop:
        raise ConfigError(
            f"spotting.hop_seconds: expected a whole number of the front end's {frame_hop / rate:g} s frame hops, "
            f"got {hop_seconds!r}"
        )
    # The tail is the smallest whole number of frame hops that, with one hop of new samples, holds
    # exactly frames_per_hop complete frames, so the stream's frames fall on the full model's grid.
    tail = frame_hop * math.ceil((log_mel.fft_length - frame_hop) / frame_hop)
    sizes = tuple(size for layer in recurrent for size in _state_sizes(layer))
    return StreamLayout(
        sample_rate=int(rate),
        hop_samples=hop_samples,
        frames_per_hop=hop_samples // frame_hop,
        tail_samples=tail,
        warmup_frames=tail // frame_hop,
        window_frames=log_mel.frames(int(model.input_shape[-1])),
        recurrent_sizes=sizes,
    )


def can_stream(model: keras.Model) -> bool:
    """Whether `build_streaming_model` accepts `model`.

    Args:
        model: A Keras speech model.

    Returns:
        True for `model.architecture: zoo` with a variant of `STREAMABLE_VARIANTS`.
    """
    try:
        _recurrent_parts(model)
    except ConfigError:
        return False
    return True


def build_streaming_model(model: keras.Model, hop_seconds: float = 0.02) -> StreamingSpeechModel:
    """The streaming form of a trained speech model (see the module docstring).

    Args:
        model: A trained model from `build_speech_model` with `model.architecture: zoo` and a variant
            of `STREAMABLE_VARIANTS`.
        hop_seconds: Audio per call; a whole number of 10 ms frame hops. Default: `0.02`.

    Returns:
        A built `StreamingSpeechModel`; `model.layout` gives the hop and state sizes.

    Raises:
        ConfigError: The model cannot stream (the message names the variants that can), or the hop
            is not a whole number of frame hops.

    Example:
        >>> step = build_streaming_model(model)
        >>> state = np.zeros((1, step.layout.state_size), "float32")
        >>> probabilities, state = step(waveform[None, :320], state)
    """
    log_mel, normalize, recurrent, head = _recurrent_parts(model)
    layout = streaming_layout(model, hop_seconds)
    copies = []
    for layer in recurrent:
        config = {**layer.get_config(), "return_state": True, "unroll": True, "stateful": False}
        copy = type(layer).from_config(config)
        copy.build((None, layout.frames_per_hop, layer.input.shape[-1]))
        copy.set_weights(layer.get_weights())
        copies.append(copy)
    streaming = StreamingSpeechModel(log_mel, normalize, copies, head, layout, name=f"{model.name}_streaming")
    streaming(np.zeros((1, layout.hop_samples), "float32"), np.zeros((1, layout.state_size), "float32"))
    return streaming


def stream_probabilities(step, waveform: np.ndarray, hop_samples: int, state_size: int) -> np.ndarray:
    """Probabilities after every hop of a waveform, from a fresh state (the last hop zero-padded).

    Args:
        step: `(samples (1, hop), state (1, state_size)) -> (probabilities, state)` on NumPy
            arrays: `compiled_step` of a `StreamingSpeechModel`, or `tflite_runner` of its export.
        waveform: `(samples,)` float32 at the model's rate.
        hop_samples: Samples per call.
        state_size: Length of the state vector.

    Returns:
        float32 `(hops, classes)`.
    """
    hops = max(1, math.ceil(len(waveform) / hop_samples))
    padded = np.zeros(hops * hop_samples, "float32")
    padded[: len(waveform)] = waveform
    state = np.zeros((1, state_size), "float32")
    rows = []
    for chunk in padded.reshape(hops, 1, hop_samples):
        probabilities, state = step(chunk, state)
        rows.append(probabilities[0])
    return np.stack([np.asarray(row) for row in rows]).astype("float32")


def compiled_step(streaming: StreamingSpeechModel):
    """A `tf.function` of the streaming model for batch 1 (traced once; the Python loop calls it per hop).

    Args:
        streaming: A `StreamingSpeechModel`.

    Returns:
        `step(samples, state) -> (probabilities, state)`.
    """
    lay = streaming.layout
    signature = [tf.TensorSpec((1, lay.hop_samples), tf.float32), tf.TensorSpec((1, lay.state_size), tf.float32)]

    @tf.function(input_signature=signature, reduce_retracing=True)
    def step(samples, state):
        return streaming(samples, state, training=False)

    return step


@dataclasses.dataclass(frozen=True)
class StreamingExport:
    """What `export_streaming` wrote and how closely each export follows the Keras streaming model.

    Attributes:
        saved_model: The SavedModel folder (signature `serve`: `samples`, `state` -> `probabilities`, `state`).
        tflite: The TFLite flatbuffer (the same signature).
        metadata: `streaming.json`: sample rate, hop and state sizes, class names.
        max_abs_diff: `{"savedmodel": ..., "tflite": ...}`, the largest difference from Keras over
            the checked hops, probabilities and state.
        hops_checked: Hops compared.
        tflite_ms_per_hop: Mean TFLite interpreter time per hop on one thread over the checked hops.
    """

    saved_model: Path
    tflite: Path
    metadata: Path
    max_abs_diff: dict
    hops_checked: int
    tflite_ms_per_hop: float


def _archive(streaming: StreamingSpeechModel, path: Path) -> None:
    lay = streaming.layout
    archive = keras.export.ExportArchive()
    archive.track(streaming)

    def serve(samples, state):
        probabilities, new_state = streaming(samples, state, training=False)
        return {"probabilities": probabilities, "state": new_state}

    archive.add_endpoint(
        "serve",
        serve,
        input_signature=[
            tf.TensorSpec((1, lay.hop_samples), tf.float32, name="samples"),
            tf.TensorSpec((1, lay.state_size), tf.float32, name="state"),
        ],
    )
    archive.write_out(str(path), verbose=False)


def _tflite_bytes(saved_model: Path) -> bytes:
    from tensorflow.lite.python.convert_phase import ConverterError

    def convert(ops_sets):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve"])
        converter.target_spec.supported_ops = ops_sets
        return converter.convert()

    try:
        return convert([tf.lite.OpsSet.TFLITE_BUILTINS])
    except ConverterError:
        logger.warning("the streaming model needs Select TF ops in TFLite (the Flex delegate)")
        return convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])


def tflite_runner(path: str | Path, num_threads: int = 1):
    """A step function over a streaming TFLite flatbuffer.

    Args:
        path: `streaming.tflite`.
        num_threads: Interpreter threads. Default: `1`.

    Returns:
        `step(samples, state) -> (probabilities, state)` on NumPy arrays of batch 1.
    """
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
    runner = interpreter.get_signature_runner("serve")

    def step(samples, state):
        out = runner(samples=np.asarray(samples, "float32"), state=np.asarray(state, "float32"))
        return out["probabilities"], out["state"]

    return step


def export_streaming(
    streaming: StreamingSpeechModel,
    output_dir: str | Path,
    sample_audio: np.ndarray,
    class_names: list[str] | None = None,
    tolerance: float = EXPORT_TOLERANCE,
) -> StreamingExport:
    """Export the streaming model to SavedModel and TFLite, reload both and follow Keras over `sample_audio`.

    Args:
        streaming: A `StreamingSpeechModel`.
        output_dir: Folder to write `saved_model/`, `streaming.tflite` and `streaming.json` into.
        sample_audio: `(samples,)` waveform at the model's rate, streamed hop by hop through the
            Keras model and each export from a zero state (a few hops are enough).
        class_names: Written into `streaming.json`. Default: `None`.
        tolerance: Largest accepted difference from Keras. Default: `EXPORT_TOLERANCE`.

    Returns:
        A `StreamingExport`.

    Raises:
        PipelineError: `output_dir` is a file or cannot be written, or an export differs from Keras
            by more than `tolerance`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PipelineError(f"cannot export to {output_dir}: it is a file, not a folder")
    lay = streaming.layout
    hops = max(1, len(sample_audio) // lay.hop_samples)
    chunks = np.asarray(sample_audio[: hops * lay.hop_samples], "float32").reshape(hops, 1, lay.hop_samples)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        saved_model, tflite = output_dir / "saved_model", output_dir / "streaming.tflite"
        _archive(streaming, saved_model)
        tflite.write_bytes(_tflite_bytes(saved_model))
        metadata = output_dir / "streaming.json"
        description = {
            **dataclasses.asdict(lay),
            "state_size": lay.state_size,
            "class_names": list(class_names or []),
            "inputs": {"samples": [1, lay.hop_samples], "state": [1, lay.state_size]},
            "outputs": ["probabilities", "state"],
            "start_state": "zeros",
        }
        metadata.write_text(json.dumps(description, indent=2))
    except OSError as error:
        raise PipelineError(f"cannot write the streaming export into {output_dir}: {error}") from None

    reloaded = tf.saved_model.load(str(saved_model))  # held: its variables live as long as it does

    def saved_model_step(samples, state):
        out = reloaded.serve(samples=tf.constant(samples), state=tf.constant(state))
        return out["probabilities"], out["state"]

    runners = {"savedmodel": saved_model_step, "tflite": tflite_runner(tflite)}
    keras_step = compiled_step(streaming)
    states = {name: np.zeros((1, lay.state_size), "float32") for name in ["keras", *runners]}
    differences, tflite_seconds = dict.fromkeys(runners, 0.0), 0.0
    for chunk in chunks:
        expected, keras_state = keras_step(tf.constant(chunk), tf.constant(states["keras"]))
        states["keras"] = np.asarray(keras_state)
        for name, step in runners.items():
            start = time.perf_counter()
            probabilities, state = step(chunk, states[name])
            tflite_seconds += time.perf_counter() - start if name == "tflite" else 0.0
            states[name] = np.asarray(state)
            gap = max(
                np.max(np.abs(np.asarray(probabilities) - expected)), np.max(np.abs(states[name] - states["keras"]))
            )
            differences[name] = max(differences[name], float(gap))
    for name, gap in differences.items():
        if gap > tolerance:
            raise PipelineError(
                f"the streaming {name} export differs from the Keras streaming model by {gap:.3g} "
                f"(over {hops} hops; tolerance {tolerance:g})"
            )
    return StreamingExport(saved_model, tflite, metadata, differences, hops, 1000 * tflite_seconds / hops)
