"""Single networks on held-out FSDD speakers, kept on disk, and the ensembles they make.

Usage:
    python benchmarks/speech_networks.py train --cache outputs/speech_networks \\
        --architectures crnn,attention_rnn --seeds 42,43,44 [--speakers nicolas,george] [--data ../shared/data/fsdd]
    python benchmarks/speech_networks.py report --cache outputs/speech_networks \\
        --architectures crnn,attention_rnn --seeds 42,43,44

`train` runs one `workflows.train` per (held-out speaker, seed, architecture) with the settings of
`speech_quality.py` (its `SETTINGS` and 200 SYNTHETIC eSpeak NG voices), `seed=S`,
`data.architecture=A` and any `--set KEY=VALUE` (the same for every network in a cache), logged to
MLflow in `<cache>/mlflow.db`, and writes the network's class probabilities on the speaker's 500
test clips to `<cache>/<speaker>/<architecture>_seed<S>.npz`. A network already on disk is
skipped, so a stopped invocation resumes where it was. Speakers run one after another, each with
every seed and architecture, so a partial run has whole speakers.

`report` prints each network's accuracy, the mean of every architecture's networks, and the
accuracy of the mean class probabilities of each architecture's networks and of all of them: the
ensemble `train.ensemble_size` serves, and one of mixed architectures. A speaker with networks
still missing is scored on those it has, with the count in the last column. Writes nothing.
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from speech_quality import CONFIG, SETTINGS, SPEAKERS, SYNTHETIC_SPEAKERS  # benchmarks/speech_quality.py


def network_file(cache, speaker, architecture, seed):
    return Path(cache, speaker, f"{architecture}_seed{seed}.npz")


def network_overrides(data, synthetic, speaker, architecture, seed, extra=()):
    """The `--set` overrides (on `CONFIG`) a kept network was trained with."""
    return [
        f"data.path={data}",
        *SETTINGS,
        f"data.extra_train=[{synthetic}]",
        "data.split=speaker",
        f"data.test_speaker={speaker}",
        f"data.architecture={architecture}",
        f"seed={seed}",
        *extra,
    ]


def train_one(args, synthetic, speaker, architecture, seed):
    """Train one network with the pipeline and keep its test-clip probabilities."""
    import mlflow

    from pipelines import workflows

    overrides = network_overrides(args.data, synthetic, speaker, architecture, seed, args.overrides)
    start = time.monotonic()
    run = workflows.train("speech_commands", CONFIG, overrides)
    minutes = (time.monotonic() - start) / 60
    from pipelines.speech_commands.task import TASK
    from pipelines.workflows import load_task_config

    config = load_task_config(TASK, CONFIG, overrides)
    test = TASK.load_source(config).splits["test"]
    model = mlflow.pyfunc.load_model(run.model_uri).unwrap_python_model().keras_model
    probabilities = model.predict(np.asarray(test.x, dtype="float32"), batch_size=256, verbose=0)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test.y))
    logged = run.evaluation.metrics["test_accuracy"]
    if abs(accuracy - logged) > 1e-6:
        raise RuntimeError(f"reloaded model scores {accuracy:.4f}, the run logged {logged:.4f}")
    path = network_file(args.cache, speaker, architecture, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        probabilities=probabilities,
        labels=np.asarray(test.y),
        files=np.asarray(test.files),
        epochs=run.epochs,
        minutes=minutes,
        model_uri=run.model_uri,
    )
    print(f"{speaker} {architecture} seed {seed}: {accuracy:.3f} ({run.epochs} epochs, {minutes:.1f} min)", flush=True)


def train_all(args):
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.cache, 'mlflow.db').resolve()}")
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    recorded = Path(args.cache, "overrides.json")
    if not recorded.exists():
        recorded.write_text(json.dumps(args.overrides))
    elif json.loads(recorded.read_text()) != args.overrides:
        raise SystemExit(
            f"error: the networks in {args.cache} were trained with --set {json.loads(recorded.read_text())}, "
            f"not {args.overrides}; use another --cache"
        )
    synthetic = Path(args.cache, "synthetic_digits")
    if not synthetic.is_dir():
        from pipelines.speech_commands.synthetic import write_synthetic_digits

        partial = synthetic.with_name(synthetic.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_synthetic_digits(partial, speakers=SYNTHETIC_SPEAKERS, seed=1)
        partial.rename(synthetic)
    for speaker in args.speakers:
        for seed in args.seeds:
            for architecture in args.architectures:
                if not network_file(args.cache, speaker, architecture, seed).exists():
                    train_one(args, synthetic, speaker, architecture, seed)


def load(cache, speaker, architecture, seed):
    """`(probabilities, labels)` of a kept network, or `None`."""
    path = network_file(cache, speaker, architecture, seed)
    if not path.exists():
        return None
    with np.load(path) as kept:
        return kept["probabilities"], kept["labels"]


def accuracy(probabilities, labels):
    return float(np.mean(np.mean(probabilities, axis=0).argmax(axis=1) == labels))


def _cell(value):
    return "-" if value is None else f"{value:.3f}"


def report(args):
    """Print the table; a speaker with some networks missing gets the others, and `-` in their place
    (its ensembles then average fewer networks, and it is left out of the mean row)."""
    networks = [(a, s) for a in args.architectures for s in args.seeds]
    columns = [f"{a} {s}" for a, s in networks]
    columns += [f"{a}: mean" for a in args.architectures]
    columns += [f"{a} ensemble" for a in args.architectures]
    if len(args.architectures) > 1:
        columns.append("all")
    print("| held-out speaker | " + " | ".join(columns) + " | networks |")
    print("|---|" + "---:|" * (len(columns) + 1))
    complete = []
    for speaker in args.speakers:
        kept = {key: value for key in networks if (value := load(args.cache, speaker, *key)) is not None}
        if not kept:
            print(f"| {speaker} | none yet |")
            continue
        labels = next(iter(kept.values()))[1]
        if any(not np.array_equal(value[1], labels) for value in kept.values()):
            raise SystemExit(f"error: the networks for {speaker} were scored on different clips")
        single = [accuracy([kept[key][0]], labels) if key in kept else None for key in networks]
        by_architecture = [[kept[(a, s)][0] for s in args.seeds if (a, s) in kept] for a in args.architectures]
        means = [float(np.mean([accuracy([p], labels) for p in group])) if group else None for group in by_architecture]
        ensembles = [accuracy(group, labels) if group else None for group in by_architecture]
        row = single + means + ensembles
        if len(args.architectures) > 1:
            row.append(accuracy([value[0] for value in kept.values()], labels))
        if len(kept) == len(networks):
            complete.append(row)
        print(f"| {speaker} | " + " | ".join(map(_cell, row)) + f" | {len(kept)} of {len(networks)} |")
    if complete:
        mean = np.mean(complete, axis=0)
        print(f"| **mean of {len(complete)} complete** | " + " | ".join(map(_cell, mean)) + " | |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "report"))
    parser.add_argument("--cache", required=True, help="folder of the kept networks (and their MLflow store)")
    parser.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder (with recordings/)")
    parser.add_argument("--speakers", default=",".join(SPEAKERS), help="held-out speakers, comma-separated")
    parser.add_argument("--architectures", default="crnn,attention_rnn", help="data.architecture values")
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every network")
    args = parser.parse_args()
    args.speakers = [s for s in args.speakers.split(",") if s]
    args.architectures = [a for a in args.architectures.split(",") if a]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.command == "train":
        if not Path(args.data, "recordings").is_dir():
            raise SystemExit(f"error: {args.data}/recordings not found (is --data the FSDD folder?)")
        train_all(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
