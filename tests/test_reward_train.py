"""`ple reward train` on the tiny model, and serving the saved directory (and a hub-style
reward model with a chat template) as `--reward`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import run_ple
from ple.cli import main

POSITIVE = ["a wonderful film, I loved it", "great acting and a fun plot",
            "brilliant, moving and superb", "I loved every minute of it", "a joy to watch",
            "beautiful, funny and warm"]
NEGATIVE = ["an awful, boring mess", "terrible acting, I hated it", "dull and far too long",
            "the worst film of the year", "a complete waste of time", "painful and stupid"]
HH_PROMPT = "\n\nHuman: Can you recommend a film?\n\nAssistant:"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def classifier_rows() -> list[dict]:
    rows = []
    for pos, neg in zip(POSITIVE, NEGATIVE):
        rows += [{"text": pos, "label": 1}, {"text": neg, "label": 0}]
    return rows


def preference_rows() -> list[dict]:
    tldr = [{"prompt": f"POST: review {i}\n\nTL;DR:", "chosen": " " + pos, "rejected": " " + neg}
            for i, (pos, neg) in enumerate(zip(POSITIVE[:4], NEGATIVE[:4]))]
    hh = [{"chosen": HH_PROMPT + " " + pos, "rejected": HH_PROMPT + " " + neg}
          for pos, neg in zip(POSITIVE[4:], NEGATIVE[4:])]
    return tldr + hh


def reward_train(*args: str) -> int:
    """In process, as `ple reward train`; the head starts random unless --probe-examples is
    given, so that a falling loss shows the fine-tuning itself works."""
    return main(["reward", "train", "--base", "tiny", "--learning-rate", "1e-2",
                 "--warmup-ratio", "0", "--probe-examples", "0", *args])


def tiny_base(num_labels: int):
    from ple.rewards.training.base_model import load_base_model, load_base_tokenizer

    tokenizer = load_base_tokenizer("tiny")
    return load_base_model("tiny", num_labels, tokenizer, seed=0)


def changed_weights(out: Path, num_labels: int) -> tuple[set[str], set[str]]:
    """(names of saved tensors that differ from the untrained tiny base, the same names)."""
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    base = tiny_base(num_labels).state_dict()
    assert set(saved) <= set(base)
    return {k for k in saved if not torch.equal(saved[k], base[k])}, set(saved)


def assert_lora_merged_and_head_trained(out: Path, num_labels: int) -> None:
    changed, names = changed_weights(out, num_labels)
    linear = {n for n in names if n.endswith(("proj.weight",))}
    assert len(linear) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert "score.weight" in changed
    assert linear <= changed, sorted(linear - changed)  # every LoRA delta was merged in
    frozen = {n for n in names if "norm" in n or "embed_tokens" in n}
    assert frozen and not frozen & changed  # LoRA trains nothing else


def assert_serves_like_a_direct_forward(out: Path, queries, responses, label: int) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ple.rewards import checked_scores, load_reward
    from ple.rewards.classifier import ClassifierReward

    reward = load_reward(str(out), "imdb", label=1)
    assert isinstance(reward, ClassifierReward)
    assert reward.text_format == "plain"  # recorded by training, although SmolLM2 has a template
    scores = checked_scores(reward, queries, responses)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        direct = [model(**tokenizer(q + r, return_tensors="pt")).logits[0, label].item()
                  for q, r in zip(queries, responses)]
    assert scores == pytest.approx(direct, abs=1e-5)
    assert len({round(s, 6) for s in scores}) == len(scores)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    data = write_jsonl(root / "train.jsonl", classifier_rows())
    out = root / "rm"
    # batch = all 10 training examples, so the loss must fall step after step
    assert reward_train("--kind", "classifier", "--data", str(data), "--output-dir", str(out),
                        "--eval-fraction", "0.2", "--max-steps", "6", "--batch-size", "10",
                        "--max-length", "6") == 0
    return out


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    rows = preference_rows()
    rows.insert(3, {"prompt": "x", "chosen": " same", "rejected": " same"})  # dropped, counted
    data = write_jsonl(root / "pairs.jsonl", rows)
    held_out = write_jsonl(root / "held_out.jsonl", rows[:2])
    out = root / "rm"
    assert reward_train("--kind", "preference", "--data", str(data), "--eval-data",
                        str(held_out), "--output-dir", str(out), "--max-steps", "5",
                        "--batch-size", "6", "--text-format", "chat",
                        "--skip-invalid-pairs", "true") == 0
    return out


def test_classifier_trains_and_reports(classifier_dir, capsys):
    result = json.loads((classifier_dir / "reward_eval.json").read_text())
    assert result["metric"] == "accuracy" and 0 <= result["accuracy"] <= 1
    assert (result["n_train"], result["n_eval"]) == (10, 2)
    assert result["eval_source"].startswith("0.2 of ")
    losses = [row["loss"] for row in result["losses"]]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # "a wonderful film, I loved it" etc. are over 6 tokens: cut, and counted
    assert result["train_texts_truncated"] > 0
    assert result["max_length"] == 6 and result["truncation_side"] == "left"
    info = json.loads((classifier_dir / "ple_reward.json").read_text())
    assert info["kind"] == "classifier" and info["text_format"] == "plain"


def test_classifier_weights_lora_merged(classifier_dir):
    assert_lora_merged_and_head_trained(classifier_dir, num_labels=2)


def test_classifier_dir_serves_label_1_logit(classifier_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    # serving cuts exactly as training did: same limit, same side
    assert tokenizer.model_max_length == 6 and tokenizer.truncation_side == "left"
    assert_serves_like_a_direct_forward(classifier_dir, ["The film", "It was", ""],
                                        [" was great", " awful", " fun"], label=1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_training_cuts_texts_on_the_side_serving_cuts(tmp_path, side):
    from transformers import AutoTokenizer

    from ple.rewards.training.base_model import encode, load_base_tokenizer
    from ple.rewards.training.config import RewardTrainConfig

    cfg = RewardTrainConfig(kind="classifier", data="d", output_dir="o", max_length=4,
                            truncation_side=side)
    tokenizer = load_base_tokenizer("tiny", side)
    text = "one two three four five six seven eight"
    full = tokenizer(text)["input_ids"]
    encoded = encode(tokenizer, cfg, [("", text), ("", "one two")])
    assert encoded.ids[0] == (full[-4:] if side == "left" else full[:4])
    assert encoded.ids[1] == tokenizer("one two")["input_ids"] and encoded.truncated == 1
    tokenizer.save_pretrained(tmp_path)
    served = AutoTokenizer.from_pretrained(tmp_path)
    assert served(text, truncation=True, max_length=4)["input_ids"] == encoded.ids[0]


def test_preference_trains_with_trl_and_reports(preference_dir):
    result = json.loads((preference_dir / "reward_eval.json").read_text())
    assert result["metric"] == "pairwise_accuracy"
    assert result["pairwise_accuracy"] in (0.0, 0.5, 1.0)
    assert (result["n_train"], result["n_eval"]) == (6, 2)
    assert result["invalid_pairs_dropped"] == 1
    losses = [row["loss"] for row in result["losses"]]
    assert len(losses) == 5 and losses[-1] < losses[0]
    info = json.loads((preference_dir / "ple_reward.json").read_text())
    assert info["kind"] == "preference" and info["text_format"] == "chat"


def test_preference_weights_lora_merged(preference_dir):
    assert_lora_merged_and_head_trained(preference_dir, num_labels=1)


def test_preference_dir_serves_in_its_training_format(preference_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ple.rewards import load_reward

    reward = load_reward(str(preference_dir), "hh", label=1)
    assert reward.text_format == "chat"
    tokenizer = AutoTokenizer.from_pretrained(preference_dir)
    model = AutoModelForSequenceClassification.from_pretrained(preference_dir).eval()
    assert model.config.num_labels == 1
    text = reward.texts([HH_PROMPT], [" a fun film"])[0]
    assert text.endswith("<|im_start|>user\nCan you recommend a film?<|im_end|>\n"
                         "<|im_start|>assistant\na fun film<|im_end|>\n")
    with torch.no_grad():
        direct = model(**tokenizer(text, return_tensors="pt",
                                   add_special_tokens=False)).logits[0, 0].item()
    assert reward.score([HH_PROMPT], [" a fun film"]) == pytest.approx([direct], abs=1e-5)


@pytest.mark.slow
def test_saved_classifier_is_a_reward_for_ple_train(classifier_dir, tmp_path):
    from ple.rewards.classifier import ClassifierReward

    out = tmp_path / "run"
    result = run_ple("train", "--model", "tiny", "--task", "imdb", "--reward",
                     str(classifier_dir), "--max-steps", "1", "--batch-size", "2",
                     "--max-new-tokens", "4", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in open(out / "samples.jsonl")]
    assert len(rows) == 2
    reward = ClassifierReward(str(classifier_dir))
    expected = reward.score([r["query"] for r in rows], [r["response"] for r in rows])
    assert [r["reward"] for r in rows] == pytest.approx(expected, abs=1e-4)
    config = (out / "config.yaml").read_text()
    assert str(classifier_dir) in config


# --- linear probing before fine-tuning ----------------------------------------------------

def test_fit_probe_separates_and_undoes_the_scaling():
    from ple.rewards.training.probe import fit_probe

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    x[:, 0] *= 1000.0  # a feature on another scale (a "massive activation") that carries no signal
    y = (x[:, 2] - 0.5 * x[:, 4] > 0).double()
    w, info = fit_probe(x, y, seed=0)
    assert ((x @ w > 0).double() == y).double().mean() > 0.95
    assert info["fit_accuracy"] > 0.95 and info["l2"] in (1e-3, 1e-2, 1e-1, 1.0)
    assert abs(w[2]) > 10 * abs(w[0]) * 1000.0  # w is for the unscaled features


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "preference"])
def test_probe_sets_the_head_to_the_fitted_regression(kind):
    from ple.rewards.training.base_model import (encode, load_base_tokenizer, pooled_features,
                                                 score_ids)
    from ple.rewards.training.config import RewardTrainConfig
    from ple.rewards.training.data import read_examples
    from ple.rewards.training.probe import PROBE_L2, fit_probe, init_head_by_probe

    preference = kind == "preference"
    cfg = RewardTrainConfig(kind=kind, data="d", output_dir="o", probe_examples=100)
    tokenizer = load_base_tokenizer("tiny")
    model = tiny_base(1 if preference else 2)
    before = model.score.weight.detach().clone()
    rows = preference_rows() if preference else classifier_rows()
    path = write_jsonl(Path(tempfile.mkdtemp()) / "d.jsonl", rows)
    train, _ = read_examples(str(path), kind)
    chosen = encode(tokenizer, cfg, [e.chosen for e in train]).ids
    rejected = encode(tokenizer, cfg, [e.rejected for e in train]).ids if preference else None
    pad = tokenizer.pad_token_id
    info = init_head_by_probe(cfg, model, "score", train, chosen, rejected, pad)
    assert info["examples"] == len(rows) and info["l2"] in PROBE_L2

    features = pooled_features(model, "score", chosen, 16, pad, "f").double()
    if preference:
        diff = features - pooled_features(model, "score", rejected, 16, pad, "f").double()
        x = torch.cat([diff, -diff])
        y = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows))]).double()
        groups = [e.chosen[0] for e in train] * 2
    else:
        x, y, groups = features, torch.tensor([float(e.label) for e in train]).double(), None
    w, again = fit_probe(x, y, cfg.seed, groups)
    assert again == {k: v for k, v in info.items() if k in again}
    expected = w[None] if preference else torch.stack([-w / 2, w / 2])
    assert not torch.equal(model.score.weight, before)
    assert torch.allclose(model.score.weight.double(), expected, atol=1e-6)
    # what the model now says: logit(1) − logit(0) (or the single logit) = w · features
    logits = score_ids(model, chosen, 16, pad, "s").double()
    said = logits[:, 0] if preference else logits[:, 1] - logits[:, 0]
    assert torch.allclose(said, features @ w, atol=1e-4)


def test_probe_runs_before_fine_tuning_in_the_command(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", classifier_rows())
    out = tmp_path / "rm"
    assert reward_train("--kind", "classifier", "--data", str(data), "--output-dir", str(out),
                        "--max-steps", "1", "--batch-size", "2",
                        "--probe-examples", "5") == 0
    result = json.loads((out / "reward_eval.json").read_text())
    assert result["probe"]["examples"] == 5 and result["probe"]["seconds"] >= 0
    assert result["config"]["probe_examples"] == 5


# --- a hub reward model with a chat template (the RM-Gemma style) --------------------------

GEMMA_STYLE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
               "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
               "{{ m['content'] }}<end_of_turn>\n{% endfor %}")


@pytest.fixture(scope="module")
def hub_style_dir(tmp_path_factory):
    """A one-output reward model whose tokenizer adds special tokens and has a chat template
    that writes its own <bos>: no ple_reward.json, like a model from the hub."""
    from test_rewards import _save_tiny_classifier
    from transformers import AutoTokenizer

    path = _save_tiny_classifier(tmp_path_factory.mktemp("hub") / "rm", 1, seed=3)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.chat_template = GEMMA_STYLE.replace("bos_token", "cls_token")
    tokenizer.save_pretrained(str(path))
    return path


def test_chat_template_formats_a_known_conversation_exactly(hub_style_dir):
    from ple.rewards.classifier import ClassifierReward

    reward = ClassifierReward(str(hub_style_dir))
    assert reward.text_format == "chat"  # no ple_reward.json: the RM's own template
    query = ("\n\nHuman: Is the movie good?\n\nAssistant: It is great.\n\n"
             "Human: And the plot?\n\nAssistant:")
    assert reward.texts([query], [" The plot is boring. "]) == [
        "[CLS]<start_of_turn>user\nIs the movie good?<end_of_turn>\n"
        "<start_of_turn>model\nIt is great.<end_of_turn>\n"
        "<start_of_turn>user\nAnd the plot?<end_of_turn>\n"
        "<start_of_turn>model\nThe plot is boring.<end_of_turn>\n"]
    # plain text (no turn markers) is one user turn
    assert reward.texts(["the film was"], [" good"]) == [
        "[CLS]<start_of_turn>user\nthe film was<end_of_turn>\n"
        "<start_of_turn>model\ngood<end_of_turn>\n"]


def test_chat_text_is_scored_without_a_second_bos(hub_style_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ple.rewards.classifier import ClassifierReward

    reward = ClassifierReward(str(hub_style_dir))
    queries, responses = ["\n\nHuman: the movie was\n\nAssistant:", "i loved"], \
        [" good", " it and the acting was great"]
    texts = reward.texts(queries, responses)
    tokenizer = AutoTokenizer.from_pretrained(str(hub_style_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(hub_style_dir)).eval()

    def logits(special: bool) -> list[float]:
        with torch.no_grad():
            return [model(**tokenizer(t, return_tensors="pt", truncation=True,
                                      add_special_tokens=special)).logits[0, 0].item()
                    for t in texts]

    assert tokenizer(texts[0], add_special_tokens=False)["input_ids"][0] == \
        tokenizer.cls_token_id
    scores = reward.score(queries, responses)
    assert scores == pytest.approx(logits(False), abs=1e-5)
    assert scores != pytest.approx(logits(True), abs=1e-5)
    # an explicit format overrides the template
    plain = ClassifierReward(str(hub_style_dir), text_format="plain")
    assert plain.texts(queries, responses) == [q + r for q, r in zip(queries, responses)]


# --- bad input: one line, exit 2, nothing written ------------------------------------------

def assert_refused(code: int, capsys, message: str, out: Path) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("ple: error: ") and message in err[0], err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.mark.parametrize("kind,rows,message", [
    ("classifier", [{"text": "good", "label": 1}, {"text": "bad", "label": 2}],
     "bad.jsonl:2: field `label` must be 0 or 1, got 2"),
    ("classifier", [{"text": "good", "label": "1"}, {"text": "bad", "label": 0}],
     "bad.jsonl:1: field `label` must be 0 or 1, got '1'"),
    ("classifier", [{"text": "good", "label": 1}, {"text": "bad", "label": True}],
     "bad.jsonl:2: field `label` must be 0 or 1, got True"),
    ("classifier", [{"text": "good", "label": 1}, {"text": "bad"}],
     "bad.jsonl:2: field `label` is missing"),
    ("classifier", [{"text": "good", "label": 1}, {"text": "  ", "label": 0}],
     "bad.jsonl:2: field `text` is empty"),
    ("classifier", [{"text": "good", "label": 1}, {"text": "fine", "label": 1}],
     "every training label is 1; a classifier needs examples of both 0 and 1"),
    ("preference", [{"prompt": "p", "chosen": " a", "rejected": " b"},
                    {"prompt": "p", "chosen": " a", "rejected": "  "}],
     "bad.jsonl:2: the `rejected` response is empty"),
    ("preference", [{"prompt": "p", "chosen": " a", "rejected": " b"},
                    {"chosen": HH_PROMPT, "rejected": HH_PROMPT + " no"}],
     "bad.jsonl:2: the `chosen` response is empty"),
    ("preference", [{"prompt": "p", "chosen": " a", "rejected": " a"},
                    {"prompt": "p", "chosen": " a", "rejected": " b"}],
     "bad.jsonl:1: `chosen` and `rejected` are identical"),
    ("preference", [{"prompt": "p", "chosen": " a", "rejected": " b"},
                    {"prompt": "p", "chosen": " a"}],
     "bad.jsonl:2: field `rejected` is missing"),
    ("preference", [{"prompt": "p", "chosen": " a", "rejected": " b"},
                    {"chosen": "no turns", "rejected": "at all"}],
     "bad.jsonl:2: HH transcript has no '\\n\\nAssistant:' turn"),
])
def test_bad_data_names_file_and_line(tmp_path, capsys, kind, rows, message):
    data = write_jsonl(tmp_path / "bad.jsonl", rows * 3 if "every" in message else rows)
    out = tmp_path / "out"
    assert_refused(reward_train("--kind", kind, "--data", str(data), "--output-dir", str(out)),
                   capsys, message, out)


def test_bad_held_out_file_names_its_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", classifier_rows())
    held_out = write_jsonl(tmp_path / "eval.jsonl", [{"text": "x", "label": 1},
                                                     {"text": "y", "label": -1}])
    out = tmp_path / "out"
    assert_refused(reward_train("--kind", "classifier", "--data", str(data), "--eval-data",
                                str(held_out), "--output-dir", str(out)),
                   capsys, "eval.jsonl:2: field `label` must be 0 or 1, got -1", out)


def test_base_without_tokenizer(tmp_path, capsys):
    base = tmp_path / "no-tokenizer"
    tiny_base(2).save_pretrained(base)  # weights and config, no tokenizer files
    capsys.readouterr()
    data = write_jsonl(tmp_path / "train.jsonl", classifier_rows())
    out = tmp_path / "out"
    assert_refused(main(["reward", "train", "--kind", "classifier", "--data", str(data),
                         "--base", str(base), "--output-dir", str(out)]),
                   capsys, f"--base {base}: the directory has no tokenizer", out)


def test_missing_base_and_bad_values(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", classifier_rows())
    out = tmp_path / "out"
    assert_refused(main(["reward", "train", "--kind", "classifier", "--data", str(data),
                         "--base", "./no/such/model", "--output-dir", str(out)]),
                   capsys, "--base ./no/such/model: no such directory", out)
    assert_refused(reward_train("--kind", "classifier", "--data", str(data), "--output-dir",
                                str(out), "--eval-fraction", "1.5"),
                   capsys, "--eval-fraction = 1.5: must be in (0, 1)", out)
    assert_refused(reward_train("--kind", "classifier", "--data", str(data), "--output-dir",
                                str(out), "--text-format", "chat"),
                   capsys, "--text-format = chat: only for --kind preference", out)


def test_output_dir_holding_something_else_is_refused(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", classifier_rows())
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code = reward_train("--kind", "classifier", "--data", str(data), "--output-dir",
                            str(out), *extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"--output-dir {out}" in err[0], err
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
