"""The speech config: its groups, old keys that name their new place, the shipped configs and recipes."""

import dataclasses
import types

import pytest

from pipelines.config import CONF_DIR, load_config
from pipelines.errors import ConfigError
from pipelines.speech_commands.task import TASK, SpeechConfig

# The flat `data` group before the config had features, augment and model.architecture.
OLD_DATA_KEYS = (
    "path", "layout", "classes", "split", "test_speaker", "sample_rate", "clip_seconds", "unknown_fraction",
    "silence_fraction", "extra_train", "extra_train_labels", "num_mel_bins", "mel_min_hz", "mel_max_hz", "top_db",
    "clip_normalization", "architecture", "speed_change", "time_shift_seconds", "noise_probability", "noise_max_gain",
    "noise_snr_db", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "equalizer_db",
    "trim_probability", "trim_db",
)  # fmt: skip
NEW_DATA_KEYS = ("in_memory_max_clips",)  # added to `data` since
REMOVED = ("clip_normalization", "noise_snr_db", "equalizer_db", "trim_probability", "trim_db")
EXPERIMENTS = sorted(
    path for pattern in ("speech_*.yaml", "fsdd_*.yaml") for path in (CONF_DIR / "experiments").glob(pattern)
)


def test_an_old_key_names_its_new_place():
    with pytest.raises(ConfigError, match=r"^data.num_mel_bins: moved to features.num_mel_bins \(given by --set"):
        load_config(SpeechConfig, None, ["data.num_mel_bins=32"])
    with pytest.raises(ConfigError, match=r"^data.architecture: moved to model.architecture"):
        load_config(SpeechConfig, None, ["data.architecture=crnn"])
    space = "search.space={data.noise_max_gain: {type: float, low: 0.0, high: 0.1}}"
    with pytest.raises(ConfigError, match=r"^search.space.data.noise_max_gain: moved to augment.noise_max_gain"):
        load_config(SpeechConfig, None, [space])


@pytest.mark.parametrize("key", REMOVED)
def test_a_removed_key_says_it_was_removed_and_why(tmp_path, key):
    path = tmp_path / "old.yaml"
    path.write_text(f"data:\n  {key}: 6\n")
    message = rf"{path}: data.{key}: removed: measured no gain \(docs/experiments/speech_fsdd.md\)$"
    with pytest.raises(ConfigError, match=message):
        load_config(SpeechConfig, path)


def test_every_old_data_key_is_still_in_data_or_names_where_it_went():
    data_keys = [field.name for field in dataclasses.fields(SpeechConfig().data)]
    for key in OLD_DATA_KEYS:
        new = SpeechConfig.MOVED_KEYS.get(f"data.{key}")
        assert (key in data_keys) != (new is not None), key
        if new is not None and not new.startswith("removed"):
            group, name = new.split(".")
            assert name in {field.name for field in dataclasses.fields(getattr(SpeechConfig(), group))}, new
    assert set(data_keys) - set(NEW_DATA_KEYS) < set(OLD_DATA_KEYS)


def test_data_keys_cannot_change_between_trials():
    config = load_config(SpeechConfig, None, [])
    source = types.SimpleNamespace(loaded_with=dataclasses.asdict(config.data))
    changed = load_config(SpeechConfig, None, ["data.unknown_fraction=0.2"])
    with pytest.raises(ConfigError, match=r"^data.unknown_fraction is read once per run or tune .*search.space"):
        TASK.prepare(changed, source)


@pytest.mark.parametrize("path", [CONF_DIR / "speech_commands.yaml", *EXPERIMENTS], ids=lambda path: path.name)
def test_the_shipped_config_and_recipes_build(path):
    config = load_config(TASK.config_class, path)
    assert config.search.direction == "minimize" and TASK.objective == "val_error_rate"
    assert not any(key.startswith("data.") for key in config.search.space), "data is loaded once per run"


def test_the_recipes_set_what_they_say():
    assert [path.name for path in EXPERIMENTS] == [
        "fsdd_held_out_speaker.yaml", "speech_attention_rnn.yaml", "speech_plain_crnn.yaml"
    ]  # fmt: skip
    crnn = load_config(SpeechConfig, CONF_DIR / "experiments" / "speech_plain_crnn.yaml")
    model = crnn.model
    assert (model.architecture, model.conv_filters, model.conv_norm, model.dense_units, model.head_dropout) == (
        "crnn", [32, 48], "batch", [64], 0.3
    )  # fmt: skip
    shipped = load_config(SpeechConfig, CONF_DIR / "speech_commands.yaml")
    assert {**vars(shipped), "search": None} == {**vars(crnn), "search": None}, "the default is the measured recipe"
    attention = load_config(SpeechConfig, CONF_DIR / "experiments" / "speech_attention_rnn.yaml")
    assert (attention.model.architecture, attention.model.variant, attention.model.num_layers) == (
        "attention_rnn", "attention_lstm", 2
    )  # fmt: skip
    assert attention.search.space
    fsdd = load_config(SpeechConfig, CONF_DIR / "experiments" / "fsdd_held_out_speaker.yaml")
    assert (fsdd.data.layout, fsdd.data.split, fsdd.data.path) == ("fsdd", "speaker", None)
    assert (fsdd.features.mel_min_hz, fsdd.features.mel_max_hz) == (20.0, 4000.0)
    assert (fsdd.model.architecture, fsdd.train.ensemble_size, fsdd.augment.noise_max_gain) == ("crnn", 3, 0.02)
