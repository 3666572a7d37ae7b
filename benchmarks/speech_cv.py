"""Speaker-grouped cross-validation of a speech recipe on a Speech Commands tree.

Usage:
    python benchmarks/speech_cv.py --name default
    python benchmarks/speech_cv.py --name reference --config conf/experiments/speech_plain_crnn.yaml
    python benchmarks/speech_cv.py --name "default + mixup" --set augment.mixup_alpha=0.2
    python benchmarks/speech_cv.py --folds 4 --only-fold 0 --name timing     # one fold: time it first
    python benchmarks/speech_cv.py --table                                   # write the section from the log

The speakers of `--data` (by default the 129 of `speech_commands_v002_test_dev`) are cut into
`--folds` groups with scikit-learn's `StratifiedGroupKFold` (grouped by speaker, stratified by the
12-class label, shuffled with `--fold-seed`). For each fold, a tree of symbolic links to the word
folders is written with its own split lists: the fold's speakers are `testing_list.txt`, a
`--val-fraction` of the other speakers (`GroupShuffleSplit`) is `validation_list.txt` (early
stopping), the rest trains. Each fold is one `workflows.train` of the recipe, exactly as
`lstm-pipelines train speech_commands --config <recipe> --set data.path=<fold tree> --set ...`
runs it (logged to MLflow's experiment `speech_cv`), and is scored by its 12-class `test_accuracy`
on the fold's speakers (ten commands, `_unknown_`, `_silence_`, as the loader samples them).

Each recipe's folds are appended to `--log` (JSON lines); `--table` writes the table of every
recipe in the log into `docs/results.md`, between markers this script owns.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
from report import cpu_model, markdown_table, write_section  # benchmarks/report.py

START, END = "<!-- speech_cv:start -->", "<!-- speech_cv:end -->"
DATA = "../shared/data/speech_commands_v002_test_dev"
WORKDIR = Path("outputs/speech_cv")
LOG = WORKDIR / "results.jsonl"


def speaker_table(root: Path) -> pd.DataFrame:
    """Every clip of a Speech Commands tree with its speaker and 12-class stratification label.

    Args:
        root: The tree.

    Returns:
        A DataFrame `relative, speaker, label` (`relative` is `word/file.wav`).
    """
    from pipelines.speech_commands.data import COMMANDS, UNKNOWN, list_records

    _, records = list_records(root, layout="speech_commands")
    relative = [f"{Path(f).parent.name}/{Path(f).name}" for f in records["file"]]
    label = [word if word in COMMANDS else UNKNOWN for word in records["word"]]
    return pd.DataFrame({"relative": relative, "speaker": records["speaker"], "label": label})


def fold_lists(clips: pd.DataFrame, folds: int, fold_seed: int, val_fraction: float) -> list[dict[str, list[str]]]:
    """The validation and test clips of each fold; every other clip trains.

    Args:
        clips: `speaker_table`'s frame.
        folds: Number of speaker groups.
        fold_seed: Seed of the speaker shuffles.
        val_fraction: Share of each fold's training speakers held out for early stopping.

    Returns:
        One `{"val": [...], "test": [...]}` per fold, paths relative to the tree.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=fold_seed)
    result = []
    for rest, test in splitter.split(clips, clips["label"], groups=clips["speaker"]):
        inner = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=fold_seed)
        _, val = next(inner.split(rest, groups=clips["speaker"].iloc[rest]))
        result.append(
            {
                "val": sorted(clips["relative"].iloc[rest[val]]),
                "test": sorted(clips["relative"].iloc[test]),
            }
        )
    return result


def write_fold_tree(root: Path, tree: Path, lists: dict[str, list[str]]) -> Path:
    """A Speech Commands tree of symbolic links to `root`'s folders, with the fold's split lists.

    Args:
        root: The full tree.
        tree: Where to write the fold's tree (reused when it exists).
        lists: The fold's `val` and `test` clips.

    Returns:
        `tree`.
    """
    tree.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        link = tree / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    (tree / "validation_list.txt").write_text("\n".join(lists["val"]) + "\n")
    (tree / "testing_list.txt").write_text("\n".join(lists["test"]) + "\n")
    return tree


def run_fold(config: str | None, tree: Path, overrides: list[str]) -> dict:
    """One tracked training run on a fold's tree.

    Args:
        config: The recipe file (`--config`); `None`: `conf/speech_commands.yaml`.
        tree: The fold's tree.
        overrides: `--set KEY=VALUE` strings after `data.path`.

    Returns:
        The run's test and validation accuracy, epochs, seconds, test clips and run id.
    """
    from pipelines import workflows

    start = time.monotonic()
    run = workflows.train("speech_commands", config, [f"data.path={tree}", "tracking.experiment=speech_cv", *overrides])
    metrics = run.evaluation.metrics
    return {
        "test_accuracy": metrics["test_accuracy"],
        "test_macro_f1": metrics.get("test_macro_f1"),
        "epochs": run.epochs,
        "seconds": time.monotonic() - start,
        "run_id": run.run_id,
    }


def measure(args: argparse.Namespace) -> None:
    """Cross-validate one recipe; append each fold's result to the log."""
    from pipelines.speech_commands.task import TASK
    from pipelines.workflows import load_task_config

    load_task_config(TASK, args.config, [f"data.path={args.data}", *args.overrides])  # a bad key fails here
    root = Path(args.data)
    clips = speaker_table(root)
    lists = fold_lists(clips, args.folds, args.fold_seed, args.val_fraction)
    command = recipe_command(sys.argv[1:])
    chosen = range(args.folds) if args.only_fold is None else [args.only_fold]
    args.log.parent.mkdir(parents=True, exist_ok=True)
    for fold in chosen:
        name = f"{args.folds}fold_seed{args.fold_seed}_{fold}"
        tree = write_fold_tree(root, args.workdir / "trees" / name, lists[fold])
        result = run_fold(args.config, tree, args.overrides)
        speakers = clips.set_index("relative").loc[lists[fold]["test"], "speaker"].nunique()
        row = {
            "name": args.name,
            "command": command,
            "config": args.config or "conf/speech_commands.yaml",
            "overrides": args.overrides,
            "folds": args.folds,
            "fold_seed": args.fold_seed,
            "fold": fold,
            "test_speakers": int(speakers),
            "date": datetime.date.today().isoformat(),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, CPU only",
            **result,
        }
        print(json.dumps(row), flush=True)
        with args.log.open("a") as log:
            log.write(json.dumps(row) + "\n")


def recipe_command(argv: list[str]) -> str:
    """The command that measures the whole recipe: `argv` without `--only-fold`, `--log` and `--workdir`.

    Args:
        argv: The script's arguments.

    Returns:
        The command line; arguments with spaces or braces are quoted.
    """
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--only-fold", "--log", "--workdir"):
            skip = True
        elif not arg.startswith(("--only-fold=", "--log=", "--workdir=")):
            kept.append(f'"{arg}"' if " " in arg or "{" in arg else arg)
    return " ".join(["python benchmarks/speech_cv.py", *kept])


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per recipe (the latest command of each name): folds, mean, spread and minutes.

    Args:
        rows: The log's rows.

    Returns:
        One row per recipe, in the order of first appearance.
    """
    latest = rows.groupby("name", sort=False)["command"].transform("last")
    rows = (
        rows[rows["command"] == latest]
        .drop_duplicates(["name", "fold"], keep="last")
        .sort_values("fold", kind="stable")
    )
    grouped = rows.groupby("name", sort=False)
    return pd.DataFrame(
        {
            "folds": grouped["fold"].count(),
            "of": grouped["folds"].first(),
            "mean": grouped["test_accuracy"].mean(),
            "std": grouped["test_accuracy"].std(ddof=1),
            "low": grouped["test_accuracy"].min(),
            "high": grouped["test_accuracy"].max(),
            "per_fold": grouped.apply(
                lambda part: ", ".join(
                    f"{f}: {a:.3f}" for f, a in zip(part["fold"], part["test_accuracy"], strict=True)
                )
            ),
            "epochs": grouped["epochs"].mean(),
            "minutes": grouped["seconds"].sum() / 60,
            "command": grouped["command"].first(),
            "date": grouped["date"].last(),
            "machine": grouped["machine"].last(),
        }
    ).reset_index()


def render(table: pd.DataFrame, data: str) -> str:
    """The Markdown section, markers included."""
    import keras
    import tensorflow as tf

    rows = [
        {
            "recipe": row["name"],
            "folds": f"{row['folds']} of {row['of']}",
            "CV accuracy, mean ± std": f"{row['mean']:.3f} ± {row['std']:.3f}",
            "per fold": row["per_fold"],
            "epochs (mean)": f"{row['epochs']:.0f}",
            "minutes (all folds)": f"{row['minutes']:.0f}",
            "command": f"`{row['command']}`",
        }
        for _, row in table.iterrows()
    ]
    return "\n".join(
        [
            START,
            "### Speaker-grouped cross-validation on Speech Commands (12 classes)",
            "",
            "Written by `benchmarks/speech_cv.py --table`; do not edit by hand between the markers.",
            "",
            markdown_table(rows, "lrrlrrl"),
            "",
            f"- Data: `{data}`, Speech Commands v0.02 test-set clips of 129 speakers, cut into speaker folds "
            "(`StratifiedGroupKFold`, fold seed 0); each fold trains on the other folds' speakers (a tenth of "
            "them held out for early stopping) and is scored on its own speakers' clips: the ten commands, "
            "`_unknown_` and `_silence_` as the loader samples them (`data.unknown_fraction`, "
            "`data.silence_fraction`).",
            "- std is the sample standard deviation over the folds; the folds are the same for every recipe, so "
            "per-fold figures compare pairwise. Each fold trains one run of the recipe (seed 42) through "
            "`workflows.train` (the path of `lstm-pipelines train`).",
            f"- Machine: {table['machine'].iloc[-1]}, shared with other work; Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}. Dates: "
            f"{', '.join(sorted(set(table['date'])))}.",
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DATA, help=f"a Speech Commands tree (default: {DATA})")
    parser.add_argument("--name", help="the recipe's name in the table")
    parser.add_argument("--config", default=None, help="recipe file (default: conf/speech_commands.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, as --set")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--only-fold", type=int, default=None, help="run this fold only (0-based)")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="fold trees are written here")
    parser.add_argument("--log", type=Path, default=LOG, help="JSON lines, one per fold")
    parser.add_argument("--table", action="store_true", help="write the section from the log and stop")
    parser.add_argument("--output", default="docs/results.md")
    args = parser.parse_args()
    if args.table:
        rows = pd.read_json(args.log, lines=True, dtype=False)
        write_section(args.output, render(summary(rows), args.data), START, END)
        print(summary(rows).drop(columns=["command", "machine"]).to_string(index=False))
        return
    if not args.name:
        parser.error("--name is required (the recipe's row in the table)")
    if not (Path(args.data) / "testing_list.txt").is_file() and not Path(args.data, "yes").is_dir():
        sys.exit(f"error: {args.data} is not a Speech Commands tree")
    measure(args)


if __name__ == "__main__":
    main()
