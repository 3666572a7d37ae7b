"""Quality run: the speech pipeline on the Free Spoken Digit Dataset, official and held-out-speaker splits.

Usage:
    python benchmarks/speech_quality.py --data ../shared/data/fsdd
    python benchmarks/speech_quality.py --data ../shared/data/fsdd --speakers george,theo --no-official

Each run is one `workflows.train` of the attention RNN (`conf/speech_commands/attention.yaml`) with
light augmentation (FSDD is clean studio audio, zero-padded to 1 s) and a random equalizer (each
FSDD speaker recorded through another microphone), logged to MLflow. Unless `--synthetic-speakers 0`,
every run also trains on SYNTHETIC eSpeak NG digits (`data.extra_train`, written once per invocation
by `synthetic.write_synthetic_digits` at FSDD's 8 kHz; needs the speech extra); validation and test
clips are always FSDD's own. The official
split (index 0-4 test) model is then exported to TFLite, float and int8 dynamic range, and each
flatbuffer is scored on the whole test split. The section goes into `docs/results.md` between
markers this script owns.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import cpu_model, write_section  # benchmarks/report.py

START, END = "<!-- speech_quality:start -->", "<!-- speech_quality:end -->"
CONFIG = "conf/speech_commands/attention.yaml"
SETTINGS = [
    "data.layout=fsdd",
    "data.noise_probability=0.5",
    "data.noise_max_gain=0.02",
    "data.speed_change=0.15",
    "data.freq_masks=1",
    "data.freq_mask_width=5",
    "data.time_masks=1",
    "data.time_mask_width=5",
    "data.equalizer_db=6",
    "train.epochs=40",
    "train.verbose=0",
]
SYNTHETIC_SPEAKERS = 200
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def train(data, overrides):
    """One tracked training run; returns `(RunResult, seconds)`."""
    from pipelines import workflows

    start = time.monotonic()
    run = workflows.train("speech_commands", CONFIG, [f"data.path={data}", *SETTINGS, *overrides])
    return run, time.monotonic() - start


def tflite_scores(run, data, folder):
    """Size, latency, agreement and test accuracy of the float and int8 TFLite exports."""
    import tensorflow as tf

    from pipelines import workflows
    from pipelines.config import load_config
    from pipelines.speech_commands.task import TASK

    config = load_config(TASK.config_class, CONFIG, [f"data.path={data}", *SETTINGS])
    test = TASK.load_source(config).splits["test"]
    rows = []
    for int8 in (False, True):
        result = workflows.export(run.model_uri, "tflite", folder, int8=int8)
        interpreter = tf.lite.Interpreter(model_path=str(result.path))
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        predicted = []
        for clip in test.x:
            interpreter.set_tensor(inp, clip[None])
            interpreter.invoke()
            predicted.append(int(np.argmax(interpreter.get_tensor(out)[0])))
        rows.append(
            {
                "format": "int8 dynamic range" if int8 else "float32",
                "size_kb": result.size_bytes / 1024,
                "latency_ms": result.latency_ms_per_example,
                "max_abs_diff": result.max_abs_diff,
                "accuracy": float(np.mean(np.asarray(predicted) == test.y)),
                "select_tf_ops": b"Flex" in result.path.read_bytes(),
            }
        )
    return rows


def last_override(overrides, key, default):
    """The value of the last `key=value` in `overrides`, or `default`."""
    values = [item.split("=", 1)[1] for item in overrides if item.startswith(f"{key}=")]
    return values[-1] if values else default


def front_end_text(overrides):
    """The convolutions in front of the recurrent layers, from `data.architecture` (the last override wins)."""
    if last_override(overrides, "data.architecture", "attention_rnn") == "crnn":
        return (
            "two 3 x 3 convolution blocks of 16 and 32 filters, each max-pooling 2 along frequency "
            "(`data.architecture=crnn`)"
        )
    return "two (5, 1) convolutions"


def mel_band_text(overrides):
    """The log-mel band, from `data.mel_min_hz` / `data.mel_max_hz` (the last override wins)."""
    low = float(last_override(overrides, "data.mel_min_hz", "20"))
    high = last_override(overrides, "data.mel_max_hz", "null")
    if high in ("null", "None"):  # the config's default: half the pipeline's sample rate
        high = float(last_override(overrides, "data.sample_rate", "16000")) / 2
    return f"{low:g} Hz-{float(high) / 1000:g} kHz"


def seeds_line(overrides):
    """How many networks each run trains: one, or `train.ensemble_size` averaged (the last override wins)."""
    size = int(last_override(overrides, "train.ensemble_size", "1"))
    if size == 1:
        return "One seed (42) per run."
    return (
        f"Each run is an ensemble of {size} networks (`train.ensemble_size={size}`: seeds 42 to {41 + size}, "
        "trained one after another) whose class probabilities are averaged; the epochs column sums theirs."
    )


def render(rows, exports, command, seconds, synthetic_speakers, overrides=()):
    import keras
    import tensorflow as tf

    lines = [
        START,
        "## Speech commands: Free Spoken Digit Dataset (3,000 clips, 6 speakers, 8 kHz resampled to 16 kHz)",
        "",
        "Written by `benchmarks/speech_quality.py`; do not edit by hand between the markers.",
        "",
        "| split | test clips | test accuracy | test macro-F1 | majority class | epochs | minutes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['split']} | {row['clips']} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | "
            f"{row['majority']:.4f} | {row['epochs']} | {row['seconds'] / 60:.1f} |"
        )
    official = [row for row in rows if row["split"].startswith("official")]
    held_out = [row for row in rows if row["split"].startswith("held-out")]
    lines.append("")
    if official:
        value = official[0]["accuracy"]
        lines.append(
            f"- Official split (index 0-4 of every speaker is test): {value:.4f}; goal >= 0.99: "
            f"{'met' if value >= 0.99 else 'not met'}."
        )
    if held_out:
        accuracies = [row["accuracy"] for row in held_out]
        mean = float(np.mean(accuracies))
        lines.append(
            f"- Held-out speaker (train on the other 5, their index 0-4 for validation): mean {mean:.4f} over "
            f"{len(held_out)} speaker(s), lowest {min(accuracies):.4f}; goal >= 0.95 (mean): "
            f"{'met' if mean >= 0.95 else 'not met'}."
        )
    if exports:
        lines += [
            "",
            "TFLite exports of the official-split model (batch 1; latency is the interpreter's mean per clip "
            "over the 8 sample clips, 1 s of audio each; accuracy over the whole test split):",
            "",
            "| format | size | latency per clip | max abs diff vs Keras | test accuracy | Select TF ops |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in exports:
            lines.append(
                f"| {row['format']} | {row['size_kb']:.0f} KiB | {row['latency_ms']:.2f} ms | "
                f"{row['max_abs_diff']:.2e} | {row['accuracy']:.4f} | {'yes' if row['select_tf_ops'] else 'no'} |"
            )
    lines += [
        "",
        "- Model: `conf/speech_commands/attention.yaml` (de Andrade et al. 2018 attention RNN: log-mel 40 bins "
        f"({mel_band_text(overrides)}), 25 ms / 10 ms, {front_end_text(overrides)}, two bidirectional LSTMs of 64 "
        "units, attention, dense 64, 32), "
        f"with `{' '.join(SETTINGS)}`; Adam 1e-3, batch 64, early stopping on val_loss (patience 6, best "
        f"weights restored). {seeds_line(overrides)}",
        (
            f"- Training data: the split's FSDD clips plus {synthetic_speakers * 10:,} SYNTHETIC clips "
            f"({synthetic_speakers} eSpeak NG voices x the digits zero to nine, written at 8 kHz by "
            "`write_synthetic_digits`, seed 1; `data.extra_train`). Validation and test clips are FSDD's only."
            if synthetic_speakers
            else "- Training data: the split's FSDD clips only."
        ),
        "- FSDD clips are 0.14-2.3 s: shorter ones are zero-padded on both sides to 1 s, longer ones cropped to "
        "their loudest second. Validation for the official split is index 5-9 of every speaker.",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, CPU only; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}.",
        f"- Date: {datetime.date.today().isoformat()}. Command: `{command}` ({seconds / 60:.0f} minutes in all).",
        END,
    ]
    return "\n".join(lines)


def row_of(split, run, seconds):
    metrics = run.evaluation.metrics
    return {
        "split": split,
        "accuracy": metrics["test_accuracy"],
        "macro_f1": metrics["test_macro_f1"],
        "majority": metrics["test_majority_accuracy"],
        "epochs": run.epochs,
        "seconds": seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/fsdd")
    parser.add_argument("--speakers", default=",".join(SPEAKERS), help="held-out speakers, comma-separated")
    parser.add_argument("--no-official", action="store_true", help="skip the official split (and the export)")
    parser.add_argument("--output", default="docs/results.md")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--synthetic-speakers", type=int, default=SYNTHETIC_SPEAKERS, help="eSpeak NG digit voices added (0: none)"
    )
    args = parser.parse_args()
    if not Path(args.data, "recordings").is_dir():
        sys.exit(f"error: {args.data}/recordings not found (is --data the FSDD folder?)")
    with tempfile.TemporaryDirectory() as synthetic_root:
        if args.synthetic_speakers > 0:
            from pipelines.speech_commands.synthetic import write_synthetic_digits

            write_synthetic_digits(Path(synthetic_root, "digits"), speakers=args.synthetic_speakers, seed=1)
            args.overrides = [f"data.extra_train=[{Path(synthetic_root, 'digits')}]", *args.overrides]
        run_all(args)


def run_all(args):
    """Train, score and export every requested split; writes the section."""
    command = "python benchmarks/speech_quality.py " + " ".join(sys.argv[1:])
    start = time.monotonic()
    rows, exports = [], []
    if not args.no_official:
        run, seconds = train(args.data, args.overrides)
        rows.append({**row_of("official", run, seconds), "clips": 300})
        print(rows[-1], flush=True)
        with tempfile.TemporaryDirectory() as folder:
            exports = tflite_scores(run, args.data, folder)
        print(exports, flush=True)
    for speaker in filter(None, args.speakers.split(",")):
        run, seconds = train(args.data, ["data.split=speaker", f"data.test_speaker={speaker}", *args.overrides])
        rows.append({**row_of(f"held-out speaker: {speaker}", run, seconds), "clips": 500})
        print(rows[-1], flush=True)
    text = render(rows, exports, command, time.monotonic() - start, args.synthetic_speakers, args.overrides)
    write_section(args.output, text, START, END)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
