"""Quality run: the speech pipeline on the Free Spoken Digit Dataset, official and held-out-speaker splits.

Usage:
    python benchmarks/speech_quality.py --data ../shared/data/fsdd
    python benchmarks/speech_quality.py --data ../shared/data/fsdd --speakers george,theo --no-official
    python benchmarks/speech_quality.py --data ../shared/data/fsdd --config conf/experiments/fsdd_held_out_speaker.yaml

Each run is one `workflows.train` of a recipe in `conf/experiments/` (by default the attention RNN,
`speech_attention_rnn.yaml`) with light augmentation (FSDD is clean studio audio, zero-padded to
1 s), logged to MLflow. Unless `--synthetic-speakers 0`, every run also trains on SYNTHETIC eSpeak
NG digits (`data.extra_train`, written once per invocation by `synthetic.write_synthetic_digits` at
FSDD's 8 kHz; needs the speech extra); validation and test clips are always FSDD's own. The
official split (index 0-4 test) model is then exported to TFLite, float and int8 dynamic range, and
each flatbuffer is scored on the whole test split. The section goes into `docs/results.md` between
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
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

START, END = "<!-- speech_quality:start -->", "<!-- speech_quality:end -->"
CONFIG = "conf/experiments/speech_attention_rnn.yaml"
SETTINGS = [
    "data.layout=fsdd",
    "augment.noise_probability=0.5",
    "augment.noise_max_gain=0.02",
    "augment.speed_change=0.15",
    "augment.freq_masks=1",
    "augment.freq_mask_width=5",
    "augment.time_masks=1",
    "augment.time_mask_width=5",
    "train.epochs=40",
    "train.verbose=0",
]
SYNTHETIC_SPEAKERS = 200
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def train(config_path: str, data: str, overrides: list[str]) -> tuple:
    """One tracked training run.

    Args:
        config_path: The recipe.
        data: The FSDD folder.
        overrides: `KEY=VALUE` settings after `SETTINGS`.

    Returns:
        `(RunResult, seconds)`.
    """
    from pipelines import workflows

    start = time.monotonic()
    run = workflows.train("speech_commands", config_path, [f"data.path={data}", *SETTINGS, *overrides])
    return run, time.monotonic() - start


def load(config_path: str, data: str, overrides: list[str]):
    """The speech config the runs train with (official split)."""
    from pipelines.config import load_config
    from pipelines.speech_commands.task import TASK

    return load_config(TASK.config_class, config_path, [f"data.path={data}", *SETTINGS, *overrides])


def tflite_scores(run, config) -> list[dict]:
    """Size, latency, agreement and test accuracy of the float and int8 TFLite exports.

    Args:
        run: The official split's `RunResult`.
        config: The config it trained with.

    Returns:
        One dict per format.
    """
    import tensorflow as tf

    from pipelines import workflows
    from pipelines.speech_commands.task import TASK

    test = TASK.load_source(config).splits["test"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
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


def model_text(config) -> str:
    """The network in words: architecture, front end, recurrent layers, from the loaded config."""
    m, f = config.model, config.features
    top_hz = f.mel_max_hz or config.data.sample_rate / 2
    front = f"log-mel {f.num_mel_bins} bins ({f.mel_min_hz:g} Hz-{top_hz / 1000:g} kHz), 25 ms / 10 ms"
    if m.architecture == "zoo":
        return f"the zoo's `{m.variant}`, {m.units} units x {m.num_layers}, over {front}"
    if m.architecture == "crnn":
        convolutions = (
            "two 3 x 3 convolution blocks of 16 and 32 filters, each max-pooling 2 along frequency "
            "(`model.architecture: crnn`)"
        )
    else:
        convolutions = "two (5, 1) convolutions"
    return (
        f"de Andrade et al. 2018 attention RNN: {front}, {convolutions}, two bidirectional LSTMs of {m.units} "
        "units, attention, dense 64, 32"
    )


def seeds_line(config) -> str:
    """How many networks each run trains: one, or `train.ensemble_size` averaged."""
    size, seed = config.train.ensemble_size, config.seed
    if size == 1:
        return f"One seed ({seed}) per run."
    return (
        f"Each run is an ensemble of {size} networks (`train.ensemble_size={size}`: seeds {seed} to "
        f"{seed + size - 1}, trained one after another) whose class probabilities are averaged; the epochs column "
        "sums theirs."
    )


def split_table(rows: list[dict]) -> str:
    """Per split: test clips, accuracy, macro-F1, the majority class's accuracy, epochs and minutes."""
    return markdown_table(
        [
            {
                "split": row["split"],
                "test clips": str(row["clips"]),
                "test accuracy": f"{row['accuracy']:.4f}",
                "test macro-F1": f"{row['macro_f1']:.4f}",
                "majority class": f"{row['majority']:.4f}",
                "epochs": str(row["epochs"]),
                "minutes": f"{row['seconds'] / 60:.1f}",
            }
            for row in rows
        ],
        "lrrrrrr",
    )


def export_table(exports: list[dict]) -> str:
    """Per TFLite format: size, latency, agreement with Keras, accuracy and whether it needs Select TF ops."""
    return markdown_table(
        [
            {
                "format": row["format"],
                "size": f"{row['size_kb']:.0f} KiB",
                "latency per clip": f"{row['latency_ms']:.2f} ms",
                "max abs diff vs Keras": f"{row['max_abs_diff']:.2e}",
                "test accuracy": f"{row['accuracy']:.4f}",
                "Select TF ops": "yes" if row["select_tf_ops"] else "no",
            }
            for row in exports
        ],
        "lrrrrl",
    )


def render(
    rows: list[dict],
    exports: list[dict],
    command: str,
    seconds: float,
    synthetic_speakers: int,
    config_path: str,
    config,
) -> str:
    """The Markdown section, markers included.

    Args:
        rows: One dict per split run (`row_of`).
        exports: What `tflite_scores` returns (empty without the official split).
        command: The command line, as written into the section.
        seconds: Wall time of the whole run.
        synthetic_speakers: eSpeak NG voices added to training.
        config_path: The recipe.
        config: The config the runs trained with.

    Returns:
        The section.
    """
    import keras
    import tensorflow as tf

    lines = [
        START,
        "### Free Spoken Digit Dataset (3,000 clips, 6 speakers, 8 kHz resampled to 16 kHz)",
        "",
        "Written by `benchmarks/speech_quality.py`; do not edit by hand between the markers.",
        "",
        split_table(rows),
    ]
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
            export_table(exports),
        ]
    t = config.train
    lines += [
        "",
        f"- Model: `{config_path}` ({model_text(config)}), with `{' '.join(SETTINGS)}`; Adam {t.learning_rate:g}, "
        f"batch {t.batch_size}, early stopping on val_loss (patience {t.early_stopping_patience}, best weights "
        f"restored). {seeds_line(config)}",
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


def row_of(split: str, run, seconds: float) -> dict:
    """One table row from a run's test metrics."""
    metrics = run.evaluation.metrics
    return {
        "split": split,
        "accuracy": metrics["test_accuracy"],
        "macro_f1": metrics["test_macro_f1"],
        "majority": metrics["test_majority_accuracy"],
        "epochs": run.epochs,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/fsdd")
    parser.add_argument("--config", default=CONFIG, help=f"recipe (default: {CONFIG})")
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


def run_all(args: argparse.Namespace) -> None:
    """Train, score and export every requested split; writes the section."""
    command = "python benchmarks/speech_quality.py " + " ".join(sys.argv[1:])
    start = time.monotonic()
    official = ["data.split=official", *args.overrides]
    config = load(args.config, args.data, official)  # fails on a bad key before any training
    rows, exports = [], []
    if not args.no_official:
        run, seconds = train(args.config, args.data, official)
        rows.append({**row_of("official", run, seconds), "clips": 300})
        print(rows[-1], flush=True)
        exports = tflite_scores(run, config)
        print(exports, flush=True)
    for speaker in filter(None, args.speakers.split(",")):
        run, seconds = train(
            args.config, args.data, ["data.split=speaker", f"data.test_speaker={speaker}", *args.overrides]
        )
        rows.append({**row_of(f"held-out speaker: {speaker}", run, seconds), "clips": 500})
        print(rows[-1], flush=True)
    text = render(rows, exports, command, time.monotonic() - start, args.synthetic_speakers, args.config, config)
    write_section(args.output, text, START, END)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
