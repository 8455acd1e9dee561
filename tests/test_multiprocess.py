"""Scaling: 2 processes on CPU (gloo), under DDP and under DeepSpeed ZeRO-2 and ZeRO-3, train
as one process with the same global batch and resume; gradient accumulation updates as one
larger mini-batch; bf16 autocast is off on CPU; what cannot run on several processes says so."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from conftest import prompts, REPO, run_ple
from ple.config import load_config
from ple.errors import UserError
from ple.models import paper_lora
from ple.trainer import PLETrainer

pytestmark = pytest.mark.slow  # subprocesses, real models, seconds of training

REWARD = """
def score(prompts, completions):
    return [len(c) / 20 - c.count("e") / 5 for c in completions]
"""
# top_k 1 makes sampling deterministic, so both runs see the same responses; with sampling,
# N processes draw other random numbers than one and are only statistically the same run.
# Greedy, the tiny model of seed 5 repeats a token that depends on the prompt (of seed 0,
# always a newline), so y and y' differ and score apart.
# 7 queries a step on 2 processes split 4 + 3. All of D_train is replayed: 7, 14 and 21
# pairs, each step's in one optimizer step, split 4 + 3, 7 + 7 and 11 + 10 between the
# processes. Metrics include grad_norm: Adam's update hides a gradient's scale.
SEED = 5
# The reference run is this process, which would use a GPU where there is one.
on_cpu = pytest.mark.skipif(torch.cuda.is_available(), reason="compares CPU runs")
FLAGS = ["--model", "tiny", "--task", "imdb", "--batch-size", "7", "--max-new-tokens", "8",
         "--top-k", "1", "--seed", SEED, "--reward", "multiprocess_reward:score",
         "--learning-rate", "1e-2", "--save-steps", "1", "--replay-window", "0",
         # DeepSpeed samples with the float32 policy (its weights are sharded); so must the
         # one process these runs are held to.
         "--generation-dtype", "float32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# How the 2 processes are launched: DDP, or one of the shipped DeepSpeed configs.
LAUNCHES = {"ddp": ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no"],
            # On CPU bf16 is off (ple's bf16 default), which DeepSpeed's config must agree with.
            "zero2": ["--config_file", str(REPO / "configs" / "accelerate" / "zero2.yaml"),
                      "--mixed_precision", "no"],
            "zero3": ["--config_file", str(REPO / "configs" / "accelerate" / "zero3.yaml"),
                      "--mixed_precision", "no"]}


def launch(workdir: Path, how: str, *args) -> subprocess.CompletedProcess:
    """`ple` on 2 processes, as a user launches it. Without a GPU they run on CPU (gloo).
    `--multi_gpu` starts them through torch.distributed.run; `--cpu` would start one
    process (accelerate runs several CPU processes only through mpirun)."""
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "PYTHONPATH": str(workdir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(accelerate), "launch", *LAUNCHES[how], "--num_processes", "2",
         "--main_process_port", str(free_port()), "-m", "ple.cli", *map(str, args)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("multiprocess")
    (d / "multiprocess_reward.py").write_text(REWARD)
    return d


@pytest.fixture(scope="module")
def one_process(workdir):
    """3 steps on one process, 4 pairs per forward pass."""
    out = workdir / "one"
    result = run_ple("train", *FLAGS, "--max-steps", "3", "--per-device-train-batch-size", "4",
                     "--output-dir", out, cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="module", params=sorted(LAUNCHES))
def two_processes(workdir, request):
    """2 steps on two processes, 2 pairs per process per forward pass: the same 4 pairs
    per update. Returns how it was launched, the run's directory, which the resume test
    continues, and a copy of it as it was after those 2 steps."""
    how = request.param
    out = workdir / f"two-{how}"
    result = launch(workdir, how, "train", *FLAGS, "--max-steps", "2", "--per-device-train-batch-size",
                    "2", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.copytree(out, workdir / f"two-{how}-at-step-2")
    return how, out, workdir / f"two-{how}-at-step-2"


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("seconds_")}
            for line in open(path)]


def assert_close_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if isinstance(ra[key], float):
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), key
            else:
                assert ra[key] == rb[key], key


def assert_close_tensors(a: dict, b: dict) -> None:
    """Within float noise: Adam moves a weight whose gradient is near 0 by up to lr * g / eps,
    so summation-order noise in such gradients shows as ~1e-5 here (lr 1e-2, steps ~1e-2)."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=5e-5, msg=key)


def checkpoint_weights(out: Path, step: int) -> dict:
    return load_file(str(out / f"checkpoint-{step}" / "adapter_model.safetensors"))


@on_cpu
def test_two_processes_train_as_one_with_the_same_global_batch(one_process, two_processes):
    how, _, run = two_processes
    two = rows(run / "metrics.jsonl")
    assert_close_rows(two, rows(one_process / "metrics.jsonl")[:2])
    # 7 then 14 replayed pairs, each step's in one update (split 4 + 3, then 7 + 7).
    assert [r["optimizer_steps"] for r in two] == [1, 2]
    assert [r["generated_responses"] for r in two] == [14, 28]
    # Samples are gathered from both processes, in query order, written once.
    one_samples = rows(one_process / "samples.jsonl")
    assert rows(run / "samples.jsonl") == one_samples[:14]
    weights = checkpoint_weights(run, 2)
    assert_close_tensors(weights, checkpoint_weights(one_process, 2))
    assert all(weights[k].abs().sum() > 0 for k in weights if "lora_B" in k)  # it trained
    # Each process's random stream is saved, for --resume.
    saved = {p.name for p in (run / "checkpoint-2").iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= saved
    if how != "ddp":  # DeepSpeed keeps its sharded optimizer state in its own format
        return
    # Under DDP the optimizer state is AdamW's on one process.
    optimizer = [torch.load(out / "checkpoint-2" / "optimizer.pt", weights_only=True)
                 for out in (run, one_process)]
    assert optimizer[0]["param_groups"] == optimizer[1]["param_groups"]
    assert optimizer[0]["state"].keys() == optimizer[1]["state"].keys()
    for i, state in optimizer[0]["state"].items():
        assert state["step"] == optimizer[1]["state"][i]["step"] == 2
        assert_close_tensors(state, optimizer[1]["state"][i])


@on_cpu
def test_two_processes_resume_the_run(workdir, one_process, two_processes):
    how, out, _ = two_processes
    # On another number of processes the random streams would not continue: refused.
    result = run_ple("train", "--resume", "--output-dir", out, "--max-steps", "3", cwd=workdir)
    assert result.returncode == 2
    assert "was written by 2 process(es), this run has 1" in result.stderr
    assert len(rows(out / "metrics.jsonl")) == 2  # nothing cut or written
    result = launch(workdir, how, "train", "--resume", "--output-dir", out, "--max-steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_close_rows(rows(out / "metrics.jsonl"), rows(one_process / "metrics.jsonl"))
    assert rows(out / "samples.jsonl") == rows(one_process / "samples.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["distributed_type"] == ("MULTI_CPU" if how == "ddp" else "DEEPSPEED")
    assert_close_tensors(load_file(str(out / "adapter" / "adapter_model.safetensors")),
                         load_file(str(one_process / "adapter" / "adapter_model.safetensors")))


# --- gradient accumulation, bf16, refusals (one process) ---------------------------------

QUERIES = ["The film opens with", "I expected more from", "This is the story of",
           "Nobody told me that", "The director clearly", "It is hard to believe",
           "From the first scene"]


class LengthReward:
    name = "length"

    def score(self, queries, responses):
        return [len(c) / 20 - c.count("e") / 5 for c in responses]


def make_trainer(tmp_path, name, **overrides):
    cfg = load_config(None, {"model": "tiny", "task": "imdb", "max_steps": 2, "batch_size": 7,
                             "max_new_tokens": 8, "top_k": 1, "seed": SEED,
                             "learning_rate": 1e-2, "output_dir": str(tmp_path / name),
                             "replay_window": 0, **overrides})
    return PLETrainer(model="tiny", args=cfg, reward_funcs=LengthReward(),
                      train_dataset=prompts(QUERIES), peft_config=paper_lora())


def test_gradient_accumulation_equals_the_larger_mini_batch(tmp_path):
    whole = make_trainer(tmp_path, "whole")
    whole.train()
    accumulated = make_trainer(tmp_path, "accumulated", gradient_accumulation_steps=2)
    chunk_sizes = []
    pair_losses = accumulated._pair_losses

    def recording(pairs, tau):
        chunk_sizes.append(len(pairs))
        return pair_losses(pairs, tau)

    accumulated._pair_losses = recording
    accumulated.train()
    # Memory holds half a step's pairs at once: 7 pairs in passes of 4 and 3, then 14 in 7 + 7.
    assert chunk_sizes == [4, 3, 7, 7]
    assert_close_rows(rows(tmp_path / "accumulated" / "metrics.jsonl"),
                      rows(tmp_path / "whole" / "metrics.jsonl"))
    assert [r["optimizer_steps"] for r in whole.metrics] == [1, 2]
    assert all(r["loss"] != 0 for r in whole.metrics)  # y and y' differ: it trains
    assert_close_tensors({n: p.detach() for n, p in accumulated.trainable().items()},
                         {n: p.detach() for n, p in whole.trainable().items()})


def test_a_pass_without_pairs_joins_with_weight_0(tmp_path):
    """More accumulation steps than a process has pairs: the empty pass joins the step's
    backward passes (DDP waits for every process's) with a pair weighted 0."""
    whole = make_trainer(tmp_path, "whole", batch_size=3, max_steps=1)
    whole.train()
    padded = make_trainer(tmp_path, "padded", batch_size=3, max_steps=1,
                          gradient_accumulation_steps=4)
    chunk_sizes = []
    pair_losses = padded._pair_losses

    def recording(pairs, tau):
        chunk_sizes.append(len(pairs))
        return pair_losses(pairs, tau)

    padded._pair_losses = recording
    padded.train()
    assert chunk_sizes == [1, 1, 1, 1]
    assert_close_rows(rows(tmp_path / "padded" / "metrics.jsonl"),
                      rows(tmp_path / "whole" / "metrics.jsonl"))
    assert_close_tensors({n: p.detach() for n, p in padded.trainable().items()},
                         {n: p.detach() for n, p in whole.trainable().items()})


def test_bf16_autocast_is_off_on_cpu(tmp_path):
    """bf16 defaults to on where a CUDA GPU computes it, else off; this machine has no GPU,
    so what bf16 does there is not tested here."""
    trainer = make_trainer(tmp_path, "bf16", max_steps=1)
    gpu = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert trainer.args.bf16 == gpu
    assert trainer.accelerator.mixed_precision == ("bf16" if gpu else "no")


def test_fsdp_is_refused(tmp_path, monkeypatch):
    class FSDPAccelerator(Accelerator):
        distributed_type = DistributedType.FSDP

    made = PLETrainer.create_accelerator_and_postprocess

    def as_fsdp(self):
        made(self)
        self.accelerator.__class__ = FSDPAccelerator

    monkeypatch.setattr(PLETrainer, "create_accelerator_and_postprocess", as_fsdp)
    with pytest.raises(UserError, match="distributed_type FSDP: the online methods run on "
                                        "one process, or several under DDP or DeepSpeed ZeRO"):
        make_trainer(tmp_path, "fsdp")


@pytest.mark.parametrize("flags, message", [
    (["--method", "ppo"], "config key `method` = 'ppo': runs on one process, not 2; ple "
                          "and raft run on several (docs/scaling.md)"),
    (["--method", "sft"], "config key `method` = 'sft': runs on one process, not 2; ple "
                          "and raft run on several (docs/scaling.md)"),
    (["--batch-size", "1"], "config key `batch_size` = 1: each of the 2 processes needs at "
                            "least one query a step"),
])
def test_what_cannot_run_on_several_processes_says_so(tmp_path, monkeypatch, flags, message):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch sets it
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--output-dir", out, *flags)
    assert result.returncode == 2
    assert result.stderr == f"ple: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("method", ["ppo", "rloo"])
def test_what_cannot_run_under_deepspeed_says_so(tmp_path, monkeypatch, method):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # as accelerate launch sets it
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--method", method, "--output-dir", out)
    assert result.returncode == 2
    assert result.stderr == (f"ple: error: config key `method` = {method!r}: runs without "
                             f"DeepSpeed; ple and raft run under it (docs/scaling.md)\n")
    assert not out.exists()


@pytest.mark.parametrize("name, kind, stage", [("multi-gpu", DistributedType.MULTI_GPU, None),
                                               ("zero2", DistributedType.DEEPSPEED, 2),
                                               ("zero3", DistributedType.DEEPSPEED, 3)])
def test_accelerate_configs_load(name, kind, stage):
    """accelerate's own loader fails on an unknown key."""
    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == kind and not config.use_cpu
    assert (config.deepspeed_config or {}).get("zero_stage") == stage


def test_gradient_accumulation_steps_below_1(tmp_path):
    result = run_ple("train", "--model", "tiny", "--gradient-accumulation-steps", "0",
                     "--output-dir", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr == ("ple: error: config key `gradient_accumulation_steps` = 0: "
                             "must be >= 1\n")
    assert not (tmp_path / "out").exists()


@on_cpu
def test_full_fine_tuning_under_zero3_trains_as_one_process(workdir):
    """ZeRO-3 shards every weight of the model: the weights are gathered to generate, to
    evaluate against the frozen base and to save the whole model."""
    flags = [*FLAGS, "--max-steps", "2", "--use-lora", "false", "--learning-rate", "1e-3",
             "--eval-queries", "4"]
    one = workdir / "full-one"
    result = run_ple("train", *flags, "--per-device-train-batch-size", "4", "--output-dir", one,
                     cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    two = workdir / "full-zero3"
    result = launch(workdir, "zero3", "train", *flags, "--per-device-train-batch-size", "2",
                    "--output-dir", two)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_close_rows(rows(two / "metrics.jsonl"), rows(one / "metrics.jsonl"))
    assert rows(two / "samples.jsonl") == rows(one / "samples.jsonl")
    summaries = [json.loads((out / "summary.json").read_text()) for out in (two, one)]
    for key in ("reward_mean", "base_perplexity"):
        assert summaries[0]["eval_after"][key] == pytest.approx(summaries[1]["eval_after"][key],
                                                                rel=1e-4)
    weights = [load_file(str(out / "model" / "model.safetensors")) for out in (two, one)]
    assert_close_tensors(*weights)
