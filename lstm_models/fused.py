"""The LSTM time loop as one fused TensorFlow op (`BlockLSTM`) on the TensorFlow backend.

Keras runs an LSTM on CPU as a `while` loop of small ops per step; TensorFlow ships the whole loop,
and its gradient, as one CPU kernel (`tf.raw_ops.BlockLSTM`, peepholes included). `LSTM` here and
`PeepholeLSTM` take that path when it computes what the plain loop computes (see `fused_applies`)
and when it is the faster of the two (see `fused_wins`), and run the plain loop otherwise.
The weights stay in Keras's layout and gate order (i, f, c, o); they are reordered for the op at
call time, so the saved weights do not change.
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import keras
from keras import activations

# BlockLSTMV2 takes Keras's gate order, but TensorFlow registers BlockLSTM's gradient kernel for it
# (tensorflow/python/ops/rnn_grad.py), which reads the gates in BlockLSTM's order i, c, f, o: the
# forward pass of V2 is right and its gradients are not. BlockLSTM (V1) with `forget_bias=0` and
# no cell clipping computes the same maths with a matching gradient.
_BLOCK_LSTM_GATE_ORDER = (0, 2, 1, 3)  # Keras's (i, f, c, o) blocks taken as (i, c, f, o)
_PLAIN_LOOPS = contextvars.ContextVar("plain_loops", default=False)

# `BlockLSTM` wins while each step's product is small: (features + units) x units weights at most
# this. Above it Eigen splits each step's product over threads and the op loses to the plain
# loop's oneDNN products: at batch 64 with TensorFlow's default threads on 2 cores the fused loop
# was 1.2x-2.7x as fast below and 0.5x-0.8x above, but near it (docs/benchmarks.md). The crossover moves with
# the batch (about batch x weights = 400,000), which is unknown while a `fit` step is traced, and
# choosing per batch with a `tf.cond` slowed the plain loop inside it by up to 1.5x: the limit is
# set for batch 64, the configs' default.
FUSED_MAX_STEP_WEIGHTS = 6_000


@contextlib.contextmanager
def plain_loops() -> Iterator[None]:
    """Trace the plain time loop instead of `BlockLSTM` inside this block.

    For exports to runtimes without TensorFlow's ops: TFLite and ONNX have no `BlockLSTM`, and
    convert the plain loop.

    Example:
        >>> with plain_loops():
        ...     model.export("saved_model", format="tf_saved_model")
    """
    token = _PLAIN_LOOPS.set(True)
    try:
        yield
    finally:
        _PLAIN_LOOPS.reset(token)


def fused_applies(layer: keras.layers.Layer, mask: Any, training: bool | None) -> bool:
    """Whether `BlockLSTM` computes exactly what `layer`'s plain time loop computes.

    Args:
        layer: An `LSTM` or `PeepholeLSTM` layer.
        mask: The mask passed to the layer's call.
        training: The call's training flag.

    Returns:
        True on the TensorFlow backend for float32, no mask, no recurrent dropout while training,
        and the default activations (tanh and sigmoid), outside XLA: `BlockLSTM` has no XLA
        kernel, and under `jit_compile=True` XLA compiles the plain loop instead; and outside
        a `plain_loops()` block.
    """
    cell = layer.cell
    if isinstance(mask, list | tuple):  # RNN may pass the mask of each input
        mask = mask[0]
    return (
        keras.backend.backend() == "tensorflow"
        and mask is None
        and layer.compute_dtype == "float32"
        and not (training and cell.recurrent_dropout)
        and cell.activation is activations.tanh
        and cell.recurrent_activation is activations.sigmoid
        and not _in_xla_context()
        and not _PLAIN_LOOPS.get()
    )


def _in_xla_context() -> bool:
    import tensorflow as tf

    # Whether the graph being traced is compiled by XLA; TensorFlow has no public function for it.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

    return not tf.executing_eagerly() and GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def fused_wins(features: int, units: int) -> bool:
    """Whether `BlockLSTM` is faster than the plain loop for a layer of this size.

    Args:
        features: Input features per step.
        units: The layer's units.

    Returns:
        True when `(features + units) * units <= FUSED_MAX_STEP_WEIGHTS`.
    """
    return (features + units) * units <= FUSED_MAX_STEP_WEIGHTS


def block_lstm(
    layer: keras.layers.Layer, sequences: Any, initial_state: list[Any], training: bool | None, peepholes: bool
) -> tuple[Any, Any, list[Any]]:
    """Run `layer`'s cell over `sequences` with `BlockLSTM`, returning what `RNN.inner_loop` returns.

    Args:
        layer: An `LSTM` or `PeepholeLSTM` layer for which `fused_applies` holds.
        sequences: `(batch, timesteps, features)`.
        initial_state: `[h, c]`, each `(batch, units)`.
        training: Whether input dropout is active.
        peepholes: Whether the cell has the three peephole vectors.

    Returns:
        `(last_output, outputs, [h, c])`: `(batch, units)`; `(batch, timesteps, units)` with
        `return_sequences`, else `(batch, 1, units)`; and the final states.
    """
    import tensorflow as tf

    cell = layer.cell
    if training and cell.dropout:
        # One input mask per sequence, the one the cell applies at every step of the plain loop.
        sequences = sequences * tf.expand_dims(cell.get_dropout_mask(sequences[:, 0, :]), 1)

    def reorder(tensor: Any, axis: int) -> Any:
        blocks = tf.split(tensor, 4, axis=axis)
        return tf.concat([blocks[index] for index in _BLOCK_LSTM_GATE_ORDER], axis=axis)

    units = cell.units
    dtype = sequences.dtype
    weights = reorder(tf.concat([cell.kernel.value, cell.recurrent_kernel.value], axis=0), axis=1)
    bias = reorder(cell.bias.value, axis=0) if cell.use_bias else tf.zeros([4 * units], dtype)
    if peepholes:
        peephole_vectors = [
            cell.input_gate_peephole.value,
            cell.forget_gate_peephole.value,
            cell.output_gate_peephole.value,
        ]
    else:
        peephole_vectors = [tf.zeros([units], dtype)] * 3
    time_major = tf.transpose(sequences, [1, 0, 2])
    if layer.go_backwards:
        time_major = tf.reverse(time_major, axis=[0])
    _, cell_states, _, _, _, _, outputs = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.shape(time_major, out_type=tf.int64)[0],
        x=time_major,
        cs_prev=initial_state[1],
        h_prev=initial_state[0],
        w=weights,
        wci=peephole_vectors[0],
        wcf=peephole_vectors[1],
        wco=peephole_vectors[2],
        b=bias,
        forget_bias=0.0,
        cell_clip=-1.0,  # no clipping
        use_peephole=peepholes,
    )
    last_output = outputs[-1]
    if layer.return_sequences:
        outputs = tf.transpose(outputs, [1, 0, 2])
    else:
        outputs = tf.expand_dims(last_output, 1)
    return last_output, outputs, [last_output, cell_states[-1]]


@keras.saving.register_keras_serializable(package="lstm_models")
class LSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` whose time loop runs as TensorFlow's fused `BlockLSTM` op on CPU.

    The same arguments, weights (layout and gate order), config and maths as `keras.layers.LSTM`;
    only the kernel that runs the loop differs. The class keeps the name `LSTM` because Keras
    files address a layer's weights by its class name: `.keras` and `.weights.h5` files of
    `keras.layers.LSTM` and of this layer hold their weights at the same paths and load into
    each other. The package exports it as `lstm_models.FusedLSTM`. It takes the fused op when `fused_applies` holds,
    no GPU is visible (there Keras's own cuDNN path is faster) and the step is small enough for it
    to win (`fused_wins`), and `keras.layers.LSTM`'s path otherwise, and under XLA
    (`jit_compile=True`), which compiles the plain loop.

    Args:
        units: Positive integer, dimensionality of the output space.
        **kwargs: Any `keras.layers.LSTM` argument.

    Call arguments:
        sequences: `(batch, timesteps, features)`.
        initial_state: Optional `[h, c]`, each `(batch, units)`.
        mask: Optional boolean `(batch, timesteps)` (takes the plain loop).
        training: Whether dropout is active.

    Returns:
        As `keras.layers.LSTM`.

    Example:
        >>> LSTM(32, return_sequences=True)(np.zeros((2, 10, 8), "float32")).shape
        TensorShape([2, 10, 32])
    """

    def inner_loop(self, sequences: Any, initial_state: list[Any], mask: Any, training: bool = False) -> Any:
        fast = fused_wins(sequences.shape[-1], self.cell.units) and not _gpu_available()
        if fused_applies(self, mask, training) and fast:
            return block_lstm(self, sequences, initial_state, training, peepholes=False)
        return super().inner_loop(sequences, initial_state, mask, training=training)
