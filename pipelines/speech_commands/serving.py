"""The served speech model: a batch of waveforms in, label and class probabilities out.

Requests (`mlflow models serve`), each waveform `clip_samples` floats in [-1, 1] at the model's
rate (16 kHz by default):
    {"inputs": [[...16000 floats...], ...]}
    {"dataframe_records": [{"file": "a.wav", "waveform": [...16000 floats...]}, ...]}
    {"dataframe_split": {"columns": ["file", "waveform"], "data": [["a.wav", [...]], ...]}}

The signature declares the output only: MLflow 3.17 has no input schema that accepts both the
`inputs` form (a tensor spec drops the `file` column) and a `file` column (an array column
rejects the `inputs` form), so `predict` checks the input itself and names what is wrong.

Answer: one row per waveform, `file` (when sent), `label`, `probability` (of that label) and
`prob_<class>` for every class.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipelines.errors import DataError
from pipelines.serving import KerasServingModel
from pipelines.speech_commands import augment  # noqa: F401  (registers the training-only layers every model holds)
from pipelines.speech_commands.features import LogMelSpectrogram

DEFAULT_RATE = 16000


def serving_signature(class_names: list[str]) -> ModelSignature:
    """The served model's signature: outputs only (see the module docstring).

    Args:
        class_names: The model's classes.

    Returns:
        Output columns `file` (optional), `label`, `probability` and `prob_<class>` per class.
    """
    columns = [ColSpec("string", "file", required=False), ColSpec("string", "label"), ColSpec("double", "probability")]
    columns += [ColSpec("double", f"prob_{name}") for name in class_names]
    return ModelSignature(inputs=None, outputs=Schema(columns))


def save_class_names(class_names: list[str], workdir: str | Path) -> str:
    """Write the class names as JSON (`class_names.json`), an artifact of the served model.

    Args:
        class_names: The model's classes.
        workdir: Folder to write in.

    Returns:
        The file's path.
    """
    path = Path(workdir) / "class_names.json"
    path.write_text(json.dumps(list(class_names)))
    return str(path)


def _waveforms(model_input, clip_samples):
    """`(files or None, float32 (n, clip_samples))` from any accepted request form."""
    files = None
    if isinstance(model_input, pd.DataFrame) and "waveform" in model_input.columns:
        model_input = {column: model_input[column].tolist() for column in model_input.columns}
    elif isinstance(model_input, pd.DataFrame):
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in model_input.dtypes):
            columns = ", ".join(map(str, model_input.columns))
            raise DataError(f"request: expected a 'waveform' column (or rows of numbers); got columns {columns}")
        model_input = model_input.to_numpy()  # one waveform per row
    if isinstance(model_input, dict):
        if "waveform" not in model_input:
            raise DataError(f"request: expected a 'waveform' field; got {', '.join(map(str, model_input))}")
        files = [str(name) for name in np.atleast_1d(model_input["file"])] if "file" in model_input else None
        model_input = model_input["waveform"]
    try:
        waveforms = np.asarray(model_input, dtype="float32")
    except (TypeError, ValueError) as error:
        raise DataError(f"request: expected waveforms of {clip_samples} numbers each ({error})") from None
    if waveforms.ndim == 1:
        waveforms = waveforms[None, :]
    if waveforms.ndim != 2 or waveforms.shape[1] != clip_samples:
        raise DataError(
            f"request: expected waveforms of {clip_samples} samples, shape (n, {clip_samples}); got {waveforms.shape}"
        )
    if not np.all(np.isfinite(waveforms)):
        raise DataError("request: waveforms contain NaN or infinite values")
    if files is not None and len(files) != len(waveforms):
        raise DataError(f"request: {len(files)} file name(s) for {len(waveforms)} waveform(s); send one per waveform")
    return files, waveforms


def front_end_rate(layer: Any) -> int | None:
    """The sample rate of the first `LogMelSpectrogram` inside a model.

    Args:
        layer: A Keras model or layer; nested models (an ensemble's members) are searched.

    Returns:
        The rate in Hz, or `None` when there is no `LogMelSpectrogram`.
    """
    if isinstance(layer, LogMelSpectrogram):
        return int(layer.sample_rate)
    for inner in getattr(layer, "layers", ()):
        rate = front_end_rate(inner)
        if rate is not None:
            return rate
    return None


class SpeechServingModel(KerasServingModel):
    """`predict(waveforms)` -> `file` (when sent), `label`, `probability`, `prob_<class>`.

    `sample_rate` and `clip_samples` say what each waveform must be (read from the model).
    """

    def load_preprocessing(self, context: Any) -> None:
        """Read the class names, and the clip length and sample rate from the Keras model.

        Args:
            context: MLflow's context; `context.artifacts["class_names"]` is the JSON file.
        """
        self.class_names = json.loads(Path(context.artifacts["class_names"]).read_text())
        self.clip_samples = int(self.keras_model.input_shape[-1])
        self.sample_rate = front_end_rate(self.keras_model) or DEFAULT_RATE

    def serve(self, model_input: Any) -> pd.DataFrame:
        """Label a batch of waveforms.

        Args:
            model_input: A request in any form of the module docstring.

        Returns:
            A row per waveform: `file` (when sent), `label`, `probability`, `prob_<class>`.

        Raises:
            DataError: The request is not waveforms of `clip_samples` finite numbers.
        """
        files, waveforms = _waveforms(model_input, self.clip_samples)
        probabilities = self.model_outputs(waveforms).astype("float64")
        best = probabilities.argmax(axis=1)
        out = pd.DataFrame(
            {"label": [self.class_names[i] for i in best], "probability": probabilities[np.arange(len(best)), best]}
        )
        for index, name in enumerate(self.class_names):
            out[f"prob_{name}"] = probabilities[:, index]
        if files is not None:
            out.insert(0, "file", files)
        return out
