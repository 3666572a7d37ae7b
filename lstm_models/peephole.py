"""Peephole LSTM (Gers & Schmidhuber, 2000): the gates also look at the cell state.

Keras 3 ships no peephole cell, so this one is written with `keras.ops` only and keeps the weight
layout and gate order (i, f, c, o) of `keras.layers.LSTMCell`, plus three diagonal peephole vectors.
"""

from typing import Any, Self

import keras
from keras import activations, constraints, initializers, ops, regularizers

# DropoutRNNCell is the mixin that `keras.layers.RNN` recognises to create one dropout mask per
# sequence (variational dropout) instead of one per step; LSTMCell and GRUCell use it too.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from lstm_models.fused import block_lstm, fused_applies, fused_wins


def check_rate(name: str, value: Any) -> None:
    """Check a dropout rate.

    Args:
        name: The argument's name, for the message.
        value: The rate.

    Raises:
        ValueError: Naming the argument, unless `value` is a number in [0, 1).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"Expected a float in [0, 1) for {name}. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="lstm_models")
class PeepholeLSTMCell(keras.layers.Layer, DropoutRNNCell):
    """One time step of an LSTM with peephole connections.

    Maths, with `c_prev` the previous cell state and `⊙` the element-wise product:
    `i = σ(x·Wi + h·Ui + pi⊙c_prev + bi)`, `f = σ(x·Wf + h·Uf + pf⊙c_prev + bf)`,
    `c = f⊙c_prev + i⊙tanh(x·Wc + h·Uc + bc)`, `o = σ(x·Wo + h·Uo + po⊙c + bo)`, `h = o⊙tanh(c)`.
    With all peepholes at zero it computes exactly what `keras.layers.LSTMCell` computes.

    Args:
        units: Positive integer, dimensionality of the output and cell state.
        activation: Activation for the cell candidate and the output. Default: `"tanh"`.
        recurrent_activation: Activation for the gates. Default: `"sigmoid"`.
        use_bias: Whether the cell uses a bias vector. Default: `True`.
        kernel_initializer: Initializer for `kernel`. Default: `"glorot_uniform"`.
        recurrent_initializer: Initializer for `recurrent_kernel`. Default: `"orthogonal"`.
        bias_initializer: Initializer for `bias`. Default: `"zeros"`.
        peephole_initializer: Initializer for the three peephole vectors. Default: `"zeros"`
            (the cell starts as a plain LSTM and learns how much to look at the cell state).
        unit_forget_bias: Add 1 to the forget-gate bias at initialisation. Default: `True`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, peephole_regularizer:
            Optional regularizers. Default: `None`.
        kernel_constraint, recurrent_constraint, bias_constraint, peephole_constraint:
            Optional constraints. Default: `None`.
        dropout: Fraction of the inputs to drop, one mask per sequence. Default: `0.0`.
        recurrent_dropout: Fraction of the recurrent state to drop. Default: `0.0`.
        seed: Seed for the dropout masks. Default: `None`.

    Call arguments:
        inputs: `(batch, features)`, one time step.
        states: `[h, c]`, each `(batch, units)`.
        training: Whether dropout is active.

    Returns:
        `h` of shape `(batch, units)` and the new states `[h, c]`.

    Example:
        >>> layer = keras.layers.RNN(PeepholeLSTMCell(32))
        >>> layer(np.zeros((2, 10, 8))).shape
        (2, 32)
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        peephole_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        peephole_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        peephole_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"Expected a positive integer for units. Received: units={units!r}")
        check_rate("dropout", dropout)
        check_rate("recurrent_dropout", recurrent_dropout)
        super().__init__(**kwargs)
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.unit_forget_bias = unit_forget_bias

        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.peephole_initializer = initializers.get(peephole_initializer)

        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.peephole_regularizer = regularizers.get(peephole_regularizer)

        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.peephole_constraint = constraints.get(peephole_constraint)

        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)

        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(4 * self.units,),
                name="bias",
                initializer=self._bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_gate_peephole = self._add_peephole("input_gate_peephole")
        self.forget_gate_peephole = self._add_peephole("forget_gate_peephole")
        self.output_gate_peephole = self._add_peephole("output_gate_peephole")
        self.built = True

    def _add_peephole(self, name: str) -> keras.Variable:
        return self.add_weight(
            shape=(self.units,),
            name=name,
            initializer=self.peephole_initializer,
            regularizer=self.peephole_regularizer,
            constraint=self.peephole_constraint,
        )

    def _bias_initializer(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        u = self.units
        return ops.concatenate(
            [
                self.bias_initializer((u,), dtype=dtype),
                ops.ones((u,), dtype=dtype),
                self.bias_initializer((2 * u,), dtype=dtype),
            ]
        )

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        h_prev, c_prev = states[0], states[1]
        if training and self.dropout > 0.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and self.recurrent_dropout > 0.0:
            h_prev = h_prev * self.get_recurrent_dropout_mask(h_prev)
        # x·W stays inside the step, as in LSTMCell. Hoisting it out of the time loop (one large
        # matmul over the sequence) trained slower on CPU: the (timesteps, batch, 4 * units)
        # projection and its gradient cost more memory traffic than the per-step matmuls
        # (docs/benchmarks.md).
        z = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            z = ops.add(z, self.bias)
        z = ops.add(z, ops.matmul(h_prev, self.recurrent_kernel))
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)

        i = self.recurrent_activation(z_i + self.input_gate_peephole * c_prev)
        f = self.recurrent_activation(z_f + self.forget_gate_peephole * c_prev)
        c = f * c_prev + i * self.activation(z_c)
        o = self.recurrent_activation(z_o + self.output_gate_peephole * c)
        h = o * self.activation(c)
        return h, [h, c]

    def get_initial_state(self, batch_size: int | None = None) -> list[Any]:
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in self.state_size]

    def get_config(self) -> dict[str, Any]:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "peephole_initializer": initializers.serialize(self.peephole_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "peephole_regularizer": regularizers.serialize(self.peephole_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "peephole_constraint": constraints.serialize(self.peephole_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


_CELL_ARGS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "peephole_initializer",
    "unit_forget_bias",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "peephole_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "peephole_constraint",
    "dropout",
    "recurrent_dropout",
    "seed",
)


@keras.saving.register_keras_serializable(package="lstm_models")
class PeepholeLSTM(keras.layers.RNN):
    """Peephole LSTM layer: `keras.layers.RNN` over a `PeepholeLSTMCell`.

    It subclasses `RNN`, not `LSTM`, so an `LSTM` code path (cuDNN on GPU) never skips the
    peepholes. On the TensorFlow backend the time loop runs as the fused `BlockLSTM` op, which has
    peepholes, whenever `lstm_models.fused.fused_applies` holds (no mask, default activations, no
    recurrent dropout while training) and the step is small enough for it to win
    (`lstm_models.fused.fused_wins`); otherwise the cell's `call` runs step by step. Both compute
    the same numbers. Under XLA (`jit_compile=True`) XLA compiles the plain loop.

    Args:
        units: Positive integer, dimensionality of the output space.
        return_sequences: Return the full sequence instead of the last output. Default: `False`.
        return_state: Also return the final `[h, c]` states. Default: `False`.
        go_backwards: Process the sequence backwards (used by `Bidirectional`). Default: `False`.
        stateful: Keep states between batches. Default: `False`.
        unroll: Unroll the time loop (short sequences only). Default: `False`.
        **kwargs: Any `PeepholeLSTMCell` argument (`dropout`, `peephole_initializer`, ...) or
            base layer argument (`name`, `dtype`).

    Call arguments:
        sequences: `(batch, timesteps, features)`.
        initial_state: Optional `[h, c]`, each `(batch, units)`.
        mask: Optional boolean `(batch, timesteps)`.
        training: Whether dropout is active.

    Returns:
        `(batch, units)`, or `(batch, timesteps, units)` with `return_sequences=True`, followed by
        the states when `return_state=True`.

    Example:
        >>> keras.layers.Bidirectional(PeepholeLSTM(16, return_sequences=True))
    """

    def __init__(
        self,
        units: int,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        **kwargs: Any,
    ) -> None:
        cell_kwargs = {name: kwargs.pop(name) for name in _CELL_ARGS if name in kwargs}
        cell = PeepholeLSTMCell(
            units,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="peephole_lstm_cell",
            **cell_kwargs,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def inner_loop(self, sequences: Any, initial_state: list[Any], mask: Any, training: bool = False) -> Any:
        if fused_applies(self, mask, training) and fused_wins(sequences.shape[-1], self.cell.units):
            return block_lstm(self, sequences, initial_state, training, peepholes=True)
        return super().inner_loop(sequences, initial_state, mask, training=training)

    @property
    def units(self) -> int:
        """Dimensionality of the output space (the cell's `units`)."""
        return self.cell.units

    def get_config(self) -> dict[str, Any]:
        cell_config = self.cell.get_config()
        config = {"units": self.cell.units, **{name: cell_config[name] for name in _CELL_ARGS}}
        base_config = super().get_config()
        del base_config["cell"]
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        return cls(**config)
