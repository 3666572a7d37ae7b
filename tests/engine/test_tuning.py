"""The tuning engine without training: studies, sampler seeds, parent runs, storage errors."""

import pytest

from pipelines import tuning
from pipelines.tasks import get_task
from pipelines.workflows import load_task_config

# The tests ask for trials directly; Optuna warns that heartbeats are meant for `optimize`.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def config():
    return load_task_config(get_task("stock_forecasting"))


def _first_params(study, config):
    return tuning.suggest(study.ask(), config.search.space)


def test_workers_opening_a_new_study_together_propose_different_parameters(config, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Both open the study before either asks for a trial, as workers started together do.
    opened = [tuning.load_or_create_study("shared", tuning.open_storage(url), "minimize", config.seed) for _ in "ab"]
    assert [created for _, created in opened] == [True, False]
    first, second = (_first_params(study, config) for study, _ in opened)
    assert first != second


def test_a_new_study_proposes_the_same_parameters_for_the_same_seed(config, tmp_path):
    proposals = []
    for name in ("one", "two"):
        storage = tuning.open_storage(f"sqlite:///{tmp_path / name}.db")
        study, created = tuning.load_or_create_study(name, storage, "minimize", config.seed)
        assert created
        proposals.append(_first_params(study, config))
    assert proposals[0] == proposals[1]
