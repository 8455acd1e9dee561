import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# `make test` runs the suite in one pytest-xdist worker per core. Each worker, and every
# process it starts (subprocesses inherit the variable), computes on one thread: two
# one-thread processes get 1.35x the work of one two-thread process out of 2 cores
# (benchmarks/threads_bench.py), while more threads than cores thrash.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random model; callers must not keep training it."""
    from ple.models import load_policy

    return load_policy("tiny", seed=0)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_ple(*args, cwd=None) -> Result:
    """Run the `ple` command as a user would, in this process (a subprocess per call would
    spend most of the suite importing torch): its exit code, stdout and stderr. `cwd` is
    also put on sys.path, as `python -m` would, so reward modules written there import."""
    from ple.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_path = os.getcwd(), list(sys.path)
    if cwd is not None:
        os.chdir(cwd)
        sys.path.insert(0, str(cwd))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                code = e.code
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
    return Result(code, out.getvalue(), err.getvalue())


def trainable_snapshot(model) -> dict:
    """Copies of the trainable parameters, to check later that training changed them."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def unchanged_parameters(model, snapshot: dict) -> list[str]:
    """Names of snapshot parameters that still hold exactly their snapshot values."""
    import torch

    now = dict(model.named_parameters())
    return [n for n, p in snapshot.items() if torch.equal(p, now[n].detach())]


def prompts(queries: list[str]) -> list[dict]:
    """A train_dataset of plain-text prompts, as a trainer takes it."""
    return [{"prompt": q} for q in queries]


def one_update(trainer, pairs: list, tau: float) -> dict:
    """One PLE optimizer step on fixed pairs, as a training step makes it: Eq. 6 on them
    under `tau`, its gradient, an optimizer step; returns the step's logged terms (branch
    counts, losses, margins, purity), with the log-probs of the forward pass before it."""
    if trainer.optimizer is None:
        trainer.create_optimizer()
    trainer.items, trainer.tau = list(pairs), tau
    out = trainer._loss(list(pairs))
    out["loss"].backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    ranked = [trainer._branch_is_rank(p, tau) for p in pairs]
    row = {"n_rank": sum(ranked), "n_weighted": len(pairs) - sum(ranked), "n_updates": 1}
    return trainer._finish_row(row, {k: v if isinstance(v, list) else float(v.detach())
                                     for k, v in out.items()})
