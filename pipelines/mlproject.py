"""Adapter for the MLproject entry points: MLflow passes every parameter, empty meaning unset.

`overrides` is a space-separated list of KEY=VALUE pairs (`-P overrides="model.units=64 train.epochs=3"`).
"""

import argparse
import os
import sys

from pipelines.cli import main


def to_cli_arguments(argv):
    """Translate the MLproject parameters into `lstm-pipelines` arguments."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.mlproject")
    parser.add_argument("command", choices=["train", "tune", "register", "demo"])
    parser.add_argument("--task", default="")
    for name in ("config", "overrides", "study", "storage", "register", "trials", "timeout"):
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
    if args.command == "tune":
        if args.trials and float(args.trials) > 0:  # 0 (the default): the config's search.trials
            cli += ["--trials", str(int(float(args.trials)))]
        if args.timeout and float(args.timeout) > 0:
            cli += ["--timeout", args.timeout]
        if args.register.lower() in ("1", "true", "yes"):
            cli.append("--register")
    return cli


def detach_from_project_run():
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
