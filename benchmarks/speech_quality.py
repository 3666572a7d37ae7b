"""Quality run: a speech recipe trained on FSDD, scored on FSDD and on real Speech Commands digits.

Usage:
    python benchmarks/speech_quality.py --data ../shared/data/fsdd
    python benchmarks/speech_quality.py --data ../shared/data/fsdd --config conf/experiments/speech_attention_rnn.yaml
    python benchmarks/speech_quality.py --data ../shared/data/fsdd --speakers george,theo --no-official

Each run is one `workflows.train` of a recipe (by default the shipped `conf/speech_commands.yaml`,
as `lstm-pipelines train speech_commands --set data.path=<fsdd>` runs it), logged to MLflow. The
official split (index 0-4 of every speaker test) model then labels the ten digit words (`zero` to
`nine`) of a Speech Commands tree (`--digits`, other speakers and microphones than FSDD's; through
`workflows.predict`, as `lstm-pipelines predict` does), and is exported to TFLite, float and int8
dynamic range, each flatbuffer scored on the whole test split. `--speakers` adds runs with one FSDD
speaker held out. With `--synthetic-speakers N`, every run also trains on SYNTHETIC eSpeak NG digits
(`data.extra_train`, written once per invocation at FSDD's 8 kHz; needs the speech extra). The
section goes into `docs/results.md` between markers this script owns.
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
CONFIG = "conf/speech_commands.yaml"
SETTINGS = ["data.layout=fsdd", "train.verbose=0"]
DIGITS = "../shared/data/speech_commands_v002_test_dev"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


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
    dense = ", ".join(str(units) for units in m.dense_units)
    dropout = f" with dropout {m.head_dropout:g}" if m.head_dropout else ""
    recurrent = f"{m.num_layers} bidirectional LSTM(s) of {m.units} units, attention, dense {dense}{dropout}"
    if m.architecture == "crnn":
        norm = "batch norm" if m.conv_norm == "batch" else "layer norm"
        filters = " and ".join(str(f) for f in m.conv_filters)
        return (
            f"CRNN (`model.architecture: crnn`): {front}, 3 x 3 convolution blocks of {filters} filters ({norm}, "
            f"each max-pooling 2 along frequency), {recurrent}"
        )
    return f"de Andrade et al. 2018 attention RNN: {front}, two (5, 1) convolutions, {recurrent}"


def augment_text(config) -> str:
    """The training-only augmentation of a config, in words."""
    a = config.augment
    speed = f"speed change up to {a.speed_change:g}" if a.speed_change else "no speed change"
    masks = (
        f"SpecAugment {a.freq_masks} frequency mask(s) of up to {a.freq_mask_width} bins and {a.time_masks} time "
        f"mask(s) of up to {a.time_mask_width} frames"
        if a.freq_masks or a.time_masks
        else "no SpecAugment"
    )
    return (
        f"{speed}, time shift up to {a.time_shift_seconds:g} s, background noise with probability "
        f"{a.noise_probability:g} at a gain up to {a.noise_max_gain:g}, {masks}"
    )


def digit_accuracy(model_uri: str, tree: str | Path) -> tuple[float, int]:
    """Accuracy of an FSDD-trained model on the digit words of a Speech Commands tree.

    Args:
        model_uri: The logged model (classes `0` to `9`).
        tree: A Speech Commands tree with `zero` ... `nine` folders.

    Returns:
        `(accuracy, clips)`, through `workflows.predict` on a folder of links to those folders' clips.
    """
    from pipelines import workflows

    with tempfile.TemporaryDirectory() as folder:
        for digit, word in enumerate(DIGIT_WORDS):  # links to the files: a folder search skips linked folders
            Path(folder, str(digit)).mkdir()
            for clip in sorted(Path(tree, word).glob("*.wav")):
                Path(folder, str(digit), clip.name).symlink_to(clip.resolve())
        predictions = workflows.predict(model_uri, folder, Path(folder, "predictions.csv"))
    expected = [Path(file).parent.name for file in predictions["file"]]
    return float(np.mean(predictions["label"].astype(str).to_numpy() == np.asarray(expected))), len(expected)


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
    digits: tuple[float, int] | None = None,
    digits_tree: str = DIGITS,
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
        digits: `digit_accuracy`'s result for the official-split model, or `None`. Default: `None`.
        digits_tree: The Speech Commands tree it was scored on. Default: `DIGITS`.

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
            f"- Official split (index 0-4 of every speaker is test): {value:.4f}; goal >= 0.997: "
            f"{'met' if value >= 0.997 else 'not met'}."
        )
    if digits is not None:
        value, clips = digits
        lines.append(
            f"- The official-split model on the {clips} digit words (`zero` to `nine`) of `{digits_tree}` (real "
            f"Speech Commands clips of other speakers and microphones, 16 kHz): {value:.4f}; goal >= 0.85: "
            f"{'met' if value >= 0.85 else 'not met'}."
        )
    if held_out:
        accuracies = [row["accuracy"] for row in held_out]
        lines.append(
            f"- Held-out speaker (train on the other 5, their index 0-4 for validation): mean "
            f"{float(np.mean(accuracies)):.4f} over {len(held_out)} speaker(s), lowest {min(accuracies):.4f}."
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
        f"restored), at most {t.epochs} epochs. {seeds_line(config)}",
        f"- Augmentation: {augment_text(config)}.",
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
    parser.add_argument("--speakers", default="", help="held-out speakers, comma-separated (default: none)")
    parser.add_argument("--digits", default=DIGITS, help="a Speech Commands tree whose digit words the model labels")
    parser.add_argument("--no-official", action="store_true", help="skip the official split (and the export)")
    parser.add_argument("--output", default="docs/results.md")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--synthetic-speakers", type=int, default=0, help="eSpeak NG digit voices added (default 0: none)"
    )
    args = parser.parse_args()
    if not Path(args.data, "recordings").is_dir():
        sys.exit(f"error: {args.data}/recordings not found (is --data the FSDD folder?)")
    missing = [word for word in DIGIT_WORDS if args.digits and not Path(args.digits, word).is_dir()]
    if missing:
        sys.exit(f"error: --digits {args.digits} has no {missing[0]}/ folder (is it a Speech Commands tree?)")
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
    rows, exports, digits = [], [], None
    if not args.no_official:
        run, seconds = train(args.config, args.data, official)
        rows.append({**row_of("official", run, seconds), "clips": 300})
        print(rows[-1], flush=True)
        if args.digits:
            digits = digit_accuracy(run.model_uri, args.digits)
            print({"speech_commands_digits": digits}, flush=True)
        exports = tflite_scores(run, config)
        print(exports, flush=True)
    for speaker in filter(None, args.speakers.split(",")):
        run, seconds = train(
            args.config, args.data, ["data.split=speaker", f"data.test_speaker={speaker}", *args.overrides]
        )
        rows.append({**row_of(f"held-out speaker: {speaker}", run, seconds), "clips": 500})
        print(rows[-1], flush=True)
    text = render(
        rows, exports, command, time.monotonic() - start, args.synthetic_speakers, args.config, config, digits,
        args.digits,
    )  # fmt: skip
    write_section(args.output, text, START, END)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
