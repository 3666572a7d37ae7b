"""The peephole cell against a NumPy reference, against LSTMCell, and its gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_models import PeepholeLSTM, PeepholeLSTMCell
from tests.helpers import assert_same_model

UNITS, FEATURES, BATCH, TIMESTEPS = 6, 4, 3, 7


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_peephole(x, kernel, recurrent_kernel, bias, p_i, p_f, p_o):
    """The equations of Gers & Schmidhuber (2000), written independently of the cell."""
    h = np.zeros((x.shape[0], UNITS))
    c = np.zeros((x.shape[0], UNITS))
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=1)
        i = _sigmoid(z_i + p_i * c)
        f = _sigmoid(z_f + p_f * c)
        c = f * c + i * np.tanh(z_c)
        o = _sigmoid(z_o + p_o * c)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def _random_weights(rng):
    return [
        rng.normal(scale=0.5, size=(FEATURES, 4 * UNITS)),
        rng.normal(scale=0.5, size=(UNITS, 4 * UNITS)),
        rng.normal(scale=0.5, size=(4 * UNITS,)),
        rng.normal(scale=0.5, size=(UNITS,)),
        rng.normal(scale=0.5, size=(UNITS,)),
        rng.normal(scale=0.5, size=(UNITS,)),
    ]


def test_weight_layout_matches_lstm_cell():
    cell = PeepholeLSTMCell(UNITS)
    cell.build((None, FEATURES))
    shapes = {w.path.split("/")[-1]: tuple(w.shape) for w in cell.weights}
    assert shapes == {
        "kernel": (FEATURES, 4 * UNITS),
        "recurrent_kernel": (UNITS, 4 * UNITS),
        "bias": (4 * UNITS,),
        "input_gate_peephole": (UNITS,),
        "forget_gate_peephole": (UNITS,),
        "output_gate_peephole": (UNITS,),
    }
    # unit_forget_bias: the forget block (second quarter) starts at 1, the others at 0.
    bias = keras.ops.convert_to_numpy(cell.bias)
    np.testing.assert_array_equal(bias[UNITS : 2 * UNITS], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[UNITS : 2 * UNITS]), 0.0)


@pytest.mark.parametrize("layer_kind", ["cell_in_rnn", "peephole_layer"])
def test_matches_numpy_reference(layer_kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32")
    weights = _random_weights(rng)
    if layer_kind == "cell_in_rnn":
        layer = keras.layers.RNN(PeepholeLSTMCell(UNITS), return_sequences=True, return_state=True)
    else:
        layer = PeepholeLSTM(UNITS, return_sequences=True, return_state=True)
    layer.build((None, TIMESTEPS, FEATURES))
    layer.set_weights(weights)

    sequence, h, c = (keras.ops.convert_to_numpy(t) for t in layer(x))
    expected_sequence, expected_h, expected_c = _numpy_peephole(x.astype("float64"), *weights)
    np.testing.assert_allclose(sequence, expected_sequence, atol=1e-5)
    np.testing.assert_allclose(h, expected_h, atol=1e-5)
    np.testing.assert_allclose(c, expected_c, atol=1e-5)


def test_go_backwards_matches_reversed_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32")
    weights = _random_weights(rng)
    layer = PeepholeLSTM(UNITS, go_backwards=True)
    layer.build((None, TIMESTEPS, FEATURES))
    layer.set_weights(weights)
    _, expected_h, _ = _numpy_peephole(x[:, ::-1].astype("float64"), *weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected_h, atol=1e-5)


def test_zero_peepholes_equal_lstm_cell():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32")
    lstm = keras.layers.LSTM(UNITS, return_sequences=True)
    peephole = PeepholeLSTM(UNITS, return_sequences=True)
    lstm.build((None, TIMESTEPS, FEATURES))
    peephole.build((None, TIMESTEPS, FEATURES))
    kernel, recurrent_kernel, bias = lstm.get_weights()
    zeros = np.zeros(UNITS)
    peephole.set_weights([kernel, recurrent_kernel, bias, zeros, zeros, zeros])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(peephole(x)), keras.ops.convert_to_numpy(lstm(x)), atol=1e-6)


def test_gradients_reach_peephole_weights():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32"))
    layer = PeepholeLSTM(UNITS)
    layer.build((None, TIMESTEPS, FEATURES))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    names = [w.path.split("/")[-1] for w in layer.trainable_weights]
    gradients = dict(zip(names, tape.gradient(loss, [w.value for w in layer.trainable_weights]), strict=True))
    for name in ("input_gate_peephole", "forget_gate_peephole", "output_gate_peephole"):
        assert gradients[name] is not None, name
        assert np.abs(gradients[name].numpy()).sum() > 0, name


def test_bidirectional_peephole_round_trips(tmp_path):
    inputs = keras.Input((TIMESTEPS, FEATURES))
    hidden = keras.layers.Bidirectional(PeepholeLSTM(UNITS, return_sequences=True, dropout=0.1))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x = np.random.default_rng(4).normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32")
    assert model.predict(x, verbose=0).shape == (BATCH, TIMESTEPS, 1)
    model.save(tmp_path / "bi.keras")
    reloaded = keras.models.load_model(tmp_path / "bi.keras")
    assert_same_model(model, reloaded, x)
    backward = reloaded.layers[1].backward_layer
    assert isinstance(backward, PeepholeLSTM) and backward.go_backwards


def test_layer_config_round_trip_keeps_cell_arguments():
    layer = PeepholeLSTM(5, return_state=True, dropout=0.25, peephole_initializer="ones", seed=7)
    clone = PeepholeLSTM.from_config(layer.get_config())
    assert clone.units == 5 and clone.return_state
    assert clone.cell.dropout == 0.25 and clone.cell.seed == 7
    assert isinstance(clone.cell.peephole_initializer, keras.initializers.Ones)


def test_dropout_changes_training_outputs_only():
    x = np.random.default_rng(5).normal(size=(BATCH, TIMESTEPS, FEATURES)).astype("float32")
    layer = PeepholeLSTM(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=1)
    inference = [keras.ops.convert_to_numpy(layer(x, training=False)) for _ in range(2)]
    training = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(training, inference[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": 0}, "Received: units=0"),
        ({"units": 4, "dropout": 1.5}, "Received: dropout=1.5"),
        ({"units": 4, "recurrent_dropout": -1.0}, "Received: recurrent_dropout=-1.0"),
        ({"units": 4, "dropout": None}, "Received: dropout=None"),
        ({"units": 4, "recurrent_dropout": "0.2"}, "Received: recurrent_dropout='0.2'"),
    ],
)
def test_cell_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PeepholeLSTMCell(**kwargs)
