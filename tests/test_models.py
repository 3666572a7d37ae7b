"""Every variant x head: shapes, learning on a toy problem, save -> load -> identical predictions."""

import keras
import numpy as np
import pytest

from lstm_models import HEADS, VARIANTS, TemporalAttention, attention_weights, build_model, recurrent_layer
from tests.helpers import assert_same_model

TIMESTEPS, FEATURES = 12, 3


def _toy_problem(head, n=256, seed=0):
    """Problems every variant learns in a few epochs."""
    rng = np.random.default_rng(seed)
    if head == "reconstruction":  # smooth waves: a few numbers describe each sequence
        t = np.arange(TIMESTEPS)[None, :, None]
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, FEATURES))
        amplitude = rng.uniform(0.5, 1.5, size=(n, 1, FEATURES))
        x = (amplitude * np.sin(0.5 * t + phase)).astype("float32")
        return x, x
    x = rng.normal(size=(n, TIMESTEPS, FEATURES)).astype("float32")
    signal = x[:, :, 0].mean(axis=1)
    if head == "classification":
        return x, (signal > 0).astype("int32")
    return x, np.stack([signal, -signal], axis=1).astype("float32")


def _compiled(variant, head):
    output_dim = {"classification": 2, "regression": 2, "reconstruction": FEATURES}[head]
    model = build_model(variant, (TIMESTEPS, FEATURES), head=head, output_dim=output_dim, units=16)
    loss = "sparse_categorical_crossentropy" if head == "classification" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    return model


EXPECTED_SHAPES = {
    "classification": (5, 2),
    "regression": (5, 2),
    "reconstruction": (5, TIMESTEPS, FEATURES),
}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_shape_learning_and_round_trip(variant, head, tmp_path):
    model = _compiled(variant, head)
    x, y = _toy_problem(head)
    assert model.predict(x[:5], verbose=0).shape == EXPECTED_SHAPES[head]

    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.9 * before, f"{variant}/{head}: loss {before:.4f} -> {after:.4f}"

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert_same_model(model, reloaded, x[:16])


@pytest.mark.parametrize("head", ["classification", "regression"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variable_length_inputs(variant, head):
    model = build_model(variant, (None, FEATURES), head=head, output_dim=3, units=8)
    for timesteps in (5, 17):
        x = np.zeros((2, timesteps, FEATURES), dtype="float32")
        assert model.predict(x, verbose=0).shape == (2, 3)


def test_classification_outputs_are_probabilities():
    model = build_model("gru", (TIMESTEPS, FEATURES), output_dim=4, units=8)
    probabilities = model.predict(np.random.rand(6, TIMESTEPS, FEATURES), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_num_layers_stacks_recurrent_layers(variant):
    def count(model):
        return sum(1 for layer in model.layers if layer.name.startswith("encoder_"))

    default = build_model(variant, (TIMESTEPS, FEATURES), head="regression", units=4)
    three = build_model(variant, (TIMESTEPS, FEATURES), head="regression", units=4, num_layers=3)
    assert count(default) == (2 if variant == "stacked_lstm" else 1)
    assert count(three) == 3


def test_bilstm_is_bidirectional_over_lstm():
    model = build_model("bilstm", (TIMESTEPS, FEATURES), head="regression", units=5)
    layer = model.get_layer("encoder_0")
    assert isinstance(layer, keras.layers.Bidirectional)
    assert isinstance(layer.forward_layer, keras.layers.LSTM)
    assert layer.output.shape == (None, 10)


def test_dropout_reaches_recurrent_layers():
    model = build_model("lstm", (TIMESTEPS, FEATURES), head="regression", dropout=0.2, recurrent_dropout=0.1)
    layer = model.get_layer("encoder_0")
    assert layer.dropout == pytest.approx(0.2)
    assert layer.recurrent_dropout == pytest.approx(0.1)


def test_attention_concentrates_on_the_informative_timestep():
    """The label is the sign of feature 0 at the one step flagged by feature 1 (a random step per
    sample; every other step is noise): after training, attention must sit on the flagged step."""
    rng = np.random.default_rng(1)
    n, timesteps = 2048, 10
    x = rng.normal(size=(n, timesteps, 2)).astype("float32")
    key_steps = rng.integers(0, timesteps, size=n)
    x[:, :, 1] = 0.0
    x[np.arange(n), key_steps, 1] = 1.0
    y = (x[np.arange(n), key_steps, 0] > 0).astype("int32")
    keras.utils.set_random_seed(1)
    model = build_model("attention_lstm", (timesteps, 2), output_dim=2, units=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")

    def weight_on_key_step():
        weights = attention_weights(model, x[:512])
        assert weights.shape == (512, timesteps)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        return weights[np.arange(512), key_steps[:512]], (weights.argmax(axis=1) == key_steps[:512]).mean()

    untrained_weight, _ = weight_on_key_step()
    model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    trained_weight, argmax_hits = weight_on_key_step()

    assert untrained_weight.mean() < 0.2
    assert trained_weight.mean() > 0.5, trained_weight.mean()
    assert argmax_hits > 0.8, argmax_hits


def test_attention_weights_needs_an_attention_model():
    with pytest.raises(ValueError, match="no TemporalAttention layer"):
        attention_weights(build_model("lstm", (TIMESTEPS, FEATURES), output_dim=2), np.zeros((1, 12, 3)))


def test_attention_weights_of_a_nested_model_names_the_inner_model():
    inner = build_model("attention_lstm", (TIMESTEPS, FEATURES), output_dim=2, units=4)
    inputs = keras.Input((TIMESTEPS, FEATURES))
    outer = keras.Model(inputs, inner(keras.layers.Identity()(inputs)), name="outer")
    with pytest.raises(ValueError, match=r"inside the nested model 'attention_lstm_classification'.*get_layer"):
        attention_weights(outer, np.zeros((1, TIMESTEPS, FEATURES)))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_masked_attention_weights_are_finite_and_sum_to_one(dtype):
    """Masked steps get zero weight; a row with every step masked stays finite (uniform) even in
    float16, where -1e9 would overflow to -inf and softmax would give NaN."""
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(dtype)
    mask = np.array([[True, True, False, False], [False, False, False, False]])
    context, weights = (keras.ops.convert_to_numpy(t) for t in TemporalAttention(dtype=dtype)(x, mask=mask))
    assert np.isfinite(weights).all() and np.isfinite(context).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(weights[0, 2:], 0.0)


@pytest.mark.parametrize("variant", ["rnn", "gru", "lstm", "bilstm", "peephole_lstm"])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 2.0}, "dropout=2.0"),
        ({"recurrent_dropout": -0.1}, "recurrent_dropout=-0.1"),
        ({"units": 0}, "units"),
    ],
)
def test_recurrent_layer_checks_its_arguments_for_every_variant(variant, kwargs, message):
    arguments = {"units": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        recurrent_layer(variant, arguments.pop("units"), return_sequences=False, **arguments)


def test_attention_on_an_input_without_a_time_axis_says_what_it_expects():
    with pytest.raises(ValueError, match=r"expected ndim=3, found ndim=2"):
        TemporalAttention()(keras.Input((5,)))


def test_recurrent_layer_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match=r"variant='peephole'.*Allowed: rnn, lstm"):
        recurrent_layer("peephole", 4, return_sequences=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "transformer"}, r"variant='transformer'.*Allowed: rnn, lstm, bilstm"),
        ({"head": "ranking"}, r"head='ranking'.*Allowed: classification, regression, reconstruction"),
        ({"units": 0}, r"positive integer for units. Received: units=0"),
        ({"units": 3.5}, r"units=3.5"),
        ({"num_layers": -1}, r"num_layers=-1"),
        ({"variant": "stacked_lstm", "num_layers": 1}, r"stacked_lstm needs at least 2 layers.*num_layers=1"),
        ({"dropout": 1.0}, r"\[0, 1\) for dropout. Received: dropout=1.0"),
        ({"recurrent_dropout": -0.1}, r"recurrent_dropout=-0.1"),
        ({"output_dim": 1}, r"at least 2 classes. Received: output_dim=1"),
        ({"output_dim": None}, r"needs output_dim"),
        ({"input_shape": (10,)}, r"input_shape=\(timesteps, features\). Received: input_shape=\(10,\)"),
        ({"input_shape": 10, "head": "reconstruction", "output_dim": None}, r"Received: input_shape=10"),
        ({"input_shape": (10, 0)}, r"features\). Received: input_shape\[1\] \(features\)=0"),
        ({"input_shape": (None, 3), "head": "reconstruction"}, r"fixed number of timesteps"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    arguments = {"variant": "lstm", "input_shape": (TIMESTEPS, FEATURES), "head": "classification", "output_dim": 3}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_model(**arguments)


@pytest.mark.parametrize("head", HEADS)
def test_numpy_integers_are_taken_and_saved_as_plain_ints(head, tmp_path):
    size = np.int64
    model = build_model(
        "attention_lstm", (size(TIMESTEPS), size(FEATURES)), head=head, output_dim=size(3), units=size(8),
        num_layers=size(1),
    )  # fmt: skip
    assert model.get_layer("encoder_0").units == 8 and type(model.get_layer("encoder_0").units) is int
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(2, TIMESTEPS, FEATURES)).astype("float32")
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))
