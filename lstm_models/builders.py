"""`build_model`: one interface from plain hyperparameters to an uncompiled Keras model."""

import numbers
from collections.abc import Sequence
from typing import Any

import keras

from lstm_models.attention import TemporalAttention
from lstm_models.fused import LSTM as FusedLSTM
from lstm_models.peephole import PeepholeLSTM, check_rate

VARIANTS = ("rnn", "lstm", "bilstm", "stacked_lstm", "gru", "peephole_lstm", "attention_lstm")
HEADS = ("classification", "regression", "reconstruction")


def _is_int(value: Any) -> bool:
    """An integer, NumPy's included (`np.int64` from a grid); not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _require_positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"Expected a positive integer for {name}. Received: {name}={value!r}")


def _require_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant. Received: variant={variant!r}. Allowed: {', '.join(VARIANTS)}")


def _validate(
    variant: str,
    input_shape: Sequence[int | None],
    head: str,
    output_dim: int | None,
    units: int,
    num_layers: int,
    dropout: float,
    recurrent_dropout: float,
) -> None:
    _require_variant(variant)
    if head not in HEADS:
        raise ValueError(f"Unknown head. Received: head={head!r}. Allowed: {', '.join(HEADS)}")
    if not isinstance(input_shape, tuple | list) or len(input_shape) != 2:
        raise ValueError(f"Expected input_shape=(timesteps, features). Received: input_shape={input_shape!r}")
    timesteps, features = input_shape
    if timesteps is None and head == "reconstruction":
        raise ValueError(
            f"The reconstruction head needs a fixed number of timesteps. Received: input_shape={tuple(input_shape)!r}"
        )
    if timesteps is not None:
        _require_positive_int("input_shape[0] (timesteps)", timesteps)
    _require_positive_int("input_shape[1] (features)", features)
    _require_positive_int("output_dim", output_dim)
    if head == "classification" and output_dim < 2:
        raise ValueError(f"The classification head needs at least 2 classes. Received: output_dim={output_dim!r}")
    _require_positive_int("units", units)
    _require_positive_int("num_layers", num_layers)
    if variant == "stacked_lstm" and num_layers < 2:
        raise ValueError(
            f"stacked_lstm needs at least 2 layers. Received: num_layers={num_layers!r}. "
            "Use variant='lstm' for a single layer."
        )
    check_rate("dropout", dropout)
    check_rate("recurrent_dropout", recurrent_dropout)


def recurrent_layer(
    variant: str,
    units: int,
    return_sequences: bool,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    name: str | None = None,
) -> keras.layers.Layer:
    """One recurrent layer of the given variant.

    Args:
        variant: One of `VARIANTS`; `lstm`, `bilstm`, `stacked_lstm` and `attention_lstm` use
            `FusedLSTM` (`keras.layers.LSTM` with TensorFlow's fused loop on CPU where it is faster).
        units: Units of the layer (per direction for `bilstm`).
        return_sequences: Return `(batch, timesteps, units)` instead of the last step.
        dropout: Input dropout rate. Default: `0.0`.
        recurrent_dropout: Recurrent-state dropout rate. Default: `0.0`.
        name: Layer name. Default: `None`.

    Returns:
        A Keras layer.

    Raises:
        ValueError: For a variant not in `VARIANTS`, `units` that is not a positive integer or a
            dropout rate outside [0, 1).
    """
    _require_variant(variant)
    _require_positive_int("units", units)
    check_rate("dropout", dropout)
    check_rate("recurrent_dropout", recurrent_dropout)
    units = int(units)
    kwargs = dict(return_sequences=return_sequences, dropout=dropout, recurrent_dropout=recurrent_dropout)
    if variant == "rnn":
        return keras.layers.SimpleRNN(units, name=name, **kwargs)
    if variant == "gru":
        return keras.layers.GRU(units, name=name, **kwargs)
    if variant == "peephole_lstm":
        return PeepholeLSTM(units, name=name, **kwargs)
    if variant == "bilstm":
        return keras.layers.Bidirectional(FusedLSTM(units, **kwargs), name=name)
    return FusedLSTM(units, name=name, **kwargs)


def _encoder(
    x: Any, variant: str, units: int, num_layers: int, dropout: float, recurrent_dropout: float, prefix: str
) -> Any:
    """Stack of recurrent layers; the last one returns sequences only for attention."""
    for index in range(num_layers):
        last = index == num_layers - 1
        layer = recurrent_layer(
            variant,
            units,
            return_sequences=not last or variant == "attention_lstm",
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"{prefix}_{index}",
        )
        x = layer(x)
    if variant == "attention_lstm":
        # A scoring layer a quarter of the encoder's width keeps attention's cost small next to
        # the recurrent loop; a full-width one made a training step noticeably slower (docs/benchmarks.md).
        x, _ = TemporalAttention(attention_units=max(8, units // 4), name="attention")(x)
    return x


def build_model(
    variant: str,
    input_shape: Sequence[int | None],
    head: str = "classification",
    output_dim: int | None = None,
    units: int = 64,
    num_layers: int | None = None,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> keras.Model:
    """Build an uncompiled recurrent model.

    Args:
        variant: One of `VARIANTS`.
        input_shape: `(timesteps, features)`; `timesteps` may be `None` for the classification
            and regression heads.
        head: `"classification"` (softmax over `output_dim` classes), `"regression"`
            (`output_dim` linear outputs, e.g. a multi-step forecast) or `"reconstruction"`
            (encoder -> repeat -> decoder -> per-step dense, output `(batch, timesteps, output_dim)`).
            Default: `"classification"`.
        output_dim: Classes, forecast steps or reconstructed features. Default: `None`, which
            means 1 for regression and `features` for reconstruction; classification requires it.
        units: Units per recurrent layer (per direction for `bilstm`). Default: `64`.
        num_layers: Recurrent layers stacked (in the encoder and in the decoder for
            reconstruction). Default: `None`, which means 2 for `stacked_lstm` and 1 otherwise.
        dropout: Input dropout of every recurrent layer. Default: `0.0`.
        recurrent_dropout: Recurrent-state dropout of every recurrent layer. Default: `0.0`.

    Returns:
        An uncompiled `keras.Model` named `"{variant}_{head}"`.

    Raises:
        ValueError: For an unknown variant or head, a malformed `input_shape`, a size that is not a
            positive integer or a dropout rate outside [0, 1); the message names the argument.

    Example:
        >>> model = build_model("peephole_lstm", (100, 40), head="classification", output_dim=10)
    """
    if num_layers is None:
        num_layers = 2 if variant == "stacked_lstm" else 1
    if output_dim is None and head in HEADS:
        if head == "classification":
            raise ValueError("The classification head needs output_dim (the number of classes). Received: None")
        # A malformed input_shape leaves output_dim at None; _validate then names input_shape.
        well_formed = isinstance(input_shape, tuple | list) and len(input_shape) == 2
        output_dim = 1 if head == "regression" else (input_shape[1] if well_formed else None)
    _validate(variant, input_shape, head, output_dim, units, num_layers, dropout, recurrent_dropout)
    # Plain ints from here: Keras writes the layer configs to JSON, which has no NumPy integers.
    units, num_layers, output_dim = int(units), int(num_layers), int(output_dim)
    timesteps, features = (None if size is None else int(size) for size in input_shape)
    inputs = keras.Input(shape=(timesteps, features), name="inputs")
    encoded = _encoder(inputs, variant, units, num_layers, dropout, recurrent_dropout, prefix="encoder")
    if head == "classification":
        outputs = keras.layers.Dense(output_dim, activation="softmax", name="probabilities")(encoded)
    elif head == "regression":
        outputs = keras.layers.Dense(output_dim, name="prediction")(encoded)
    else:
        repeated = keras.layers.RepeatVector(timesteps, name="repeat")(encoded)
        decoded = repeated
        for index in range(num_layers):
            decoded = recurrent_layer(
                variant,
                units,
                return_sequences=True,
                dropout=dropout,
                recurrent_dropout=recurrent_dropout,
                name=f"decoder_{index}",
            )(decoded)
        outputs = keras.layers.Dense(output_dim, name="reconstruction")(decoded)
    return keras.Model(inputs, outputs, name=f"{variant}_{head}")
