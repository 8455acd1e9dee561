"""Crash-safe checkpoints: everything a PLE run needs to continue exactly where it stopped.

A checkpoint is written into a hidden temporary folder and renamed into place only when all
of it is on disk, so a folder named `step-NNNNNN` is always complete and a crash while
writing leaves nothing that could be loaded. Files are safetensors and JSON; the optimizer
state and RNG states are loaded with `torch.load(weights_only=True)`, which unpickles
nothing but tensors and plain containers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ple.buffer import ScoredPair

KEEP = 2  # the newest checkpoints kept; older ones are deleted after a save


def _fsynced(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_tensors(path: Path, tensors: dict) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    _fsynced(path)


def write_torch(path: Path, obj) -> None:
    torch.save(obj, path)
    _fsynced(path)


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    _fsynced(path)


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_file(folder: Path, process: int) -> Path:
    return folder / ("rng.pt" if process == 0 else f"rng-{process}.pt")


def save(root: Path, step: int, trainable: dict, optimizer_state: dict, state: dict,
         pairs: list[ScoredPair], rng_states: list[dict]) -> Path:
    """Write checkpoint `step` under root/checkpoints atomically; prune old ones.
    `rng_states` holds `rng_state()` of each process, in process order."""
    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = folder / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_tensors(tmp / "trainable.safetensors", trainable)
    write_torch(tmp / "optimizer.pt", optimizer_state)
    for process, rng in enumerate(rng_states):
        write_torch(_rng_file(tmp, process), rng)
    write_text(tmp / "buffer.jsonl", "".join(json.dumps(p.__dict__) + "\n" for p in pairs))
    write_text(tmp / "state.json", json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in complete_checkpoints(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first; temporary folders are never listed."""
    folder = root / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("step-") and p.is_dir())


def load(path: Path) -> dict:
    processes = 1
    while _rng_file(path, processes).is_file():
        processes += 1
    return {
        "trainable": load_file(str(path / "trainable.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", weights_only=True),
        "rng": [torch.load(_rng_file(path, i), weights_only=True) for i in range(processes)],
        "state": json.loads((path / "state.json").read_text(encoding="utf-8")),
        "pairs": [ScoredPair(**json.loads(line))
                  for line in (path / "buffer.jsonl").read_text(encoding="utf-8").splitlines()],
    }
