"""Unsupervised adaptation of kept networks to a held-out FSDD speaker, scored on clips it did not adapt on.

The protocol around the `adapt` command's self-training (`pipelines.speech_commands.adaptation`,
the same function and defaults). The speaker's 500 test clips are split in two halves by recording
index (even and odd: every digit 25 times in each). For each half:

1. the speaker's kept networks (`speech_networks.py`, one architecture, every seed) are averaged
   into one ensemble, as `train.ensemble_size` builds it, which labels the half; the clips whose
   mean probability reaches `--threshold` are kept;
2. `self_train` fine-tunes every network for `--epochs` on those clips and `--replay-ratio` times as
   many training clips drawn at random (the other five speakers and the synthetic voices, with their
   true labels, so the network does not forget them), through the model's own training
   augmentation (speed and shift, equalizer, SpecAugment), with Adam at `--learning-rate`;
3. the adapted ensemble scores the other half.

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

from pipelines.speech_commands.adaptation import AdaptationSettings


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


def adapt_speaker(args, synthetic, speaker):
    """Adapt the speaker's networks half by half; returns the printed row's values."""
    from pipelines.speech_commands.adaptation import self_train
    from pipelines.speech_commands.task import TASK
    from pipelines.training import average_ensemble
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
    settings = AdaptationSettings(
        args.threshold, args.epochs, args.learning_rate, args.batch_size, args.replay_ratio, args.seed
    )
    rng = np.random.default_rng(args.seed)
    for half in (~odd, odd):
        # Each half starts from the kept networks, not from the other half's.
        ensemble = average_ensemble([load_model(uri) for uri in uris])
        self_train(ensemble, x[half], unadapted[half], train.x, train.y, settings, rng)
        adapted[~half] = ensemble.predict(x[~half], batch_size=256, verbose=0)
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
    defaults = AdaptationSettings()  # the `adapt` command's
    parser.add_argument("--threshold", type=float, default=defaults.threshold, help="least mean probability kept")
    parser.add_argument("--replay-ratio", type=float, default=defaults.replay_ratio, help="training clips per kept")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="draws the training clips, seeds the tuning")
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
