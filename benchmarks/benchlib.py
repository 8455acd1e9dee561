"""What the benchmark scripts share: phase timing with peak memory, the machine's
description, and the BENCHMARKS.md section format."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

MARKDOWN_HEADER = ("# Benchmarks\n\nEach section is written by a script in benchmarks/ "
                   "(`--append-markdown`) and names its command, machine and date.\n")


def memory_kind() -> str:
    return ("CUDA memory allocated by torch" if torch.cuda.is_available()
            else "resident set size of the process (VmHWM)")


def reset_peak_memory() -> None:
    # On CPU, torch's allocator keeps no statistics: the kernel's high-water mark of the
    # resident set does, and writing 5 to clear_refs resets it (Linux >= 4.0).
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def _proc_status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key}")


def peak_memory_mib() -> float:
    """Peak since the last reset_peak_memory()."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return _proc_status_mib("VmHWM")


def memory_now_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() / 2**20
    return _proc_status_mib("VmRSS")


class PhaseMeter:
    """Wall time and peak memory of the phases of one step, with no gaps between them:
    `enter(name)` closes the phase running and opens `name`; a phase entered twice in a
    step adds up. `finish()` closes the step and returns its record."""

    def __init__(self):
        self.current: str | None = None
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self._close(now)
        self.current, self.started = name, now
        reset_peak_memory()

    def _close(self, now: float) -> None:
        name = self.current
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.started
        self.peak_mib[name] = max(self.peak_mib.get(name, 0.0), peak_memory_mib())

    def finish(self, **extra) -> dict:
        self._close(time.perf_counter())
        record = {"seconds": self.seconds, "peak_mib": self.peak_mib,
                  "step_seconds": sum(self.seconds.values()),
                  "step_peak_mib": max(self.peak_mib.values()), **extra}
        self.current, self.seconds, self.peak_mib = None, {}, {}
        return record

    def around(self, name: str, fn, then: str):
        """`fn` measured as phase `name`; phase `then` opens when it returns."""
        def measured(*args, **kwargs):
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.enter(then)
        # TRL logs a reward function under its __name__.
        measured.__name__ = getattr(fn, "__name__", name)
        return measured


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    import transformers
    import trl

    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores usable ({torch.get_num_threads()} "
            f"torch threads), {gpu}; {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, trl {trl.__version__}")


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def append_markdown(path: str, title: str, lines: list[str]) -> None:
    """Append a section (title, command, machine, date, then `lines`); the file gets its
    header when it is new."""
    p = Path(path)
    head = "" if p.exists() else MARKDOWN_HEADER
    section = [f"## {title}", "", f"- Command: `{command_line()}`", f"- Machine: {machine()}",
               f"- Date: {datetime.now().strftime('%Y-%m-%d %H:%M')}", "", *lines]
    with open(p, "a", encoding="utf-8") as f:
        f.write(head + "\n" + "\n".join(section) + "\n")


def publish(args, title: str, lines: list[str], numbers: dict) -> None:
    """Print a benchmark's section; with --out, every number (beside the settings and the
    machine) to a JSON file; with --append-markdown, the section to that file."""
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "machine": machine(),
                                              **numbers}, indent=1))
    if args.append_markdown:
        append_markdown(args.append_markdown, title, lines)


def add_output_arguments(parser) -> None:
    """The flags every benchmark shares: the seed and where its numbers go."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "--json", help="write every number to this JSON file")
    parser.add_argument("--append-markdown", help="append a section to this file "
                        "(e.g. BENCHMARKS.md)")
