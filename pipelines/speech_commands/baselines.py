"""The trivial classifier reported beside the model: the majority class of the training split.

On a split with one large class (`_unknown_`, or a held-out speaker's few words) a model that
learned nothing scores its share; `evaluate` logs it as `test_majority_accuracy` and names it in
the run's headline.
"""

import numpy as np


def majority_class(y_train: np.ndarray, num_classes: int) -> int:
    """The most frequent class of the training labels (the lowest index on a tie).

    Args:
        y_train: Training class indices `(n,)`.
        num_classes: Classes of the task.

    Returns:
        A class index.
    """
    return int(np.bincount(y_train, minlength=num_classes).argmax())


def majority_accuracy(y_train: np.ndarray, y_test: np.ndarray, num_classes: int) -> float:
    """The accuracy on `y_test` of always answering the training split's majority class.

    Args:
        y_train: Training class indices `(n,)`.
        y_test: Test class indices `(m,)`.
        num_classes: Classes of the task.

    Returns:
        A share in [0, 1].
    """
    return float(np.mean(y_test == majority_class(y_train, num_classes)))
