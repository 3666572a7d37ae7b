"""Attention over time: a learned score per timestep, softmax across time, weighted sum."""

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="lstm_models")
class TemporalAttention(keras.layers.Layer):
    """Additive (Bahdanau-style) attention pooling over the time axis.

    `score_t = v · tanh(W h_t + b)`, `a = softmax(score)` over timesteps (masked steps get zero
    weight), `context = Σ_t a_t h_t`.

    Args:
        attention_units: Size of the hidden scoring layer; `None` uses the feature size.
            Default: `None`.

    Call arguments:
        inputs: `(batch, timesteps, features)`, usually a recurrent layer's sequence output.
        mask: Optional boolean `(batch, timesteps)`.

    Returns:
        `[context, weights]`: `(batch, features)` and `(batch, timesteps)`, rows summing to 1.

    Example:
        >>> context, weights = TemporalAttention()(keras.Input((20, 32)))
    """

    def __init__(self, attention_units: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if attention_units is not None and (
            isinstance(attention_units, bool) or not isinstance(attention_units, int) or attention_units <= 0
        ):
            raise ValueError(
                "Expected a positive integer or None for attention_units. "
                f"Received: attention_units={attention_units!r}"
            )
        self.attention_units = attention_units
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)  # (batch, timesteps, features)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        features = input_shape[-1]
        hidden = self.attention_units or features
        self.score_kernel = self.add_weight(shape=(features, hidden), name="score_kernel")
        self.score_bias = self.add_weight(shape=(hidden,), name="score_bias", initializer="zeros")
        self.score_vector = self.add_weight(shape=(hidden,), name="score_vector")
        self.built = True

    def call(self, inputs: Any, mask: Any = None) -> list[Any]:
        hidden = ops.tanh(ops.matmul(inputs, self.score_kernel) + self.score_bias)
        scores = ops.tensordot(hidden, self.score_vector, axes=[[2], [0]])
        if mask is not None:
            # -1e9 overflows to -inf in float16, and a row with every step masked would then be
            # softmax(-inf, ..., -inf) = NaN; the dtype's own large negative keeps it finite.
            large_negative = -3e4 if keras.backend.standardize_dtype(scores.dtype) == "float16" else -1e9
            scores = ops.where(mask, scores, ops.full_like(scores, large_negative))
        weights = ops.softmax(scores, axis=-1)
        context = ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)
        return [context, weights]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> list[tuple[int | None, ...]]:
        return [(input_shape[0], input_shape[2]), (input_shape[0], input_shape[1])]

    def compute_mask(self, inputs: Any, mask: Any = None) -> list[None]:
        return [None, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "attention_units": self.attention_units}


def attention_weights(model: keras.Model, x: Any, batch_size: int = 256) -> np.ndarray:
    """Attention weights of a model's first `TemporalAttention` layer.

    Args:
        model: A model built with `build_model("attention_lstm", ...)` (or any model holding a
            `TemporalAttention` layer).
        x: Inputs as the model takes them, `(batch, timesteps, features)`.
        batch_size: Prediction batch size. Default: `256`.

    Returns:
        NumPy array `(batch, timesteps)`; each row sums to 1.

    Raises:
        ValueError: The model holds no `TemporalAttention` layer, or holds it inside a nested model.
    """
    layers = [layer for layer in model.layers if isinstance(layer, TemporalAttention)]
    if not layers:
        nested = [
            layer.name
            for layer in model.layers
            if isinstance(layer, keras.Model)
            and any(isinstance(inner, TemporalAttention) for inner in layer._flatten_layers())
        ]
        if nested:
            # Keras cannot reach a tensor inside a nested model from the outer model's inputs.
            raise ValueError(
                f"Model {model.name!r} holds its TemporalAttention layer inside the nested model "
                f"{nested[0]!r}; pass that model and its own inputs: "
                f"attention_weights(model.get_layer({nested[0]!r}), inputs_of_that_model)."
            )
        raise ValueError(f"Model {model.name!r} has no TemporalAttention layer; build it with 'attention_lstm'.")
    probe = keras.Model(model.inputs, layers[0].output[1])
    return np.asarray(probe.predict(x, batch_size=batch_size, verbose=0))
