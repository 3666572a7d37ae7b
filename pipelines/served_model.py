"""The code MLflow runs to load every served model ("models from code": no pickle in the model).

`tracking.log_serving_model` logs this file as the model's code and names the task's serving
class in the model config (`serving_class: "module:Class"`). At load time MLflow puts the model's
own copy of `pipelines` and `lstm_models` (`code_paths`) on `sys.path` and runs this file; the
class then loads its Keras model and preprocessing from the model's artifacts (`load_context`).
"""

import importlib

from mlflow.models import ModelConfig, set_model

module_name, class_name = ModelConfig().get("serving_class").split(":")
set_model(getattr(importlib.import_module(module_name), class_name)())
