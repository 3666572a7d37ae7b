"""`lstm-pipelines` (also `python -m pipelines`): train, tune, register, predict, export, stream, adapt, demo."""

import argparse
import logging
import os
import sys

from pipelines.tasks import ADAPTING_TASKS, TASK_MODULES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

INTERRUPTED = {  # what an interrupted command leaves behind
    "train": "the MLflow run is marked FAILED; rerun the command to train again",
    "tune": "finished trials are kept, rerun the same command to resume",
    "demo": "finished trials are kept, rerun the same command to resume",
    "adapt": "an adaptation run already started is marked FAILED; the model it came from is unchanged",
}


def _add_config_arguments(parser: argparse.ArgumentParser, tasks: tuple[str, ...] = tuple(TASK_MODULES)) -> None:
    parser.add_argument("task", choices=sorted(tasks), help="which pipeline")
    parser.add_argument("--config", help="YAML config (default: conf/<task>.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.units=128 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    Returns:
        An `argparse.ArgumentParser` with one subcommand per command.
    """
    parser = argparse.ArgumentParser(prog="lstm-pipelines", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="one training run; prints the MLflow run id and test metrics")
    _add_config_arguments(train)

    tune = commands.add_parser("tune", help="run or resume an Optuna study, one MLflow parent run")
    _add_config_arguments(tune)
    tune.add_argument(
        "--trials", type=int, help="finished trials the study should hold (default: search.trials of the config)"
    )
    tune.add_argument(
        "--timeout",
        type=float,
        help="stop starting new trials after this many seconds (default: search.timeout of the config)",
    )
    tune.add_argument("--study", help="study name (default: the task name); rerun to resume")
    tune.add_argument("--storage", help="Optuna storage URL or journal file (default: sqlite:///optuna.db)")
    tune.add_argument(
        "--register", action="store_true", help="register the best model; <task>@champion moves if it passes the gate"
    )
    tune.add_argument("--force", action="store_true", help="with --register: move the alias even if the gate refuses")

    register = commands.add_parser("register", help="register a study's best model with the alias")
    _add_config_arguments(register)
    register.add_argument("--study", help="study name (default: the task name)")
    register.add_argument("--storage", help="Optuna storage URL or journal file")
    register.add_argument("--force", action="store_true", help="move the alias even if the gate refuses")

    predict = commands.add_parser("predict", help="run a model on an input file and write a CSV")
    predict.add_argument("--model", required=True, help="model URI, e.g. models:/stock_forecasting@champion")
    predict.add_argument("--input", required=True, help="input file or folder")
    predict.add_argument(
        "--output", required=True, help="CSV to write (a folder of them for an anomaly model given a folder)"
    )
    predict.add_argument(
        "--warmup",
        type=int,
        metavar="N",
        help="anomaly models: rows a series the model never saw is calibrated on (default: NAB's 15%% of its rows)",
    )

    export = commands.add_parser("export", help="export a model and check it against the Keras model")
    export.add_argument("--model", required=True, help="model URI")
    export.add_argument("--format", required=True, choices=["keras", "savedmodel", "tflite", "onnx"])
    export.add_argument("--output", required=True, help="output folder")
    export.add_argument(
        "--int8",
        action="store_true",
        help="TFLite dynamic-range int8 quantisation of weight tensors of at least 1024 values (--format tflite only)",
    )

    stream = commands.add_parser(
        "stream",
        help="spot speech commands in long recordings, hop by hop; write file, word, start, end, confidence",
    )
    stream.add_argument("--model", required=True, help="speech model URI, e.g. models:/speech_commands@champion")
    stream.add_argument("--input", help="WAV file of any length, or a folder of them")
    stream.add_argument("--output", help="detections CSV to write (columns file, word, start, end, confidence)")
    stream.add_argument(
        "--export", metavar="DIR", help="also write the streaming model (SavedModel, TFLite) into DIR, checked"
    )
    stream.add_argument(
        "--config", help="YAML config whose spotting group is used (default: conf/speech_commands.yaml)"
    )
    stream.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set spotting.threshold=0.7 (repeatable)",
    )

    adapt = commands.add_parser(
        "adapt",
        help="self-train a speech model on a new speaker's unlabelled clips; log (and register) the result",
    )
    # Only the tasks that adapt, with their flags: the config the model was trained with (its data is
    # replayed and tested), then speech_commands's AdaptationSettings.
    _add_config_arguments(adapt, ADAPTING_TASKS)
    adapt.add_argument("--model", required=True, help="model URI, e.g. models:/speech_commands@champion")
    adapt.add_argument("--input", required=True, help="WAV file or folder of the new clips (no labels needed)")
    adapt.add_argument("--register", metavar="NAME", help="register the adapted model as NAME@<tracking.alias>")
    # Defaults (None: AdaptationSettings's, the benchmarked ones) are not imported here: that module loads Keras.
    adapt.add_argument(
        "--threshold", type=float, help="least probability of a clip's own label for it to be trained on (default: 0.8)"
    )
    adapt.add_argument("--epochs", type=int, help="fine-tuning epochs (default: 5)")
    adapt.add_argument("--learning-rate", type=float, help="Adam's learning rate (default: 0.0003)")
    adapt.add_argument("--batch-size", type=int, help="default: 32")
    adapt.add_argument(
        "--replay-ratio",
        type=float,
        help="training clips (true labels) replayed per new clip trained on (default: 2.0)",
    )
    adapt.add_argument("--seed", type=int, help="draws the replayed clips, seeds the fine-tuning (default: 0)")

    demo = commands.add_parser("demo", help="a short tune of every task on offline data, then a summary")
    demo.add_argument("--trials", type=int, default=None, help="trials per task (default: from the demo)")
    return parser


def _print_metrics(metrics: dict[str, float]) -> None:
    for key in sorted(metrics):
        if key.startswith("test_"):
            print(f"  {key:<32} {metrics[key]:.6g}")


def _stream(args: argparse.Namespace) -> None:
    """`stream`: export a speech model's streaming form and/or spot words in recordings (`workflows.stream`)."""
    from pipelines import workflows

    result = workflows.stream(args.model, args.input, args.output, args.config, args.overrides, args.export)
    if result.export is not None:
        exported = result.export
        gaps = ", ".join(f"{name} {gap:.3g}" for name, gap in exported.max_abs_diff.items())
        print(
            f"exported the streaming model to {exported.saved_model} and {exported.tflite} ({exported.metadata}); "
            f"max abs difference vs Keras over {exported.hops_checked} hops: {gaps}"
        )
    if result.detections is not None:
        mode = "streaming" if result.mode == "streaming" else "sliding window: the whole model every hop"
        print(f"wrote {len(result.detections)} detection(s) to {args.output} ({mode})")


def run(args: argparse.Namespace) -> None:
    """Dispatch parsed arguments to `pipelines.workflows`.

    Args:
        args: What `build_parser().parse_args` returned.
    """
    from pipelines import workflows

    if args.command == "train":
        result = workflows.train(args.task, args.config, args.overrides)
        print(f"run id: {result.run_id}\nmodel: {result.model_uri}\ntest metrics:")
        _print_metrics(result.evaluation.metrics)
        if result.evaluation.summary:
            print(result.evaluation.summary)
    elif args.command == "tune":
        result = workflows.tune(
            args.task,
            args.trials,
            args.config,
            args.overrides,
            args.timeout,
            args.study,
            args.storage,
            args.register,
            args.force,
        )
        print(f"study: {result.study_name}  parent run: {result.parent_run_id}  trials: {result.counts}")
        if result.best_trial is not None:
            print(f"best trial {result.best_trial.number}: {result.best_trial.params}")
            _print_metrics(result.best_trial.user_attrs.get("metrics", {}))
        if result.model_version is not None:
            print(result.model_version.message())
    elif args.command == "register":
        registration = workflows.register(
            args.task, args.study, args.storage, args.config, args.overrides, force=args.force
        )
        print(registration.message())
    elif args.command == "predict":
        predictions = workflows.predict(args.model, args.input, args.output, warmup=args.warmup)
        if isinstance(predictions, dict):
            print(f"wrote {len(predictions)} files ({sum(map(len, predictions.values()))} rows) under {args.output}")
        else:
            print(f"wrote {len(predictions)} rows to {args.output}")
    elif args.command == "export":
        result = workflows.export(args.model, args.format, args.output, int8=args.int8)
        print(
            f"exported {result.format} to {result.path} ({result.size_bytes} bytes); "
            f"max abs difference vs Keras: {result.max_abs_diff:.3g}"
        )
    elif args.command == "stream":
        _stream(args)
    elif args.command == "adapt":
        import dataclasses

        from pipelines.speech_commands.adaptation import AdaptationSettings

        given = {field.name: getattr(args, field.name) for field in dataclasses.fields(AdaptationSettings)}
        settings = AdaptationSettings(**{key: value for key, value in given.items() if value is not None})
        result = workflows.adapt(
            args.task, args.model, args.input, settings, args.config, args.overrides, register_as=args.register
        )
        counts = result.metrics
        print(
            f"run id: {result.run_id}\nmodel: {result.model_uri}\n"
            f"trained on {counts['adapt_pseudo_labels']} of {counts['adapt_clips']} new clips (their own labels) "
            f"and {counts['adapt_replayed_clips']} training clips; {counts['adapt_changed_labels']:.1%} changed label"
        )
        print(f"test accuracy: {counts['source_test_accuracy']:.4f} before, ", end="")
        print(f"{result.evaluation.metrics['test_accuracy']:.4f} after")
        if result.model_version is not None:
            print(f"registered {result.model_version.name} version {result.model_version.version}")
    elif args.command == "demo":
        from pipelines import demo

        demo.main(trials=args.trials)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lstm-pipelines` console script.

    Args:
        argv: The arguments. Default: `sys.argv[1:]`.

    Returns:
        The exit status: 0, 2 for a pipeline error, 130 when interrupted.
    """
    from pipelines.errors import PipelineError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export" and args.int8 and args.format != "tflite":
        # Checked before the model is loaded: export_model would refuse it after the download.
        parser.error(f"--int8 applies to --format tflite only, not --format {args.format}")
    if args.command == "predict" and args.warmup is not None and args.warmup < 1:
        parser.error(f"--warmup: expected a positive number of rows, got {args.warmup}")
    if args.command == "stream" and (args.input is None) != (args.output is None):
        parser.error("stream: --input and --output go together")
    if args.command == "stream" and args.input is None and args.export is None:
        parser.error("stream: give --input and --output, --export, or both")
    if args.command == "export" and not args.output.strip():  # Path("") is the working directory
        parser.error("--output: expected a folder, got an empty name")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("; ".join(["interrupted", *filter(None, [INTERRUPTED.get(args.command)])]), file=sys.stderr)
        return 130
    return 0


def console() -> None:
    """Console-script wrapper: exit with `main`'s status."""
    sys.exit(main())
