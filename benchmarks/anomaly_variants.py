"""Label-free variants of the anomaly detector on the NAB corpus, against the shipped one.

Usage:
    python benchmarks/anomaly_variants.py --data-dir ../shared/data/nab [--online] [--set KEY=VALUE]

Trains one network of the config, pooled, as `anomaly_quality.py` trains each member (seed `seed`
only, whatever `train.ensemble_size` says: the online variant updates one network), and prints a
Markdown table of the NAB standard score of each variant at thresholds z 3 to 8 and cooldowns 24 and 100 rows:

- shipped: the task's own levels (anomaly likelihood of the raw scores);
- averaged history: the likelihood's mean and standard deviation taken over the averaged scores, as
  NAB's HTM detector takes them;
- log scores: the likelihood of ``log(score)``;
- median and MAD: a robust centre and spread instead of the mean and standard deviation;
- online (``--online``): the network keeps learning. Each series starts from the pooled weights;
  after every ``--chunk`` scored rows it is fitted for ``--epochs`` epochs on the windows of its
  last ``--history`` rows, so a row is always scored by weights trained on earlier rows only.
  Every alarm rule above is also applied to the online network's scores ("online, <rule>").

Every variant changes the network's levels only: it keeps the config's record rule, value check,
seasonal checks and spatial check, and uses no label; choosing between them by this table uses
the labels. Prints only; docs/results.md quotes the table with this command.
"""

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from anomaly_quality import nab_scores  # benchmarks/anomaly_quality.py

THRESHOLDS = (3, 4, 5, 6, 8)
COOLDOWNS = (24, 100)


def likelihood_levels(seed, scores, history, average, *, averaged_history=False, robust=False):
    """Anomaly-likelihood levels with a choice of statistics (the shipped rule: both flags off).

    Args:
        seed: validation scores the history starts from.
        scores: scores of the scored rows, oldest first.
        history: rows of past scores compared with.
        average: recent rows whose mean is scored.
        averaged_history: take the history's statistics over the averaged scores.
        robust: median and 1.4826 x MAD instead of mean and standard deviation.

    Returns:
        One level per row of ``scores``; NaN where the score is.
    """
    stream = pd.Series(np.concatenate([seed, scores]))
    recent = stream.rolling(average, min_periods=1).mean()
    base = recent if averaged_history else stream
    past = base.rolling(history, min_periods=min(10, max(2, len(seed))))
    if robust:
        centre = past.median().shift(1)
        spread = 1.4826 * (base - centre).abs().rolling(history, min_periods=10).median().shift(1)
    else:
        centre, spread = past.mean().shift(1), past.std().shift(1)
    spread = np.maximum(spread, 1e-3 * (1.0 + centre.abs()))
    levels = ((recent - centre) / spread).to_numpy(copy=True)[len(seed) :]
    levels[np.isnan(scores)] = np.nan
    return levels


def variant_levels(outcome, spec, variant):
    """Levels of every row of one series (NaN in the prefix) under one alarm rule."""
    if variant == "shipped":
        return outcome.detection.level
    score = outcome.detection.score
    seed, test = outcome.detector.likelihood.seed, score[outcome.n_prefix :]
    if variant == "log scores":
        seed, test = np.log(seed + 1e-6), np.log(test + 1e-6)
    levels = np.full(len(score), np.nan)
    levels[outcome.n_prefix :] = likelihood_levels(
        seed,
        test,
        spec.likelihood_history,
        spec.likelihood_average,
        averaged_history=variant == "averaged history",
        robust=variant == "median and MAD",
    )
    return levels


def alerts(outcome, levels, threshold, cooldown):
    """Alerts of one series: ``levels`` above ``threshold`` where the network's score passes the record
    rule, the value and seasonal checks at the same threshold, or the spatial check, with a cooldown."""
    from pipelines.anomaly_detection.detectors import alerts_with_cooldown

    found = outcome.detection
    candidates = ~np.isnan(levels) & (np.nan_to_num(levels) > threshold) & found.record
    candidates |= ~np.isnan(found.value_level) & (np.nan_to_num(found.value_level) > threshold) & found.value_record
    candidates |= ~np.isnan(found.seasonal_level) & (np.nan_to_num(found.seasonal_level) > threshold)
    return alerts_with_cooldown(candidates | found.spatial, cooldown)


def online_outcomes(model, data, chunk, history, epochs, learning_rate, batch_size):
    """Score every series with a copy of ``model`` that keeps learning on the series' past rows."""
    import keras

    from pipelines.anomaly_detection.detectors import error_features
    from pipelines.anomaly_detection.evaluation import SeriesOutcome
    from pipelines.anomaly_detection.task import detect_all
    from pipelines.anomaly_detection.windows import reconstruction_samples

    spec = data.spec
    if spec.detector != "reconstruction":
        raise SystemExit("--online: only the reconstruction detector (data.detector=reconstruction)")
    calibrated, _ = detect_all(model, data)  # scaler, likelihood seed and threshold from the pooled weights
    pooled = model.get_weights()
    learner = keras.models.clone_model(model)
    predict = lambda x: learner.predict(x, batch_size=1024, verbose=0)  # noqa: E731
    outcomes = []
    for part, static in zip(data.parts, calibrated, strict=True):
        learner.set_weights(pooled)
        learner.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss="mse")
        score = static.detection.score.copy()
        rows, first = len(part.scaled), part.n_prefix
        while first < rows:
            last = min(rows, first + chunk)
            errors = error_features(
                predict, part.scaled[first - spec.window + 1 : last], "reconstruction", spec.window, 1
            )
            score[first:last] = errors[spec.window - 1 :, 0]
            if last < rows:
                x, y = reconstruction_samples(part.scaled, spec.window, max(0, last - history), last)
                learner.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
            first = last
        detection = static.detector.detect_scores(score, first_row=part.n_prefix, values=part.series.values)
        outcomes.append(SeriesOutcome(part.series, static.detector, detection, part.n_train, part.n_prefix))
    return outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/nab", help="NAB root (data/, labels/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--online", action="store_true", help="also score with a network that keeps learning")
    parser.add_argument("--chunk", type=int, default=500, help="online: rows scored between two updates")
    parser.add_argument("--history", type=int, default=2000, help="online: past rows each update trains on")
    parser.add_argument("--epochs", type=int, default=2, help="online: epochs per update")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="online: Adam learning rate")
    args = parser.parse_args()

    import keras

    from pipelines import training
    from pipelines.anomaly_detection.task import TASK, detect_all
    from pipelines.workflows import load_task_config

    overrides = [f"data.path={args.data_dir}", "data.format=nab", "train.verbose=0", *args.overrides]
    config = load_task_config(TASK, None, overrides)
    if config.data.scoring != "likelihood":
        raise SystemExit("the variants change the anomaly likelihood: data.scoring must be likelihood")
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    data = TASK.prepare(config, TASK.load_source(config))
    model = TASK.build_model(config, data)
    training.fit(model, data, config)
    outcomes, _ = detect_all(model, data)
    rules = ("shipped", "averaged history", "log scores", "median and MAD")
    variants = {rule: (outcomes, rule) for rule in rules}
    if args.online:
        online = online_outcomes(
            model, data, args.chunk, args.history, args.epochs, args.learning_rate, config.train.batch_size
        )
        variants.update({"online" if rule == "shipped" else f"online, {rule}": (online, rule) for rule in rules})
    header = " | ".join(f"z {z} / {c}" for z in THRESHOLDS for c in COOLDOWNS)
    print(
        f"Command: `python benchmarks/anomaly_variants.py {' '.join(sys.argv[1:])}`; {os.cpu_count()} cores; "
        f"{(time.monotonic() - start) / 60:.1f} min. NAB standard score by variant, threshold z / cooldown rows:\n"
    )
    print(f"| variant | {header} |")
    print("|---|" + "---:|" * (len(THRESHOLDS) * len(COOLDOWNS)))
    for name, (scored, rule) in variants.items():
        levels = [variant_levels(o, config.data, rule) for o in scored]
        cells = [
            nab_scores(scored, [alerts(o, lv, z, c) for o, lv in zip(scored, levels, strict=True)])["standard"]
            for z in THRESHOLDS
            for c in COOLDOWNS
        ]
        print(f"| {name} | " + " | ".join(f"{cell:.1f}" for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
