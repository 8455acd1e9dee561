"""docs/config-reference.md is generated from the config dataclasses' field docs; it must be
regenerated whenever a field, its default or its doc changes."""

import dataclasses
import importlib.util
import sys

from conftest import REPO

spec = importlib.util.spec_from_file_location("config_reference",
                                              REPO / "scripts" / "config_reference.py")
config_reference = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = config_reference  # its dataclass looks its module up there
spec.loader.exec_module(config_reference)


def test_committed_reference_is_current(tmp_path):
    fresh = tmp_path / "config-reference.md"
    config_reference.main(["--out", str(fresh)])
    committed = (REPO / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == fresh.read_text(encoding="utf-8"), (
        "docs/config-reference.md is stale (a config field, default or doc changed): run "
        "`.venv/bin/python scripts/config_reference.py` and commit docs/config-reference.md")


def test_every_documented_field_of_every_section_is_listed():
    text = config_reference.render()
    for section in config_reference.sections():
        assert f"## {section.title}" in text
        for f in dataclasses.fields(section.cls):
            if "help" in f.metadata and f.name not in section.skip:
                assert f"- **`{f.name}`** (" in text, (section.cls.__name__, f.name)
    # Defaults as a user types them, flags as the command takes them.
    assert "- **`tau0`** (`--tau0`, float, default `0.2`)" in text
    assert "- **`n`** (`-n`, int, default `64`)" in text
    assert "- **`method`** (`--method`, str | None, default `ple`)" in text
    assert "- **`reward`** (`--reward`, str | None, default none)" in text
