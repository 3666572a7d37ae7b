"""The fused BlockLSTM path against Keras's plain time loop: outputs, gradients, fallbacks, files."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_models import FusedLSTM, PeepholeLSTM, build_model
from lstm_models.fused import fused_wins, plain_loops
from tests.helpers import assert_same_model

UNITS, FEATURES, BATCH, TIMESTEPS = 5, 3, 4, 9
TOLERANCE = 1e-5


def _inputs(seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=(BATCH, TIMESTEPS, FEATURES))).astype("float32")


def _randomize(layer, seed=1, scale=0.5):
    """Random weights everywhere (peepholes and biases included), so every gate block matters."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=scale, size=w.shape).astype("float32") for w in layer.get_weights()])


def _pair(fused_class, plain_class, **kwargs):
    """A fused layer and a plain layer with the same random weights."""
    fused, plain = fused_class(UNITS, **kwargs), plain_class(UNITS, **kwargs)
    for layer in (fused, plain):
        layer.build((None, TIMESTEPS, FEATURES))
    _randomize(fused)
    plain.set_weights(fused.get_weights())
    return fused, plain


def _all_steps_mask():
    """A mask keeping every step: the plain loop runs (the fused path takes no mask), same maths."""
    return np.ones((BATCH, TIMESTEPS), dtype=bool)


def _outputs_and_gradients(layer, x, mask=None, initial_state=None, training=False):
    x = tf.constant(x)
    states = None if initial_state is None else [tf.constant(s) for s in initial_state]
    with tf.GradientTape() as tape:
        tape.watch(x)
        if states is not None:
            tape.watch(states)
        outputs = layer(x, mask=mask, initial_state=states, training=training)
        outputs = keras.tree.flatten(outputs)
        # A weighted sum, so each output position gets its own upstream gradient.
        loss = sum(tf.reduce_sum(o * tf.reshape(tf.sin(tf.range(tf.size(o), dtype=o.dtype)), o.shape)) for o in outputs)
    sources = [x, *(states or []), *layer.trainable_weights]
    gradients = tape.gradient(loss, sources)
    return [o.numpy() for o in outputs], [g.numpy() for g in gradients]


def _assert_same(fused_result, plain_result):
    (fused_outputs, fused_gradients), (plain_outputs, plain_gradients) = fused_result, plain_result
    assert len(fused_outputs) == len(plain_outputs) and len(fused_gradients) == len(plain_gradients)
    for fused, plain in zip(fused_outputs, plain_outputs, strict=True):
        np.testing.assert_allclose(fused, plain, rtol=0, atol=TOLERANCE)
    for fused, plain in zip(fused_gradients, plain_gradients, strict=True):
        scale = max(1.0, float(np.abs(plain).max()))
        np.testing.assert_allclose(fused, plain, rtol=0, atol=TOLERANCE * scale)


def _ops(layer, x, **call_kwargs):
    """The op types of the layer's call traced as a graph."""
    function = tf.function(lambda inputs: layer(inputs, **call_kwargs))
    graph = function.get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
    types = {op.type for op in graph.get_operations()}
    for function_def in graph.as_graph_def().library.function:  # the while loop's body and condition
        types |= {node.op for node in function_def.node_def}
    return types


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"return_sequences": True},
        {"go_backwards": True, "return_sequences": True},
        {"return_state": True},
        {"use_bias": False, "return_sequences": True},
    ],
)
def test_fused_lstm_matches_keras_lstm_outputs_and_gradients(kwargs):
    fused, plain = _pair(FusedLSTM, keras.layers.LSTM, **kwargs)
    x = _inputs()
    _assert_same(_outputs_and_gradients(fused, x), _outputs_and_gradients(plain, x))
    assert "BlockLSTM" in _ops(fused, x) and "BlockLSTM" not in _ops(plain, x)


def test_fused_lstm_matches_with_an_initial_state_and_large_cell_states():
    """Inputs and biases large enough that |c| passes 3 (BlockLSTM's default clip): nothing is clipped."""
    fused, plain = _pair(FusedLSTM, keras.layers.LSTM, return_sequences=True, return_state=True)
    bias = np.concatenate([np.full(UNITS, 4.0), np.full(UNITS, 4.0), np.full(UNITS, 3.0), np.zeros(UNITS)])
    fused.cell.bias.assign(bias.astype("float32"))  # input and forget gates open, the candidate near 1
    plain.set_weights(fused.get_weights())
    rng = np.random.default_rng(2)
    state = [rng.normal(scale=3.0, size=(BATCH, UNITS)).astype("float32") for _ in range(2)]
    x = _inputs(scale=3.0)
    fused_result = _outputs_and_gradients(fused, x, initial_state=state)
    assert np.abs(fused_result[0][2]).max() > 3.0  # the final cell state
    _assert_same(fused_result, _outputs_and_gradients(plain, x, initial_state=state))


@pytest.mark.parametrize("kwargs", [{}, {"return_sequences": True, "go_backwards": True}, {"return_state": True}])
def test_fused_peephole_matches_the_step_by_step_cell(kwargs):
    layer = PeepholeLSTM(UNITS, **kwargs)
    layer.build((None, TIMESTEPS, FEATURES))
    _randomize(layer)
    x = _inputs()
    fused = _outputs_and_gradients(layer, x)
    step_by_step = _outputs_and_gradients(layer, x, mask=_all_steps_mask())
    _assert_same(fused, step_by_step)
    assert "BlockLSTM" in _ops(layer, x)
    assert "BlockLSTM" not in _ops(layer, x, mask=tf.constant(_all_steps_mask()))


def test_fused_input_dropout_uses_the_plain_loops_mask():
    """Training with input dropout stays fused, with the cell's one mask per sequence."""
    fused, plain = _pair(FusedLSTM, keras.layers.LSTM, dropout=0.5, seed=3, return_sequences=True)
    x = _inputs()
    fused_result = _outputs_and_gradients(fused, x, training=True)
    _assert_same(fused_result, _outputs_and_gradients(plain, x, training=True))
    assert not np.allclose(fused_result[0][0], fused(x, training=False))  # dropout did drop something


@pytest.mark.parametrize(
    ("layer_kwargs", "call_kwargs"),
    [
        ({"recurrent_dropout": 0.3}, {"training": True}),
        ({"activation": "relu"}, {}),
        ({"recurrent_activation": "hard_sigmoid"}, {}),
        ({}, {"mask": tf.constant(_all_steps_mask())}),
    ],
)
@pytest.mark.parametrize("layer_class", [FusedLSTM, PeepholeLSTM])
def test_the_plain_loop_runs_where_the_fused_op_does_not_apply(layer_class, layer_kwargs, call_kwargs):
    layer = layer_class(UNITS, **layer_kwargs)
    ops = _ops(layer, _inputs(), **call_kwargs)
    assert "BlockLSTM" not in ops and "While" in ops | {"StatelessWhile"}


@pytest.mark.parametrize("layer_class", [FusedLSTM, PeepholeLSTM])
def test_layers_too_large_for_the_fused_op_to_win_take_the_plain_loop(layer_class):
    """The size rule: (features + units) * units weights above the limit trace the plain loop."""
    at_limit = (FEATURES + UNITS) * UNITS
    for features, fused in ((FEATURES, True), (FEATURES + 1, False)):
        layer = layer_class(UNITS)
        x = np.zeros((BATCH, TIMESTEPS, features), "float32")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("lstm_models.fused.FUSED_MAX_STEP_WEIGHTS", at_limit)
            assert ("BlockLSTM" in _ops(layer, x)) is fused


def test_the_shipped_limit_splits_the_measured_shapes():
    """docs/benchmarks.md: at batch 64 the fused op won at these (features, units) and lost at those."""
    won = [(8, 16), (8, 32), (8, 64), (6, 64), (40, 32), (40, 48), (20, 64), (8, 72)]
    lost = [(8, 128), (6, 120), (40, 128), (480, 64), (6, 80)]
    assert all(fused_wins(f, u) for f, u in won) and not any(fused_wins(f, u) for f, u in lost)


def test_recurrent_dropout_at_inference_is_fused_and_matches():
    fused, plain = _pair(FusedLSTM, keras.layers.LSTM, dropout=0.2, recurrent_dropout=0.2)
    x = _inputs()
    _assert_same(_outputs_and_gradients(fused, x), _outputs_and_gradients(plain, x))
    assert "BlockLSTM" in _ops(fused, x, training=False)


def test_bidirectional_fused_matches_bidirectional_keras():
    fused = keras.layers.Bidirectional(FusedLSTM(UNITS, return_sequences=True))
    plain = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True))
    for layer in (fused, plain):
        layer.build((None, TIMESTEPS, FEATURES))
    _randomize(fused)
    plain.set_weights(fused.get_weights())
    x = _inputs()
    _assert_same(_outputs_and_gradients(fused, x), _outputs_and_gradients(plain, x))


def test_variable_timesteps_and_a_partial_batch():
    layer = FusedLSTM(UNITS, return_sequences=True)
    for timesteps, batch in ((3, 1), (11, 7)):
        x = np.random.default_rng(timesteps).normal(size=(batch, timesteps, FEATURES)).astype("float32")
        assert layer(x).shape == (batch, timesteps, UNITS)


def test_weights_of_a_keras_lstm_model_load_into_the_zoo_model(tmp_path):
    """The same weight layout: a model with keras.layers.LSTM and a zoo model exchange weight files."""
    zoo = build_model("lstm", (TIMESTEPS, FEATURES), head="regression", units=UNITS)
    inputs = keras.Input((TIMESTEPS, FEATURES), name="inputs")
    encoded = keras.layers.LSTM(UNITS, name="encoder_0")(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(1, name="prediction")(encoded))
    _randomize(plain)
    plain.save_weights(tmp_path / "plain.weights.h5")
    zoo.load_weights(tmp_path / "plain.weights.h5")
    x = _inputs()
    np.testing.assert_allclose(zoo.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=0, atol=TOLERANCE)
    assert [w.path for w in zoo.weights] == [w.path for w in plain.weights]
    zoo.save(tmp_path / "zoo.keras")
    plain.load_weights(tmp_path / "zoo.keras")  # and back, from the zoo's .keras file


@pytest.mark.parametrize("variant", ["lstm", "bilstm", "stacked_lstm", "attention_lstm", "peephole_lstm"])
def test_zoo_models_train_fused_and_round_trip(variant, tmp_path):
    model = build_model(variant, (TIMESTEPS, FEATURES), head="reconstruction", units=UNITS)
    assert "BlockLSTM" in _ops(model, _inputs())
    model.compile(optimizer="adam", loss="mse")
    x = _inputs()
    model.fit(x, x, epochs=2, verbose=0)
    model.save(tmp_path / "model.keras")
    assert_same_model(model, keras.models.load_model(tmp_path / "model.keras", safe_mode=True), x)


@pytest.mark.parametrize("variant", ["lstm", "bilstm", "peephole_lstm", "attention_lstm", "gru", "rnn"])
def test_under_xla_the_plain_loop_is_compiled_with_the_same_numbers(variant):
    """BlockLSTM has no XLA kernel: with jit_compile=True the layers take the plain loop, which XLA compiles."""
    keras.utils.set_random_seed(0)
    model = build_model(variant, (TIMESTEPS, FEATURES), head="regression", units=UNITS)
    x = _inputs()
    expected = model.predict(x, verbose=0)
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    assert model.jit_compile is True
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=0, atol=TOLERANCE)
    before = model.evaluate(x, x[:, -1, :1], verbose=0)
    model.fit(x, x[:, -1, :1], epochs=5, verbose=0)
    assert model.evaluate(x, x[:, -1, :1], verbose=0) < before
    xla_ops = _ops(tf.function(lambda inputs: model(inputs), jit_compile=True), x)
    assert "BlockLSTM" not in xla_ops


@pytest.mark.parametrize("layer_class", [FusedLSTM, PeepholeLSTM])
def test_plain_loops_traces_the_plain_loop_for_exports(layer_class):
    layer = layer_class(UNITS)
    x = _inputs()
    with plain_loops():
        assert "BlockLSTM" not in _ops(layer, x)
    assert "BlockLSTM" in _ops(layer, x)  # and only inside the block
