"""Adapter for the MLproject entry points: MLflow passes every parameter, empty meaning unset.

`overrides` is a space-separated list of KEY=VALUE pairs (`-P overrides="model.units=64 train.epochs=3"`).
"""

import argparse
import math
import os
import sys

from pipelines.cli import main


def to_cli_arguments(argv: list[str]) -> list[str]:
    """Translate the MLproject parameters into `lstm-pipelines` arguments.

    Args:
        argv: The arguments MLflow passes (`command --task ... --overrides ...`), empty meaning unset.

    Returns:
        The `lstm-pipelines` command line, without the program name.
    """
    parser = argparse.ArgumentParser(prog="python -m pipelines.mlproject")
    parser.add_argument("command", choices=["train", "tune", "register", "adapt", "demo"])
    parser.add_argument("--task", default="")
    for name in ("config", "overrides", "study", "storage", "register", "force", "trials", "timeout", "model", "input"):
        parser.add_argument(f"--{name}", default="")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return ["demo"]
    if not args.task:
        parser.error(f"{args.command} needs --task")
    cli = [args.command, args.task]
    if args.config:
        cli += ["--config", args.config]
    for pair in args.overrides.split():
        cli += ["--set", pair]
    if args.command in ("tune", "register"):
        cli += ["--study", args.study] if args.study else []
        cli += ["--storage", args.storage] if args.storage else []
        cli += ["--force"] if args.force.lower() in ("1", "true", "yes") else []
    if args.command == "adapt":
        if not (args.model and args.input):
            parser.error("adapt needs --model and --input")
        cli += ["--model", args.model, "--input", args.input]
        cli += ["--register", args.register] if args.register else []  # a registered model name
    if args.command == "tune":
        # 0 (the default): the config's search.trials and search.timeout
        if trials := _number(parser, "trials", args.trials, whole=True):
            cli += ["--trials", str(int(trials))]
        if timeout := _number(parser, "timeout", args.timeout, whole=False):
            cli += ["--timeout", repr(timeout)]
        if args.register.lower() in ("1", "true", "yes"):
            cli.append("--register")
    return cli


def _number(parser: argparse.ArgumentParser, name: str, text: str, whole: bool) -> float:
    """The parameter as a float (0 when empty), or a usage error naming it.

    MLflow passes a `float` parameter on as the text it was given, unchecked.
    """
    what = "a whole number" if whole else "a number of seconds"
    try:
        value = float(text or 0)
    except ValueError:
        parser.error(f"{name}: expected {what} >= 0 (0: the config's), got {text!r}")
    if not math.isfinite(value) or value < 0 or (whole and not value.is_integer()):
        parser.error(f"{name}: expected {what} >= 0 (0: the config's), got {text!r}")
    return value


def detach_from_project_run() -> None:
    """Let the commands manage their own runs and experiments.

    `mlflow run` starts a run in its own experiment and passes it in `MLFLOW_RUN_ID`; the pipelines
    log to one experiment per task (and a tune to a parent run kept with the study), so they
    must not be bound to that run.
    """
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)


if __name__ == "__main__":
    detach_from_project_run()
    sys.exit(main(to_cli_arguments(sys.argv[1:])))
