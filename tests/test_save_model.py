"""What a trained model leaves behind, as transformers.Trainer's users expect it:
`save_model(d)` writes `d` itself, loadable with peft's AutoPeftModelForCausalLM (an adapter)
or AutoModelForCausalLM (every weight trained); the adapter names a base model from_pretrained
finds offline, the model card a Hub id or none; `model_init_kwargs` reach from_pretrained;
`push_to_hub` uploads what save_model writes (tested against a local folder, not the Hub)."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import prompts, run_ple

QUERIES = ["The film opens with", "I expected more from"]


def small(tmp_path, **fields):
    from ple import PLEConfig

    return PLEConfig(**{"output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 2,
                        "max_new_tokens": 4, **fields})


def trained(tmp_path, lora=True, **fields):
    from ple import PLETrainer, paper_lora

    trainer = PLETrainer(model="tiny", args=small(tmp_path, **fields), reward_funcs="vader",
                         train_dataset=prompts(QUERIES),
                         peft_config=paper_lora() if lora else None)
    trainer.train()
    return trainer


def front_matter(card: Path) -> dict:
    return yaml.safe_load(card.read_text().split("---")[1])


def same_logits(a, b) -> bool:
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        return torch.allclose(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-6)


@pytest.mark.slow
def test_save_model_writes_a_directory_auto_peft_loads_on_tiny(tmp_path, monkeypatch):
    """The done-means of issue 35: save_model(d) on `tiny`, then
    AutoPeftModelForCausalLM.from_pretrained(d), from another working directory, gives the
    trained policy. The run's own adapter/ keeps the output directory's contract."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from ple.models import tiny_model_dir

    trainer = trained(tmp_path)
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "README.md"):
        assert (out / name).is_file(), name
    config = json.loads((out / "adapter_config.json").read_text())
    # tiny has no Hub id: the adapter names ple's cached copy of it, by absolute path.
    assert config["base_model_name_or_path"] == str(tiny_model_dir(0).resolve())
    assert "base_model" not in front_matter(out / "README.md")
    assert "# PLE on imdb" in (out / "README.md").read_text()

    monkeypatch.chdir(tmp_path / "run")
    loaded = AutoPeftModelForCausalLM.from_pretrained(str(out)).eval()
    assert same_logits(loaded, trainer.model.eval())
    assert AutoTokenizer.from_pretrained(str(out)).eos_token == trainer.tokenizer.eos_token

    # OUTPUT_DIR/adapter/ as before: the adapter and ple's card, no tokenizer beside it;
    # it names the same base, so it loads the same way.
    run_adapter = tmp_path / "run" / "adapter"
    assert sorted(p.name for p in run_adapter.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert json.loads((run_adapter / "adapter_config.json").read_text()) == config
    assert same_logits(AutoPeftModelForCausalLM.from_pretrained(str(run_adapter)).eval(),
                       loaded)


@pytest.mark.slow
def test_save_model_of_full_fine_tuning_loads_with_auto_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trainer = trained(tmp_path, lora=False)
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert same_logits(loaded, trainer.model.eval())
    assert AutoTokenizer.from_pretrained(str(out)).vocab_size == trainer.tokenizer.vocab_size
    card = front_matter(out / "README.md")
    assert card["library_name"] == "transformers" and "base_model" not in card
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()  # the run's own


def test_card_and_adapter_name_a_hub_id_never_a_ple_name_or_a_path(tmp_path):
    """base_model in the card: the Hub id of `default`, of a hub id, of a local directory
    whose config names one; none for `tiny`, a .gguf file, a directory that names none. The
    adapter names where from_pretrained finds the base here, or, pushed, the Hub id."""
    from ple.models import DEFAULT_HUB_ID, default_model_dir, hub_id, saved_base
    from ple.model_card import write_model_card

    named = tmp_path / "named"
    named.mkdir()
    (named / "config.json").write_text(json.dumps({"_name_or_path": "org/base-7b"}))
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    (unnamed / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path)}))
    expected = {"default": DEFAULT_HUB_ID, "org/model": "org/model", str(named): "org/base-7b",
                "tiny": None, str(tmp_path / "m.gguf"): None, str(unnamed): None,
                str(tmp_path / "empty"): None, "(a model given in Python, no name_or_path)": None,
                str(default_model_dir(weights=False)): DEFAULT_HUB_ID}
    (tmp_path / "empty").mkdir()
    assert {name: hub_id(name) for name in expected} == expected

    def card(model):
        args = small(tmp_path, model=model)
        write_model_card(tmp_path, args, [], {})
        return front_matter(tmp_path / "README.md")

    assert card("default")["base_model"] == DEFAULT_HUB_ID
    assert "base_model" not in card("tiny")
    assert "base_model" not in card(str(unnamed))

    policy = SimpleNamespace(name_or_path=str(default_model_dir(weights=False)))
    assert saved_base(policy, "default") == str(default_model_dir(weights=False).resolve())
    assert saved_base(policy, "default", hub=True) == DEFAULT_HUB_ID
    relative = SimpleNamespace(name_or_path=str(named.relative_to(Path.cwd()))
                               if named.is_relative_to(Path.cwd()) else str(named))
    assert saved_base(relative, str(named)) == str(named.resolve())
    assert saved_base(relative, str(named), hub=True) == "org/base-7b"


def test_model_init_kwargs_reach_from_pretrained(tmp_path):
    """dtype and attn_implementation as TRL's model_init_kwargs; torch dtypes are recorded by
    name in config.yaml; a loaded model ignores them (as TRL does)."""
    from ple import PLEConfig, PLETrainer, paper_lora

    trainer = PLETrainer(model="tiny", args=small(tmp_path, model_init_kwargs={
        "dtype": torch.bfloat16, "attn_implementation": "eager"}),
        reward_funcs="vader", train_dataset=prompts(QUERIES), peft_config=paper_lora())
    base = trainer.model.get_base_model()
    assert base.dtype == torch.bfloat16 and base.config._attn_implementation == "eager"
    assert trainer.args.model_init_kwargs == {"dtype": "bfloat16", "attn_implementation": "eager"}
    assert trainer.model_dtype == "bfloat16"
    assert yaml.safe_dump(trainer.args.to_dict())  # config.yaml can hold what was given
    # The default here (CPU): float32, LoRA or not.
    assert PLETrainer(model="tiny", args=small(tmp_path), reward_funcs="vader",
                      train_dataset=prompts(QUERIES),
                      peft_config=paper_lora()).model_dtype == "float32"
    assert PLEConfig(model_init_kwargs='{"dtype": "float16"}').model_init_kwargs == {
        "dtype": "float16"}  # a flag's JSON


def test_bf16_base_weights_are_the_default_for_lora_on_a_cuda_gpu_only(monkeypatch):
    """No GPU here: the decision itself, with CUDA's answers faked. On a GPU tests/test_gpu.py
    checks a real run."""
    from ple.models import init_kwargs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert init_kwargs(None, lora=True)["dtype"] == torch.bfloat16
    assert init_kwargs(None, lora=False)["dtype"] == torch.float32  # full fine-tuning
    assert init_kwargs(None, lora=True, bf16=False)["dtype"] == torch.float32
    assert init_kwargs({"dtype": "float32"}, lora=True)["dtype"] == torch.float32
    assert init_kwargs({"dtype": "auto"}, lora=True)["dtype"] == "auto"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert init_kwargs(None, lora=True)["dtype"] == torch.float32  # ZeRO: one dtype
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert init_kwargs(None, lora=True)["dtype"] == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert init_kwargs(None, lora=True)["dtype"] == torch.float32


@pytest.mark.parametrize("value, message", [
    ('{"dtype": "bf16"}', "config key `model_init_kwargs` = {'dtype': 'bf16'}: dtype must be "
                          "one of auto, bfloat16, float16, float32"),
    ('["dtype"]', "config key `model_init_kwargs` = ['dtype']: must be a mapping"),
    ("dtype=bfloat16", "config key `model_init_kwargs` = 'dtype=bfloat16': not a JSON object"),
    ('{"trust_remote_code": true}', "ple never trusts remote code"),
])
def test_bad_model_init_kwargs_are_refused_before_any_weight_loads(tmp_path, value, message):
    out = tmp_path / "out"
    result = run_ple("train", "--model", "tiny", "--model-init-kwargs", value,
                     "--output-dir", out)
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_bad_model_init_kwargs_in_yaml_and_a_bad_hub_model_id(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: tiny\nmodel_init_kwargs:\n  dtype: half\n")
    result = run_ple("train", "--config", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and "dtype must be one of" in result.stderr
    result = run_ple("train", "--model", "tiny", "--hub-model-id", "a/b/c",
                     "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "config key `hub_model_id` = 'a/b/c': must be a Hub repository id" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """huggingface_hub's create_repo and upload_folder, answering from a local folder: each
    upload is copied to HUB/<repo id>/ and recorded."""
    import huggingface_hub

    hub = tmp_path / "hub"
    calls = []

    def create_repo(repo_id, private=None, exist_ok=False, **kwargs):
        calls.append(("create_repo", repo_id, private))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def upload_folder(repo_id, folder_path, commit_message=None, **kwargs):
        calls.append(("upload_folder", repo_id, commit_message))
        shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"file://{hub / repo_id}")

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return hub, calls


@pytest.mark.slow
def test_push_to_hub_after_train_uploads_what_save_model_writes(tmp_path, local_hub):
    from peft import AutoPeftModelForCausalLM

    hub, calls = local_hub
    trainer = trained(tmp_path, push_to_hub=True, hub_model_id="me/ple-tiny",
                      hub_private_repo=True)
    assert calls == [("create_repo", "me/ple-tiny", True),
                     ("upload_folder", "me/ple-tiny", "End of training")]
    pushed = hub / "me" / "ple-tiny"
    assert sorted(p.name for p in pushed.iterdir()) == sorted([
        "README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja",
        "tokenizer.json", "tokenizer_config.json", "config.yaml", "metrics.jsonl",
        "summary.json", "reward_curves.png", "purity.png"])
    assert (pushed / "config.yaml").read_text() == (tmp_path / "run" / "config.yaml").read_text()
    assert same_logits(AutoPeftModelForCausalLM.from_pretrained(str(pushed)).eval(),
                       trainer.model.eval())
    # Pushed again by hand, to the default repository: output_dir's name.
    calls.clear()
    trainer.args.hub_model_id = None
    assert trainer.push_to_hub("again") == f"file://{hub / 'me' / 'run'}"
    assert calls == [("create_repo", "run", True), ("upload_folder", "me/run", "again")]


@pytest.mark.slow
def test_push_to_hub_that_fails_says_so_in_one_line_after_the_run(tmp_path):
    """Offline (HF_HUB_OFFLINE, as the suite runs), the real client refuses to upload: one
    line, exit 2, and the run's files are all there."""
    out = tmp_path / "run"
    result = run_ple("train", "--model", "tiny", "--max-steps", "1", "--batch-size", "2",
                     "--max-new-tokens", "4", "--push-to-hub", "--hub-model-id", "me/x",
                     "--output-dir", out)
    assert result.returncode == 2, result.stderr[-1500:]
    last = result.stderr.strip().splitlines()[-1]
    assert f"push_to_hub: uploading to me/x failed, the run itself is complete in {out}" in last
    assert (out / "summary.json").is_file() and (out / "adapter" / "README.md").is_file()


@pytest.mark.slow
def test_trl_methods_load_with_model_init_kwargs_and_name_their_base(tmp_path):
    """sft through TRL: model_init_kwargs reach the policy's from_pretrained (summary.json
    says bfloat16), and the run's adapter/ names tiny's cached directory as its base."""
    from peft import AutoPeftModelForCausalLM

    from ple.models import tiny_model_dir

    data = tmp_path / "imdb.jsonl"
    data.write_text("".join(json.dumps({"text": f"Review {i}: a warm, funny and moving film "
                                                f"that I loved from start to end", "label": 1})
                            + "\n" for i in range(4)))
    out = tmp_path / "sft"
    result = run_ple("train", "--method", "sft", "--model", "tiny", "--data", data,
                     "--max-steps", "1", "--batch-size", "2", "--output-dir", out,
                     "--model-init-kwargs", '{"dtype": "bfloat16"}')
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["model_dtype"] == "bfloat16"
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir(0).resolve())
    assert "base_model" not in front_matter(out / "adapter" / "README.md")
    AutoPeftModelForCausalLM.from_pretrained(str(out / "adapter"))
