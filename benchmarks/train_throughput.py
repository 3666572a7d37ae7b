"""Keras zoo against PyTorch on CPU: train step, `fit` epoch and inference, side by side.

    .venv/bin/python benchmarks/train_throughput.py            # full run, rewrites its section of docs/benchmarks.md
    .venv/bin/python benchmarks/train_throughput.py --quick    # smoke check: tiny sizes, prints the table only

PyTorch is optional (the `bench` extra: `pip install -e '.[bench]'`); without it the script says so and
exits. The main process runs worker processes (this file with `--worker`) one after another,
alternating frameworks: for each repeat and each shape, a Keras worker, then a PyTorch worker. A
Keras worker builds every variant in every Keras configuration (`KERAS_CONFIGS`: before issue 35,
today's default, XLA), warms each up (the first calls trace the graphs), then times rounds that
interleave the models in a shuffled order and keeps each one's fastest round, by CPU time of the
process and by wall clock. The main takes medians across repeats; a ratio is Keras samples/s over
PyTorch samples/s.

Kinds of run, each over the same `batches` batches of random data:
    step: one training step per batch (`model.train_on_batch`; PyTorch: zero_grad, forward, loss,
        backward, Adam step).
    fit: one `model.fit` epoch over the batches (data adapter, callbacks, the training steps),
        against PyTorch's training steps over the same batches.
    predict: `model.predict` over the batches; PyTorch: the forward pass per batch under
        `torch.inference_mode()`.
    call: `model.predict_on_batch` per batch (the compiled forward pass without `predict`'s loop).
With `--runtimes`, inference only, the Keras model exported (plain loops) and run per batch by
    tflite: TFLite's interpreter (XNNPACK, `THREADS` threads), converted for the batch size;
    onnx: ONNX Runtime (CPU, `THREADS` threads), exported through tf2onnx (the `export` extra);
each against the same PyTorch forward pass; this writes its own section.
With `--crossover`, no PyTorch and no workers: where the fused LSTM loop wins. In this process with
    TensorFlow's default threads (what the pipelines run), each (variant, timesteps, features,
    units, batch) of `CROSSOVER_SHAPES` is built twice, once with the fused loop forced on and once
    inside `plain_loops()`, and `fit` (two epochs of 1,024 random windows after a warm-up epoch)
    is timed alternately, best of `--repeats`; this writes its own section, the evidence for
    `lstm_models.fused.FUSED_MAX_STEP_WEIGHTS`.
With `--serving`, no PyTorch: what a served request costs in the model call. For request sizes of
    `SERVING_ROWS` rows, `keras.Model.predict` against `pipelines.serving.KerasServingModel.model_outputs`
    (what the pyfunc models call: `predict_on_batch` per 256 rows), on the stock task's default model size,
    default threads, median of `SERVING_CALLS` calls after two warm-up calls; this writes its own section.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

if TYPE_CHECKING:
    import keras

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("rnn", "lstm", "bilstm", "stacked_lstm", "gru", "peephole_lstm", "attention_lstm")
# What each variant is measured against: PyTorch has no peephole LSTM, so `peephole_lstm` meets
# torch's LSTM; `attention_lstm` meets torch's LSTM followed by the same attention pooling.
TORCH_COUNTERPART = {
    "rnn": "nn.RNN (tanh)",
    "lstm": "nn.LSTM",
    "bilstm": "nn.LSTM(bidirectional=True)",
    "stacked_lstm": "nn.LSTM(num_layers=2)",
    "gru": "nn.GRU",
    "peephole_lstm": "nn.LSTM",
    "attention_lstm": "nn.LSTM + the same attention pooling",
}
SHAPES = {"large": (100, 40, 128), "small": (30, 8, 32)}  # (timesteps, features, units)
FULL = dict(batch_size=64, classes=10, batches=16, rounds=3, shapes=SHAPES)
QUICK = dict(batch_size=8, classes=3, batches=2, rounds=1, shapes={"large": (10, 4, 8), "small": (5, 3, 4)})
# The Keras configurations each Keras worker measures side by side, in the same process.
KERAS_CONFIGS = {
    # The zoo and `fit` before issue 35: Keras's plain time loops, `fit` on arrays.
    "before": dict(plain_loops=True, fit_input="arrays", jit_compile=False),
    # Today's default: fused LSTM loops, `fit` as the pipelines fit.
    "default": dict(plain_loops=False, fit_input="dataset", jit_compile=False),
    # The same, compiled with XLA (`jit_compile=True`); the LSTM layers then take the plain loop.
    "xla": dict(plain_loops=False, fit_input="dataset", jit_compile=True),
}
KINDS = ("step", "fit", "predict", "call")
CLOCKS = ("cpu", "wall")
RUNTIME_KINDS = ("call", "tflite", "onnx")
# One thread per worker on both sides: on a shared machine a single-threaded process is disturbed
# less by other work, and it is the same budget for both frameworks.
THREADS = 1
START, END = "<!-- train_throughput:start -->", "<!-- train_throughput:end -->"
RUNTIMES_START, RUNTIMES_END = "<!-- inference_runtimes:start -->", "<!-- inference_runtimes:end -->"
CROSSOVER_START, CROSSOVER_END = "<!-- fused_crossover:start -->", "<!-- fused_crossover:end -->"
SERVING_START, SERVING_END = "<!-- serving_call:start -->", "<!-- serving_call:end -->"
SERVING_ROWS = (1, 32, 256, 1000)
SERVING_CALLS = 30
# (variant, timesteps, features, units, batch): around the limit, and the pipelines' shapes (the
# stock demo's best trial (60, 6, 120), the speech CRNN's bidirectional LSTM (98, 480, 64)).
CROSSOVER_SHAPES = [
    ("lstm", 30, 8, 16, 64),
    ("lstm", 30, 8, 32, 64),
    ("lstm", 100, 40, 32, 64),
    ("lstm", 30, 40, 48, 64),
    ("lstm", 60, 6, 64, 64),
    ("lstm", 30, 8, 64, 64),
    ("lstm", 30, 8, 64, 32),
    ("lstm", 30, 8, 64, 128),
    ("lstm", 30, 20, 64, 64),
    ("lstm", 30, 8, 72, 64),
    ("lstm", 100, 40, 64, 64),
    ("lstm", 60, 6, 80, 64),
    ("lstm", 30, 8, 96, 64),
    ("lstm", 60, 6, 120, 64),
    ("lstm", 30, 8, 128, 64),
    ("lstm", 100, 40, 128, 64),
    ("bilstm", 98, 480, 64, 64),
    ("peephole_lstm", 30, 8, 32, 64),
    ("peephole_lstm", 60, 6, 64, 64),
    ("peephole_lstm", 100, 40, 64, 64),
    ("peephole_lstm", 30, 8, 128, 64),
]


def _data(index: int, settings: dict, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    timesteps, features, _ = shape
    samples = settings["batches"] * settings["batch_size"]
    rng = np.random.default_rng(index)
    x = rng.normal(size=(samples, timesteps, features)).astype("float32")
    return x, rng.integers(0, settings["classes"], size=samples)


def _time_rounds(models: dict, runs: dict, rounds: int, samples: int, index: int) -> dict:
    """Fastest round's samples/s per model, kind and clock (`cpu`: per CPU-second of this process;
    `wall`: per second); models interleaved in a shuffled order."""
    order = list(models)
    random.Random(index).shuffle(order)
    rates = {name: {kind: {clock: [] for clock in CLOCKS} for kind in runs} for name in order}
    for _ in range(rounds):
        for name in order:
            for kind, run in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run(models[name])
                rates[name][kind]["cpu"].append(samples / (time.process_time() - cpu))
                rates[name][kind]["wall"].append(samples / (time.perf_counter() - wall))
    # Keep the fastest round: slower rounds are other processes getting in the way, not the model.
    return {
        name: {kind: {clock: max(r) for clock, r in clocks.items()} for kind, clocks in kinds.items()}
        for name, kinds in rates.items()
    }


def keras_worker(
    index: int, variants: list[str], settings: dict, shape: tuple, configs: list[str], runtimes: bool
) -> dict:
    """Samples/s of every zoo variant in every Keras configuration: `{"variant/config": {kind: {clock: samples/s}}}`."""
    import contextlib

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import keras

    sys.path.insert(0, str(ROOT))
    from lstm_models import build_model
    from lstm_models.fused import plain_loops
    from pipelines.training import array_dataset

    s = settings
    x, y = _data(index, s, shape)
    batch, samples = s["batch_size"], len(x)
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, samples, batch)]
    dataset = array_dataset(x, y, batch, shuffle=False)

    def fit(model: "keras.Model", config: dict) -> None:
        if config["fit_input"] == "arrays":
            model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        else:
            model.fit(dataset, epochs=1, verbose=0)

    if runtimes:
        kinds = {kind: _runner(kind) for kind in RUNTIME_KINDS}
    else:
        kinds = {
            "step": lambda model, config: [model.train_on_batch(xb, yb) for xb, yb in batches],
            "fit": fit,
            "predict": lambda model, config: model.predict(x, batch_size=batch, verbose=0),
            "call": lambda model, config: [model.predict_on_batch(xb) for xb, _ in batches],
        }

    def within(run: Callable) -> Callable[[tuple], Any]:
        def run_entry(entry: tuple) -> Any:
            model, config = entry
            with plain_loops() if config["plain_loops"] else contextlib.nullcontext():
                return run(model, config)

        return run_entry

    runs = {kind: within(run) for kind, run in kinds.items()}
    models = {}
    for config_name in configs:
        config = KERAS_CONFIGS[config_name]
        for variant in variants:
            keras.utils.set_random_seed(index)
            model = build_model(variant, shape[:2], output_dim=s["classes"], units=shape[2])
            model.compile(
                optimizer="adam",
                loss="sparse_categorical_crossentropy",
                jit_compile=config["jit_compile"],
            )
            entry = (runtime_runners(model, [xb for xb, _ in batches]) if runtimes else model), config
            for run in runs.values():  # warm-up: traces (and with XLA compiles) the graphs
                run(entry)
            models[f"{variant}/{config_name}"] = entry
    return _time_rounds(models, runs, s["rounds"], samples, index)


def _runner(kind: str) -> Callable[[dict, dict], Any]:
    return lambda runners, config: runners[kind]()


def runtime_runners(model: "keras.Model", batches: list[np.ndarray]) -> dict:
    """`{kind: run over the batches}` for `RUNTIME_KINDS`: Keras, TFLite and ONNX Runtime inference."""
    import onnxruntime
    import tensorflow as tf

    from lstm_models.fused import plain_loops

    spec = tf.TensorSpec(batches[0].shape, tf.float32, name="inputs")
    with tempfile.TemporaryDirectory() as folder, plain_loops():  # neither runtime has BlockLSTM
        model.export(f"{folder}/saved_model", format="tf_saved_model", input_signature=[spec], verbose=False)
        model.export(f"{folder}/model.onnx", format="onnx", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(f"{folder}/saved_model")
        flatbuffer = converter.convert()
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = session_options.inter_op_num_threads = THREADS
        session = onnxruntime.InferenceSession(f"{folder}/model.onnx", session_options, ["CPUExecutionProvider"])
    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=THREADS)
    interpreter.allocate_tensors()
    tflite_in, tflite_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    onnx_in = session.get_inputs()[0].name

    def tflite() -> list[np.ndarray]:
        outputs = []
        for xb in batches:
            interpreter.set_tensor(tflite_in, xb)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(tflite_out))
        return outputs

    runners = {
        "call": lambda: [model.predict_on_batch(xb) for xb in batches],
        "tflite": tflite,
        "onnx": lambda: [session.run(None, {onnx_in: xb})[0] for xb in batches],
    }
    expected = np.concatenate(runners["call"]())
    for kind in ("tflite", "onnx"):  # a runtime that computes something else is no comparison
        difference = float(np.abs(np.concatenate(runners[kind]()) - expected).max())
        if difference > 1e-4:
            raise RuntimeError(f"{kind} differs from Keras by {difference:.2e} on {model.name}")
    return runners


def torch_worker(index: int, variants: list[str], settings: dict, shape: tuple) -> dict:
    """Samples/s of each variant's PyTorch counterpart (`TORCH_COUNTERPART`): `{variant: {kind: samples/s}}`."""
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)
    s = settings
    _, features, units = shape
    attention_units = max(8, units // 4)  # as build_model gives TemporalAttention

    class Net(nn.Module):
        def __init__(self, variant: str) -> None:
            super().__init__()
            self.variant = variant
            if variant == "rnn":
                self.rnn = nn.RNN(features, units, batch_first=True)
            elif variant == "gru":
                self.rnn = nn.GRU(features, units, batch_first=True)
            else:
                self.rnn = nn.LSTM(
                    features,
                    units,
                    batch_first=True,
                    num_layers=2 if variant == "stacked_lstm" else 1,
                    bidirectional=variant == "bilstm",
                )
            width = 2 * units if variant == "bilstm" else units
            if variant == "attention_lstm":
                self.score = nn.Linear(width, attention_units)
                self.score_vector = nn.Linear(attention_units, 1, bias=False)
            self.head = nn.Linear(width, s["classes"])

        def forward(self, inputs: "torch.Tensor") -> "torch.Tensor":
            outputs, _ = self.rnn(inputs)
            if self.variant == "attention_lstm":
                weights = torch.softmax(self.score_vector(torch.tanh(self.score(outputs))).squeeze(-1), dim=1)
                encoded = (outputs * weights.unsqueeze(-1)).sum(dim=1)
            elif self.variant == "bilstm":  # Keras's Bidirectional: forward's last step, backward's first
                encoded = torch.cat([outputs[:, -1, :units], outputs[:, 0, units:]], dim=1)
            else:
                encoded = outputs[:, -1]
            return self.head(encoded)

    x, y = _data(index, s, shape)
    batch, samples = s["batch_size"], len(x)
    batches = [
        (torch.from_numpy(x[i : i + batch]), torch.from_numpy(y[i : i + batch])) for i in range(0, samples, batch)
    ]
    loss_fn = nn.CrossEntropyLoss()

    def train(pair: tuple) -> None:
        net, optimizer = pair
        net.train()
        for xb, yb in batches:
            optimizer.zero_grad()
            loss_fn(net(xb), yb).backward()
            optimizer.step()

    def infer(pair: tuple) -> None:
        net, _ = pair
        net.eval()
        with torch.inference_mode():
            for xb, _ in batches:
                torch.softmax(net(xb), dim=-1)

    models = {}
    for variant in variants:
        torch.manual_seed(index)
        net = Net(variant)
        models[variant] = net, torch.optim.Adam(net.parameters())
        train(models[variant])
        infer(models[variant])
    rates = _time_rounds(models, {"step": train, "predict": infer}, s["rounds"], samples, index)
    # PyTorch has no separate fit loop or batch call: its training loop is the step, and every inference
    # kind meets its forward pass.
    return {v: {**r, "fit": r["step"], **{kind: r["predict"] for kind in RUNTIME_KINDS}} for v, r in rates.items()}


def torch_missing() -> bool:
    """Whether PyTorch is not installed."""
    return importlib.util.find_spec("torch") is None


def run_workers(args: argparse.Namespace, settings: dict) -> dict:
    """`{shape: {"keras": [per-worker results], "torch": [...]}}`, workers alternating frameworks."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    results = {shape: {"keras": [], "torch": []} for shape in settings["shapes"]}
    for index in range(args.repeats):
        for shape in settings["shapes"]:
            for framework in ("keras", "torch"):
                command = [sys.executable, __file__, "--worker", framework, "--index", str(index), "--shape", shape]
                command += ["--variants", ",".join(args.variants), "--configs", ",".join(args.configs)]
                command += ["--runtimes"] * args.runtimes
                process = subprocess.run(command + ["--quick"] * args.quick, capture_output=True, text=True, env=env)
                if process.returncode != 0:
                    sys.exit(f"{framework} worker {index} ({shape}) failed:\n{process.stderr[-3000:]}")
                results[shape][framework].append(json.loads(process.stdout.strip().splitlines()[-1]))
                print(f"repeat {index + 1}/{args.repeats}: {shape} {framework} done", file=sys.stderr)
    return results


def summarize(results: dict, variants: list[str], configs: list[str], kinds: tuple[str, ...]) -> dict:
    """Per shape, variant, Keras config and kind: median Keras and PyTorch samples/s by clock, and the
    per-repeat ratios (Keras over PyTorch) by clock."""
    summary = {}
    for shape, frameworks in results.items():
        for variant in variants:
            for config in configs:
                for kind in kinds:
                    keras_rates = [r[f"{variant}/{config}"][kind] for r in frameworks["keras"]]
                    torch_rates = [r[variant][kind] for r in frameworks["torch"]]
                    summary[shape, variant, config, kind] = {
                        clock: (
                            statistics.median(k[clock] for k in keras_rates),
                            statistics.median(t[clock] for t in torch_rates),
                            [k[clock] / t[clock] for k, t in zip(keras_rates, torch_rates, strict=True)],
                        )
                        for clock in CLOCKS
                    }
    return summary


def versions() -> str:
    """Python, TensorFlow, Keras, PyTorch (when installed) and NumPy versions, as one line."""
    packages = [("TensorFlow", "tensorflow"), ("Keras", "keras"), ("PyTorch", "torch"), ("NumPy", "numpy")]
    installed = [(name, package) for name, package in packages if importlib.util.find_spec(package) is not None]
    return f"Python {platform.python_version()}, " + ", ".join(
        f"{name} {importlib.metadata.version(package)}" for name, package in installed
    )


def ratio_table(summary: dict, shape: str, variants: list[str], configs: list[str], kinds: tuple[str, ...]) -> str:
    """Per variant and Keras config: samples per CPU-second and the ratios to PyTorch, for every kind of run."""
    rows = []
    for variant in variants:
        for config in configs:
            row = {"variant": f"`{variant}`", "Keras": config, "PyTorch": TORCH_COUNTERPART[variant]}
            for kind in kinds:
                cell = summary[shape, variant, config, kind]
                keras_rate, torch_rate, cpu_ratios = cell["cpu"]
                wall_ratio = statistics.median(cell["wall"][2])
                spread = f" ({min(cpu_ratios):.2f}–{max(cpu_ratios):.2f})" if len(cpu_ratios) > 1 else ""
                row[f"{kind}: Keras / PyTorch per CPU-s"] = f"{keras_rate:,.0f} / {torch_rate:,.0f}"
                row[f"{kind} ratio, CPU (wall)"] = (
                    f"**{statistics.median(cpu_ratios):.2f}x**{spread} ({wall_ratio:.2f}x)"
                )
            rows.append(row)
    return markdown_table(rows, "lll" + "rr" * len(kinds))


def render(summary: dict, args: argparse.Namespace, settings: dict, load: tuple[float, float]) -> str:
    """The Markdown section, markers included.

    Args:
        summary: What `summarize` returns.
        args: The parsed command line (variants, configs, repeats, runtimes).
        settings: `FULL` or `QUICK`.
        load: 1-minute load average at the start and at the end.

    Returns:
        The section.
    """
    s = settings
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(__file__), *sys.argv[1:]])
    kinds = RUNTIME_KINDS if args.runtimes else KINDS
    title = "Inference runtimes against PyTorch on CPU" if args.runtimes else "Keras against PyTorch on CPU"
    lines = [
        RUNTIMES_START if args.runtimes else START,
        f"## {title}",
        "",
        "Written by `benchmarks/train_throughput.py`; do not edit by hand between the markers. A ratio is Keras "
        "samples/s over PyTorch samples/s (above 1.00x: Keras is faster), by CPU time in bold (samples per "
        "CPU-second of the worker process; min–max across repeats in brackets), by wall clock in brackets after it.",
    ]
    for shape, (timesteps, features, units) in s["shapes"].items():
        lines += [
            "",
            f"### {timesteps} timesteps, {features} features, {units} units",
            "",
            ratio_table(summary, shape, args.variants, args.configs, kinds),
        ]
    if args.runtimes:
        described = (
            "- Kinds, each per batch against PyTorch's forward pass under `torch.inference_mode()`: `call` is Keras's "
            "`model.predict_on_batch`; `tflite` the model exported with plain loops (`lstm_models.fused.plain_loops`) "
            f"to TFLite for batch {s['batch_size']}, run by `tf.lite.Interpreter(num_threads={THREADS})` (XNNPACK); "
            f"`onnx` the same export through tf2onnx, run by ONNX Runtime's CPU provider with {THREADS} intra-op and "
            "inter-op thread. Each export is checked against Keras (outputs within 1e-4) before it is timed."
        )
    else:
        described = (
            "- Kinds: `step` is one training step per batch (`model.train_on_batch`; PyTorch: zero_grad, forward, "
            "loss, backward, Adam step); `fit` is one `model.fit` epoch over the same batches, against PyTorch's "
            "training steps; `predict` is `model.predict` over the batches, against PyTorch's forward pass per batch "
            "under `torch.inference_mode()`; `call` is `model.predict_on_batch` per batch, against the same PyTorch "
            "forward pass."
        )
    configs = {
        "before": "Keras's plain time loops for every variant (`lstm_models.fused.plain_loops`), `fit` on the "
        "arrays: the zoo and the pipelines' `fit` before issue 35",
        "default": "the zoo as `build_model` returns it (fused `BlockLSTM` loops for the LSTM layers small "
        "enough to win, `lstm_models.fused.fused_wins`), `fit` as the pipelines fit (through "
        "`pipelines.training.array_dataset`)",
        "xla": "the same compiled with `jit_compile=True` (XLA; the LSTM layers take the plain loop)",
    }
    lines += [
        "",
        described,
        "- Keras configurations, measured side by side in each Keras worker: "
        + "; ".join(f"`{name}`: {configs[name]}" for name in args.configs)
        + ".",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other work; CPU only. Every worker runs "
        f"with {THREADS} thread (TensorFlow intra-op and inter-op threads; `torch.set_num_threads` and "
        "`torch.set_num_interop_threads`).",
        f"- Load: 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end, other processes "
        "included. Other work slows the wall clock most: the wall-clock ratios compare processes that ran at "
        "different times under different load; CPU time, which the other work moves less, is the figure to read.",
        f"- Versions: {versions()}.",
        f"- Date: {datetime.date.today().isoformat()}. Command: `{command}`.",
        f"- Settings: batch {s['batch_size']}, {s['batches']} batches of random data, {s['classes']} classes, the "
        "classification head (`build_model(variant, (timesteps, features), output_dim=classes, units=units)`; "
        "PyTorch: the last step, or the attention pooling, then a linear layer, cross-entropy on the logits), Adam.",
        f"- Method: {args.repeats} repeats; in each, per shape, a Keras worker process and then a PyTorch worker "
        "process. A worker builds every variant (and configuration), runs each kind once as warm-up (graph tracing "
        f"and XLA compilation), then times {s['rounds']} rounds of every kind per model, models interleaved in a "
        "shuffled order, and keeps the fastest round by each clock. samples/s is the median over repeats; a ratio "
        "is the median over repeats of that repeat's Keras samples/s over its PyTorch samples/s.",
        RUNTIMES_END if args.runtimes else END,
    ]
    return "\n".join(lines)


def section_head(start: str, title: str, mode: str) -> list[str]:
    """The first lines of a section this script writes: marker, title, provenance.

    Args:
        start: The section's opening marker.
        title: Its `###` heading.
        mode: The flag that writes it, e.g. `--serving`.

    Returns:
        The lines, ending with the machine and versions line.
    """
    return [
        start,
        f"### {title}",
        "",
        f"Written by `benchmarks/train_throughput.py {mode}`; do not edit by hand between the markers.",
        f"Measured {datetime.date.today().isoformat()} on {cpu_model()} ({os.cpu_count()} cores), {versions()}.",
    ]


def crossover(repeats: int, quick: bool) -> str:
    """Time `fit` with the fused loop forced on and with the plain loop, over `CROSSOVER_SHAPES`.

    Args:
        repeats: Timed rounds per shape (the fastest is kept).
        quick: Two tiny shapes, for a smoke check.

    Returns:
        The Markdown section: a table and how it was measured.
    """
    sys.path.insert(0, str(ROOT))
    import keras

    from lstm_models import build_model, fused
    from lstm_models.fused import plain_loops
    from pipelines.training import array_dataset

    shapes = [("lstm", 5, 3, 4, 8), ("peephole_lstm", 5, 3, 4, 8)] if quick else CROSSOVER_SHAPES
    windows, epochs = (16, 1) if quick else (1024, 2)
    limit = fused.FUSED_MAX_STEP_WEIGHTS
    rows = []
    for variant, timesteps, features, units, batch in shapes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(windows, timesteps, features)).astype("float32")
        y = rng.normal(size=(windows, 1)).astype("float32")
        dataset = array_dataset(x, y, batch_size=batch, shuffle=True)
        models = {}
        fused.FUSED_MAX_STEP_WEIGHTS = 10**12  # the fused loop wherever it applies
        try:
            for loop in ("fused", "plain"):
                keras.utils.set_random_seed(0)
                model = build_model(variant, (timesteps, features), head="regression", units=units)
                model.compile(optimizer="adam", loss="mse")
                with plain_loops() if loop == "plain" else contextlib.nullcontext():
                    model.fit(dataset, epochs=1, verbose=0)  # traces the training step
                models[loop] = model
        finally:
            fused.FUSED_MAX_STEP_WEIGHTS = limit
        best = {}
        for _ in range(repeats):
            for loop, model in models.items():
                wall, cpu = time.perf_counter(), time.process_time()
                model.fit(dataset, epochs=epochs, verbose=0)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[loop] = min(best.get(loop, (wall, cpu)), (wall, cpu))
        weights = (features + units) * units
        rows.append(
            {
                "variant": variant,
                "(timesteps, features, units)": f"({timesteps}, {features}, {units})",
                "batch": str(batch),
                "(features + units) x units": f"{weights:,}",
                "fused wall / CPU s": f"{best['fused'][0]:.2f} / {best['fused'][1]:.2f}",
                "plain wall / CPU s": f"{best['plain'][0]:.2f} / {best['plain'][1]:.2f}",
                "fused speed-up (wall)": f"{best['plain'][0] / best['fused'][0]:.2f}x",
                "default takes": "fused" if fused.fused_wins(features, units) else "plain",
            }
        )
        print(rows[-1], flush=True)
    command = "python benchmarks/train_throughput.py --crossover" + (" --quick" if quick else "")
    title = "Where the fused LSTM loop wins (TensorFlow's default threads)"
    return "\n".join(
        [
            *section_head(CROSSOVER_START, title, "--crossover"),
            f"`{command}`: `fit` over {windows:,} random windows, {epochs} epochs after a warm-up epoch, best",
            f"of {repeats} alternating rounds, fused loop forced on against `plain_loops()`, in one process with",
            "TensorFlow's default threads. The default takes the fused loop while (features + units) x units",
            f"<= {limit:,} (`lstm_models.fused.FUSED_MAX_STEP_WEIGHTS`).",
            "",
            markdown_table(rows, "lllrrrrl"),
            CROSSOVER_END,
        ]
    )


def serving(quick: bool) -> str:
    """Time one request's model call through `predict` and through `model_outputs`.

    Args:
        quick: Fewer calls, for a smoke check.

    Returns:
        The Markdown section: a table and how it was measured.
    """
    sys.path.insert(0, str(ROOT))
    from lstm_models import build_model
    from pipelines.serving import KerasServingModel

    calls = 3 if quick else SERVING_CALLS
    # conf/stock_forecasting.yaml: a 30-day window of the 5 price features, 32 units, 5 days ahead
    timesteps, features, units, horizon = 30, 5, 32, 5
    served = KerasServingModel()
    served.keras_model = build_model("lstm", (timesteps, features), head="regression", output_dim=horizon, units=units)
    ways = {
        "`predict`": lambda x: served.keras_model.predict(x, verbose=0),
        "`model_outputs`": served.model_outputs,
    }
    rows = []
    for size in SERVING_ROWS:
        x = np.random.default_rng(size).normal(size=(size, timesteps, features)).astype("float32")
        times = {}
        for name, call in ways.items():
            call(x), call(x)
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                call(x)
                samples.append(time.perf_counter() - start)
            times[name] = statistics.median(samples)
        predict, outputs = times["`predict`"], times["`model_outputs`"]
        rows.append(
            {
                "request rows": str(size),
                "`predict` ms": f"{predict * 1000:.2f}",
                "`model_outputs` ms": f"{outputs * 1000:.2f}",
                "speed-up": f"{predict / outputs:.1f}x",
            }
        )
        print(rows[-1], flush=True)
    command = "python benchmarks/train_throughput.py --serving" + (" --quick" if quick else "")
    title = "A served request's model call: `predict` against `predict_on_batch`"
    return "\n".join(
        [
            *section_head(SERVING_START, title, "--serving"),
            f"`{command}`: `build_model('lstm', ({timesteps}, {features}), head='regression', output_dim={horizon},",
            f"units={units})` (the stock task's default size), TensorFlow's default threads, median of {calls} calls",
            "after two warm-up calls per request size.",
            "",
            markdown_table(rows, "rrrr"),
            SERVING_END,
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="worker pairs per shape (default: 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated of {', '.join(SHAPES)}")
    parser.add_argument(
        "--configs", default=",".join(KERAS_CONFIGS), help=f"Keras configurations, of {', '.join(KERAS_CONFIGS)}"
    )
    parser.add_argument(
        "--runtimes",
        action="store_true",
        help="inference only, the default configuration: Keras, TFLite and ONNX Runtime (the export extra)",
    )
    parser.add_argument(
        "--crossover", action="store_true", help="fused LSTM loop against the plain loop at default threads, no torch"
    )
    parser.add_argument(
        "--serving", action="store_true", help="a served request's model call: predict against model_outputs"
    )
    parser.add_argument("--output", type=Path, help="markdown file (default: docs/benchmarks.md; none with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke check")
    parser.add_argument("--worker", choices=("keras", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=tuple(SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; allowed: {', '.join(VARIANTS)}")
    args.shapes = [s for s in args.shapes.split(",") if s]
    if not args.shapes or set(args.shapes) - set(SHAPES):
        parser.error(f"--shapes takes some of {', '.join(SHAPES)}. Received: --shapes={','.join(args.shapes)}")
    args.configs = ["default"] if args.runtimes else [c for c in args.configs.split(",") if c]
    if not args.configs or set(args.configs) - set(KERAS_CONFIGS):
        parser.error(f"--configs takes some of {', '.join(KERAS_CONFIGS)}. Received: --configs={args.configs}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: --repeats={args.repeats}")
    if args.output is None and not args.quick:
        args.output = ROOT / "docs" / "benchmarks.md"
    return args


def main() -> None:
    args = parse_args()
    if args.crossover or args.serving:
        section = crossover(args.repeats, args.quick) if args.crossover else serving(args.quick)
        print(section)
        if args.output:
            markers = (CROSSOVER_START, CROSSOVER_END) if args.crossover else (SERVING_START, SERVING_END)
            write_section(args.output, section, *markers, title="# Benchmarks\n")
        return
    base = QUICK if args.quick else FULL
    settings = {**base, "shapes": {name: base["shapes"][name] for name in args.shapes}}
    if torch_missing():
        sys.exit("PyTorch is not installed; it is the `bench` extra: pip install -e '.[bench]'")
    if args.worker is not None:
        shape = settings["shapes"][args.shape]
        if args.worker == "keras":
            result = keras_worker(args.index, args.variants, settings, shape, args.configs, args.runtimes)
        else:
            result = torch_worker(args.index, args.variants, settings, shape)
        print(json.dumps(result))
        return
    load_start = os.getloadavg()[0]
    results = run_workers(args, settings)
    load = load_start, os.getloadavg()[0]
    kinds = RUNTIME_KINDS if args.runtimes else KINDS
    section = render(summarize(results, args.variants, args.configs, kinds), args, settings, load)
    print(section)
    if args.output:
        markers = (RUNTIMES_START, RUNTIMES_END) if args.runtimes else (START, END)
        write_section(args.output, section, *markers, title="# Benchmarks\n")


if __name__ == "__main__":
    main()
