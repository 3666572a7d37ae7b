"""docs/config.md documents every key of every task, with the default the config class has."""

import re
from pathlib import Path

import pytest
import yaml

from pipelines.config import flatten, to_dict
from pipelines.tasks import TASK_MODULES, get_task

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"
ROW = re.compile(r"^\|\s*`(?P<key>[\w.]+)`\s*\|\s*(?P<default>[^|]*?)\s*\|")
COMMON = "Every task"


def _documented() -> dict[str, dict[str, str]]:
    """`{section: {dotted key: default as written}}` of the page's tables, by `##` section."""
    sections: dict[str, dict[str, str]] = {}
    section = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().strip("`")
            sections[section] = {}
        elif section is not None and (match := ROW.match(line)):
            sections[section][match["key"]] = match["default"].strip("`")
    return sections


def _as_written(value) -> str:
    """A default as the page writes it: YAML flow style (`null`, `0.15`, `[1, 7]`, `lstm`)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _defaults(name: str) -> dict[str, str]:
    raw = to_dict(get_task(name).config_class())
    return {key: _as_written(value) for key, value in {**flatten(raw), "search.space": {}}.items()}


@pytest.mark.parametrize("name", sorted(TASK_MODULES))
def test_the_page_lists_every_key_of_the_task_and_no_other(name):
    sections = _documented()
    assert name in sections, f"docs/config.md has no '## {name}' section"
    page = {**sections[COMMON], **sections[name]}
    defaults = _defaults(name)
    assert sorted(set(defaults) - set(page)) == [], "keys of the config class missing from docs/config.md"
    assert sorted(set(page) - set(defaults)) == [], "keys on docs/config.md the config class does not have"


@pytest.mark.parametrize("name", sorted(TASK_MODULES))
def test_the_page_gives_the_class_defaults(name):
    sections = _documented()
    page = {**sections[COMMON], **sections[name]}
    wrong = {key: (page[key], value) for key, value in _defaults(name).items() if key in page and page[key] != value}
    assert wrong == {}, "docs/config.md default != config class default: {key: (page, class)}"


def test_common_keys_are_the_same_in_every_task():
    common = set(_documented()[COMMON])
    for name in TASK_MODULES:
        assert common <= set(_defaults(name)), name
