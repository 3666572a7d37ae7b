"""Unsupervised adaptation of a trained speech model to new clips (a new speaker, microphone or room).

Self-training: the model labels the new clips itself; those it labels with at least `threshold`
probability, plus `replay_ratio` times as many clips of its training split with their true labels
(so it keeps what it knew), fine-tune it for `epochs` through its own training augmentation
(speed and shift, SpecAugment) with Adam at `learning_rate`. The labels of the new clips
are never needed. An ensemble's members are fine-tuned one by one on the ensemble's labels.

Measured on held-out FSDD speakers: docs/experiments/speech_adaptation.md.
"""

import dataclasses
import math

import keras
import numpy as np

from pipelines.errors import ConfigError, DataError
from pipelines.training import ensemble_members


@dataclasses.dataclass
class AdaptationSettings:
    """The settings of `self_train` (the `adapt` command's options; the defaults are the measured ones)."""

    threshold: float = 0.8  # least probability of a kept pseudo-label
    epochs: int = 5
    learning_rate: float = 3e-4
    batch_size: int = 32
    replay_ratio: float = 2.0  # training clips per pseudo-labelled clip
    seed: int = 0  # draws the training clips; member i is fine-tuned with seed + i

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold: expected a probability in (0, 1], got {self.threshold!r}")
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key.replace('_', '-')}: expected a positive integer, got {value!r}")
        if not 0 < self.learning_rate < math.inf:
            raise ConfigError(f"learning-rate: expected a positive number, got {self.learning_rate!r}")
        if not 0 <= self.replay_ratio < math.inf:
            raise ConfigError(f"replay-ratio: expected a number >= 0, got {self.replay_ratio!r}")


@dataclasses.dataclass
class PseudoLabels:
    """The model's own labels of the new clips: `labels` (class index), their `probability`, and
    `confident`, the clips whose probability reaches the threshold (the ones trained on)."""

    labels: np.ndarray
    probability: np.ndarray
    confident: np.ndarray

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, threshold: float) -> "PseudoLabels":
        """The labels of a model's class probabilities.

        Args:
            probabilities: `(clips, classes)`.
            threshold: Least kept probability.

        Returns:
            A `PseudoLabels`.
        """
        probabilities = np.asarray(probabilities)
        probability = probabilities.max(axis=1)
        return cls(probabilities.argmax(axis=1), probability, probability >= threshold)


def confident_pseudo_labels(probabilities: np.ndarray, threshold: float) -> PseudoLabels:
    """The model's own labels of the new clips, refused when none reaches the threshold.

    Args:
        probabilities: The model's class probabilities on the new clips `(clips, classes)`.
        threshold: Least kept probability.

    Returns:
        `PseudoLabels` with at least one confident clip.

    Raises:
        DataError: When no clip reaches the threshold (nothing to train on).
    """
    pseudo = PseudoLabels.from_probabilities(probabilities, threshold)
    if not pseudo.confident.any():
        raise DataError(
            f"none of the {len(pseudo.labels)} new clips is labelled with probability >= {threshold} "
            f"(the most confident: {pseudo.probability.max():.3f}); nothing to adapt on; lower the threshold"
        )
    return pseudo


def fine_tune(model: keras.Model, x: np.ndarray, y: np.ndarray, settings: AdaptationSettings, seed: int) -> None:
    """Fine-tune `model`'s weights in place on `(x, y)`, through its training augmentation.

    The model is made trainable and a fresh `keras.Model` over its layers is compiled and fitted, so
    the model keeps its own compile state (and an ensemble member stays uncompiled).

    Args:
        model: A functional Keras classifier (softmax output).
        x: Waveforms `(n, samples)`.
        y: Class indices `(n,)`.
        settings: `AdaptationSettings` (epochs, batch size, learning rate).
        seed: Seeds the shuffling and the augmentation.
    """
    keras.utils.set_random_seed(seed)
    model.trainable = True  # on the model itself: setting it on the wrapper leaves a frozen member frozen
    tuned = keras.Model(model.inputs, model.outputs, name=f"{model.name}_tuned")
    tuned.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate, clipnorm=1.0), loss="sparse_categorical_crossentropy"
    )
    tuned.fit(x, y, batch_size=settings.batch_size, epochs=settings.epochs, shuffle=True, verbose=0)


def self_train(
    model: keras.Model,
    x_new: np.ndarray,
    probabilities: np.ndarray,
    x_replay: np.ndarray,
    y_replay: np.ndarray,
    settings: AdaptationSettings,
    rng: np.random.Generator,
) -> tuple[PseudoLabels, int]:
    """Adapt `model` in place to the clips `x_new` it labelled with `probabilities`.

    Args:
        model: A speech model, or an ensemble of them (`training.average_ensemble`).
        x_new: The new, unlabelled waveforms `(n, samples)`.
        probabilities: The model's class probabilities on `x_new` `(n, classes)`.
        x_replay: Labelled training waveforms `(m, samples)`.
        y_replay: Their class indices `(m,)`.
        settings: `AdaptationSettings`.
        rng: A NumPy `Generator` that draws the replayed clips.

    Returns:
        `(PseudoLabels, number of replayed training clips)`.

    Raises:
        DataError: When no new clip reaches the threshold (nothing to train on).
    """
    pseudo = confident_pseudo_labels(probabilities, settings.threshold)
    count = int(pseudo.confident.sum())
    drawn = rng.choice(len(y_replay), size=min(int(settings.replay_ratio * count), len(y_replay)), replace=False)
    x = np.concatenate([np.asarray(x_new, dtype="float32")[pseudo.confident], np.asarray(x_replay[drawn], "float32")])
    y = np.concatenate([pseudo.labels[pseudo.confident], np.asarray(y_replay[drawn])])
    frozen = not model.trainable  # an ensemble is frozen; its members share its layers
    for index, member in enumerate(ensemble_members(model)):
        fine_tune(member, x, y, settings, settings.seed + index)
    if frozen:
        model.trainable = False
    return pseudo, len(drawn)
