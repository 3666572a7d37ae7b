"""Task configs: YAML in `conf/<task>.yaml`, validated against dataclasses where they are loaded.

Every section is a dataclass; an unknown key or a value of the wrong type fails with the dotted key
path (`model.units: expected int, got 'many'`). `--set a.b=value` overrides are applied to the raw
YAML before validation, so they are checked the same way.
"""

import copy
import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lstm_models import VARIANTS
from pipelines.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
PARAM_TYPES = ("categorical", "int", "float")
SPACE_PREFIX = "search.space."
SPACE_FIELDS = ("type", "choices", "low", "high", "log", "step")  # SearchParam's
SEED_MAX = 2**32 - 1  # NumPy's and TensorFlow's seed range
ALIAS_PATTERN = re.compile(r"[\w-]+")  # MLflow's rule for registered model aliases
RESERVED_ALIAS_PATTERN = re.compile(r"[vV]\d+")  # MLflow's version aliases


@dataclasses.dataclass
class ModelConfig:
    """Recurrent model hyperparameters, passed to `lstm_models.build_model`."""

    variant: str = "lstm"
    units: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"model.variant: expected one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for key in ("units", "num_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("dropout", "recurrent_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"model.{key}: expected a number in [0, 1), got {getattr(self, key)!r}")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # or cosine: per epoch from learning_rate down to 0 at `epochs`
    early_stopping_patience: int = 5
    clipnorm: float = 1.0
    verbose: int = 2
    strategy: str = "default"
    ensemble_size: int = 1  # members trained with seeds seed, seed + 1, ...; the logged model averages their outputs

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("learning_rate", "clipnorm"):
            if not 0 < getattr(self, key) < math.inf:
                raise ConfigError(f"train.{key}: expected a positive number, got {getattr(self, key)!r}")
        if self.early_stopping_patience < 0:
            raise ConfigError(
                f"train.early_stopping_patience: expected an integer >= 0, got {self.early_stopping_patience!r}"
            )
        if self.verbose not in (0, 1, 2):
            raise ConfigError(
                f"train.verbose: expected 0 (silent), 1 (progress bar) or 2 (a line per epoch), got {self.verbose!r}"
            )
        if self.strategy not in ("default", "mirrored"):
            raise ConfigError(f"train.strategy: expected default or mirrored, got {self.strategy!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"train.lr_schedule: expected constant or cosine, got {self.lr_schedule!r}")
        if self.ensemble_size < 1:
            raise ConfigError(f"train.ensemble_size: expected a positive integer, got {self.ensemble_size!r}")


@dataclasses.dataclass
class SearchParam:
    """One dimension of the search space (`type` is categorical, int or float)."""

    type: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None


@dataclasses.dataclass
class SearchConfig:
    """Optuna study settings; `space` maps dotted config keys to `SearchParam`s."""

    trials: int = 10
    timeout: float | None = None
    direction: str = "minimize"
    pruner_warmup_epochs: int = 3
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    space: dict[str, SearchParam] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("trials", "heartbeat_interval"):
            if getattr(self, key) < 1:
                raise ConfigError(f"search.{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("pruner_warmup_epochs", "max_retry"):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.{key}: expected an integer >= 0, got {getattr(self, key)!r}")
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise ConfigError(f"search.timeout: expected a positive number of seconds or null, got {self.timeout!r}")
        if self.grace_period <= self.heartbeat_interval:  # a live trial would be taken for a lost one
            raise ConfigError(
                f"search.grace_period: expected more seconds than search.heartbeat_interval "
                f"({self.heartbeat_interval}), got {self.grace_period!r}"
            )


@dataclasses.dataclass
class GateConfig:
    """`tracking.gate`: the promotion gate of `register` and `tune --register` (each task's `Task.gate`)."""

    alpha: float | None = None  # forecasting: the Diebold-Mariano p against naive must also be below it

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"tracking.gate.alpha: expected a probability in (0, 1) or null, got {self.alpha!r}")


@dataclasses.dataclass
class TrackingConfig:
    """MLflow settings; `experiment` defaults to the task name."""

    experiment: str | None = None
    registered_model: str | None = None
    alias: str = "champion"
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        # MLflow checks the alias only when it sets it, after the model version is registered
        # (mlflow.utils.validation._validate_model_alias_name and _validate_model_alias_name_reserved).
        if not ALIAS_PATTERN.fullmatch(self.alias) or len(self.alias) > 255:
            raise ConfigError(
                f"tracking.alias: expected 1 to 255 letters, digits, underscores or dashes, got {self.alias!r}"
            )
        if self.alias.lower() == "latest" or RESERVED_ALIAS_PATTERN.fullmatch(self.alias):
            raise ConfigError(f"tracking.alias: latest and v<number> are reserved by MLflow, got {self.alias!r}")
        # mlflow.utils.validation._validate_model_name, also checked only at registration, after a whole tune.
        name = self.registered_model
        if name and (not name.strip() or "/" in name or ":" in name or name == "." or name[:2] == ".."):
            raise ConfigError(
                f"tracking.registered_model: expected a name without '/' or ':' (not blank, '.' or '..'), "
                f"or null for the task name, got {name!r}"
            )


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _check_value(value: Any, annotation: Any, key: str) -> Any:
    """Validate (and lightly coerce) one leaf value; returns the value to store."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_value(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(annotation)
        return {k: _check_value(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if origin is list or annotation is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return list(value)
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is bool or annotation is str:
        if isinstance(value, annotation):
            return value
    elif annotation is Any:
        return value
    if annotation is str and isinstance(value, int | float):  # YAML reads 2024, 1.5, true, off as such
        kind = "true/false" if isinstance(value, bool) else "a number"
        raise ConfigError(f"{key}: expected str, got {value!r} (YAML reads it as {kind}); quote it: {key}='\"...\"'")
    raise ConfigError(f"{key}: expected {_type_name(annotation)}, got {value!r}")


def from_dict(cls: type, raw: dict | None, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types.

    Args:
        cls: A dataclass type.
        raw: A mapping (from YAML); `None` means all defaults.
        prefix: Dotted path of this mapping, for error messages.

    Returns:
        An instance of `cls`.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            allowed = f"allowed keys: {', '.join(fields)}" if fields else "this group has no keys for this task"
            raise ConfigError(f"{path}: unknown key; {allowed}")
        values[key] = _check_value(value, hints[key], path)
    missing = [
        name
        for name, field in fields.items()
        if name not in values and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix or 'config'}: missing required key(s): {', '.join(missing)}")
    return cls(**values)


@dataclasses.dataclass
class NoOptions:
    """A config group a task has no keys for (e.g. `augment` of a task without training-only augmentation)."""


GROUPS = ("data", "features", "augment", "model", "train", "search", "tracking")
# Keys every task has dropped: a config naming one fails with this message (docs/config.md).
MOVED_KEYS = {
    "train.ema_momentum": "removed: a moving average of the weights measured no gain (docs/experiments/speech_fsdd.md)",
}


def make_config_class(
    name: str,
    *,
    data: type,
    features: type = NoOptions,
    augment: type = NoOptions,
    model: type = ModelConfig,
    output: tuple[str, type] | None = None,
    moved: dict[str, str] | None = None,
) -> type:
    """The full config dataclass of a task: the same groups for every task, plus one output group.

    Args:
        name: The class name, e.g. `"SpeechConfig"`.
        data: The `data` group: where the data is, which layout, how to split.
        features: The `features` group: what the model sees (windows, log-mel, scaling).
        augment: The `augment` group: training-only augmentation.
        model: The `model` group: `ModelConfig` or a subclass with the task's architecture keys.
        output: `(group name, class)` of the task's own output group (`detection`, `forecast`), if any.
        moved: Old dotted keys -> where they are now (a dotted key) or why they were removed (a sentence
            that starts with "removed"); a config or `--set` naming an old key fails with that message.

    Returns:
        A dataclass with the fields `data, features, augment, model, train, search, tracking,
        [output], seed`.
    """
    if not issubclass(model, ModelConfig):
        raise TypeError(f"make_config_class: model must be ModelConfig or a subclass, got {model!r}")
    groups = {"data": data, "features": features, "augment": augment, "model": model}
    groups.update({"train": TrainConfig, "search": SearchConfig, "tracking": TrackingConfig})
    if output is not None:
        groups[output[0]] = output[1]
    fields = [(key, cls, dataclasses.field(default_factory=cls)) for key, cls in groups.items()]
    fields.append(("seed", int, dataclasses.field(default=42)))

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"seed: expected an integer from 0 to {SEED_MAX}, got {self.seed!r}")

    config_class = dataclasses.make_dataclass(name, fields, namespace={"__post_init__": __post_init__})
    # The task module that names the class, so that it pickles (make_dataclass would say `types`).
    config_class.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)
    config_class.MOVED_KEYS = {**MOVED_KEYS, **(moved or {})}
    config_class.OUTPUT_GROUP = output[0] if output is not None else None
    return config_class


def moved_key_message(config_class: type, key: str) -> str | None:
    """Why dotted `key` (or a key under it) is not a key of `config_class` any more, or `None`.

    Args:
        config_class: A class from `make_config_class`.
        key: A dotted key from a config file, `--set` or the search space.

    Returns:
        `"<old key>: moved to <new key>"`, `"<old key>: removed (...)"`, or `None` for a key never moved.
    """
    for old, new in getattr(config_class, "MOVED_KEYS", {}).items():
        if key == old or key.startswith(old + "."):
            return f"{old}: {new}" if new.startswith("removed") else f"{old}: moved to {new}"
    return None


def _check_moved_keys(config_class: type, raw: dict) -> None:
    """Raise a `ConfigError` for the first old key in `raw` (sections and search space entries)."""
    if not getattr(config_class, "MOVED_KEYS", None):
        return
    space = (raw.get("search") or {}).get("space") if isinstance(raw.get("search"), dict) else None
    keys = list(flatten(raw))
    if isinstance(space, dict):
        keys += list(space)
    for key in keys:
        message = moved_key_message(config_class, key)
        if message is not None:
            if isinstance(space, dict) and key in space:
                message = f"{SPACE_PREFIX}{message}"
            raise ConfigError(message)


def parse_override(text: str) -> tuple[str, Any]:
    """`"model.units=128"` -> `("model.units", 128)`; the value is parsed as YAML.

    Args:
        text: A `--set` argument, `KEY=VALUE`.

    Returns:
        `(dotted key, value)`; an empty value is `None`.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set model.units=128")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML: {_yaml_problem(error)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A PyYAML error on one line: what is wrong and where (1-based line and column)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set `raw["a"]["b"] = value` for key `"a.b"`, creating mappings on the way.

    A search space entry is named by a dotted key itself: `search.space.model.units` sets
    `raw["search"]["space"]["model.units"]`, and an empty value removes that entry;
    `search.space.model.units.high` sets one field of an entry the space already has.
    """
    node = raw
    parts = key.split(".")
    if key.startswith(SPACE_PREFIX):
        entry = key.removeprefix(SPACE_PREFIX)
        parts = [*SPACE_PREFIX.split(".")[:-1], entry]
        name, _, field = entry.rpartition(".")
        space = (raw.get("search") or {}).get("space") or {}
        if entry not in space and isinstance(space.get(name), dict) and field in SPACE_FIELDS:
            parts = [*parts[:-1], name, field]
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:  # a section left empty in the YAML (every key commented out) loads as null
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    if value is None and key.startswith(SPACE_PREFIX):
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def get_dotted(config: Any, key: str) -> Any:
    """Read `config.a.b` for key `"a.b"`.

    Args:
        config: A validated config.
        key: A dotted key.

    Returns:
        The value.
    """
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def with_values(config: Any, values: dict[str, Any]) -> Any:
    """A copy of `config` with dotted keys replaced (used for Optuna suggestions).

    Args:
        config: A validated config.
        values: `{"model.units": 32, ...}`.

    Returns:
        A new, revalidated config.
    """
    raw = to_dict(config)
    for key, value in values.items():
        set_dotted(raw, key, value)
    return from_dict(type(config), raw)


def to_dict(config: Any) -> dict:
    """Plain nested dict of a config (for YAML, MLflow params and copies).

    Args:
        config: A validated config.

    Returns:
        A deep copy as nested dicts.
    """
    return copy.deepcopy(dataclasses.asdict(config))


def flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    """`{"model": {"units": 3}}` -> `{"model.units": 3}`; the search space is left out.

    Args:
        raw: Nested dicts (`to_dict`).
        prefix: The dotted path of `raw` itself. Default: `""`.

    Returns:
        Dotted key -> leaf value.
    """
    flat = {}
    for key, value in raw.items():
        path = f"{prefix}.{key}" if prefix else key
        if path == "search.space":
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def search_distribution(param: SearchParam) -> BaseDistribution:
    """The Optuna distribution of a search space entry (what `tuning.suggest` asks a trial for).

    Args:
        param: One entry of `search.space`.

    Returns:
        An Optuna distribution.

    Raises:
        ValueError: Optuna rejects the bounds, step or choices.
    """
    if param.type == "categorical":
        return CategoricalDistribution(param.choices)
    if param.type == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def _validate_space(config: Any) -> None:
    """Check each search space entry as Optuna will see it, and that its values fit its config key."""
    for key, param in config.search.space.items():
        where = f"{SPACE_PREFIX}{key}"
        try:
            get_dotted(config, key)
        except AttributeError:
            raise ConfigError(f"{where}: {key} is not a config key") from None
        if param.type not in PARAM_TYPES:
            raise ConfigError(f"{where}.type: expected one of {', '.join(PARAM_TYPES)}, got {param.type!r}")
        if param.type == "categorical" and not param.choices:
            raise ConfigError(f"{where}.choices: a categorical parameter needs a non-empty list")
        if param.type != "categorical" and (param.low is None or param.high is None or param.low > param.high):
            raise ConfigError(f"{where}: {param.type} parameters need low <= high, got {param.low}..{param.high}")
        bounds = [value for value in (param.low, param.high, param.step) if value is not None]
        if param.type == "int" and not all(value.is_integer() for value in bounds):
            raise ConfigError(
                f"{where}: int parameters need whole numbers, got low={param.low}, high={param.high}, step={param.step}"
            )
        try:
            distribution = search_distribution(param)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
        values = distribution.choices if param.type == "categorical" else (distribution.low, distribution.high)
        for value in values:
            try:
                with_values(config, {key: value})
            except ConfigError as error:
                raise ConfigError(f"{where}: {value!r} is not a valid {key} ({error})") from None
    if config.search.direction not in ("minimize", "maximize"):
        raise ConfigError(f"search.direction: expected minimize or maximize, got {config.search.direction!r}")


def load_config(config_class: type, path: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """Load, override and validate a task config.

    Args:
        config_class: The task's config dataclass (from `make_config_class`).
        path: YAML file; `None` means defaults only.
        overrides: `KEY=VALUE` strings from `--set`.

    Returns:
        A validated config instance.
    """
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
        except (OSError, UnicodeDecodeError) as error:  # unreadable, or not a text file at all
            raise ConfigError(
                f"{path}: cannot be read as a YAML config: {getattr(error, 'strerror', None) or error}"
            ) from None
        if not isinstance(raw, dict):  # checked here too: the overrides below need a mapping
            raise ConfigError(f"{path}: config: expected a mapping of sections, got {type(raw).__name__}")
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    try:
        _check_moved_keys(config_class, raw)
        config = from_dict(config_class, raw)
        _validate_space(config)
    except ConfigError as error:
        source = f"{path}: " if path is not None else ""
        text = _override_of(str(error), overrides)
        given = f" (given by --set {text!r})" if text is not None else ""
        raise ConfigError(f"{source}{error}{given}") from None
    return config


def _override_of(message: str, overrides: Iterable[str]) -> str | None:
    """The last `--set` text that set the key a config error message starts with, or `None`."""
    key = message.split(":", 1)[0]
    for text in reversed(list(overrides)):
        set_key = text.split("=", 1)[0].strip()
        if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
            return text
    return None
