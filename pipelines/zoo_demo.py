"""Train and save one model of every variant on a small built-in problem and print a table."""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lstm_models import VARIANTS, build_model  # noqa: E402


def make_problem(n=1024, timesteps=20, features=4, seed=0):
    """Noisy sequences labelled by which of three frequencies feature 0 oscillates at.

    Returns:
        `(x, y)`: float32 `(n, timesteps, features)` and int32 labels in `{0, 1, 2}`.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype("int32")
    t = np.arange(timesteps)[None, :]
    x = rng.normal(scale=0.3, size=(n, timesteps, features))
    x[:, :, 0] += np.sin((0.3 + 0.4 * y[:, None]) * t + rng.uniform(0, 6.3, size=(n, 1)))
    return x.astype("float32"), y


def main():
    keras.utils.set_random_seed(0)
    x, y = make_problem()
    split = int(0.8 * len(x))
    out_dir = tempfile.mkdtemp(prefix="lstm_zoo_")
    print(f"{'variant':<16}{'params':>8}{'train s':>9}{'val acc':>9}  saved to")
    for variant in VARIANTS:
        model = build_model(variant, x.shape[1:], output_dim=3, units=32)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(x[:split], y[:split], batch_size=64, epochs=5, verbose=0)
        seconds = time.perf_counter() - start
        _, accuracy = model.evaluate(x[split:], y[split:], verbose=0)
        path = os.path.join(out_dir, f"{variant}.keras")
        model.save(path)
        reloaded = keras.models.load_model(path)
        np.testing.assert_allclose(reloaded.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)
        print(f"{variant:<16}{model.count_params():>8}{seconds:>9.1f}{accuracy:>9.3f}  {path}")


if __name__ == "__main__":
    main()
