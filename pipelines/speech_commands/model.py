"""The speech model: raw waveform in, class probabilities out, features inside.

    waveform (batch, samples) -> RandomSpeedShift (training only) -> LogMelSpectrogram
    -> Normalization (training-split statistics) -> SpecAugment (training only) -> classifier
    -> probabilities (batch, classes)

The classifier is the zoo model of `model.variant` (`model.architecture: zoo`, any variant), or the
attention RNN of de Andrade et al. 2018 (`model.architecture: attention_rnn`): a convolutional front
end along time, `model.num_layers` bidirectional LSTMs, attention over time
(`lstm_models.TemporalAttention`, additive scoring where the paper uses a dot product with the
middle step as query; layer instead of batch normalisation after each convolution, since batch
statistics gathered over a few dozen steps of noisy training clips misjudge clean validation
clips), then the dense layers of `model.dense_units` (64 -> 32) -> softmax. `model.architecture: crnn`
puts 3 x 3 convolution blocks of `model.conv_filters` filters that pool over frequency only (a
formant a few bins higher gives nearly the same features) in front of the same recurrent and
attention layers; each block normalises with `model.conv_norm` (layer or batch normalisation).
`model.head_dropout` drops the last dense layer's outputs in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

import lstm_models
from lstm_models import TemporalAttention, recurrent_layer
from pipelines import training
from pipelines.errors import ConfigError
from pipelines.speech_commands.augment import RandomSpeedShift, SpecAugment
from pipelines.speech_commands.features import front_end

if TYPE_CHECKING:
    from pipelines.speech_commands.task import SpeechConfig

ARCHITECTURES = ("zoo", "attention_rnn", "crnn")
CONV_NORMS = ("layer", "batch")


def _recurrent_attention_head(x, config, num_classes):
    """`model.num_layers` bidirectional LSTMs, attention over time, `model.dense_units`, dropout, softmax."""
    for index in range(config.model.num_layers):
        x = recurrent_layer(
            "bilstm", config.model.units, return_sequences=True, dropout=config.model.dropout,
            recurrent_dropout=config.model.recurrent_dropout, name=f"encoder_{index}",
        )(x)  # fmt: skip
    x, _ = TemporalAttention(name="attention")(x)
    units = config.model.dense_units
    for index, width in enumerate(units):
        # The last hidden layer stays linear, as in de Andrade et al. 2018 (64 relu -> 32 linear).
        activation = "relu" if index < len(units) - 1 or len(units) == 1 else None
        x = keras.layers.Dense(width, activation=activation, name=f"dense_{index}")(x)
    if config.model.head_dropout > 0:
        x = keras.layers.Dropout(config.model.head_dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)


def _attention_rnn(features, config, num_classes):
    frames, bins = features.shape[1], features.shape[2]
    x = keras.layers.Reshape((frames, bins, 1), name="to_image")(features)
    x = keras.layers.Conv2D(10, (5, 1), padding="same", activation="relu", name="conv_0")(x)
    x = keras.layers.LayerNormalization(axis=(2, 3), name="conv_0_norm")(x)
    x = keras.layers.Conv2D(1, (5, 1), padding="same", activation="relu", name="conv_1")(x)
    x = keras.layers.LayerNormalization(axis=(2, 3), name="conv_1_norm")(x)
    x = keras.layers.Reshape((frames, bins), name="to_sequence")(x)
    return _recurrent_attention_head(x, config, num_classes)


def _crnn(features, config, num_classes):
    frames, bins = features.shape[1], features.shape[2]
    x = keras.layers.Reshape((frames, bins, 1), name="to_image")(features)
    for index, filters in enumerate(config.model.conv_filters):
        if config.model.conv_norm == "batch":  # convolution, batch norm, then ReLU
            x = keras.layers.Conv2D(filters, (3, 3), padding="same", use_bias=False, name=f"conv_{index}")(x)
            x = keras.layers.BatchNormalization(name=f"conv_{index}_norm")(x)
            x = keras.layers.ReLU(name=f"conv_{index}_relu")(x)
        else:
            x = keras.layers.Conv2D(filters, (3, 3), padding="same", activation="relu", name=f"conv_{index}")(x)
            x = keras.layers.LayerNormalization(axis=(2, 3), name=f"conv_{index}_norm")(x)
        x = keras.layers.MaxPooling2D((1, 2), name=f"pool_{index}")(x)
    x = keras.layers.Reshape((frames, x.shape[2] * x.shape[3]), name="to_sequence")(x)
    return _recurrent_attention_head(x, config, num_classes)


def build_speech_model(
    config: SpeechConfig, clip_samples: int, num_classes: int, feature_mean: np.ndarray, feature_variance: np.ndarray
) -> keras.Model:
    """A compiled waveform classifier.

    Args:
        config: Task config (`data.sample_rate`, `features.*`, `augment.*`, `model.*`, `train.*`, `seed`).
        clip_samples: Waveform length the model takes.
        num_classes: Output classes.
        feature_mean: Per-mel-bin mean of the training split's log-mel features.
        feature_variance: Per-mel-bin variance of the same.

    Returns:
        A `keras.Model` compiled with Adam, sparse categorical cross-entropy and accuracy.

    Raises:
        ConfigError: `model.architecture` is `attention_rnn` or `crnn` and `model.variant` is not
            `attention_lstm`.
    """
    a, m, rate = config.augment, config.model, config.data.sample_rate
    if m.architecture != "zoo" and m.variant != "attention_lstm":
        raise ConfigError(
            f"model.architecture={m.architecture} is an attention model; "
            f"set model.variant=attention_lstm (got {m.variant!r})"
        )
    waveform = keras.Input((clip_samples,), name="waveform")
    shifted = RandomSpeedShift(
        a.speed_change, int(round(a.time_shift_seconds * rate)), seed=config.seed, name="speed_shift"
    )(waveform)
    features = front_end(config.features, rate)(shifted)
    features = keras.layers.Normalization(axis=-1, mean=feature_mean, variance=feature_variance, name="normalize")(
        features
    )
    features = SpecAugment(
        a.freq_masks, a.freq_mask_width, a.time_masks, a.time_mask_width, seed=config.seed, name="spec_augment"
    )(features)
    if m.architecture == "attention_rnn":
        probabilities = _attention_rnn(features, config, num_classes)
    elif m.architecture == "crnn":
        probabilities = _crnn(features, config, num_classes)
    else:
        classifier = lstm_models.build_model(
            m.variant,
            input_shape=tuple(features.shape[1:]),
            head="classification",
            output_dim=num_classes,
            units=m.units,
            num_layers=m.num_layers,
            dropout=m.dropout,
            recurrent_dropout=m.recurrent_dropout,
        )
        probabilities = classifier(features)
    model = keras.Model(waveform, probabilities, name=f"speech_{m.architecture}_{m.variant}")
    model.compile(optimizer=training.optimizer(config), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def feature_model(model: keras.Model) -> keras.Model:
    """`waveform -> normalised log-mel features` of a speech model (SpecAugment is off at inference).

    Args:
        model: A model from `build_speech_model`.

    Returns:
        A `keras.Model` sharing its layers.
    """
    return keras.Model(model.inputs, model.get_layer("spec_augment").output)
