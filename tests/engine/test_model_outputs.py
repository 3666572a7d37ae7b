"""`KerasServingModel.model_outputs`: a request's rows through `predict_on_batch`, batch by batch."""

import numpy as np
import pytest

from lstm_models import build_model
from pipelines.serving import KerasServingModel


@pytest.fixture(scope="module")
def served():
    model = KerasServingModel()
    model.keras_model = build_model("lstm", (6, 3), head="regression", output_dim=2, units=4)
    return model


@pytest.mark.parametrize("rows", [1, 128, 300])
def test_model_outputs_match_predict_across_batches(served, rows):
    inputs = np.random.default_rng(rows).normal(size=(rows, 6, 3)).astype("float32")
    outputs = served.model_outputs(inputs, batch_size=128)
    assert outputs.shape == (rows, 2)
    np.testing.assert_allclose(outputs, served.keras_model.predict(inputs, verbose=0), rtol=0, atol=1e-6)


def test_model_outputs_keep_row_order_across_batches(served):
    """Each row's output is the model's output for that row alone, wherever the batch boundaries fall."""
    inputs = np.random.default_rng(0).normal(size=(7, 6, 3)).astype("float32")
    outputs = served.model_outputs(inputs, batch_size=3)
    for row in (0, 3, 6):
        np.testing.assert_allclose(outputs[row], served.model_outputs(inputs[row : row + 1])[0], rtol=0, atol=1e-6)


def test_model_outputs_of_no_rows_are_empty(served):
    assert served.model_outputs(np.zeros((0, 6, 3), "float32")).shape == (0, 2)
