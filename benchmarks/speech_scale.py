"""Full-size Speech Commands in bounded memory: load time, peak memory and training clips/s, streamed against in memory.

Usage:
    python benchmarks/speech_scale.py --source ../shared/data/speech_commands_v002_test_dev --tree /tmp/sc_full

Steps:
    build: a tree of `--clips` (default 105,829, the size of Speech Commands v0.02) in Speech Commands
        layout, made from the clips of `--source`: copy 0 of each clip as it is, copy k > 0 at a speed
        changed by up to 15 % (tempo and pitch) with background noise mixed in at a gain up to 0.1,
        written as 16-bit WAV under a new speaker name that keeps the split of the clip's speaker
        (split lists included). A subset tree of the first `--subset-clips` clips (symbolic links)
        sits beside it. Skipped when the tree is already there with its count of clips.
    measure: each arm in its own process (a fresh peak): `load_source`, `prepare`, one `fit` epoch of
        the default model (`conf/speech_commands.yaml`, every word a class: `data.classes=all`), then
        the task's `evaluate`.
        - in memory, subset: the subset tree, clips in memory (today's path).
        - streamed, subset: the same clips, streamed from a clip file (`data.in_memory_max_clips=0`).
        - streamed, full: the full tree, streamed (it is over `data.in_memory_max_clips`).
    The subset arms take turns `--repeats` times. Peak memory is the process's VmHWM (peak resident
    set), read after each stage.
The section goes into `docs/benchmarks.md` between markers this script owns.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

START, END = "<!-- speech_scale:start -->", "<!-- speech_scale:end -->"
FULL_CLIPS = 105_829  # Speech Commands v0.02
RATE = 16000


def peak_mb() -> float:
    """The process's peak resident memory (VmHWM) in MiB.

    Not `getrusage`'s ru_maxrss: a child's starts at its parent's peak (Linux keeps it across fork and exec).
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


# Building the tree ------------------------------------------------------------------------------------------


def _clips(source: Path) -> list[tuple[str, str, str]]:
    """`(word, file name, split)` of every clip of the source tree, in a fixed order."""
    lists = {
        split: set((source / name).read_text().split())
        for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt"))
    }
    rows = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for path in sorted(folder.glob("*.wav")):
            relative = f"{folder.name}/{path.name}"
            split = "val" if relative in lists["val"] else "test" if relative in lists["test"] else "train"
            rows.append((folder.name, path.name, split))
    return rows


def _perturbed(clip: np.ndarray, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`clip` played at a speed in [0.85, 1.15], padded or cut about its centre to 1 s, with noise up to 0.1."""
    speed = rng.uniform(0.85, 1.15)
    positions = np.arange(0, len(clip) - 1, speed)
    faster = np.interp(positions, np.arange(len(clip)), clip)
    out = np.zeros(RATE)
    if len(faster) >= RATE:
        start = (len(faster) - RATE) // 2
        out[:] = faster[start : start + RATE]
    else:
        start = (RATE - len(faster)) // 2
        out[start : start + len(faster)] = faster
    offset = rng.integers(0, len(noise) - RATE)
    return out + rng.uniform(0.0, 0.1) * noise[offset : offset + RATE]


def build_tree(source: Path, tree: Path, clips: int, subset: Path, subset_clips: int, seed: int = 0) -> float:
    """Write the tree and its subset (see the module docstring); returns the seconds that took (then or before)."""
    from pipelines.speech_commands.data import load_clip, read_wav, write_wav

    done = tree / ".complete"
    if done.is_file() and done.read_text().split()[0] == str(clips):
        return float(done.read_text().split()[1])
    start = time.perf_counter()
    rows = _clips(source)
    originals = {(word, name): load_clip(source / word / name) for word, name, _ in rows}
    noise_files = sorted((source / "_background_noise_").glob("*.wav"))
    noise = np.concatenate([read_wav(path)[1] for path in noise_files])
    (tree / "_background_noise_").mkdir(parents=True, exist_ok=True)
    for path in noise_files:
        (tree / "_background_noise_" / path.name).write_bytes(path.read_bytes())
    rng = np.random.default_rng(seed)
    written = {"val": [], "test": [], "all": []}
    for index in range(clips):
        copy, (word, name, split) = divmod(index, len(rows))[0], rows[index % len(rows)]
        speaker, rest = name.split("_nohash_")
        if copy:
            speaker = hashlib.sha1(f"{speaker}-{copy}".encode()).hexdigest()[:8]  # a new speaker, same split
        relative = f"{word}/{speaker}_nohash_{rest}"
        clip = originals[(word, name)]
        (tree / word).mkdir(exist_ok=True)
        write_wav(tree / relative, clip if copy == 0 else _perturbed(clip, noise, rng))
        written["all"].append(relative)
        if split != "train":
            written[split].append(relative)
    for root, count in ((tree, clips), (subset, min(subset_clips, clips))):
        chosen = set(written["all"][:count])
        if root != tree:
            for relative in sorted(chosen) + ["_background_noise_"]:
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / relative).unlink(missing_ok=True)
                (root / relative).symlink_to(tree / relative)
        for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            (root / name).write_text("".join(f"{r}\n" for r in written[split] if r in chosen))
        (root / ".complete").write_text(f"{count} {time.perf_counter() - start:.0f}\n")
    return time.perf_counter() - start


# One arm, in its own process --------------------------------------------------------------------------------


def run_arm(tree: str, in_memory_max_clips: int, steps: int | None) -> dict:
    """Load, prepare, fit one epoch and evaluate; the times, clips/s and peak memory after each stage."""
    import keras

    from pipelines.config import load_config
    from pipelines.speech_commands.task import TASK

    overrides = [f"data.path={tree}", "data.classes=all", f"data.in_memory_max_clips={in_memory_max_clips}"]
    config = load_config(TASK.config_class, "conf/speech_commands.yaml", overrides)
    keras.utils.set_random_seed(config.seed)
    result = {"start_mb": peak_mb()}
    start = time.perf_counter()
    source = TASK.load_source(config)
    result.update(load_s=time.perf_counter() - start, load_mb=peak_mb())
    result["clips"] = {name: len(split.y) for name, split in source.splits.items()}
    result["streamed"] = type(source.splits["train"].x).__name__ == "ClipFile"
    start = time.perf_counter()
    data = TASK.prepare(config, source)
    model = TASK.build_model(config, data)
    result.update(prepare_s=time.perf_counter() - start, prepare_mb=peak_mb())

    class Timer(keras.callbacks.Callback):
        """Times training batches after the first 10 (tracing and warm-up), validation apart."""

        def __init__(self):
            super().__init__()
            self.ends, self.cpu = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    timer = Timer()
    start = time.perf_counter()
    model.fit(
        data.train_dataset,
        validation_data=data.val_dataset,
        epochs=1,
        steps_per_epoch=steps,
        callbacks=[timer],
        verbose=0,
    )
    batch_size, warm = config.train.batch_size, 10
    result.update(
        epoch_s=time.perf_counter() - start,
        fit_mb=peak_mb(),
        train_batches=len(timer.ends),
        clips_per_s=batch_size * (len(timer.ends) - 1 - warm) / (timer.ends[-1] - timer.ends[warm]),
        cpu_ms_per_clip=1000 * (timer.cpu[-1] - timer.cpu[warm]) / (batch_size * (len(timer.ends) - 1 - warm)),
    )
    start = time.perf_counter()
    TASK.evaluate(model, data, config)
    result.update(evaluate_s=time.perf_counter() - start, evaluate_mb=peak_mb())
    result["model"] = f"{config.model.architecture} / {config.model.variant} {config.model.units}"
    result["batch_size"] = batch_size
    return result


def arm_in_process(tree: Path, in_memory_max_clips: int, steps: int | None, cache: Path) -> dict:
    """`run_arm` in a fresh process, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--arm", str(tree), "--in-memory-max-clips", str(in_memory_max_clips)]
    command += ["--steps", str(steps)] if steps else []
    env = {**os.environ, "LSTM_PIPELINES_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.exit(f"error: the arm {command} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


# Report -----------------------------------------------------------------------------------------------------


def _row(name: str, runs: list[dict]) -> dict[str, str]:
    def median(key):
        return statistics.median(run[key] for run in runs)

    clips = sum(runs[0]["clips"].values())
    return {
        "arm": name,
        "clips (train / val / test)": "{train:,} / {val:,} / {test:,}".format(**runs[0]["clips"]),
        "load s": f"{median('load_s'):,.0f}",
        "load clips/s": f"{clips / median('load_s'):,.0f}",
        "train clips/s": f"{median('clips_per_s'):,.0f}",
        "train CPU ms per clip": f"{median('cpu_ms_per_clip'):.1f}",
        "epoch s (with validation)": f"{median('epoch_s'):,.0f}",
        "peak MiB: load / fit / evaluate": " / ".join(
            f"{median(key):,.0f}" for key in ("load_mb", "fit_mb", "evaluate_mb")
        ),
    }


def render(results: dict, build_s: float, args: argparse.Namespace, command: str) -> str:
    """The Markdown section, markers included."""
    import keras
    import tensorflow as tf

    memory, subset, full = (results[name] for name in ("in memory, subset", "streamed, subset", "streamed, full"))
    pairs = list(zip(subset, memory, strict=True))
    ratio = statistics.median(s["clips_per_s"] / m["clips_per_s"] for s, m in pairs)
    cpu_ratio = statistics.median(s["cpu_ms_per_clip"] / m["cpu_ms_per_clip"] for s, m in pairs)
    full_ratio = full[0]["clips_per_s"] / statistics.median(m["clips_per_s"] for m in memory)
    first = full[0]
    steps = f"the first {first['train_batches']} training batches" if args.steps else "a whole epoch"
    lines = [
        START,
        "## Full-size Speech Commands in bounded memory",
        "",
        "Written by `benchmarks/speech_scale.py`; do not edit by hand between the markers.",
        "",
        markdown_table([_row(name, runs) for name, runs in results.items()], "llrrrrrl"),
        "",
        f"- Streamed against in memory on the same {sum(memory[0]['clips'].values()):,} clips: {ratio:.2f}x the "
        f"training clips/s and {cpu_ratio:.2f}x the process CPU time per clip (medians over {len(subset)} pairs of "
        f"runs that took turns); the full tree streamed: {full_ratio:.2f}x the in-memory subset's median clips/s. "
        "The in-memory arm holds the clips once, in one float32 array read by index like the clip file.",
        f"- Peak memory of the full tree streamed: {max(first[k] for k in ('load_mb', 'fit_mb')):,.0f} MiB through "
        f"loading and training, {first['evaluate_mb']:,.0f} MiB after `evaluate`; its waveforms are "
        f"{sum(first['clips'].values()) * RATE * 4 / 2**30:.1f} GiB of float32.",
        f"- Data: {args.clips:,} clips built from `{args.source}` ({build_s / 60:.0f} min to write; copy 0 of each "
        "clip as it is, copies 1 and on sped up or slowed down by up to 15 % with background noise at a gain up "
        f"to 0.1), 16-bit WAV at 16 kHz in Speech Commands layout with split lists; the subset is its first "
        f"{args.subset_clips:,} clips. Every word is a class (`data.classes=all`), so every clip is read.",
        f"- Training: `conf/speech_commands.yaml` at the time of the run (model {first['model']}, batch "
        f"{first['batch_size']}); train clips/s is timed over {steps} after the 10th (tracing and warm-up), "
        "validation apart; the epoch time includes validation.",
        "- Peak memory is the arm process's VmHWM (peak resident set) after each stage; `evaluate` predicts the "
        "validation and test splits through the batched dataset, a batch at a time.",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores (shared with other work), CPU only; Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy "
        f"{np.__version__}. Date: {datetime.date.today().isoformat()}. Command: `{command}`.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data/speech_commands_v002_test_dev")
    parser.add_argument("--tree", default="/tmp/sc_full", help="where the full tree is written (~3.4 GB)")
    parser.add_argument("--clips", type=int, default=FULL_CLIPS)
    parser.add_argument("--subset-clips", type=int, default=10_000)
    parser.add_argument("--cache", default=None, help="LSTM_PIPELINES_CACHE of the arms; default: <tree>_cache")
    parser.add_argument("--steps", type=int, default=None, help="training batches of the full arm; default: all")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each subset arm, taking turns")
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in-memory-max-clips", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.in_memory_max_clips, args.steps)))
        return
    source, tree = Path(args.source), Path(args.tree)
    if not source.is_dir():
        sys.exit(f"error: {source} is not a folder")
    subset = tree.with_name(f"{tree.name}_subset")
    cache = Path(args.cache or tree.with_name(f"{tree.name}_cache"))
    command = "python benchmarks/speech_scale.py " + " ".join(sys.argv[1:])
    build_s = build_tree(source, tree, args.clips, subset, args.subset_clips)
    print(f"tree ready ({build_s:.0f} s)", flush=True)
    results = {"in memory, subset": [], "streamed, subset": []}
    for _ in range(args.repeats):
        results["in memory, subset"].append(arm_in_process(subset, 10**9, None, cache))
        results["streamed, subset"].append(arm_in_process(subset, 0, None, cache))
    results["streamed, full"] = [arm_in_process(tree, 0, args.steps, cache)]
    write_section(args.output, render(results, build_s, args, command), START, END, title="# Benchmarks\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
