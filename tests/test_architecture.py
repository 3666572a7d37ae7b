"""The layering of docs/architecture.md, read from the code's own imports."""

import ast
from pathlib import Path

import pytest

from pipelines.tasks import TASK_MODULES

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted(TASK_MODULES)
ROOMS = ("data", "features", "baselines", "evaluation", "serving", "task", "download", "synthetic")
ABOVE_TASKS = ("pipelines.runner", "pipelines.tuning", "pipelines.workflows", "pipelines.cli", "pipelines.demo")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(names: set[str], prefix: str) -> set[str]:
    return {name for name in names if name == prefix or name.startswith(prefix + ".")}


def test_the_model_zoo_knows_nothing_of_the_pipelines_optuna_or_mlflow():
    for path in (ROOT / "lstm_models").glob("*.py"):
        names = _imports(path)
        for outside in ("pipelines", "optuna", "mlflow"):
            assert not _under(names, outside), f"{path.name} imports {_under(names, outside)}"


@pytest.mark.parametrize("task", TASKS)
def test_a_task_imports_no_other_task_and_nothing_above_the_task_layer(task):
    for path in (ROOT / "pipelines" / task).glob("*.py"):
        names = _imports(path)
        for other in TASKS:
            if other != task:
                assert not _under(names, f"pipelines.{other}"), f"{task}/{path.name} imports the {other} task"
        for module in ABOVE_TASKS:
            assert not _under(names, module), f"{task}/{path.name} imports {module}"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_package_has_the_same_rooms(task):
    present = {path.stem for path in (ROOT / "pipelines" / task).glob("*.py")}
    assert set(ROOMS) <= present, f"{task} lacks {sorted(set(ROOMS) - present)}"
    assert not present & {"dataset", "windows", "metrics", "plots", "layouts", "layers", "audio", "detectors"}


def test_only_tuning_talks_to_optuna_among_the_engine_modules():
    for path in (ROOT / "pipelines").glob("*.py"):
        if path.stem not in ("tuning", "config", "workflows"):  # config builds distributions; workflows reads a study
            assert not _under(_imports(path), "optuna"), path.name
