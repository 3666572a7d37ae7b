"""Assertions shared by several test modules."""

import numpy as np


def assert_same_model(model, reloaded, x):
    """Bit-identical weights, and predictions equal up to float32 round-off.

    oneDNN may pick a different reduction order for a freshly traced graph, so predictions of
    two copies of one model can differ in the last bit (~1e-7) even with identical weights.
    """
    assert len(model.weights) == len(reloaded.weights)
    for saved, loaded in zip(model.get_weights(), reloaded.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, loaded)
    np.testing.assert_allclose(model.predict(x, verbose=0), reloaded.predict(x, verbose=0), rtol=0, atol=1e-6)


def serve_logged_example(model_uri):
    """The request MLflow stored with a logged model (`serving_input_example.json`), parsed as
    `mlflow models serve` parses a request body, and the loaded model's answer to it.

    Returns:
        `(request, answer)`.
    """
    import json
    from pathlib import Path

    import mlflow
    from mlflow.pyfunc import scoring_server

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    body = json.loads((local / "serving_input_example.json").read_text())
    request = scoring_server.infer_and_parse_data(body, None)
    return request, mlflow.pyfunc.load_model(model_uri).predict(request)
