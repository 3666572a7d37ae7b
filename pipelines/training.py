"""Build, compile and fit one model from a config: the shared training step of every task."""

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstm_models import build_model
from pipelines.errors import PipelineError

logger = logging.getLogger(__name__)


def distribution_scope(config: Any) -> contextlib.AbstractContextManager:
    """The scope to build and compile the model in.

    `train.strategy: mirrored` replicates the model over every GPU (or, with none, every logical CPU
    device) with `tf.distribute.MirroredStrategy`; `default` builds it as usual.

    Args:
        config: Task config (uses `train.strategy`).

    Returns:
        A context manager.
    """
    if config.train.strategy == "default":
        return contextlib.nullcontext()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
    logger.info("MirroredStrategy over %d replicas: %s", strategy.num_replicas_in_sync, [d.name for d in devices])
    return strategy.scope()


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite; the run (or trial) is failed, nothing else is affected."""


class StopOnDivergence(keras.callbacks.Callback):
    """Raise `TrainingDiverged` as soon as a batch loss is not finite."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"training loss became {float(loss)} at batch {batch}; the run diverged")


def optimizer(config: Any) -> keras.optimizers.Adam:
    """Adam with `train.learning_rate` and `train.clipnorm`.

    Args:
        config: Task config (uses `train.*`).

    Returns:
        A `keras.optimizers.Adam`.
    """
    return keras.optimizers.Adam(learning_rate=config.train.learning_rate, clipnorm=config.train.clipnorm)


def build_and_compile(
    config: Any,
    input_shape: Sequence[int | None],
    head: str,
    output_dim: int,
    loss: str,
    metrics: Sequence[str] = (),
) -> keras.Model:
    """An uncompiled zoo model, compiled with `optimizer(config)`.

    Args:
        config: Task config (uses `model.*` and `train.*`).
        input_shape: `(timesteps, features)`.
        head: Model head, see `lstm_models.build_model`.
        output_dim: Classes, forecast steps or reconstructed features.
        loss: Keras loss name.
        metrics: Keras metric names. Default: `()`.

    Returns:
        A compiled `keras.Model`.
    """
    model = build_model(
        config.model.variant,
        input_shape,
        head=head,
        output_dim=output_dim,
        units=config.model.units,
        num_layers=config.model.num_layers,
        dropout=config.model.dropout,
        recurrent_dropout=config.model.recurrent_dropout,
    )
    # No steps_per_execution: the saved model keeps it, and predict then retraces for every number of
    # batches it is given (docs/benchmarks.md).
    model.compile(optimizer=optimizer(config), loss=loss, metrics=list(metrics))
    return model


def array_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """Batches of `(x, y)` from in-memory arrays, floats as float32.

    `fit` on arrays builds Keras's array adapter at every call and gathers each batch through it;
    a `tf.data` pipeline built once costs less per epoch (docs/benchmarks.md).

    Args:
        x: Inputs, first axis the examples.
        y: Targets, first axis the examples.
        batch_size: Examples per batch; the last batch may be smaller.
        shuffle: Reshuffle the examples at every epoch.

    Returns:
        A batched, prefetching `tf.data.Dataset`.
    """

    def as_float32(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        return array.astype("float32") if np.issubdtype(array.dtype, np.floating) else array

    dataset = tf.data.Dataset.from_tensor_slices((as_float32(x), as_float32(y)))
    if shuffle:
        dataset = dataset.shuffle(len(x), reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def average_ensemble(members: Sequence[keras.Model]) -> keras.Model:
    """One model that averages the outputs of models taking the same input.

    Args:
        members: Trained functional `keras.Model`s with one input of the same shape and one output.

    Returns:
        The only member when there is one; else a compiled, frozen `keras.Model` named `ensemble`
        (the first member's loss) whose output is the mean of the members' outputs. It wraps the
        members' layers in uncompiled models, so it saves and reloads without optimizer state;
        freezing it freezes those layers too.
    """
    if len(members) == 1:
        return members[0]
    first = members[0].inputs[0]
    inputs = keras.Input(first.shape[1:], dtype=first.dtype, name=first.name)
    uncompiled = [
        keras.Model(member.input, member.output, name=f"member_{index}") for index, member in enumerate(members)
    ]
    outputs = keras.layers.Average(name="average")([member(inputs) for member in uncompiled])
    ensemble = keras.Model(inputs, outputs, name="ensemble")
    ensemble.trainable = False
    ensemble.compile(loss=members[0].loss)
    return ensemble


def ensemble_members(model: keras.Model) -> list[keras.Model]:
    """The members of a model from `average_ensemble`.

    Args:
        model: A model from `average_ensemble`, or a single model.

    Returns:
        The members, or `[model]` for a single model.
    """
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members if model.name == "ensemble" and members else [model]


def learning_rate_schedule(config: Any) -> keras.callbacks.LearningRateScheduler | None:
    """The learning-rate callback of `train.lr_schedule`, or None for a constant rate.

    `cosine` decays the rate per epoch from `train.learning_rate` at the first epoch towards 0 at
    `train.epochs` (Keras's `CosineDecay`, counted in epochs).

    Args:
        config: Task config (uses `train.*`).

    Returns:
        A `keras.callbacks.LearningRateScheduler`, or None.
    """
    if config.train.lr_schedule == "constant":
        return None
    decay = keras.optimizers.schedules.CosineDecay(config.train.learning_rate, decay_steps=config.train.epochs)
    return keras.callbacks.LearningRateScheduler(lambda epoch: float(decay(epoch)))


def fit(
    model: keras.Model, data: Any, config: Any, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> keras.callbacks.History:
    """Fit on the training split, stopping early on the validation loss.

    The learning rate follows `train.lr_schedule`, and the weights of the best epoch are restored.

    Args:
        model: A compiled model.
        data: Anything with `x_train, y_train, x_val, y_val` (fed through `array_dataset`, the
            training split reshuffled at every epoch); or with `train_dataset` and `val_dataset`
            (batched `tf.data.Dataset`s), which are used instead when present.
        config: Task config (uses `train.*`).
        callbacks: Extra Keras callbacks (metric logging, pruning). Default: `()`.

    Returns:
        The Keras `History`.
    """
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.train.early_stopping_patience, restore_best_weights=True
    )
    schedule = learning_rate_schedule(config)
    callbacks = [StopOnDivergence(), stopping, *([schedule] if schedule else []), *callbacks]
    if getattr(data, "train_dataset", None) is not None:
        train, validation = data.train_dataset, data.val_dataset
    else:
        batch_size = config.train.batch_size
        train = array_dataset(data.x_train, data.y_train, batch_size, shuffle=True)
        validation = array_dataset(data.x_val, data.y_val, batch_size, shuffle=False)
    return model.fit(
        train,
        validation_data=validation,
        epochs=config.train.epochs,
        callbacks=callbacks,
        verbose=config.train.verbose,
        shuffle=False,  # the dataset shuffles itself; Keras warns that it ignores shuffle=True
    )
