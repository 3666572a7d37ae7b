"""Train-step and predict throughput of every `build_model` variant, measured side by side.

    .venv/bin/python benchmarks/train_throughput.py            # full run, rewrites its section of docs/benchmarks.md
    .venv/bin/python benchmarks/train_throughput.py --quick    # smoke check: tiny sizes, prints the table only

The main process runs `--repeats` worker processes one after another (this file with `--worker`).
A worker builds and warms up every variant (the first fit epoch and predict trace the graphs), then
times fit epochs and predict passes in rounds that interleave the variants in a shuffled order, so
all variants of one worker run under the same load; it keeps each variant's fastest round, by wall
clock and by CPU time, and prints one JSON line. The main takes per-variant medians across workers,
and the median of each worker's ratios to `lstm`.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("rnn", "lstm", "bilstm", "stacked_lstm", "gru", "peephole_lstm", "attention_lstm")
BASELINE = "lstm"
FULL = dict(batch_size=64, timesteps=100, features=40, units=128, classes=10, batches=16, rounds=6)
QUICK = dict(batch_size=8, timesteps=10, features=4, units=8, classes=3, batches=2, rounds=2)
# One thread per worker, for every variant: on a shared machine a single-threaded process is
# disturbed less by other work, and its CPU time is then a stable measure of its own work.
THREADS = 1
CLOCKS = ("wall", "cpu")
START, END = "<!-- train_throughput:start -->", "<!-- train_throughput:end -->"


def run_worker(index: int, variants: list[str], settings: dict) -> None:
    """Time every variant in this process; print `{variant: {kind: {clock: samples/s}}}` as JSON."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import keras

    sys.path.insert(0, str(ROOT))
    from lstm_models import build_model

    s = settings
    samples = s["batches"] * s["batch_size"]
    rng = np.random.default_rng(index)
    x = rng.normal(size=(samples, s["timesteps"], s["features"])).astype("float32")
    y = rng.integers(0, s["classes"], size=samples)
    runs = {
        "train": lambda model: model.fit(x, y, batch_size=s["batch_size"], epochs=1, shuffle=False, verbose=0),
        "predict": lambda model: model.predict(x, batch_size=s["batch_size"], verbose=0),
    }
    order = list(variants)
    random.Random(index).shuffle(order)

    models = {}
    for variant in order:
        keras.utils.set_random_seed(index)
        model = build_model(variant, (s["timesteps"], s["features"]), output_dim=s["classes"], units=s["units"])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        for run in runs.values():  # warm-up: traces the train and predict graphs
            run(model)
        models[variant] = model

    # samples/s of each round, by wall clock and by this process's CPU time.
    rates = {v: {kind: {clock: [] for clock in CLOCKS} for kind in runs} for v in order}
    for _ in range(s["rounds"]):
        for variant in order:
            for kind, run in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run(models[variant])
                rates[variant][kind]["wall"].append(samples / (time.perf_counter() - wall))
                rates[variant][kind]["cpu"].append(samples / (time.process_time() - cpu))
    # Keep the fastest round: slower rounds are other processes getting in the way, not the model.
    rates = {
        v: {kind: {clock: max(r) for clock, r in clocks.items()} for kind, clocks in kinds.items()}
        for v, kinds in rates.items()
    }
    print(json.dumps(rates))


def run_workers(repeats: int, variants: list[str], quick: bool) -> list[dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    results = []
    for index in range(repeats):
        command = [sys.executable, __file__, "--worker", str(index), "--variants", ",".join(variants)]
        process = subprocess.run(command + ["--quick"] * quick, capture_output=True, text=True, env=env)
        if process.returncode != 0:
            sys.exit(f"Worker {index} failed:\n{process.stderr[-3000:]}")
        results.append(json.loads(process.stdout.strip().splitlines()[-1]))
        print(f"worker {index + 1}/{repeats} done", file=sys.stderr)
    return results


def summarize(results: list[dict], variants: list[str]) -> dict:
    """Per variant and kind: median samples/s, and the per-worker ratios to the baseline."""
    summary = {}
    for variant in variants:
        for kind in ("train", "predict"):
            rates = [r[variant][kind]["wall"] for r in results]
            ratios = {clock: [r[variant][kind][clock] / r[BASELINE][kind][clock] for r in results] for clock in CLOCKS}
            summary[variant, kind] = statistics.median(rates), ratios
    return summary


def versions() -> str:
    """Python, TensorFlow, Keras and NumPy versions, as one line."""
    return f"Python {platform.python_version()}, " + ", ".join(
        f"{name} {importlib.metadata.version(package)}"
        for name, package in (("TensorFlow", "tensorflow"), ("Keras", "keras"), ("NumPy", "numpy"))
    )


def throughput_table(summary: dict, variants: list[str]) -> str:
    """Per variant: samples/s and the ratios to the baseline, for train and predict."""
    rows = []
    for variant in variants:
        row = {"variant": f"`{variant}`"}
        for kind in ("train", "predict"):
            rate, ratios = summary[variant, kind]
            wall, cpu = ratios["wall"], ratios["cpu"]
            row[f"{kind} samples/s"] = f"{rate:,.0f}"
            row[f"{kind} vs lstm (min–max)"] = f"{statistics.median(wall):.2f}x ({min(wall):.2f}–{max(wall):.2f})"
            row[f"{kind} vs lstm, CPU time"] = f"{statistics.median(cpu):.2f}x"
        rows.append(row)
    return markdown_table(rows, "lrrrrrr")


def render(summary: dict, variants: list[str], settings: dict, repeats: int, load: tuple[float, float]) -> str:
    """The Markdown section, markers included.

    Args:
        summary: What `summarize` returns.
        variants: Variants measured, in table order.
        settings: `FULL` or `QUICK`.
        repeats: Worker processes run.
        load: 1-minute load average at the start and at the end.

    Returns:
        The section.
    """
    s = settings
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(__file__), *sys.argv[1:]])
    return "\n".join(
        [
            START,
            "## Train and predict throughput",
            "",
            "Written by `benchmarks/train_throughput.py`; do not edit by hand between the markers.",
            "",
            throughput_table(summary, variants),
            "",
            f"- Machine: {cpu_model()}, {os.cpu_count()} cores; TensorFlow on CPU (no XLA: Keras turns it off on "
            f"CPU-only machines); intra-op and inter-op threads both set to {THREADS} in every worker.",
            f"- Load: 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end, other "
            "processes included. Other work slows the absolute samples/s down; the ratios are measured side "
            "by side in one process, and the ratios by CPU time (samples per CPU-second of the worker) are "
            "the least disturbed by other work.",
            f"- Versions: {versions()}.",
            f"- Date: {datetime.date.today().isoformat()}. Command: `{command}`.",
            f"- Settings: batch {s['batch_size']}, {s['timesteps']} timesteps, {s['features']} features, "
            f"{s['units']} units, {s['classes']} classes, classification head, Adam, sparse categorical "
            f"cross-entropy, {s['batches']} batches of random data per epoch.",
            f"- Method: {repeats} separate worker processes, run one after another. Each builds every variant, "
            "runs one fit epoch and one predict pass as warm-up (graph tracing), then times "
            f"{s['rounds']} rounds of one fit epoch and one predict pass per variant, variants interleaved "
            "in a shuffled order, and keeps the fastest round. samples/s is the median over workers (wall "
            "clock); a ratio is the median over workers of that worker's ratio to `lstm` (min–max across "
            "workers in brackets).",
            END,
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="worker processes (default: 5)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--output", type=Path, help="markdown file (default: docs/benchmarks.md; none with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke check")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; allowed: {', '.join(VARIANTS)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: --repeats={args.repeats}")
    # The ratios need the baseline measured in every worker.
    args.variants = variants if BASELINE in variants else [BASELINE, *variants]
    if args.output is None and not args.quick:
        args.output = ROOT / "docs" / "benchmarks.md"
    return args


def main() -> None:
    args = parse_args()
    settings = QUICK if args.quick else FULL
    if args.worker is not None:
        run_worker(args.worker, args.variants, settings)
        return
    load_start = os.getloadavg()[0]
    results = run_workers(args.repeats, args.variants, args.quick)
    load = load_start, os.getloadavg()[0]
    section = render(summarize(results, args.variants), args.variants, settings, args.repeats, load)
    print(section)
    if args.output:
        write_section(args.output, section, START, END, title="# Benchmarks\n")


if __name__ == "__main__":
    main()
