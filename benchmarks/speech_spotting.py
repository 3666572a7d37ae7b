"""Keyword spotting on long recordings: recall, false accepts per hour and latency per hop of each streamable variant.

Usage:
    nice -n 10 python benchmarks/speech_spotting.py --data ../shared/data/speech_commands_v002_test_dev
    nice -n 10 python benchmarks/speech_spotting.py --data ... --variants lstm --units 128 --no-crnn

Each variant (`model.architecture: zoo`, `--units`, 64 by default) is trained with `workflows.train`
on the tree's training speakers (its split lists hold the validation and test speakers out), with the
shipped config's epochs and early stopping unless `--epochs` is given; the shipped CRNN,
which cannot stream state by state, is the extra sliding-window row. Long recordings are built
(each from its own seed, so the command recordings do not depend on the lengths asked for the
command-free ones) from the held-out speakers only: each command clip placed once at a known time between
stretches of `_background_noise_` (random cuts and gains) and non-command words; and command-free
audio of the same noise and non-command words. The validation speakers' recordings choose the
threshold and smoothing (the highest recall at <= 2 false accepts per hour there); the test
speakers' recordings are scored once with them. A detection of the placed word whose decision
time (`end`) falls from 0.1 s after the clip's start to 1 s after its end is a hit; any other
detection is a false accept. Latency: the Keras streaming step (`tf.function`) and its TFLite
export, one thread, per 20 ms hop. The section goes into `docs/results.md` between markers this
script owns.
"""

import argparse
import datetime
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from report import cpu_model, markdown_table, write_section  # noqa: E402  (benchmarks/report.py)

START, END = "<!-- speech_spotting:start -->", "<!-- speech_spotting:end -->"
CONFIG = "conf/speech_commands.yaml"
RATE = 16000
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
SMOOTHING = (0.0, 0.1, 0.2)
GOAL_FA_PER_HOUR = 2.0


def held_out(root: Path) -> dict[str, dict[str, list[Path]]]:
    """`{"val" | "test": {"commands": [...], "others": [...]}}`: the clips of the split lists' speakers."""
    out = {}
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        listed = [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
        out[split] = {
            "commands": [root / item for item in listed if item.split("/")[0] in COMMANDS],
            "others": [root / item for item in listed if item.split("/")[0] not in COMMANDS],
        }
    return out


def _clip(path: Path) -> np.ndarray:
    from pipelines.speech_commands.spotting import read_recording

    return read_recording(path, RATE)


def build_recording(
    noise: np.ndarray, commands: list[Path], others: list[Path], seconds: float, rng: np.random.Generator
) -> tuple[np.ndarray, pd.DataFrame]:
    """Noise with a clip every 2.5 to 4.5 s: each command once (shuffled), then non-command words to `seconds`.

    Returns:
        `(waveform, placements)`; placements `word, start, end` (seconds) of the commands only.
    """
    events = [(p, True) for p in rng.permutation(commands)] if commands else []
    length = int(seconds * RATE) if not commands else None
    t, placed, clips = 1.0, [], []
    while True:
        t += rng.uniform(2.5, 4.5)
        if events:
            path, is_command = events.pop()
            if rng.random() < 0.3 and others:  # a non-command word between some commands
                clips.append((t, _clip(others[rng.integers(len(others))]) * rng.uniform(0.5, 1.0)))
                t += rng.uniform(2.5, 4.5)
        elif commands or t + 1.0 > seconds:
            break
        else:
            path, is_command = others[rng.integers(len(others))], False
        clip = _clip(path)
        if is_command:
            placed.append((path.parent.name, t, t + len(clip) / RATE))
        clips.append((t, clip * (1.0 if is_command else rng.uniform(0.5, 1.0))))
    total = length or int((t + 2.0) * RATE)
    starts = rng.integers(0, len(noise) - RATE, size=total // RATE + 1)
    bed = np.concatenate([noise[s : s + RATE] * rng.uniform(0.3, 1.5) for s in starts])[:total]
    for start, clip in clips:
        first = int(start * RATE)
        bed[first : first + len(clip)] += clip[: max(0, total - first)]
    return np.clip(bed, -1.0, 1.0).astype("float32"), pd.DataFrame(placed, columns=["word", "start", "end"])


def score(detections: pd.DataFrame, placements: pd.DataFrame) -> tuple[int, int]:
    """`(hits, false accepts)`: each placement matched at most once by a detection of its word."""
    hits, used = 0, set()
    for _, row in placements.iterrows():
        match = detections[
            (detections["word"] == row["word"])
            & (detections["end"] >= row["start"] + 0.1)
            & (detections["end"] <= row["end"] + 1.0)
        ]
        match = [i for i in match.index if i not in used]
        if match:
            used.add(match[0])
            hits += 1
    return hits, len(detections) - len(used)


def tracks(spotter, recordings: dict) -> dict:
    """Per-hop probabilities of each recording, and the seconds it took."""
    out = {}
    for name, (waveform, _) in recordings.items():
        start = time.perf_counter()
        out[name] = spotter.probabilities(waveform)
        print(
            f"  {name}: {len(waveform) / RATE / 60:.1f} min of audio in {time.perf_counter() - start:.0f} s", flush=True
        )
    return out


def evaluate(probabilities: dict, recordings: dict, class_names, settings, clip_seconds) -> dict:
    """Recall on the command recording and false accepts per hour on the command-free one."""
    from pipelines.speech_commands.spotting import detect

    hits, placed, fa_commands = 0, 0, 0
    found = detect(probabilities["commands"], class_names, settings, clip_seconds)
    hits, fa_commands = score(found, recordings["commands"][1])
    placed = len(recordings["commands"][1])
    free = detect(probabilities["free"], class_names, settings, clip_seconds)
    hours = len(recordings["free"][0]) / RATE / 3600
    return {"recall": hits / placed, "fa_per_hour": len(free) / hours, "fa_in_command_audio": fa_commands}


def choose(probabilities, recordings, class_names, clip_seconds):
    """The threshold and smoothing with the highest validation recall at <= 2 false accepts per hour."""
    from pipelines.speech_commands.task import SpeechSpottingConfig

    best = None
    for threshold in THRESHOLDS:
        for smoothing in SMOOTHING:
            settings = SpeechSpottingConfig(threshold=threshold, smoothing_seconds=smoothing)
            result = evaluate(probabilities, recordings, class_names, settings, clip_seconds)
            key = (result["fa_per_hour"] <= GOAL_FA_PER_HOUR, result["recall"], -result["fa_per_hour"])
            if best is None or key > best[0]:
                best = (key, settings, result)
    return best[1], best[2]


def latency(served_keras, class_names, hops: int = 500) -> dict:
    """Milliseconds per 20 ms hop, one thread: the Keras streaming step and its TFLite export (or the whole model)."""
    import tensorflow as tf

    from pipelines.speech_commands.streaming_model import (
        build_streaming_model,
        can_stream,
        compiled_step,
        export_streaming,
        tflite_runner,
    )

    rng = np.random.default_rng(0)
    if not can_stream(served_keras):
        window = tf.constant(0.1 * rng.standard_normal((1, int(served_keras.input_shape[-1]))).astype("float32"))
        call = tf.function(lambda x: served_keras(x, training=False))
        call(window)
        start = time.perf_counter()
        for _ in range(hops // 5):
            call(window)
        return {"keras_ms": 1000 * (time.perf_counter() - start) / (hops // 5), "tflite_ms": None, "export_diff": None}
    streaming = build_streaming_model(served_keras, 0.02)
    lay = streaming.layout
    audio = (0.1 * rng.standard_normal(hops * lay.hop_samples)).astype("float32")
    step = compiled_step(streaming)
    state = tf.zeros((1, lay.state_size))
    chunks = [tf.constant(c[None]) for c in audio.reshape(hops, lay.hop_samples)]
    step(chunks[0], state)
    start = time.perf_counter()
    for chunk in chunks:
        _, state = step(chunk, state)
    keras_ms = 1000 * (time.perf_counter() - start) / hops
    with tempfile.TemporaryDirectory() as folder:
        exported = export_streaming(streaming, folder, audio[:RATE], class_names)
        run = tflite_runner(exported.tflite, num_threads=1)
        state = np.zeros((1, lay.state_size), "float32")
        arrays = [c[None] for c in audio.reshape(hops, lay.hop_samples)]
        run(arrays[0], state)
        start = time.perf_counter()
        for chunk in arrays:
            _, state = run(chunk, state)
        tflite_ms = 1000 * (time.perf_counter() - start) / hops
    return {"keras_ms": keras_ms, "tflite_ms": tflite_ms, "export_diff": max(exported.max_abs_diff.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/speech_commands_v002_test_dev")
    parser.add_argument("--variants", default="lstm,gru,peephole_lstm,stacked_lstm")
    parser.add_argument("--epochs", type=int, default=None, help="default: the shipped config's (early stopping on)")
    parser.add_argument("--units", type=int, default=64, help="model.units of the streamable variants")
    parser.add_argument("--free-minutes", type=float, default=60.0, help="command-free test audio")
    parser.add_argument("--val-free-minutes", type=float, default=20.0)
    parser.add_argument("--no-crnn", action="store_true", help="skip the sliding-window CRNN row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="docs/results.md")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # latency on one thread; training too (2 shared cores)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tracking = tempfile.mkdtemp(prefix="spotting-mlruns-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking}/mlflow.db"
    import mlflow

    from pipelines import workflows
    from pipelines.speech_commands.data import read_wav
    from pipelines.speech_commands.spotting import Spotter
    from pipelines.speech_commands.streaming_model import export_streaming, stream_probabilities, tflite_runner
    from pipelines.speech_commands.task import SpeechSpottingConfig

    root = Path(args.data).resolve()
    noise = np.concatenate([read_wav(p)[1] for p in sorted((root / "_background_noise_").glob("*.wav"))])
    speakers = held_out(root)
    recordings = {}
    for index, (split, free_minutes) in enumerate((("val", args.val_free_minutes), ("test", args.free_minutes))):
        clips = speakers[split]
        recordings[split] = {
            "commands": build_recording(
                noise, clips["commands"], clips["others"], 0, np.random.default_rng([args.seed, index, 0])
            ),
            "free": build_recording(
                noise, [], clips["others"], free_minutes * 60, np.random.default_rng([args.seed, index, 1])
            ),
        }
        counts = {k: f"{len(v[0]) / RATE / 60:.1f} min" for k, v in recordings[split].items()}
        print(f"{split}: {len(clips['commands'])} commands, {len(clips['others'])} other words; {counts}", flush=True)

    runs = [
        (
            v,
            ["model.architecture=zoo", f"model.variant={v}", f"model.units={args.units}"]
            + (["model.num_layers=2"] if v == "stacked_lstm" else []),
        )
        for v in args.variants.split(",")
        if v
    ]
    if not args.no_crnn:
        runs.append(("crnn (shipped)", []))
    rows = []
    for name, overrides in runs:
        start = time.perf_counter()
        epochs = [] if args.epochs is None else [f"train.epochs={args.epochs}"]
        settings = [f"data.path={root}", *epochs, "train.verbose=0", *overrides]
        run = workflows.train("speech_commands", CONFIG, settings)
        train_seconds = time.perf_counter() - start
        served = mlflow.pyfunc.load_model(run.model_uri).unwrap_python_model()
        spotter = Spotter(served.keras_model, 0.02, RATE)
        export_dir = Path(tracking) / f"export_{len(rows)}"
        if spotter.streaming is not None:  # the tracks come from the TFLite export (checked against Keras)
            lay = spotter.streaming.layout
            export_streaming(spotter.streaming, export_dir, np.zeros(RATE, "float32") + 0.01, served.class_names)
            run_tflite = tflite_runner(export_dir / "streaming.tflite", num_threads=1)
            spotter.probabilities = functools.partial(
                stream_probabilities, run_tflite, hop_samples=lay.hop_samples, state_size=lay.state_size
            )
        print(
            f"{name}: trained in {train_seconds:.0f} s, test accuracy "
            f"{run.evaluation.metrics['test_accuracy']:.3f}; {spotter.mode}",
            flush=True,
        )
        val_tracks = tracks(spotter, recordings["val"])
        chosen, val_result = choose(val_tracks, recordings["val"], served.class_names, spotter.clip_seconds)
        test_tracks = tracks(spotter, recordings["test"])
        test = evaluate(test_tracks, recordings["test"], served.class_names, chosen, spotter.clip_seconds)
        for threshold in THRESHOLDS:  # the test trade-off at the chosen smoothing, for the log only
            other = SpeechSpottingConfig(threshold=threshold, smoothing_seconds=chosen.smoothing_seconds)
            curve = evaluate(test_tracks, recordings["test"], served.class_names, other, spotter.clip_seconds)
            print(f"  test at threshold {threshold:g}: recall {curve['recall']:.3f}, {curve['fa_per_hour']:.1f} FA/h")
        timing = latency(served.keras_model, served.class_names)
        rows.append({"variant": name, "mode": spotter.mode, "clip accuracy": run.evaluation.metrics["test_accuracy"],
                     "threshold": chosen.threshold, "smoothing": chosen.smoothing_seconds,
                     "val recall": val_result["recall"], "val FA/h": val_result["fa_per_hour"],
                     "recall": test["recall"], "FA/h": test["fa_per_hour"], **timing,
                     "train_s": train_seconds})  # fmt: skip
        print(rows[-1], flush=True)
    write(rows, args, recordings, speakers)


def _fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def write(rows, args, recordings, speakers) -> None:
    table = markdown_table(
        [
            {
                f"variant ({args.units} units)": row["variant"],
                "mode": row["mode"],
                "1 s clip accuracy": _fmt(row["clip accuracy"], 3),
                "threshold / smoothing (from val)": f"{row['threshold']:g} / {row['smoothing']:g} s",
                "val recall / FA/h": f"{row['val recall']:.3f} / {row['val FA/h']:.1f}",
                "test recall": _fmt(row["recall"], 3),
                "test FA/h": _fmt(row["FA/h"], 1),
                "ms per hop, Keras": _fmt(row["keras_ms"], 2),
                "ms per hop, TFLite": _fmt(row["tflite_ms"], 3),
                "TFLite vs Keras": "-" if row["export_diff"] is None else f"{row['export_diff']:.1g}",
            }
            for row in rows
        ],
        "llrrrrrrrr",
    )
    test, val = recordings["test"], recordings["val"]
    trained = "up to the shipped config's epochs" if args.epochs is None else f"up to {args.epochs} epochs"
    options = "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name, default in (("epochs", None), ("units", 64), ("free_minutes", 60.0), ("val_free_minutes", 20.0))
        if getattr(args, name) != default
    )
    options += "" if args.variants == "lstm,gru,peephole_lstm,stacked_lstm" else f" --variants {args.variants}"
    minutes = {f"{s}_{k}": len(r[k][0]) / RATE / 60 for s, r in recordings.items() for k in r}
    section = f"""{START}
## Keyword spotting on long recordings

`lstm-pipelines stream` on recordings built from held-out speakers of
`speech_commands_v002_test_dev` (`benchmarks/speech_spotting.py`, seed {args.seed}): every command clip of the
test speakers ({len(test["commands"][1])} clips, {len(speakers["test"]["others"])} non-command clips) placed once
at a known time between `_background_noise_` cuts and non-command words ({minutes["test_commands"]:.1f} min), and
{minutes["test_free"]:.0f} min of command-free audio (noise and the test speakers' non-command words). Threshold
and smoothing were chosen on the validation speakers' recordings ({len(val["commands"][1])} commands,
{minutes["val_commands"]:.1f} min; {minutes["val_free"]:.0f} min command-free) from thresholds
{", ".join(f"{t:g}" for t in THRESHOLDS)} and smoothing {", ".join(f"{t:g}" for t in SMOOTHING)} s: the highest
recall at <= 2 false accepts per hour, or where none gets there, the highest recall. A hit: a detection of the
placed word decided from 0.1 s after the clip starts to 1 s after it ends; every other detection is a false
accept. Refractory period 1 s, hop 20 ms. Each model trained
{trained} (early stopping as shipped) on the training speakers with the shipped config otherwise.
The streaming rows' probabilities come from the TFLite export of the streaming model (checked against the
Keras step, last column). Latency: mean per 20 ms hop over 500 hops, one thread (`tf.function` step; TFLite
interpreter); the sliding-window row runs the whole model on 1 s every hop (its Keras time is one call, batch 1).

Goals (issue 33): recall >= 0.90 at <= 2 false accepts per hour; <= 1 ms per hop in TFLite for a 64-unit LSTM.

{table}

Command: `nice -n 10 python benchmarks/speech_spotting.py --data ../shared/data/speech_commands_v002_test_dev
{options}{" --no-crnn" if args.no_crnn else ""}`. Machine: {cpu_model()},
Python {platform.python_version()}, {datetime.date.today()}.
{END}"""
    write_section(args.output, section, START, END)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
