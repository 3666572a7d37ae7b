"""Config loading: every shipped config builds; bad keys and types name the dotted path."""

import dataclasses
import re

import pytest

from pipelines.config import (
    CONF_DIR,
    ModelConfig,
    load_config,
    make_config_class,
    parse_override,
    with_values,
)
from pipelines.errors import ConfigError


@dataclasses.dataclass
class ToyDataConfig:
    path: str | None = None


@dataclasses.dataclass
class ToyFeaturesConfig:
    window: int = 10


@dataclasses.dataclass
class ToyForecastConfig:
    horizon: int = 5


ToyConfig = make_config_class(
    "ToyConfig",
    data=ToyDataConfig,
    features=ToyFeaturesConfig,
    output=("forecast", ToyForecastConfig),
    moved={"data.window": "features.window", "data.shuffle": "removed: it measured no gain"},
)


def _write(tmp_path, text):
    path = tmp_path / "conf.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    path = _write(tmp_path, "features:\n  window: 20\nmodel:\n  units: 16\n")
    config = load_config(ToyConfig, path, ["model.units=128", "data.path=prices.csv", "train.learning_rate=1e-2"])
    assert config.features.window == 20
    assert config.model.units == 128
    assert config.data.path == "prices.csv"
    assert config.train.learning_rate == pytest.approx(0.01)
    assert config.model == ModelConfig(units=128)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model:\n  unitz: 3\n", [], r"model.unitz: unknown key; allowed keys: variant, units"),
        ("model:\n  units: many\n", [], r"model.units: expected int, got 'many'"),
        ("train:\n  learning_rate: fast\n", [], r"train.learning_rate: expected float"),
        ("", ["features.window=1.5"], r"features.window: expected int, got 1.5"),
        ("", ["seed=true"], r"seed: expected int, got True"),
        ("", ["train.ensemble_size=0"], r"train.ensemble_size: expected a positive integer, got 0"),
        ("", ["train.lr_schedule=step"], r"train.lr_schedule: expected constant or cosine, got 'step'"),
        ("", ["train.ema_momentum=0.99"], r"train.ema_momentum: removed: a moving average of the weights"),
        ("", ["data.window=20"], r"data.window: moved to features.window"),
        ("data:\n  window: 20\n", [], r"data.window: moved to features.window"),
        ("", ["data.shuffle=true"], r"data.shuffle: removed: it measured no gain"),
        ("", ["search.space.data.window={type: int, low: 5, high: 9}"], r"search.space.data.window: moved to"),
        ("", ["augment.noise=1"], r"augment.noise: unknown key; this group has no keys for this task"),
        ("", ["forecast.horizon=0.5"], r"forecast.horizon: expected int, got 0.5"),
        ("", ["nonsense.key=1"], r"nonsense: unknown key"),
        ("search:\n  space:\n    model.unitz: {type: int, low: 1, high: 2}\n", [], r"search.space.model.unitz"),
        ("search:\n  space:\n    model.units: {type: normal}\n", [], r"search.space.model.units.type"),
        ("search:\n  space:\n    model.units: {type: int, low: 5, high: 1}\n", [], r"low <= high"),
        ("search:\n  space:\n    model.units: {type: int, lo: 5}\n", [], r"search.space.model.units.lo: unknown key"),
        ("model: [1, 2]\n", [], r"model: expected a mapping"),
        ("", ["model.variant=transformer"], r"model.variant: expected one of rnn, lstm, .*, got 'transformer'"),
        ("", ["model.units=0"], r"model.units: expected a positive integer, got 0"),
        ("", ["model.num_layers=-1"], r"model.num_layers: expected a positive integer, got -1"),
        ("", ["model.dropout=1.5"], r"model.dropout: expected a number in \[0, 1\), got 1.5"),
        ("", ["model.recurrent_dropout=1"], r"model.recurrent_dropout: expected a number in \[0, 1\), got 1.0"),
        ("", ["model.dropout=-0.1"], r"model.dropout: expected a number in \[0, 1\), got -0.1"),
        ("", ["train.epochs=0"], r"train.epochs: expected a positive integer, got 0"),
        ("", ["train.batch_size=-8"], r"train.batch_size: expected a positive integer, got -8"),
        ("", ["train.learning_rate=0"], r"train.learning_rate: expected a positive number, got 0.0"),
        ("", ["train.learning_rate=.nan"], r"train.learning_rate: expected a positive number, got nan"),
        ("", ["train.clipnorm=-1"], r"train.clipnorm: expected a positive number, got -1.0"),
        ("", ["train.early_stopping_patience=-1"], r"train.early_stopping_patience: expected an integer >= 0, got -1"),
        ("", ["train.verbose=-1"], r"train.verbose: expected 0 \(silent\), 1 \(progress bar\) or 2 .*, got -1"),
        ("", ["seed=-1"], r"seed: expected an integer from 0 to 4294967295, got -1"),
        ("", ["seed=4294967296"], r"seed: expected an integer from 0 to 4294967295, got 4294967296"),
        ("", ["tracking.alias=latest"], r"tracking.alias: latest and v<number> are reserved by MLflow, got 'latest'"),
        ("", ["tracking.alias=V3"], r"tracking.alias: latest .* reserved by MLflow, got 'V3'"),
        ("", ["tracking.alias=best model"], r"tracking.alias: expected 1 to 255 letters, .*, got 'best model'"),
        ("", ["tracking.alias=''"], r"tracking.alias: expected 1 to 255 letters"),
        ("", ["tracking.alias=a.b"], r"tracking.alias: expected 1 to 255 letters"),
        (
            "",
            ["tracking.experiment=2024"],
            r"""expected str, got 2024 \(YAML reads it as a number\); quote it: tracking.experiment='"..."'""",
        ),
        ("", ["tracking.alias=off"], r"alias: expected str, got False \(YAML reads it as true/false\); quote it"),
    ],
)
def test_bad_config_names_the_dotted_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(ToyConfig, _write(tmp_path, text), overrides)
    assert str(tmp_path / "conf.yaml") in str(info.value)
    if overrides:  # the error says which --set gave the bad value
        assert str(info.value).endswith(f" (given by --set {overrides[-1]!r})")


@pytest.mark.parametrize(("text", "kind"), [("- model\n- train\n", "list"), ("just text\n", "str")])
def test_a_config_file_that_is_not_a_mapping_is_named_with_overrides_too(tmp_path, text, kind):
    path = _write(tmp_path, text)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: config: expected a mapping of sections, got {kind}$"
    ):
        load_config(ToyConfig, path, ["model.units=8"])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("model.units")
    assert parse_override("model.variant=gru") == ("model.variant", "gru")
    assert parse_override("search.timeout=") == ("search.timeout", None)
    with pytest.raises(ConfigError, match=r"--set 'model.units=\[1,': the value is not valid YAML"):
        parse_override("model.units=[1,")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ToyConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ToyConfig, _write(tmp_path, "model: {units: [\n"))


def test_with_values_revalidates_and_copies():
    config = load_config(ToyConfig)
    changed = with_values(config, {"model.units": 8, "features.window": 5})
    assert (changed.model.units, changed.features.window) == (8, 5)
    assert config.model.units == 64, "the original config must not change"
    with pytest.raises(ConfigError, match="model.units: expected int"):
        with_values(config, {"model.units": "x"})


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds(path):
    from pipelines.tasks import get_task

    task = get_task(path.stem)
    config = load_config(task.config_class, path)
    assert config.search.space, "each task ships a search space"
    assert task.objective.startswith("val_")


def test_every_task_config_has_the_same_groups():
    from pipelines.config import GROUPS
    from pipelines.tasks import TASK_MODULES, get_task

    for name in TASK_MODULES:
        config_class = get_task(name).config_class
        fields = [field.name for field in dataclasses.fields(config_class)]
        own = [field for field in fields if field not in (*GROUPS, "seed")]
        assert fields[: len(GROUPS)] == list(GROUPS), name
        assert len(own) <= 1 and own == ([config_class.OUTPUT_GROUP] if config_class.OUTPUT_GROUP else []), name


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("**/*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_yaml_has_the_groups_in_order(path):
    import yaml

    from pipelines.config import GROUPS

    keys = list(yaml.safe_load(path.read_text()))
    assert [key for key in keys if key in GROUPS] == [group for group in GROUPS if group in keys]
    if path.parent == CONF_DIR:  # a task's full config; conf/experiments/ holds recipes that set a few keys
        assert set(GROUPS) <= set(keys), f"{path.name} lacks {set(GROUPS) - set(keys)}"


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("{type: int, low: 0, high: 8, log: true}", r"`low >= 1` must hold for `log=True`"),
        ("{type: int, low: 1, high: 8, log: true, step: 2}", r"step is 1 when `log` argument is True"),
        ("{type: int, low: 8, high: 64.5}", r"int parameters need whole numbers, got low=8.0, high=64.5"),
        ("{type: int, low: 8, high: 64, step: -2}", r"`step > 0` must hold"),
        ("{type: categorical, choices: []}", r"a categorical parameter needs a non-empty list"),
        ("{type: float, low: 8, high: 64}", r"8.0 is not a valid model.units \(model.units: expected int, got 8.0\)"),
        ("{type: categorical, choices: [16, 'many']}", r"'many' is not a valid model.units"),
        ("{type: int, low: 0, high: 8}", r"0 is not a valid model.units \(model.units: expected a positive integer"),
    ],
)
def test_bad_search_space_names_the_entry(param, message):
    with pytest.raises(ConfigError, match=rf"^search.space.model.units\S*: .*{message}"):
        load_config(ToyConfig, overrides=[f"search.space.model.units={param}"])


@pytest.mark.parametrize(
    ("key", "param", "message"),
    [
        ("train.learning_rate", "{type: float, low: 0.0, high: 0.1, log: true}", r"`low > 0` must hold"),
        ("train.learning_rate", "{type: float, low: 0.001, high: 0.1, log: true, step: 0.01}", r"`step` is not"),
        ("model.dropout", "{type: float, low: 0.0, high: 1.0}", r"1.0 is not a valid model.dropout"),
        ("model.variant", "{type: int, low: 1, high: 3}", r"1 is not a valid model.variant"),
        ("model.variant", "{type: categorical, choices: [lstm, transformer]}", r"'transformer' is not a valid"),
    ],
)
def test_search_space_values_must_fit_their_key(key, param, message):
    with pytest.raises(ConfigError, match=rf"^search.space.{key}: .*{message}"):
        load_config(ToyConfig, overrides=[f"search.space.{key}={param}"])


def test_search_space_entries_can_be_set_replaced_and_removed(tmp_path):
    path = _write(tmp_path, "search:\n  space:\n    model.units: {type: int, low: 8, high: 16}\n")
    config = load_config(
        ToyConfig,
        path,
        [
            "search.space.model.units={type: int, low: 8, high: 64, log: true}",
            "search.space.train.learning_rate={type: float, low: 1e-4, high: 1e-2, log: true}",
            "search.space.features.window={type: categorical, choices: [5, 10]}",
            "search.space.features.window=",
        ],
    )
    assert list(config.search.space) == ["model.units", "train.learning_rate"]
    assert (config.search.space["model.units"].high, config.search.space["model.units"].log) == (64, True)
    assert config.search.space["train.learning_rate"].low == pytest.approx(1e-4)
    one_bound = load_config(ToyConfig, path, ["search.space.model.units.high=128"])
    assert (one_bound.search.space["model.units"].low, one_bound.search.space["model.units"].high) == (8, 128)
    with pytest.raises(ConfigError, match=r"search.space.model.unitz: model.unitz is not a config key"):
        load_config(ToyConfig, path, ["search.space.model.unitz={type: int, low: 8, high: 64}"])


def test_override_into_a_section_left_null(tmp_path):
    path = _write(tmp_path, "tracking:\n  # alias: champion\nsearch:\nmodel:\n  units: 8\n")
    config = load_config(
        ToyConfig, path, ["tracking.alias=staging", "search.space.model.units={type: int, low: 8, high: 9}"]
    )
    assert (config.tracking.alias, config.model.units) == ("staging", 8)
    assert list(config.search.space) == ["model.units"]
    with pytest.raises(ConfigError, match=r"model.units.x: units is not a section"):
        load_config(ToyConfig, path, ["model.units.x=1"])


def _mlflow_and_we_agree(mlflow_checks, value, override):
    """Whether MLflow's own validators and `load_config` with `override` accept `value` alike."""
    from mlflow.exceptions import MlflowException

    try:
        for check in mlflow_checks:
            check(value)
        mlflow_accepts = True
    except MlflowException:
        mlflow_accepts = False
    try:
        load_config(ToyConfig, overrides=[override])
        we_accept = True
    except ConfigError:
        we_accept = False
    return we_accept == mlflow_accepts


@pytest.mark.parametrize(
    "alias", ["champion", "challenger-2", "v1x", "Latest_model", "v", "x" * 255, "latest", "v12", "a b", "x" * 256]
)
def test_alias_rule_matches_mlflow(alias):
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    checks = (_validate_model_alias_name, _validate_model_alias_name_reserved)
    assert _mlflow_and_we_agree(checks, alias, f"tracking.alias={alias}")


@pytest.mark.parametrize("name", ["stock", "my model", "x.y", "a/b", "a:b", ".", "..", "..x", "  "])
def test_registered_model_rule_matches_mlflow(name):
    from mlflow.utils.validation import _validate_model_name

    assert _mlflow_and_we_agree((_validate_model_name,), name, f"tracking.registered_model='{name}'")


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (
            "model: [1\n",
            [],
            r"conf.yaml: not valid YAML: expected ',' or '\]', but got '<stream end>' \(line 2, column 1\)",
        ),
        (
            "",
            ["model.units=[1"],
            r"the value is not valid YAML: expected ',' or '\]', but got '<stream end>' \(line 1, column 3\)",
        ),
    ],
)
def test_yaml_errors_are_one_line_with_their_place(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(ToyConfig, _write(tmp_path, text), overrides)
    assert "\n" not in str(info.value)


def test_a_task_config_pickles():
    import pickle

    from pipelines.stock_forecasting.task import StockConfig

    config = load_config(StockConfig, None, ["features.window=12"])
    assert StockConfig.__module__ == "pipelines.stock_forecasting.task"
    assert pickle.loads(pickle.dumps(config)) == config
