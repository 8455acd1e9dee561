import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random model; callers must not keep training it."""
    from ple.models import load_policy

    return load_policy("tiny", seed=0)


def run_ple(*args, cwd=None, timeout=600):
    """Run the `ple` command in a subprocess, as a user would."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(cwd or "")}
    return subprocess.run([sys.executable, "-m", "ple.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)
