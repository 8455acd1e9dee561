"""The files of a run in OUTPUT_DIR: config.yaml, metrics.jsonl, samples.jsonl, the saved
adapter (or model) with its model card, and summary.json. Only the main process writes; on
the others every call writes nothing. Every method writes through it, ple's own loop and TRL's alike."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from ple import hub
from ple.model_card import write_model_card
from ple.models import saved_base

RUN_FILES = ("config.yaml", "metrics.jsonl", "samples.jsonl", "summary.json",
             "reward_curves.png", "loss_curve.png", "purity.png", "value_head.safetensors")


class RunWriter:
    """Writes one run's files; `accelerator` (None: one process, no trackers) tells the
    main process and holds the trackers."""

    def __init__(self, out: Path, accelerator=None):
        self.out, self.accelerator = out, accelerator
        self.main = accelerator is None or accelerator.is_main_process
        self.step_samples: list[dict] = []  # the samples rows of the step being logged

    def start(self, args) -> None:
        """A new run: its config and empty metrics and samples files."""
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(args.to_dict(),
                                                                 sort_keys=False))
            for name in ("metrics.jsonl", "samples.jsonl"):
                (self.out / name).write_text("")

    @contextmanager
    def open(self):
        """metrics.jsonl and samples.jsonl open for appending while the loop runs."""
        metrics = self.out / "metrics.jsonl" if self.main else os.devnull
        samples = self.out / "samples.jsonl" if self.main else os.devnull
        with open(metrics, "a") as self._metrics, open(samples, "a") as self._samples:
            yield

    def sample(self, record: dict) -> None:
        """One samples.jsonl row of the current step (its columns are the method's)."""
        self._samples.write(json.dumps(record) + "\n")
        self.step_samples.append(record)

    def log(self, row: dict) -> None:
        """A step's metrics row to metrics.jsonl, after its samples rows."""
        self.step_samples = []
        self._samples.flush()
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def lengths(self) -> dict:
        """How long metrics.jsonl and samples.jsonl are now, for a checkpoint: rows written
        after it are cut off again on resume (rewind)."""
        return {f"{name}_bytes": (self.out / f"{name}.jsonl").stat().st_size
                for name in ("metrics", "samples")}

    def rewind(self, state: dict) -> list[dict]:
        """Cut metrics.jsonl and samples.jsonl back to a checkpoint's `state`; returns the
        metrics rows kept (an empty list on the processes that do not write)."""
        if not self.main:
            return []
        for name in ("metrics", "samples"):
            with open(self.out / f"{name}.jsonl", "r+b") as f:
                f.truncate(state[f"{name}_bytes"])
        return [json.loads(line) for line in open(self.out / "metrics.jsonl")]

    def save_model(self, model, folder: Path, tokenizer, base: str | None = None,
                   with_tokenizer: bool = False) -> None:
        """The adapter (or whole model, with its tokenizer) in `folder`; `model` is the
        whole policy. `base`: what the adapter's config names as its base model
        (base_model_name_or_path, where AutoPeftModelForCausalLM loads it from; None: PEFT's
        own record). `with_tokenizer`: the tokenizer beside an adapter too. Called on the
        main process only."""
        configs = list(getattr(model, "peft_config", {}).values())
        recorded = [c.base_model_name_or_path for c in configs]
        for config in configs:
            config.base_model_name_or_path = base or config.base_model_name_or_path
        try:
            model.save_pretrained(folder, safe_serialization=True)
        finally:  # one save's naming is not the model's (a pushed copy names the Hub id)
            for config, name in zip(configs, recorded):
                config.base_model_name_or_path = name
        if not configs or with_tokenizer:
            tokenizer.save_pretrained(folder)

    def export(self, model, folder: Path, tokenizer, args, metrics: list[dict], summary: dict,
               hub_base: bool = False) -> None:
        """A trainer's save_model(folder): the adapter (or whole model), which names its base
        model as ple.models.saved_base says (`hub_base`: by Hub id, where there is one), its
        tokenizer and the model card, loadable from `folder` directly. Main process only."""
        base = saved_base(model, args.model, hub=hub_base)
        self.save_model(model, folder, tokenizer, base, with_tokenizer=True)
        write_model_card(folder, args, metrics, summary)

    def push(self, model, tokenizer, args, metrics: list[dict], summary: dict,
             commit_message: str = "End of training") -> str:
        """push_to_hub: what export writes, naming the base by Hub id (where ple's cache is
        not, only that resolves), and the run's record, uploaded to the repository of
        args.hub_model_id; returns the commit's URL. Main process only."""
        with tempfile.TemporaryDirectory(prefix="ple-push-") as folder:
            self.export(model, Path(folder), tokenizer, args, metrics, summary, hub_base=True)
            return hub.push_run(Path(folder), self.out, args, commit_message)

    def finish(self, args, folder: Path, metrics: list[dict], summary: dict) -> None:
        """summary.json, the model card in the saved folder, the trackers closed."""
        if self.main:
            # Threads: a run's speed depends on them (ple compare --jobs gives each fewer).
            summary = {**summary, "torch_threads": torch.get_num_threads()}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
            write_model_card(folder, args, metrics, summary)
