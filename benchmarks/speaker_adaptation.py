"""Unsupervised adaptation of kept networks to a held-out FSDD speaker (an experiment, not a pipeline option).

Self-training on the new speaker's own unlabelled clips. The speaker's 500 test clips are split in
two halves by recording index (even and odd: every digit 25 times in each). For each half:

1. pseudo-labels: the class of the highest mean probability of the speaker's kept networks
   (`speech_networks.py`, one architecture, every seed) on that half, kept where that mean
   probability is at least `--threshold`;
2. every kept network is fine-tuned for `--epochs` on those clips and `--train-ratio` times as many
   training clips drawn at random (the other five speakers and the synthetic voices, with their
   true labels, so the network does not forget them), through the model's own training
   augmentation (speed and shift, equalizer, SpecAugment), with Adam at `--learning-rate`;
3. the adapted networks score the other half.

Each clip is thus scored by networks adapted on the speaker's other 250 clips, whose labels they
never saw; the labels are read only to score. Prints, per speaker, the unadapted and the adapted
ensemble's accuracy on all 500 clips and the pseudo-labels' count and accuracy, and writes the
adapted ensemble's probabilities to `<output>/<speaker>/<architecture>_adapted.npz`.

Usage:
    python benchmarks/speaker_adaptation.py --cache outputs/speech_networks --output outputs/speaker_adaptation \\
        --speakers nicolas,george [--architecture crnn] [--seeds 42,43,44] [--data ../shared/data/fsdd]
    python benchmarks/speaker_adaptation.py --report --output benchmarks/results/speaker_adaptation \\
        --speakers nicolas,george
(`--report` reprints the table from the written files, without the networks or the data.)
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from speech_networks import CONFIG, network_file, network_overrides  # benchmarks/speech_networks.py


def recording_index(file):
    """The `{index}` of FSDD's `{digit}_{speaker}_{index}.wav`."""
    return int(Path(file).stem.split("_")[2])


def load_model(uri):
    """The Keras model of a kept network's MLflow model."""
    import mlflow

    return mlflow.pyfunc.load_model(uri).unwrap_python_model().keras_model


def load_networks(cache, speaker, architecture, seeds):
    """`(model URIs, probabilities (seeds, clips, classes), labels, files)` of the kept networks."""
    uris, probabilities, labels, files = [], [], None, None
    for seed in seeds:
        with np.load(network_file(cache, speaker, architecture, seed)) as kept:
            probabilities.append(kept["probabilities"])
            if labels is not None and not np.array_equal(kept["files"], files):
                raise SystemExit(f"error: the {speaker} networks were scored on different clips")
            labels, files = kept["labels"], kept["files"]
            uris.append(str(kept["model_uri"]))
    return uris, np.stack(probabilities), labels, files


def fine_tune(model, x, y, args, seed):
    """Fine-tune `model` in place on `(x, y)` with its training augmentation."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)


def adapt_speaker(args, synthetic, speaker):
    """Adapt the speaker's networks half by half; returns the printed row's values."""
    from pipelines.speech_commands.task import TASK
    from pipelines.workflows import load_task_config

    config = load_task_config(
        TASK, CONFIG, network_overrides(args.data, synthetic, speaker, args.architecture, args.seeds[0])
    )
    splits = TASK.load_source(config).splits
    train, test = splits["train"], splits["test"]
    uris, kept, labels, files = load_networks(args.cache, speaker, args.architecture, args.seeds)
    if list(files) != list(test.files) or not np.array_equal(labels, test.y):
        raise SystemExit(f"error: the kept {speaker} networks were scored on other clips than the test split")
    x = np.asarray(test.x, dtype="float32")
    check = load_model(uris[0]).predict(x, batch_size=256, verbose=0)
    if not np.allclose(check, kept[0], atol=1e-4):
        raise SystemExit(f"error: the reloaded {speaker} network does not reproduce its kept probabilities")
    unadapted = kept.mean(axis=0)
    odd = np.array([recording_index(file) % 2 for file in files], dtype=bool)
    adapted = np.zeros_like(unadapted)
    rng = np.random.default_rng(args.seed)
    for half in (~odd, odd):
        confident = half & (unadapted.max(axis=1) >= args.threshold)
        pseudo = unadapted.argmax(axis=1)
        drawn = rng.choice(len(train.y), size=int(args.train_ratio * confident.sum()), replace=False)
        x_tune = np.concatenate([x[confident], np.asarray(train.x[drawn], dtype="float32")])
        y_tune = np.concatenate([pseudo[confident], np.asarray(train.y[drawn])])
        other = ~half
        for index, uri in enumerate(uris):
            model = load_model(uri)  # each half starts from the kept network, not from the other half's
            fine_tune(model, x_tune, y_tune, args, args.seed + index)
            adapted[other] += model.predict(x[other], batch_size=256, verbose=0) / len(uris)
    path = Path(args.output, speaker, f"{args.architecture}_adapted.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, probabilities=adapted, labels=labels, files=files, unadapted=unadapted)
    return row(path, args.threshold)


def row(path, threshold):
    """`(unadapted accuracy, adapted accuracy, pseudo-labels, their accuracy)` of a written file."""
    with np.load(path) as written:
        adapted, unadapted, labels = written["probabilities"], written["unadapted"], written["labels"]
    confident = unadapted.max(axis=1) >= threshold
    return (
        float(np.mean(unadapted.argmax(axis=1) == labels)),
        float(np.mean(adapted.argmax(axis=1) == labels)),
        int(confident.sum()),
        float(np.mean(unadapted[confident].argmax(axis=1) == labels[confident])),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="speech_networks.py's cache (networks and MLflow store)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder (with recordings/)")
    parser.add_argument("--speakers", required=True, help="held-out speakers, comma-separated")
    parser.add_argument("--architecture", default="crnn")
    parser.add_argument("--seeds", default="42,43,44", help="the kept networks' seeds")
    parser.add_argument("--threshold", type=float, default=0.8, help="least mean probability of a pseudo-label")
    parser.add_argument("--train-ratio", type=float, default=2.0, help="training clips per pseudo-labelled clip")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0, help="draws the training clips and seeds the fine-tuning")
    parser.add_argument("--report", action="store_true", help="reprint the table from the files in --output")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if not args.report and not args.cache:
        parser.error("--cache is needed unless --report")
    print("| held-out speaker | unadapted | adapted | pseudo-labels | their accuracy | minutes |")
    print("|---|---:|---:|---:|---:|---:|")
    results = []
    for speaker in [s for s in args.speakers.split(",") if s]:
        start = time.monotonic()
        if args.report:
            before, after, count, right = row(
                Path(args.output, speaker, f"{args.architecture}_adapted.npz"), args.threshold
            )
        else:
            os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.cache, 'mlflow.db').resolve()}")
            before, after, count, right = adapt_speaker(args, Path(args.cache, "synthetic_digits"), speaker)
        results.append((before, after))
        minutes = "-" if args.report else f"{(time.monotonic() - start) / 60:.1f}"
        print(f"| {speaker} | {before:.3f} | {after:.3f} | {count} | {right:.3f} | {minutes} |", flush=True)
    before, after = np.mean(results, axis=0)
    print(f"| **mean** | {before:.3f} | {after:.3f} | | | |")


if __name__ == "__main__":
    main()
