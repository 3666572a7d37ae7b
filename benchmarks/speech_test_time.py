"""Test-time augmentation of a trained speech model on a held-out FSDD speaker.

Usage:
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python benchmarks/speech_test_time.py \\
        --model models:/<model id> --speaker nicolas [--data ../shared/data/fsdd]

Scores the speaker's 500 clips (the held-out-speaker test split) with the model as served, then with
the mean of its class probabilities over copies of each clip that are shifted in time (``--shifts-ms``)
or played faster and slower about their centre (``--speeds``, tempo and pitch together, by the
resampling of the training augmentation). For an ensemble (``train.ensemble_size``) it also scores
each member alone. Prints a table; writes nothing.
"""

import argparse

import numpy as np


def augmented_copies(waveforms, shifts, speeds):
    """Copies of `(clips, samples)` waveforms: a list shifted by each of `shifts` samples, and a list
    resampled at each of `speeds`."""
    from pipelines.speech_commands.layers import resample

    samples = waveforms.shape[1]
    margin = int(samples * max(abs(1 - s) for s in (1.0, *speeds)) / 2) + max((abs(s) for s in shifts), default=0) + 2
    batch = len(waveforms)

    def copy(rate, shift):
        rates = np.full((batch, 1), rate, dtype="float32")
        offsets = np.full((batch, 1), shift, dtype="float32")
        return np.asarray(resample(waveforms, samples, rates, offsets, margin))

    return [copy(1.0, s) for s in shifts], [copy(r, 0) for r in speeds]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="models:/ URI of a model logged by the speech pipeline")
    parser.add_argument("--speaker", required=True, help="the held-out speaker the model was trained without")
    parser.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder (with recordings/)")
    parser.add_argument("--shifts-ms", default="-100,-50,50,100", help="comma-separated time shifts, ms")
    parser.add_argument("--speeds", default="0.9,0.95,1.05,1.1", help="comma-separated speed factors")
    args = parser.parse_args()

    import mlflow

    from pipelines.speech_commands.task import TASK
    from pipelines.training import ensemble_members
    from pipelines.workflows import load_task_config

    overrides = [
        f"data.path={args.data}",
        "data.layout=fsdd",
        "data.split=speaker",
        f"data.test_speaker={args.speaker}",
    ]
    config = load_task_config(TASK, None, overrides)
    test = TASK.load_source(config).splits["test"]
    waveforms = np.asarray(test.x, dtype="float32")
    rate = config.data.sample_rate
    shifts = [int(round(float(ms) * rate / 1000)) for ms in args.shifts_ms.split(",") if ms.strip()]
    speeds = [float(s) for s in args.speeds.split(",") if s.strip()]

    model = mlflow.pyfunc.load_model(args.model).unwrap_python_model().keras_model
    shifted, resampled = augmented_copies(waveforms, shifts, speeds)

    def accuracy(probabilities):
        return float((np.mean(probabilities, axis=0).argmax(axis=1) == test.y).mean())

    print(f"Held-out speaker {args.speaker}, {len(waveforms)} clips; accuracy of the mean class probabilities:\n")
    print("| network | clips as they are | + shifted copies | + faster and slower copies | + both |")
    print("|---|---:|---:|---:|---:|")
    networks = {"as served": model}
    members = ensemble_members(model)
    if len(members) > 1:
        networks |= {f"member {i + 1}": member for i, member in enumerate(members)}
    for name, network in networks.items():
        plain = network.predict(waveforms, batch_size=256, verbose=0)
        by_shift = [network.predict(x, batch_size=256, verbose=0) for x in shifted]
        by_speed = [network.predict(x, batch_size=256, verbose=0) for x in resampled]
        cells = [accuracy([plain, *extra]) for extra in ([], by_shift, by_speed, by_shift + by_speed)]
        print(f"| {name} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
